//! `seamless dump`.

use anyhow::Context;
use seamless::dump::{dump_trees_with, precopy, DumpOptions};
use seamless_image::{DirStore, Writer, WriterInfo};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seamless dump`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "DIR is created with mode 0700 (an existing DIR must belong to you and be writable by nobody else) \
and locked for the whole dump: a second dump into the same DIR is refused. DIR/region.img is created with mode \
0600 under a temporary name and renamed into place (an earlier image or a link at that name is replaced, never \
written through). `seamless restore` only accepts the image while it and every directory above it are owned by \
root and not writable by group or others."
)]
pub struct Args {
    /// Root of a process tree to dump (repeatable).
    #[arg(long = "tree", required = true)]
    pub tree: Vec<i32>,
    /// Image directory (created 0700 if missing; the image is DIR/region.img, mode 0600).
    #[arg(long)]
    pub images: PathBuf,
    /// Leave the processes running after the dump instead of killing them.
    #[arg(long)]
    pub leave_running: bool,
    /// Image format version to write (default: the newest; an older one for the `seamless
    /// restore` of an older release).
    #[arg(long, value_name = "VERSION", default_value_t = seamless_image::FORMAT_VERSION)]
    pub image_format: u32,
    /// Copy the trees' memory while they run first, then freeze them and copy only the pages
    /// changed since (soft-dirty tracking).
    #[arg(long)]
    pub pre_copy: bool,
    /// Largest image (bytes).
    #[arg(long, default_value_t = 64 << 30)]
    pub capacity: u64,
}

/// Runs `seamless dump`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = DirStore::create(&args.images, args.capacity)?;
    let mut writer = Writer::with_format(store, WriterInfo::current(env!("CARGO_PKG_VERSION")), args.image_format)?;
    let pre = if args.pre_copy {
        Some(precopy::run(&args.tree, &mut writer, &Default::default()).context("pre-copy failed, processes running")?)
    } else {
        None
    };
    let passes = pre.as_ref().map(|p| p.passes.iter().map(|s| s.pages).collect::<Vec<_>>());
    let summary = dump_trees_with(&args.tree, &mut writer, &DumpOptions::default(), pre)
        .context("dump failed, processes resumed")?;
    let used = writer.used();
    if let Err(e) = seamless::interrupt::check("the dump") {
        summary.frozen.resume();
        anyhow::bail!("dump stopped, every process resumed, the image left incomplete: {e}");
    }
    if let Err(e) = writer.finish() {
        summary.frozen.resume();
        return Err(anyhow::Error::new(e).context("dump failed, processes resumed: writing the image"));
    }
    let (procs, threads, pages, files, ft, tt) =
        (summary.processes, summary.threads, summary.pages, summary.files, summary.freeze_time, summary.total_time);
    if args.leave_running {
        summary.frozen.resume();
    } else {
        summary.frozen.kill();
        // The objects moved into the image with the processes (a restore here recreates them).
        seamless::dump::sysv::remove(&summary.sysv);
    }
    eprintln!(
        "seamless: dumped {procs} processes, {threads} threads, {pages} pages ({} KiB), {files} open files into {} ({} KiB); freeze {:.1} ms, total {:.1} ms",
        pages * 4,
        args.images.display(),
        used / 1024,
        ft.as_secs_f64() * 1e3,
        tt.as_secs_f64() * 1e3
    );
    if let Some(passes) = passes {
        eprintln!(
            "seamless: pre-copy: {} pass(es) while running, pages {}; frozen {:.1} ms",
            passes.len(),
            passes.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
            tt.as_secs_f64() * 1e3
        );
    }
    Ok(ExitCode::SUCCESS)
}
