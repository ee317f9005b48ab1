//! `seamless inspect`.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seamless inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image: a directory (holding region.img), a block device such as /dev/pmem0, or a
    /// cpio archive.
    pub image: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also print each record's own summary (processes, threads, areas, descriptors).
    #[arg(long, short)]
    pub details: bool,
}

/// Runs `seamless inspect`. Exits 0 when every checksum matches, 2 when some fail.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = seamless::inspect::inspect(&args.image, args.details || args.json)
        .with_context(|| format!("cannot read the image at {}", args.image.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(if report.failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
