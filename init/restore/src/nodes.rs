//! FIFOs and directories that were deleted while held ([`DeletedNode`] records), recreated
//! in the restorer before the descriptions that open them. The kernel has no nameless FIFO or
//! directory (`O_TMPFILE` makes regular files only), so each is made under a name only root
//! can reach and removed again at once: at its own path when that name is free and its
//! directory is root's and writable by nobody else (or sticky, as `/tmp`: then no other user
//! can rename or remove root's entry), so the descriptor's link reads `PATH (deleted)` as
//! before; else inside a fresh 0700 directory of root's in such a directory (the node's own,
//! `/run` or `/`). It is created 0600 (0700 for a directory), opened, unlinked, and only then
//! given its owner and mode; a FIFO gets its capacity and queued bytes back through a
//! read-write descriptor that the restorer keeps until every child has its ends.
//!
//! Each description is a new open of the node through `/proc/self/fd/N` with its own flags;
//! a process whose working directory the node is changes into it through
//! `/proc/<restorer>/fd/N` ([`cwd_path`]).

use crate::plan::Plan;
use crate::{Failures, RestoreError};
use seamless_image::records::{DeletedNode, PipeRecord};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Working directories that are nodes, by pid: the restorer's `/proc/PID/fd/N` path of the
/// node, while a restore is in progress.
static CWDS: Mutex<BTreeMap<i32, String>> = Mutex::new(BTreeMap::new());

/// The path process `pid` changes into when its working directory was a deleted directory.
pub fn cwd_path(pid: i32) -> Option<String> {
    CWDS.lock().unwrap_or_else(|p| p.into_inner()).get(&pid).cloned()
}

/// The nodes of a restore, kept open until the children have their descriptors.
#[derive(Debug, Default)]
pub struct Nodes {
    fds: BTreeMap<u32, (OwnedFd, bool)>,
    by_desc: BTreeMap<u32, u32>,
    cwds: Vec<i32>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let mut g = CWDS.lock().unwrap_or_else(|p| p.into_inner());
        for pid in &self.cwds {
            g.remove(pid);
        }
    }
}

fn err(n: &DeletedNode, what: String, e: std::io::Error) -> RestoreError {
    let kind = if n.is_fifo() { "FIFO" } else { "directory" };
    RestoreError::File {
        id: n.descs.first().copied().unwrap_or(0),
        what: format!("deleted {kind} {}: {what}", n.path),
        source: e,
    }
}

/// A directory where root may make a name that no other user can reach, rename or remove:
/// root's, and writable by nobody else unless sticky.
pub(crate) fn private_enough(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == 0 && (m.mode() & 0o022 == 0 || m.mode() & 0o1000 != 0))
}

/// Makes the node 0600/0700 at `at` (never over an existing name).
fn make(n: &DeletedNode, at: &Path) -> std::io::Result<()> {
    if n.is_fifo() {
        seamless_sys::nodes::mkfifo(at, 0o600).map_err(|e| e.source)
    } else {
        std::fs::DirBuilder::new().mode(0o700).create(at)
    }
}

fn open_made(n: &DeletedNode, at: &Path) -> std::io::Result<OwnedFd> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    if n.is_fifo() {
        o.write(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC);
    } else {
        o.custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    o.open(at).map(OwnedFd::from)
}

fn unlink(n: &DeletedNode, at: &Path) -> std::io::Result<()> {
    if n.is_fifo() {
        std::fs::remove_file(at)
    } else {
        std::fs::remove_dir(at)
    }
}

