//! The image format between releases (needs root and the repository's history): the release
//! that wrote only format 1 ([`FORMAT_1_RELEASE`], built from git) and this one exchange images
//! both ways, and `seamless check` picks the format the target initramfs's seamless-init reads,
//! or refuses naming both sides' versions.
//!
//! `cargo test -p seamless-tests --test formats -- --test-threads=1`

use anyhow::{bail, ensure, Context, Result};
use seamless_image::newc;
use seamless_tests::host::{run_logged, tail, Harness, Running};
use seamless_tests::releases::{self, Release, FORMAT_1_RELEASE};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const READY: Duration = Duration::from_secs(30);
const VERDICT: Duration = Duration::from_secs(30);
const GONE: Duration = Duration::from_secs(20);
const COMMAND: Duration = Duration::from_secs(120);
const WORKLOAD: &str = "pipes";

fn work() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("formats")
}

fn previous() -> Result<Release> {
    releases::at_commit(&work().join("releases"), FORMAT_1_RELEASE)
        .context("building the format-1 release from the repository's history")
}

/// An initramfs whose `/init` is `init` (the layout `seamless upgrade` prepares).
fn initramfs_with(init: &Path, name: &str) -> Result<PathBuf> {
    let mut c = newc::Builder::new();
    c.file("init", 0o755, &std::fs::read(init).with_context(|| format!("reading {}", init.display()))?);
    let path = work().join(name);
    std::fs::create_dir_all(work())?;
    std::fs::write(&path, c.finish())?;
    Ok(path)
}

/// `seamless check --initrd INITRD [--image-format V] --json`: the `image format` verdict's
/// status and detail.
fn format_verdict(seamless: &Path, initrd: &Path, asked: Option<u32>) -> Result<(String, String)> {
    let mut cmd = Command::new(seamless);
    cmd.arg("check").arg("--initrd").arg(initrd).arg("--json");
    if let Some(v) = asked {
        cmd.arg("--image-format").arg(v.to_string());
    }
    let out = cmd.output().context("running seamless check")?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("seamless check printed no JSON: {}", String::from_utf8_lossy(&out.stderr)))?;
    let verdicts = report["verdicts"].as_array().context("no verdicts array")?;
    let v = verdicts.iter().find(|v| v["subject"] == "image format").context("no 'image format' verdict")?;
    let field = |k: &str| v[k].as_str().map(str::to_string).with_context(|| format!("verdict without {k}"));
    Ok((field("status")?, field("detail")?))
}

#[test]
fn check_picks_the_format_the_target_seamless_init_reads() -> Result<()> {
    let (old, new) = (previous()?, releases::current()?);
    // The old seamless-init predates --image-formats: usage, exit 2, nothing printed on stdout.
    let o = Command::new(&old.init).arg("--image-formats").output()?;
    ensure!(o.status.code() == Some(2) && o.stdout.is_empty(), "old seamless-init --image-formats: {:?}", o);
    let n = Command::new(&new.init).arg("--image-formats").output()?;
    let text = String::from_utf8_lossy(&n.stdout);
    ensure!(n.status.success() && text.contains("\nformats 1 2\n"), "new seamless-init --image-formats: {text}");

    let old_initrd = initramfs_with(&old.init, "old-init.cpio")?;
    let new_initrd = initramfs_with(&new.init, "new-init.cpio")?;
    let (status, detail) = format_verdict(&new.seamless, &old_initrd, None)?;
    ensure!(status == "ok" && detail.starts_with("writes format 1:"), "old target: {status}: {detail}");
    let (status, detail) = format_verdict(&new.seamless, &new_initrd, None)?;
    ensure!(status == "ok" && detail.starts_with("writes format 2:"), "new target: {status}: {detail}");
    // Asked for format 2, the old target is refused before anything happens, naming both sides.
    let (status, detail) = format_verdict(&new.seamless, &old_initrd, Some(2))?;
    ensure!(status == "fail", "format 2 for a format-1 reader must fail: {detail}");
    for needle in ["writes image formats 1..2", "reads 1..1", "format 2 was asked for"] {
        ensure!(detail.contains(needle), "the refusal does not say '{needle}': {detail}");
    }
    // A format this build cannot write at all.
    let (status, detail) = format_verdict(&new.seamless, &new_initrd, Some(9))?;
    ensure!(status == "fail" && detail.contains("format 9"), "format 9: {status}: {detail}");
    Ok(())
}

/// Dumps a `WORKLOAD` run with `dumper`, restores it with `restorer`, expects PASS.
fn exchange(h: &Harness, dumper: &Path, dump_args: &[&str], restorer: &Path) -> Result<()> {
    let mut run: Running = h.start(WORKLOAD, &[])?;
    run.wait_ready(READY)?;
    let pids = run.snapshot_tree();
    let images = h.images_for(&run);
    let mut dump = Command::new(dumper);
    dump.arg("dump").arg("--tree").arg(run.pid.to_string()).arg("--images").arg(&images).args(dump_args);
    let d = run_logged(dump, &run.dir, "dump", COMMAND)?;
    if !d.status.success() {
        bail!("dump by {} failed: {}", dumper.display(), d.failure());
    }
    run.expect_gone(&pids, GONE)?;
    let mut restore = Command::new(restorer);
    restore.arg("restore").arg("--images").arg(&images);
    let r = run_logged(restore, &run.dir, "restore", COMMAND)?;
    if !r.status.success() {
        bail!("restore by {} failed: {}", restorer.display(), r.failure());
    }
    run.snapshot_tree();
    run.terminate()?;
    run.wait_verdict(VERDICT).with_context(|| format!("restore stderr:\n{}", tail(&r.stderr, 20)))?;
    let _ = std::fs::remove_dir_all(&images);
    run.finish();
    Ok(())
}

#[test]
fn an_image_of_the_previous_format_restores_and_one_can_be_written_for_it() -> Result<()> {
    let (old, new) = (previous()?, releases::current()?);
    let h = Harness::new(&work().join("runs"))?;
    exchange(&h, &old.seamless, &[], &new.seamless).context("format-1 release dumps, this one restores")?;
    exchange(&h, &new.seamless, &["--image-format", "1"], &old.seamless)
        .context("this release dumps with --image-format 1, the format-1 release restores")?;
    // Without --image-format the new format is written, which the old release refuses, naming it.
    let mut run = h.start(WORKLOAD, &[])?;
    run.wait_ready(READY)?;
    let images = h.images_for(&run);
    let mut dump = Command::new(&new.seamless);
    dump.arg("dump").arg("--tree").arg(run.pid.to_string()).arg("--images").arg(&images).arg("--leave-running");
    let d = run_logged(dump, &run.dir, "dump-leave-running", COMMAND)?;
    ensure!(d.status.success(), "dump --leave-running: {}", d.failure());
    let mut restore = Command::new(&old.seamless);
    restore.arg("restore").arg("--images").arg(&images);
    let r = run_logged(restore, &run.dir, "restore-old", COMMAND)?;
    let err = r.stderr_text();
    ensure!(!r.status.success() && err.contains("format version 2"), "the old release must refuse format 2: {err}");
    run.terminate()?;
    run.wait_verdict(VERDICT)?;
    let _ = std::fs::remove_dir_all(&images);
    run.finish();
    Ok(())
}
