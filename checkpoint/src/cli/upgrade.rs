//! `seamless upgrade`.

use super::target_args::{CmdlineArgs, NewKernel, NewKernelArgs, TargetArgs};
use seamless::upgrade::{upgrade, UpgradeOptions};
use seamless_sys::chain;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seamless upgrade`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Stages: checks, kernel load, freeze + dump, sync + filesystem freeze, jump. Any failure \
before the jump resumes every process and exits non-zero with the reason.\n\
With an initramfs that carries the seamless hook (/usr/lib/seamless/seamless-init, from the dracut module or \
the mkinitcpio hook), init=/usr/lib/seamless/seamless-init and seamless.init=<previous init> are added to the \
new command line, so the processes are restored after the switch to the real root.\n\
Without a region, the image goes into /run/seamless/region.cpio and the combined initramfs \
/run/seamless/initrd.img (directory 0700, locked during the upgrade, files 0600 created privately). The image \
records the new kernel's release (from its bzImage header); seamless-init restores nothing on another kernel.\n\
After the boot: dmesg | grep seamless-init, and /run/seamless/report.json.\n\
Exit status (the command returns only when there was no jump): 1 refused before anything changed (pre-flight \
check, kernel load, arguments), 3 --newest found the newest installed kernel running (nothing to do), 4 stopped \
after it started, everything put back. With --json: one JSON line on stdout, \
{\"outcome\": \"refused\"|\"up-to-date\"|\"rolled-back\", \"kernel\", \"error\", \"verdicts\"}.")]
pub struct Args {
    #[command(flatten)]
    pub new_kernel: NewKernelArgs,
    /// On failure, print a JSON summary on stdout (outcome, kernel, error, pre-flight verdicts).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cmdline: CmdlineArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Put the image into the initramfs even when a region exists.
    #[arg(long)]
    pub initramfs_image: bool,
    /// Also read back on the new kernel what the page cache holds of this file or directory
    /// (repeatable); the files the preserved processes have mapped or open always are.
    #[arg(long, value_name = "PATH")]
    pub warm: Vec<PathBuf>,
    /// Seconds the new kernel may spend reading the page cache's hot set back from disk before
    /// it starts the real init (0: not recorded, not read back).
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0)]
    pub rewarm_budget: f64,
    /// Carry this file or directory on tmpfs (/run, /dev/shm, /tmp) to the new kernel too
    /// (repeatable); the tmpfs files the preserved processes hold open, map or bind unix
    /// sockets in always are.
    #[arg(long, value_name = "PATH")]
    pub keep: Vec<PathBuf>,
    /// Do not copy the trees' memory while they run before the freeze (pre-copy, the
    /// default): copy all of it frozen.
    #[arg(long)]
    pub no_pre_copy: bool,
    /// Go on even if pre-flight checks fail.
    #[arg(long)]
    pub force: bool,
    /// Testing aid: fail on purpose at a stage (dump, freeze, jump) to exercise the roll-back,
    /// or hold just before the jump (pause-before-jump[=SECONDS]) to be interrupted or killed.
    #[arg(long, value_name = "STAGE", hide = true)]
    pub inject_failure: Option<String>,
}

/// Exit code: refused before anything changed (pre-flight check, kernel load, arguments).
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: `--newest` found the running kernel newest; nothing to do.
pub const EXIT_UP_TO_DATE: u8 = 3;
/// Exit code: stopped after it started (dump, freeze, jump); everything was put back.
pub const EXIT_ROLLED_BACK: u8 = 4;

fn summary(outcome: &str, release: &str, error: &str, report: Option<&seamless::check::Report>) -> String {
    let mut v = serde_json::json!({ "outcome": outcome, "kernel": release, "error": error });
    if let Some(r) = report {
        v["verdicts"] = serde_json::to_value(&r.verdicts).unwrap_or_default();
    }
    v.to_string()
}

/// Runs `seamless upgrade`; returns only on failure, with [`EXIT_REFUSED`],
/// [`EXIT_UP_TO_DATE`] or [`EXIT_ROLLED_BACK`].
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (kernel, initrd, release) = match args.new_kernel.pick()? {
        NewKernel::Given { kernel: Some(k), initrd: Some(i) } => (k, i, String::new()),
        NewKernel::Given { .. } => anyhow::bail!("give the new kernel with --kernel and --initrd, or --newest"),
        NewKernel::Newest(n) => (n.kernel, n.initrd, n.release),
        NewKernel::UpToDate { release } => {
            if args.json {
                println!("{}", summary("up-to-date", &release, "", None));
            }
            return Ok(ExitCode::from(EXIT_UP_TO_DATE));
        }
    };
    let roots = args.targets.selection().resolve()?;
    if roots.is_empty() {
        anyhow::bail!("nothing to preserve: give --pid, --cgroup or --unit (use `seamless kexec` for a plain kexec)");
    }
    let cmdline = args
        .cmdline
        .resolve()?
        .ok_or_else(|| anyhow::anyhow!("give the new command line with --append CMDLINE or --reuse-cmdline"))?;
    seamless::targets::record_units(&args.targets.units)?;
    let opts = UpgradeOptions {
        kernel,
        initrd,
        cmdline,
        roots,
        region: args.new_kernel.region,
        force_initramfs: args.initramfs_image,
        inject_failure: args.inject_failure,
        force: args.force,
        image_format: args.new_kernel.image_format,
        warm: args.warm,
        keep: args.keep.into_iter().chain(seamless::targets::runtime_directories(&args.targets.units)?).collect(),
        rewarm_budget: std::time::Duration::try_from_secs_f64(args.rewarm_budget)
            .map_err(|e| anyhow::anyhow!("--rewarm-budget {}: {}", args.rewarm_budget, chain(&e)))?,
        reader_kinds: None,
        crypt_keys: args.targets.crypt_keys()?,
        pre_copy: !args.no_pre_copy,
    };
    let e = match upgrade(&opts) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    use seamless::upgrade::UpgradeError;
    let (outcome, code, report) = match &e {
        UpgradeError::Check(r) => ("refused", EXIT_REFUSED, Some(r)),
        UpgradeError::Load(_) => ("refused", EXIT_REFUSED, None),
        _ => ("rolled-back", EXIT_ROLLED_BACK, None),
    };
    let release = if release.is_empty() { opts.kernel.display().to_string() } else { release };
    if args.json {
        println!("{}", summary(outcome, &release, &chain(&e).to_string(), report));
    }
    eprintln!("seamless: error: upgrade stopped: {}", chain(&e));
    Ok(ExitCode::from(code))
}
