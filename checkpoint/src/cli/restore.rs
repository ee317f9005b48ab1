//! `seamless restore`.

use anyhow::Context;
use seamless_image::{DirStore, ImageError, Reader, State};
use seamless_restore::{restore_all, RestoreOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seamless restore`.
#[derive(Debug, clap::Args)]
#[command(after_help = "The image is trusted only if root alone can have written it: DIR/region.img (opened \
without following a symbolic link) and every directory from / down to DIR must be owned by root and not \
writable by group or others. Every recorded path must be absolute, and a record of a kind this seamless \
does not know is refused.\n\
Before any restored process runs, the image is marked consumed: a second restore of the same image is \
refused (unless the first one ran with --keep-image).")]
pub struct Args {
    /// Image directory written by `seamless dump` (holding region.img).
    #[arg(long)]
    pub images: PathBuf,
    /// Use the cross-kernel vDSO trampoline even on the same kernel (testing); also
    /// `SEAMLESS_FORCE_VDSO_TRAMPOLINE=1`.
    #[arg(long)]
    pub force_vdso_trampoline: bool,
    /// Do not mark the image consumed, so it can be restored again (same-kernel testing
    /// only: two restores of one image run the same processes twice).
    #[arg(long)]
    pub keep_image: bool,
}

/// Runs `seamless restore`. Exits 0 when every process runs again, 1 when some tree failed
/// (the other trees are restored).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.images.display().to_string();
    let store = DirStore::open_trusted(&args.images, !args.keep_image)
        .with_context(|| format!("not restoring the image in {dir}"))?;
    let mut reader = Reader::open(store).map_err(|e| match e {
        ImageError::WrongState { found: State::Consumed, .. } => anyhow::anyhow!(
            "not restoring the image in {dir}: it was already restored (its state is consumed), and an image is \
             restored at most once; dump again (or restore with --keep-image for same-kernel tests)"
        ),
        e => anyhow::Error::new(e).context(format!("cannot open the image in {dir}")),
    })?;
    if !args.keep_image {
        reader.mark_consumed().with_context(|| format!("cannot mark the image in {dir} consumed, not restoring it"))?;
    }
    let mut opts = RestoreOptions::from_env();
    opts.force_vdso_trampoline |= args.force_vdso_trampoline;
    let report = restore_all(&mut reader, &opts).context("restore failed")?;
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
