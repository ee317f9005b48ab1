//! `seamless upgrade`.

use super::target_args::{CmdlineArgs, TargetArgs};
use seamless::upgrade::{upgrade, UpgradeOptions};
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
After the boot: dmesg | grep seamless-init, and /run/seamless/report.json.")]
pub struct Args {
    /// The new kernel image.
    #[arg(long)]
    pub kernel: PathBuf,
    /// The new kernel's initramfs (with seamless-init inside).
    #[arg(long)]
    pub initrd: PathBuf,
    #[command(flatten)]
    pub cmdline: CmdlineArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// The region device (default: the first /dev/pmem*; without one, the image goes into the
    /// initramfs).
    #[arg(long)]
    pub region: Option<PathBuf>,
    /// Put the image into the initramfs even when a region exists.
    #[arg(long)]
    pub initramfs_image: bool,
    /// Image format version to write (default: the newest the target's seamless-init reads;
    /// `seamless-init --image-formats` says which it reads).
    #[arg(long, value_name = "VERSION")]
    pub image_format: Option<u32>,
    /// Go on even if pre-flight checks fail.
    #[arg(long)]
    pub force: bool,
    /// Testing aid: fail on purpose at a stage (dump, freeze, jump) to exercise the roll-back,
    /// or hold just before the jump (pause-before-jump[=SECONDS]) to be interrupted or killed.
    #[arg(long, value_name = "STAGE", hide = true)]
    pub inject_failure: Option<String>,
}

/// Runs `seamless upgrade`; returns only on failure.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
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
        kernel: args.kernel,
        initrd: args.initrd,
        cmdline,
        roots,
        region: args.region,
        force_initramfs: args.initramfs_image,
        inject_failure: args.inject_failure,
        force: args.force,
        image_format: args.image_format,
    };
    match upgrade(&opts) {
        Ok(never) => match never {},
        Err(e) => Err(anyhow::Error::new(e).context("upgrade stopped")),
    }
}
