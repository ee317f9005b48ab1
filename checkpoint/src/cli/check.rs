//! `seamless check`.

use super::target_args::{CmdlineArgs, NewKernel, NewKernelArgs, TargetArgs};
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
    #[command(flatten)]
    pub new_kernel: NewKernelArgs,
    #[command(flatten)]
    pub cmdline: CmdlineArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Load the kernel for real and unload it, to prove it is accepted (signature, format).
    #[arg(long)]
    pub trial_load: bool,
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
    let (kernel, initrd, release) = match args.new_kernel.pick()? {
        NewKernel::Given { kernel, initrd } => (kernel, initrd, None),
        NewKernel::Newest(n) => (Some(n.kernel), Some(n.initrd), Some(n.release)),
        NewKernel::UpToDate { release } => {
            if args.json {
                let v = serde_json::json!({ "kernel": release, "up_to_date": true, "verdicts": [] });
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            return Ok(ExitCode::from(EXIT_UP_TO_DATE));
        }
    };
    let pids = args.targets.selection().resolve()?;
    let opts = CheckOptions {
        kernel,
        initrd,
        cmdline: args.cmdline.resolve()?,
        pids,
        region: args.new_kernel.region,
        trial_load: args.trial_load,
        image_format: args.new_kernel.image_format,
        kernel_config: args.kernel_config,
        crypt_keys: args.targets.crypt_keys()?,
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
