//! Other releases of seamless, built from this repository's history, for the tests that check
//! the image format contract between releases (`tests/tests/formats.rs`).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The last commit whose image format was version 1 only (its `seamless-init` predates
/// `--image-formats`): the "previous release" of the format-2 code.
pub const FORMAT_1_RELEASE: &str = "730731f2a39631a701114a724e9989ff62a062eb";

/// The two binaries of one build.
#[derive(Debug, Clone)]
pub struct Release {
    /// `seamless`.
    pub seamless: PathBuf,
    /// `seamless-init` (not static: it is only run as a normal process or put in an archive).
    pub init: PathBuf,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn cargo_build(dir: &Path, target: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .args(["build", "--quiet", "-p", "seamless", "-p", "seamless-init"])
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build in {} failed ({}):\n{}", dir.display(), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn release_in(target: &Path) -> Result<Release> {
    let r = Release { seamless: target.join("debug/seamless"), init: target.join("debug/seamless-init") };
    for b in [&r.seamless, &r.init] {
        if !b.is_file() {
            bail!("{} was not built", b.display());
        }
    }
    Ok(r)
}

/// This checkout's binaries (those of the test profile, built on first use).
pub fn current() -> Result<Release> {
    Ok(Release { seamless: crate::host::seamless_bin()?, init: crate::host::seamless_init_bin()? })
}

/// The release at `commit`, exported with `git archive` and built into `work/<commit>`
/// (kept: a second run reuses it). Needs the repository's history (a full clone).
pub fn at_commit(work: &Path, commit: &str) -> Result<Release> {
    let root = work.join(&commit[..12]);
    let target = root.join("target");
    if let Ok(r) = release_in(&target) {
        return Ok(r);
    }
    let src = root.join("src");
    if src.exists() {
        std::fs::remove_dir_all(&src).with_context(|| format!("cleaning {}", src.display()))?;
    }
    std::fs::create_dir_all(&src)?;
    // A shallow clone may lack the commit: fetch it from the clone's origin first.
    let have = |c: &str| {
        Command::new("git").current_dir(workspace()).args(["cat-file", "-e", &format!("{c}^{{commit}}")]).status()
    };
    if !have(commit).is_ok_and(|s| s.success()) {
        let _ = Command::new("git").current_dir(workspace()).args(["fetch", "--quiet", "origin", commit]).status();
    }
    let archive = Command::new("git")
        .current_dir(workspace())
        .args(["archive", "--format=tar", commit])
        .output()
        .context("running git archive")?;
    if !archive.status.success() {
        bail!(
            "git archive {commit} failed: {} (the format tests need the repository's history: a full clone)",
            String::from_utf8_lossy(&archive.stderr).trim()
        );
    }
    let tar = root.join("src.tar");
    std::fs::write(&tar, &archive.stdout)?;
    let x = Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&src).status().context("running tar")?;
    if !x.success() {
        bail!("tar -xf {} failed", tar.display());
    }
    cargo_build(&src, &target)?;
    release_in(&target)
}
