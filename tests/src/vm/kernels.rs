//! The two Debian kernels of the scenarios: kernel A (newest `linux-image-6.1.0-N-amd64`) and
//! kernel B (newest `linux-image-6.12.M+deb12-amd64`), fetched with `apt-get download`,
//! unpacked with `dpkg-deb -x`, indexed with `depmod -b`, and cached.

use super::host::{cache_dir, lock, run};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// One unpacked kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The Debian package it came from.
    pub package: String,
    /// The unpacked package tree (holds `boot/` and `lib/modules/<release>/`).
    pub root: PathBuf,
}

impl Kernel {
    /// The bzImage.
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }
    /// `lib/modules/<release>` of the unpacked tree.
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

/// The kernel families of the scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Which {
    /// Debian 12's own 6.1 kernel.
    A,
    /// The 6.12 backport kernel.
    B,
}

impl Which {
    fn regex(self) -> &'static str {
        match self {
            Which::A => r"^linux-image-6\.1\.0-[0-9]+-amd64(-unsigned)?$",
            Which::B => r"^linux-image-6\.12\.[0-9]+\+deb12-amd64(-unsigned)?$",
        }
    }
    fn pin_var(self) -> &'static str {
        match self {
            Which::A => "SEAMLESS_KERNEL_A",
            Which::B => "SEAMLESS_KERNEL_B",
        }
    }
}

/// Numbers of a release, for ordering (`6.12.117+deb12-amd64` -> [6, 12, 117, 12]).
fn version_key(release: &str) -> Vec<u64> {
    release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

/// Picks the newest release among package names matched by `apt-cache search`, preferring the
/// unsigned image package of that release. Returns (release, package).
pub fn pick_newest(names: &[&str]) -> Option<(String, String)> {
    let mut best: Option<(Vec<u64>, String, String)> = None;
    for name in names {
        let Some(rest) = name.strip_prefix("linux-image-") else { continue };
        let unsigned = rest.ends_with("-unsigned");
        let release = rest.trim_end_matches("-unsigned").to_string();
        let key = version_key(&release);
        let better = match &best {
            None => true,
            Some((k, r, p)) => key > *k || (key == *k && *r == release && unsigned && !p.ends_with("-unsigned")),
        };
        if better {
            best = Some((key, release, name.to_string()));
        }
    }
    best.map(|(_, r, p)| (r, p))
}

fn search(which: Which) -> Result<Vec<String>> {
    let out = run(Command::new("apt-cache").args(["search", "--names-only", which.regex()]))?;
    Ok(out.lines().filter_map(|l| l.split(" - ").next()).map(str::trim).map(String::from).collect())
}

/// Finds, fetches and unpacks the kernel `which` (or the release pinned by
/// `SEAMLESS_KERNEL_A` / `SEAMLESS_KERNEL_B`).
pub fn fetch(which: Which) -> Result<Kernel> {
    let _guard = lock("kernels")?;
    let mut names = search(which)?;
    if names.is_empty() {
        run(Command::new("apt-get").arg("update"))?;
        names = search(which)?;
    }
    if let Ok(pin) = std::env::var(which.pin_var()) {
        names.retain(|n| n.trim_start_matches("linux-image-").trim_end_matches("-unsigned") == pin);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let Some((release, package)) = pick_newest(&refs) else {
        bail!("no package matches {} in apt-cache (run apt-get update?)", which.regex());
    };
    let cache = cache_dir();
    let root = cache.join("kernels").join(&release);
    let marker = root.join(".seamless-complete");
    if marker.exists() {
        return Ok(Kernel { release, package, root });
    }
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs)?;
    let find_deb = || -> Option<PathBuf> {
        std::fs::read_dir(&debs).ok()?.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
    };
    let deb = match find_deb() {
        Some(d) => d,
        None => {
            eprintln!("vm: downloading {package}");
            run(Command::new("apt-get").current_dir(&debs).args(["download", &package]))?;
            find_deb().with_context(|| format!("apt-get download {package} left no .deb in {}", debs.display()))?
        }
    };
    let tmp = cache.join("kernels").join(format!("{release}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    run(Command::new("depmod").arg("-b").arg(&tmp).arg(&release))?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&tmp, &root)?;
    std::fs::write(&marker, format!("{package}\n"))?;
    let k = Kernel { release, package, root };
    if !k.vmlinuz().exists() {
        bail!("{} has no {}", k.package, k.vmlinuz().display());
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_release_and_unsigned_preferred() {
        let names = [
            "linux-image-6.12.9+deb12-amd64",
            "linux-image-6.12.117+deb12-amd64",
            "linux-image-6.12.117+deb12-amd64-unsigned",
            "linux-image-6.12.100+deb12-amd64-unsigned",
        ];
        assert_eq!(
            pick_newest(&names),
            Some(("6.12.117+deb12-amd64".into(), "linux-image-6.12.117+deb12-amd64-unsigned".into()))
        );
        let a = ["linux-image-6.1.0-9-amd64", "linux-image-6.1.0-56-amd64"];
        assert_eq!(pick_newest(&a).map(|p| p.0), Some("6.1.0-56-amd64".into()));
    }
}
