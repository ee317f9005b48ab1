//! `seamless check`.

use super::target_args::{CmdlineArgs, TargetArgs};
use seamless::check::{self, CheckOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seamless check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new kernel image.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// The new kernel's initramfs.
    #[arg(long)]
    pub initrd: Option<PathBuf>,
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
    /// Print the verdicts as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `seamless check`: exit 0 when ready, 1 when something blocks the upgrade.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let pids = args.targets.selection().resolve()?;
    let opts = CheckOptions {
        kernel: args.kernel,
        initrd: args.initrd,
        cmdline: args.cmdline.resolve()?,
        pids,
        region: args.region,
        trial_load: args.trial_load,
        image_format: args.image_format,
    };
    let report = check::run(&opts);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
