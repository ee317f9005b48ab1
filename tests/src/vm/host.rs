//! Host side helpers: running commands with clear errors, installing missing Debian packages,
//! the cache directory.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a command, failing with its stderr when it exits non-zero. Returns stdout.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The cache directory: `SEAMLESS_CACHE`, else `<repo>/.cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("SEAMLESS_CACHE").map(PathBuf::from).unwrap_or_else(|| crate::paths::repo_root().join(".cache"))
}

/// Packages the harness needs, with a file that proves each is there.
const HOST_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("busybox-static", "/bin/busybox"),
    ("cpio", "/usr/bin/cpio"),
    ("e2fsprogs", "/sbin/mkfs.ext4"),
    ("kmod", "/sbin/depmod"),
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the host packages that are missing, with apt-get.
pub fn ensure_host_packages() -> Result<()> {
    let missing: Vec<&str> = HOST_PACKAGES
        .iter()
        .filter(|(pkg, file)| !installed(pkg) || !Path::new(file).exists())
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

/// Installs Debian packages on the host with apt-get (updating the lists once if the first
/// try fails).
pub fn apt_install(packages: &[&str]) -> Result<()> {
    eprintln!("vm: installing {}", packages.join(" "));
    let install = |args: &[&str]| run(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args(args));
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(packages);
    if install(&args).is_err() {
        install(&["update"])?;
        install(&args)?;
    }
    Ok(())
}

/// Takes an exclusive lock on `<cache>/NAME.lock` for the life of the returned file, so that
/// concurrent test processes do not fetch or build the same thing at once.
pub fn lock(name: &str) -> Result<std::fs::File> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    f.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(f)
}
