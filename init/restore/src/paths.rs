//! Recorded paths must be absolute. The restorer runs as root with its own working
//! directory; a relative path in an image (working directory, root, executable, an open
//! file, a mapped file, a unix socket name) would resolve against that directory, not the
//! dumped process's, and could name any file. Such an image is refused before anything is
//! created.

use crate::plan::Plan;
use crate::RestoreError;
use seamless_image::records::{Addr, FileKind, VmaKind};
use std::collections::BTreeMap;

fn relative(pid: i32, fd: Option<i32>, what: &str, path: &str) -> RestoreError {
    RestoreError::RelativePath { pid, fd, what: what.to_string(), path: path.to_string() }
}

/// Whether a recorded path is acceptable: empty (not recorded) or absolute.
fn ok(path: &str) -> bool {
    path.is_empty() || path.starts_with('/')
}

/// A unix socket name is fine when unnamed, abstract (leading NUL) or absolute.
fn unix_ok(addr: &Addr) -> Option<String> {
    match addr {
        Addr::Unix { path } if !path.is_empty() && path[0] != 0 && path[0] != b'/' => {
            Some(String::from_utf8_lossy(path).into_owned())
        }
        _ => None,
    }
}

/// Refuses the plan if any recorded path is relative, naming the process, the descriptor
/// (when the path belongs to an open file) and the path.
pub fn check(plan: &Plan) -> Result<(), RestoreError> {
    // Which process and descriptor first refers to each open file description.
    let mut users: BTreeMap<u32, (i32, i32)> = BTreeMap::new();
    for p in plan.procs.values() {
        for f in &p.fds.fds {
            users.entry(f.desc).or_insert((p.rec.pid, f.fd));
        }
        let pid = p.rec.pid;
        for (what, path) in
            [("working directory", &p.rec.cwd), ("root directory", &p.rec.root), ("executable", &p.rec.exe)]
        {
            if !ok(path) {
                return Err(relative(pid, None, what, path));
            }
        }
        for v in &p.mm.vmas {
            if let VmaKind::File { file, .. } = &v.kind {
                if !file.path.starts_with('/') {
                    return Err(relative(pid, None, &format!("mapped file at {:#x}", v.start), &file.path));
                }
            }
        }
    }
    for d in plan.descs.values() {
        let (pid, fd) = users.get(&d.id).copied().map_or((0, None), |(p, f)| (p, Some(f)));
        let bad = match &d.kind {
            FileKind::Regular { path, .. } => (!path.starts_with('/')).then(|| ("open file", path.clone())),
            FileKind::Ghost { path, .. } => (!path.starts_with('/')).then(|| ("deleted file", path.clone())),
            FileKind::Fifo { path, .. } => (!path.starts_with('/')).then(|| ("fifo", path.clone())),
            FileKind::CharDev { path, .. } => (!path.starts_with('/')
                && path != seamless_image::records::inotify::INOTIFY_PATH
                && path != seamless_image::records::pidfd::PIDFD_PATH)
                .then(|| ("character device", path.clone())),
            FileKind::Socket(s) => unix_ok(&s.local)
                .map(|p| ("unix socket name", p))
                .or_else(|| unix_ok(&s.peer).map(|p| ("unix socket peer name", p))),
            _ => None,
        };
        if let Some((what, path)) = bad {
            return Err(relative(pid, fd, &format!("{what} (file #{})", d.id), &path));
        }
    }
    Ok(())
}
