//! `seamless restore`.

use seamless_image::{DirStore, Reader};
use seamless_init::restore::{restore_all, RestoreOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seamless restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image directory written by `seamless dump` (holding region.img).
    #[arg(long)]
    pub images: PathBuf,
    /// Use the cross-kernel vDSO trampoline even on the same kernel (testing); also
    /// `SEAMLESS_FORCE_VDSO_TRAMPOLINE=1`.
    #[arg(long)]
    pub force_vdso_trampoline: bool,
}

/// Runs `seamless restore`. Exits 0 when every process runs again, 1 when some tree failed
/// (the other trees are restored).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = DirStore::open(&args.images)?;
    let mut reader =
        Reader::open(store).map_err(|e| anyhow::anyhow!("cannot open the image in {}: {e}", args.images.display()))?;
    let mut opts = RestoreOptions::from_env();
    opts.force_vdso_trampoline |= args.force_vdso_trampoline;
    let report = restore_all(&mut reader, &opts).map_err(|e| anyhow::anyhow!("restore failed: {e}"))?;
    for t in &report.failed_trees {
        eprintln!(
            "seamless: tree of pid {:?} not restored (none of its pids {:?} runs): {}",
            t.roots, t.pids, t.reason
        );
    }
    eprintln!(
        "seamless: restored {} processes ({} threads, {} pages) in {:.1} ms{}",
        report.restored.len(),
        report.threads,
        report.pages,
        report.elapsed.as_secs_f64() * 1e3,
        if report.failed.is_empty() { String::new() } else { format!(", {} failed", report.failed.len()) }
    );
    Ok(if report.failed.is_empty() && !report.restored.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
