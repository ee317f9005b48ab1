//! `seamless upgrade --newest`: the newest kernel installed the way Debian (and most
//! distributions) lay them out, `/boot/vmlinuz-RELEASE` with `/boot/initrd.img-RELEASE` (or
//! dracut's `/boot/initramfs-RELEASE.img`), so a fleet tool needs no per-host paths.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// A kernel installed in `/boot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Its release (`uname -r`).
    pub release: String,
    /// The kernel image.
    pub kernel: PathBuf,
    /// Its initramfs.
    pub initrd: PathBuf,
}

/// Compares two kernel releases the way version numbers compare: runs of digits numerically,
/// everything else as text (`6.12.117+deb12-amd64` > `6.12.9+deb12-amd64` > `6.1.0-57-amd64`).
pub fn compare_releases(a: &str, b: &str) -> Ordering {
    fn parts(s: &str) -> Vec<Result<u64, &str>> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits > 0 {
                out.push(Ok(rest[..digits].parse().unwrap_or(u64::MAX)));
                rest = &rest[digits..];
            } else {
                let text = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
                out.push(Err(&rest[..text]));
                rest = &rest[text..];
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let o = match (x, y) {
            (Ok(x), Ok(y)) => x.cmp(y),
            (Err(x), Err(y)) => x.cmp(y),
            // A number after a common prefix is newer than text there (6.12.1 > 6.12-rc1).
            (Ok(_), Err(_)) => Ordering::Greater,
            (Err(_), Ok(_)) => Ordering::Less,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

/// The kernels in `boot` that have an initramfs beside them, newest first.
pub fn installed(boot: &Path) -> Vec<Installed> {
    let Ok(entries) = std::fs::read_dir(boot) else { return Vec::new() };
    let mut found: Vec<Installed> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let release = name.strip_prefix("vmlinuz-")?.to_string();
            let initrd = [format!("initrd.img-{release}"), format!("initramfs-{release}.img")]
                .into_iter()
                .map(|n| boot.join(n))
                .find(|p| p.is_file())?;
            Some(Installed { release, kernel: e.path(), initrd })
        })
        .collect();
    found.sort_by(|a, b| compare_releases(&b.release, &a.release));
    found
}

/// The release of the running kernel (`/proc/sys/kernel/osrelease`), empty if unreadable.
pub fn running_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// What `--newest` picks in `boot`: the newest kernel with an initramfs, and whether it is the
/// one running (then there is nothing to do); `None` when `boot` holds no such kernel.
pub fn pick(boot: &Path) -> Option<(Installed, bool)> {
    let newest = installed(boot).into_iter().next()?;
    let running = newest.release == running_release();
    Some((newest, running))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_order_like_versions() {
        let mut v = vec!["6.1.0-57-amd64", "6.12.117+deb12-amd64", "6.12.9+deb12-amd64", "7.3.4+deb13-amd64"];
        v.sort_by(|a, b| compare_releases(a, b));
        assert_eq!(v, ["6.1.0-57-amd64", "6.12.9+deb12-amd64", "6.12.117+deb12-amd64", "7.3.4+deb13-amd64"]);
        assert_eq!(compare_releases("6.12.1", "6.12-rc1"), Ordering::Greater);
        assert_eq!(compare_releases("6.1.0-57-amd64", "6.1.0-57-amd64"), Ordering::Equal);
    }

    #[test]
    fn only_kernels_with_an_initramfs_count() {
        let dir = std::env::temp_dir().join(format!("seamless-newest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "vmlinuz-6.1.0-57-amd64",
            "initrd.img-6.1.0-57-amd64",
            "vmlinuz-6.12.117+deb12-amd64",
            "initramfs-6.12.117+deb12-amd64.img",
            "vmlinuz-7.3.4+deb13-amd64",
        ] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        let found = installed(&dir);
        let releases: Vec<&str> = found.iter().map(|k| k.release.as_str()).collect();
        assert_eq!(releases, ["6.12.117+deb12-amd64", "6.1.0-57-amd64"]);
        assert_eq!(found[0].initrd, dir.join("initramfs-6.12.117+deb12-amd64.img"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
