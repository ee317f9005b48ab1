//! Run-time kernel settings the preserved processes may depend on: the network and IPC
//! sysctls of the old kernel (`/proc/sys/net/{core,ipv4,ipv6,unix}` without the
//! per-interface and neighbour tables, SysV IPC limits, POSIX message queue limits), recorded
//! just before the jump so that seamless-init can set them on the new kernel before it
//! restores anything (a ping socket needs `net.ipv4.ping_group_range`, a listener's backlog
//! `net.core.somaxconn`, ...).

use seamless_image::upgrade::Sysctl;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Directories below `/proc/sys` whose settings are carried, recursively.
pub const TREES: &[&str] = &["net/core", "net/ipv4", "net/ipv6", "net/unix", "fs/mqueue"];

/// Single settings carried.
pub const SINGLE: &[&str] = &[
    "kernel/shmmax",
    "kernel/shmall",
    "kernel/shmmni",
    "kernel/shm_rmid_forced",
    "kernel/msgmax",
    "kernel/msgmnb",
    "kernel/msgmni",
    "kernel/sem",
];

/// Subdirectories skipped: per-interface and neighbour settings (interfaces can be renamed
/// or missing on the new kernel), and the route cache's write-only triggers.
const SKIP_DIRS: &[&str] = &["conf", "neigh", "route"];

/// Reads every carried setting that root can both read and write.
pub fn record() -> Vec<Sysctl> {
    record_under(Path::new("/proc/sys"))
}

fn record_under(base: &Path) -> Vec<Sysctl> {
    let mut out = Vec::new();
    for t in TREES {
        walk(base, &base.join(t), &mut out);
    }
    for s in SINGLE {
        read_one(base, &base.join(s), &mut out);
    }
    out
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<Sysctl>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() && !SKIP_DIRS.iter().any(|s| e.file_name() == *s) => walk(base, &path, out),
            Ok(t) if t.is_file() => read_one(base, &path, out),
            _ => {}
        }
    }
}

fn read_one(base: &Path, path: &Path, out: &mut Vec<Sysctl>) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    let mode = meta.permissions().mode();
    // Owner read and write: a setting root can carry (not a write-only trigger, not a
    // read-only report such as tcp_available_congestion_control).
    if mode & 0o600 != 0o600 {
        return;
    }
    let Ok(value) = std::fs::read_to_string(path) else { return };
    let Ok(name) = path.strip_prefix(base) else { return };
    out.push(Sysctl { name: name.display().to_string(), value: value.trim_end_matches('\n').to_string() });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_running_kernels_network_settings() {
        let got = record();
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"net/core/somaxconn"), "{names:?}");
        assert!(names.contains(&"net/ipv4/ping_group_range"), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("/conf/") || n.contains("/neigh/")), "{names:?}");
        let ping = got.iter().find(|s| s.name == "net/ipv4/ping_group_range").map(|s| s.value.clone());
        let now = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").ok();
        assert_eq!(ping.as_deref(), now.as_deref().map(|v| v.trim_end_matches('\n')));
    }
}