/// Creates the node nameless (see the module docs) and gives it its owner, mode and, for a
/// FIFO, its capacity and bytes.
fn create(n: &DeletedNode, pipe: Option<&PipeRecord>, tag: &str) -> Result<OwnedFd, RestoreError> {
    let own = Path::new(&n.path);
    let parent = own.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf);
    let name = own.file_name().map(|s| s.to_os_string()).unwrap_or_else(|| "node".into());
    let safe_parent = parent.as_deref().filter(|p| private_enough(p)).map(Path::to_path_buf);
    let at_own = safe_parent.is_some() && make(n, own).is_ok();
    let (fd, made) = if at_own {
        let fd = open_made(n, own);
        let gone = unlink(n, own);
        let fd = fd.map_err(|e| err(n, format!("open {}", own.display()), e))?;
        gone.map_err(|e| err(n, format!("remove {}", own.display()), e))?;
        (fd, own.to_path_buf())
    } else {
        let base = safe_parent
            .or_else(|| Some(PathBuf::from("/run")).filter(|p| private_enough(p)))
            .unwrap_or_else(|| PathBuf::from("/"));
        let dir = base.join(format!(".seamless-node.{}.{tag}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| err(n, format!("mkdir {}", dir.display()), e))?;
        let at = dir.join(&name);
        let fd = make(n, &at).and_then(|()| {
            let fd = open_made(n, &at);
            let gone = unlink(n, &at);
            let fd = fd?;
            gone.map(|()| fd)
        });
        let rm = std::fs::remove_dir(&dir);
        let fd = fd.map_err(|e| err(n, format!("make {}", at.display()), e))?;
        rm.map_err(|e| err(n, format!("rmdir {}", dir.display()), e))?;
        (fd, at)
    };
    log::debug!("deleted node {} made at {} and removed", n.path, made.display());
    let f = std::fs::File::from(fd);
    std::os::unix::fs::fchown(&f, Some(n.uid), Some(n.gid))
        .map_err(|e| err(n, format!("fchown {}:{}", n.uid, n.gid), e))?;
    f.set_permissions(std::fs::Permissions::from_mode(n.mode & 0o7777))
        .map_err(|e| err(n, format!("fchmod {:04o}", n.mode & 0o7777), e))?;
    if let Some(rec) = pipe {
        if let Err(e) = seamless_sys::proc::set_pipe_size(f.as_raw_fd(), seamless_image::usize_of(rec.capacity)) {
            log::warn!("deleted FIFO {}: capacity {} not set: {}", n.path, rec.capacity, seamless_sys::chain(&e));
        }
        let room = seamless_sys::proc::pipe_size(f.as_raw_fd()).unwrap_or(0);
        if rec.data.len() > room {
            return Err(err(
                n,
                format!("refilling it: {} buffered bytes, room for {room}", rec.data.len()),
                std::io::ErrorKind::StorageFull.into(),
            ));
        }
        (&f).write_all(&rec.data).map_err(|e| err(n, "refilling it".into(), e))?;
    }
    Ok(f.into())
}

/// Creates every node of the plan. One that cannot be created gives up the units of its
/// descriptions and of the processes working in it.
pub fn prepare(plan: &Plan, fails: &mut Failures) -> Nodes {
    let mut out = Nodes::default();
    for n in &plan.deleted_nodes {
        let pipe = n.is_fifo().then(|| plan.pipes.get(&n.pipe)).flatten();
        match create(n, pipe, &n.id.to_string()) {
            Ok(fd) => {
                if !n.cwd_of.is_empty() {
                    let path = format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd());
                    let mut g = CWDS.lock().unwrap_or_else(|p| p.into_inner());
                    for &pid in &n.cwd_of {
                        g.insert(pid, path.clone());
                        out.cwds.push(pid);
                    }
                }
                for &d in &n.descs {
                    out.by_desc.insert(d, n.id);
                }
                out.fds.insert(n.id, (fd, n.is_fifo()));
            }
            Err(e) => {
                let why = seamless_sys::chain(&e).to_string();
                log::error!("{why}");
                for &d in &n.descs {
                    fails.fail_desc(d, why.clone());
                }
                for &pid in &n.cwd_of {
                    fails.fail_pid(pid, why.clone());
                }
            }
        }
    }
    out
}

impl Nodes {
    /// Whether description `id` opens one of the nodes.
    pub fn has(&self, id: u32) -> bool {
        self.by_desc.contains_key(&id)
    }

    /// A new open, with `flags`, of the node description `id` opens (a FIFO non-blocking, as
    /// the other FIFOs: the caller sets the description's own status flags afterwards).
    pub fn open(&self, id: u32, flags: u32) -> Result<OwnedFd, RestoreError> {
        let (fd, fifo) = self
            .by_desc
            .get(&id)
            .and_then(|n| self.fds.get(n))
            .ok_or_else(|| RestoreError::Corrupt { pid: 0, what: format!("file #{id}: its node was not created") })?;
        let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let flags = if *fifo { flags | crate::abi::bits(libc::O_NONBLOCK) } else { flags };
        crate::files::open_path(&via, flags).map_err(|e| RestoreError::File {
            id,
            what: format!("reopen {via}"),
            source: e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;

    fn node(path: &Path, mode: u32, pipe: u64) -> DeletedNode {
        DeletedNode {
            id: 1,
            path: path.display().to_string(),
            mode,
            uid: 0,
            gid: 0,
            pipe,
            descs: vec![1],
            cwd_of: Vec::new(),
        }
    }

    /// A FIFO comes back nameless with its bytes and mode, under its own name when free (the
    /// link reads `PATH (deleted)`), and in a private directory when the name is taken,
    /// leaving the name that took it alone.
    #[test]
    fn a_deleted_fifo_is_made_nameless_with_its_bytes() {
        if !nix_root() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("seamless-node-test.{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let own = dir.join("f");
        let n = node(&own, DeletedNode::FIFO | 0o640, 5);
        let rec = PipeRecord { ino: 5, capacity: 65536, data: b"queued".to_vec() };
        let fd = create(&n, Some(&rec), "t1").unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(link.display().to_string(), format!("{} (deleted)", own.display()));
        let md = std::fs::File::from(fd.try_clone().unwrap()).metadata().unwrap();
        assert!(md.file_type().is_fifo());
        assert_eq!((md.nlink(), md.mode() & 0o7777), (0, 0o640));
        let mut buf = [0u8; 16];
        let k = std::fs::File::from(fd).read(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"queued");
        // The name is taken: made elsewhere, the other file untouched.
        std::fs::write(&own, b"other").unwrap();
        let fd = create(&n, Some(&rec), "t2").unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert!(link.display().to_string().contains(".seamless-node."), "{}", link.display());
        assert_eq!(std::fs::read(&own).unwrap(), b"other");
        std::fs::remove_file(&own).unwrap();
        let d = node(&dir.join("d"), DeletedNode::DIR | 0o751, 0);
        let fd = create(&d, None, "t3").unwrap();
        let md = std::fs::File::from(fd).metadata().unwrap();
        assert!(md.is_dir());
        assert_eq!((md.nlink(), md.mode() & 0o7777), (0, 0o751));
        std::fs::remove_dir(&dir).unwrap();
    }

    fn nix_root() -> bool {
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
}
