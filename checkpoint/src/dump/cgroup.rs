//! cgroup v2 membership (record kind 57): a process whose unified-hierarchy cgroup is not the
//! dumper's is put back into the same path by the restore, which creates it where it is
//! missing and gives it and its ancestors the limits recorded here (the interface files of
//! [`CgroupLimit::FILES`] whose values differ from a new cgroup's).

use super::DumpError;
use seamless_image::records::{cgroup_path_ok, CgroupLimit, CgroupMembership};
use std::path::PathBuf;

/// The unified-hierarchy path of a `/proc/PID/cgroup` text (its `0::` line).
fn v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

fn read(pid: i32, path: &str) -> Result<String, DumpError> {
    std::fs::read_to_string(path).map_err(|e| DumpError::io(pid, format!("reading {path}"), e))
}

/// Where cgroup2 is mounted here (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid
/// systems).
fn mount_point() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mp = left.split(' ').nth(4)?;
        right.starts_with("cgroup2 ").then(|| PathBuf::from(mp))
    })
}

/// Refuses a process whose threads are not all in its cgroup (threaded cgroups: the restore
/// moves whole processes), and a cgroup path the restore could not create again.
pub fn precheck(pid: i32, tids: &[i32]) -> Result<(), DumpError> {
    let text = read(pid, &format!("/proc/{pid}/cgroup"))?;
    let Some(path) = v2_path(&text) else { return Ok(()) };
    if !cgroup_path_ok(path) {
        return Err(DumpError::Unsupported {
            pid,
            resource: format!("cgroup {path}"),
            reason: "not a plain path below the cgroup2 root (deleted, or outside this cgroup namespace)".into(),
        });
    }
    for &tid in tids.iter().filter(|t| **t != pid) {
        let t = read(pid, &format!("/proc/{pid}/task/{tid}/cgroup"))?;
        if let Some(tp) = v2_path(&t).filter(|tp| *tp != path) {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("cgroup of thread {tid} ({tp})"),
                reason: format!("differs from its process's ({path}): threaded cgroups are not recreated"),
            });
        }
    }
    Ok(())
}

/// The membership record of `pid`, when its cgroup is not the dumper's.
pub fn membership(pid: i32) -> Result<Option<CgroupMembership>, DumpError> {
    let theirs = read(pid, &format!("/proc/{pid}/cgroup"))?;
    let ours = read(pid, "/proc/self/cgroup")?;
    let (Some(path), Some(mount)) = (v2_path(&theirs), mount_point()) else { return Ok(None) };
    if Some(path) == v2_path(&ours) || path == "/" {
        return Ok(None);
    }
    let mut limits = Vec::new();
    let parts: Vec<&str> = path[1..].split('/').collect();
    for n in 1..=parts.len() {
        let cgroup = format!("/{}", parts[..n].join("/"));
        for (file, default) in CgroupLimit::FILES {
            let f = mount.join(&cgroup[1..]).join(file);
            let Ok(v) = std::fs::read_to_string(&f) else { continue };
            let v = v.trim_end_matches('\n');
            if v != default {
                limits.push(CgroupLimit { cgroup: cgroup.clone(), file: file.into(), value: v.into() });
            }
        }
    }
    Ok(Some(CgroupMembership { path: path.into(), limits }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_unified_line_gives_the_path() {
        assert_eq!(super::v2_path("12:memory:/x\n0::/system.slice/a.service\n"), Some("/system.slice/a.service"));
        assert_eq!(super::v2_path("12:memory:/x\n"), None);
    }
}
