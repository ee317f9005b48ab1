//! cgroup v2 membership (record kind 57): the restored process goes back into the cgroup
//! path it was dumped in, created where it is missing, with the recorded limits of the
//! cgroup and its ancestors (a limit already in place is left alone; a missing controller is
//! enabled in the ancestors' `cgroup.subtree_control`). Done from outside, while the
//! process is still stopped, by writing its pid to `cgroup.procs`. `seamless-init`'s unit
//! adoption (`init/src/units.rs`) leaves a process that is already inside its unit's cgroup
//! where it is.

use crate::RestoreError;
use seamless_image::records::CgroupMembership;
use std::path::{Path, PathBuf};

/// Where cgroup2 is mounted (the first cgroup2 line of `/proc/self/mountinfo`).
pub fn mount_point() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mp = left.split(' ').nth(4)?;
        right.starts_with("cgroup2 ").then(|| PathBuf::from(mp))
    })
}

fn root(pid: i32) -> Result<PathBuf, RestoreError> {
    if let Some(m) = mount_point() {
        return Ok(m);
    }
    // On the new kernel before its init: mount it where systemd expects it (and keeps it).
    let at = Path::new("/sys/fs/cgroup");
    use seamless_sys::mount::{MS_NODEV, MS_NOEXEC, MS_NOSUID};
    seamless_sys::mount::mount("cgroup2", at, Some("cgroup2"), MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        .map_err(|e| RestoreError::sys(pid, "mounting cgroup2 on /sys/fs/cgroup", e))?;
    Ok(at.to_path_buf())
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim_end_matches('\n').to_string())
}

/// Enables `controller` in every ancestor of `cgroup` (from the root down) that lacks it.
fn enable(pid: i32, root: &Path, cgroup: &str, controller: &str) -> Result<(), RestoreError> {
    let parts: Vec<&str> = cgroup[1..].split('/').collect();
    for n in 0..parts.len() {
        let dir = root.join(parts[..n].join("/"));
        let f = dir.join("cgroup.subtree_control");
        let on = read(&f).is_some_and(|s| s.split_whitespace().any(|c| c == controller));
        if !on {
            std::fs::write(&f, format!("+{controller}"))
                .map_err(|e| RestoreError::io(pid, format!("enabling {controller} in {}", f.display()), e))?;
        }
    }
    Ok(())
}

/// Puts process `pid` into its recorded cgroup (see the module documentation).
pub fn join(pid: i32, m: &CgroupMembership) -> Result<(), RestoreError> {
    let root = root(pid)?;
    // Validation proved the paths absolute, below the root, without `.` or `..`.
    let dir = root.join(&m.path[1..]);
    std::fs::create_dir_all(&dir).map_err(|e| RestoreError::io(pid, format!("creating cgroup {}", m.path), e))?;
    for l in &m.limits {
        let f = root.join(&l.cgroup[1..]).join(&l.file);
        let cur = read(&f);
        if cur.as_deref() == Some(l.value.as_str()) {
            continue;
        }
        if cur.is_none() {
            enable(pid, &root, &l.cgroup, l.controller())?;
        }
        std::fs::write(&f, &l.value).map_err(|e| {
            RestoreError::io(pid, format!("setting {} of cgroup {} to {}", l.file, l.cgroup, l.value), e)
        })?;
        let now = read(&f);
        if now.as_deref() != Some(l.value.as_str()) {
            return Err(RestoreError::Failed {
                pid,
                what: format!("{} of cgroup {} is {:?} after writing {:?}", l.file, l.cgroup, now, l.value),
            });
        }
    }
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())
        .map_err(|e| RestoreError::io(pid, format!("moving into cgroup {}", m.path), e))
}
