//! `seamless check`.

use super::target_args::{CmdlineArgs, TargetArgs};
use seamless::check::{self, CheckOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seamless check`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status: 0 nothing blocks the upgrade, 1 something does (the FAIL lines say what), \
3 --newest found the newest installed kernel running (nothing to check).\n\
With --json: {\"verdicts\": [{\"subject\", \"status\": \"ok\"|\"warn\"|\"fail\", \"detail\"}], \"image_format\"}; \
with --newest also \"kernel\" (its release) and \"up_to_date\".")]
pub struct Args {
    /// The new kernel image.
    #[arg(long, conflicts_with = "newest")]
    pub kernel: Option<PathBuf>,
    /// The new kernel's initramfs.
    #[arg(long, conflicts_with = "newest")]
    pub initrd: Option<PathBuf>,
    /// Check the newest kernel installed in --boot, the one `seamless upgrade --newest` picks
    /// (`vmlinuz-RELEASE` with `initrd.img-RELEASE` or `initramfs-RELEASE.img`); exit 3 when it
    /// is the running one.
    #[arg(long)]
    pub newest: bool,
    /// Where --newest looks.
    #[arg(long, value_name = "DIR", default_value = "/boot")]
    pub boot: PathBuf,
    #[command(flatten)]
    pub cmdline: CmdlineArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// The region device (default: the first /dev/pmem*).
    #[arg(long)]
    pub region: Option<PathBuf>,
    /// Load the kernel for real and unload it, to prove it is accepted (signature, format).
    #[arg(long)]
    pub trial_load: bool,
    /// Image format version to write (default: the newest the target's seamless-init reads;
    /// `seamless-init --image-formats` says which it reads).
    #[arg(long, value_name = "VERSION")]
    pub image_format: Option<u32>,
    /// The new kernel's build configuration (default: `config-RELEASE` beside the kernel
    /// image, e.g. `/boot/config-RELEASE`).
    #[arg(long, value_name = "FILE")]
    pub kernel_config: Option<PathBuf>,
    /// Print the verdicts as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Exit code: `--newest` found the running kernel newest; nothing to check.
pub const EXIT_UP_TO_DATE: u8 = 3;

/// Runs `seamless check`: exit 0 when ready, 1 when something blocks the upgrade, 3 when
/// `--newest` finds nothing newer than the running kernel.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (mut kernel, mut initrd, mut release) = (args.kernel, args.initrd, None);
    if args.newest {
        let Some((n, running)) = seamless::upgrade::newest::pick(&args.boot) else {
            anyhow::bail!("--newest: no kernel with an initramfs in {}", args.boot.display());
        };
        if running {
            if args.json {
                let v = serde_json::json!({ "kernel": n.release, "up_to_date": true, "verdicts": [] });
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            eprintln!("seamless: the newest installed kernel, {}, is already running: nothing to check", n.release);
            return Ok(ExitCode::from(EXIT_UP_TO_DATE));
        }
        eprintln!("seamless: newest installed kernel: {} ({})", n.release, n.kernel.display());
        (kernel, initrd, release) = (Some(n.kernel), Some(n.initrd), Some(n.release));
    }
    let pids = args.targets.selection().resolve()?;
    let opts = CheckOptions {
        kernel,
        initrd,
        cmdline: args.cmdline.resolve()?,
        pids,
        region: args.region,
        trial_load: args.trial_load,
        image_format: args.image_format,
        kernel_config: args.kernel_config,
    };
    let report = check::run(&opts);
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(r), Some(map)) = (release, v.as_object_mut()) {
            map.insert("kernel".into(), r.into());
            map.insert("up_to_date".into(), false.into());
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{report}");
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
