//! The API filesystems the early stage needs: /proc, /sys, /dev (devtmpfs) and /run.

use seamless_sys::chain;
use seamless_sys::mount::{mount, MS_NODEV, MS_NOEXEC, MS_NOSUID};
use std::path::Path;

/// One API filesystem: source, mount point, type, flags, data.
pub(crate) const API_MOUNTS: &[(&str, &str, &str, std::ffi::c_ulong, Option<&str>)] = &[
    ("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
    ("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
    ("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, Some("mode=0755")),
    ("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, Some("mode=0755")),
];

/// `EBUSY`: already mounted.
const EBUSY: i32 = 16;

/// Whether `path` is already a mount point (listed in `/proc/self/mountinfo`).
fn is_mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.lines().any(|l| l.split(' ').nth(4) == Some(path)))
        .unwrap_or(false)
}

/// Mounts every API filesystem not yet mounted. Returns the failures, already described;
/// the boot goes on without the failed ones.
pub fn mount_api_filesystems() -> Vec<String> {
    let mut failures = Vec::new();
    for &(src, target, fstype, flags, data) in API_MOUNTS {
        // /proc is the first entry, so the mountinfo check works from the second one on.
        if target != "/proc" && is_mounted(target) {
            continue;
        }
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = mount(src, Path::new(target), Some(fstype), flags, data) {
            // devtmpfs may already be mounted by the kernel (CONFIG_DEVTMPFS_MOUNT).
            if e.errno() != Some(EBUSY) {
                failures.push(chain(&e).to_string());
            }
        }
    }
    failures
}
