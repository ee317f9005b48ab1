//! POSIX message queues, memfds and deleted files ([`FileObject`] records), created once in the restorer
//! before the descriptions that open them: a queue with its name (a name of our own, removed
//! at once, for a queue that had been unlinked), attributes, owner, mode and every message
//! in order; a memfd with its name, size, contents (holes stay holes), owner, mode and then
//! its seals. Each description is a new open of the object through `/proc/self/fd/N` with
//! its own flags, so descriptions shared by processes stay shared (the usual way, see
//! [`crate::files`]) and distinct ones stay distinct. Mappings of a memfd open the
//! restorer's memfd ([`memfd_path`]) instead of a path.

use crate::plan::Plan;
use crate::{Failures, RestoreError};
use seamless_image::records::{self, FileId, FileObject, Memfd, PosixMq};
use seamless_image::{Reader, Store};
use seamless_sys::{chain, mqueue};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::sync::Mutex;

/// The restorer's memfds by the dumped (device, inode), as `/proc/PID/fd/N` paths, for
/// [`crate::mm::map_areas`] while a restore is in progress.
static MEMFDS: Mutex<BTreeMap<(u64, u64), String>> = Mutex::new(BTreeMap::new());

/// The path a child opens to map the memfd that `file` names, if it is one of the image's.
pub fn memfd_path(file: &FileId) -> Option<String> {
    let g = MEMFDS.lock().unwrap_or_else(|p| p.into_inner());
    g.get(&(file.dev, file.ino)).cloned()
}

/// The objects of a restore, kept open until the children have their descriptors.
#[derive(Debug, Default)]
pub struct Objects {
    fds: BTreeMap<u64, OwnedFd>,
    by_desc: BTreeMap<u32, u64>,
    memfds: Vec<(u64, u64)>,
    /// Memfds (by tag) whose own `memfd_create` description no description has taken yet.
    untaken: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

impl Drop for Objects {
    fn drop(&mut self) {
        let mut g = MEMFDS.lock().unwrap_or_else(|p| p.into_inner());
        for k in &self.memfds {
            g.remove(k);
        }
    }
}

fn obj_err(what: String, source: seamless_sys::SysError) -> RestoreError {
    RestoreError::Ipc { what, source: Some(source) }
}

fn io_err(what: String, e: std::io::Error) -> RestoreError {
    obj_err(what.clone(), seamless_sys::SysError::new("file", what, e))
}

fn create_mq(tag: u64, q: &PosixMq) -> Result<OwnedFd, RestoreError> {
    let what = |s: &str| format!("POSIX message queue /{}: {s}", q.name);
    let name = if q.unlinked { format!("seamless-restore-{}-{tag}", std::process::id()) } else { q.name.clone() };
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_NONBLOCK;
    let fd = mqueue::mq_open(&name, flags, 0o600, Some((q.maxmsg, q.msgsize))).map_err(|e| {
        let why =
            if e.errno() == Some(libc::EEXIST) { "a queue of that name exists already" } else { "cannot create it" };
        obj_err(what(why), e)
    })?;
    if q.unlinked {
        mqueue::mq_unlink(&name).map_err(|e| obj_err(what("unlinking it again"), e))?;
    }
    let f = std::fs::File::from(fd);
    std::os::unix::fs::fchown(&f, Some(q.uid), Some(q.gid)).map_err(|e| io_err(what("fchown"), e))?;
    f.set_permissions(std::fs::Permissions::from_mode(q.mode)).map_err(|e| io_err(what("fchmod"), e))?;
    for (i, (prio, m)) in q.messages.iter().enumerate() {
        mqueue::mq_send(f.as_raw_fd(), *prio, m).map_err(|e| obj_err(what(&format!("queueing message {i}")), e))?;
    }
    Ok(f.into())
}

fn create_memfd<S: Store>(tag: u64, m: &Memfd, plan: &Plan, reader: &mut Reader<S>) -> Result<OwnedFd, RestoreError> {
    let what = |s: &str| format!("memfd:{}: {s}", m.name);
    let base = mqueue::MFD_ALLOW_SEALING | mqueue::MFD_CLOEXEC;
    // Executable unless sealed against it (F_SEAL_EXEC); kernels before 6.3 have no MFD_EXEC.
    let fd = if m.seals & libc::F_SEAL_EXEC as u32 == 0 {
        match mqueue::memfd_create(&m.name, base | mqueue::MFD_EXEC) {
            Err(e) if e.errno() == Some(libc::EINVAL) => mqueue::memfd_create(&m.name, base),
            r => r,
        }
    } else {
        mqueue::memfd_create(&m.name, base)
    }
    .map_err(|e| obj_err(what("memfd_create"), e))?;
    let f = std::fs::File::from(fd);
    f.set_len(m.size).map_err(|e| io_err(what("ftruncate"), e))?;
    fill(&f, tag, &m.runs, plan, reader).map_err(|e| e.in_object(&what("writing its contents")))?;
    std::os::unix::fs::fchown(&f, Some(m.uid), Some(m.gid)).map_err(|e| io_err(what("fchown"), e))?;
    f.set_permissions(std::fs::Permissions::from_mode(m.mode & 0o7777)).map_err(|e| io_err(what("fchmod"), e))?;
    if m.seals != 0 {
        mqueue::add_seals(&f, m.seals).map_err(|e| obj_err(what(&format!("F_ADD_SEALS {:#x}", m.seals)), e))?;
    }
    Ok(f.into())
}

/// Why writing an object's contents failed.
enum FillError {
    Restore(RestoreError),
    Io(std::io::Error),
}

impl FillError {
    fn in_object(self, what: &str) -> RestoreError {
        match self {
            FillError::Restore(e) => e,
            FillError::Io(e) => io_err(what.to_string(), e),
        }
    }
}

/// Writes the runs' bytes (blobs of tag `MEMFD_BLOB_TAG + tag`, back to back) into `f`.
fn fill<S: Store>(
    f: &std::fs::File,
    tag: u64,
    runs: &[(u64, u64)],
    plan: &Plan,
    reader: &mut Reader<S>,
) -> Result<(), FillError> {
    let btag = records::sysv::MEMFD_BLOB_TAG + tag;
    let blobs = plan.blobs.get(&btag).map(Vec::as_slice).unwrap_or(&[]);
    let mut runs = runs.iter().copied();
    let mut cur = runs.next();
    for &b in blobs {
        let data = reader.blob(b).map_err(|e| FillError::Restore(RestoreError::Image(e)))?;
        let mut rest = data.as_slice();
        while !rest.is_empty() {
            let Some((off, len)) = cur else {
                return Err(FillError::Restore(RestoreError::Corrupt {
                    pid: 0,
                    what: "file contents longer than their runs".into(),
                }));
            };
            let k = rest.len().min(seamless_image::usize_of(len));
            f.write_all_at(&rest[..k], off).map_err(FillError::Io)?;
            rest = &rest[k..];
            let left = len - k as u64;
            cur = if left == 0 { runs.next() } else { Some((off + k as u64, left)) };
        }
    }
    Ok(())
}

/// Recreates a deleted file nameless: under its own name, created 0600 and unlinked at once,
/// when that name is free and its directory is root's and writable by nobody else or sticky
/// (no other user can reach, rename or remove root's entry there), so that its descriptors,
/// mappings and executable link read `PATH (deleted)` as they did; else `O_TMPFILE` (0600)
/// in the directory it was in, or, where the filesystem cannot, under a fresh name unlinked
/// at once; writes its contents (holes
/// stay holes), size, owner, then its mode (set-id bits after the contents) and times.
fn create_deleted<S: Store>(
    tag: u64,
    d: &records::DeletedFile,
    plan: &Plan,
    reader: &mut Reader<S>,
) -> Result<OwnedFd, RestoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let what = |s: &str| format!("deleted file {}: {s}", d.path);
    let dir = std::path::Path::new(&d.path).parent().map(|p| p.to_path_buf()).unwrap_or_else(|| "/tmp".into());
    let own = || -> std::io::Result<std::fs::File> {
        if !crate::nodes::private_enough(&dir) {
            return Err(std::io::ErrorKind::PermissionDenied.into());
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&d.path)?;
        std::fs::remove_file(&d.path)?;
        Ok(f)
    };
    let tmpfile = own().or_else(|_| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(&dir)
    });
    let f = match tmpfile {
        Ok(f) => f,
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::ENOENT))
                && dir.is_dir() =>
        {
            let tmp = dir.join(format!(".seamless-ghost.{}.o{tag}", std::process::id()));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)
                .map_err(|e| io_err(what(&format!("create {}", tmp.display())), e))?;
            std::fs::remove_file(&tmp).map_err(|e| io_err(what(&format!("unlink {}", tmp.display())), e))?;
            f
        }
        Err(e) => return Err(io_err(what(&format!("create a file in {}", dir.display())), e)),
    };
    fill(&f, tag, &d.runs, plan, reader).map_err(|e| e.in_object(&what("writing its contents")))?;
    f.set_len(d.size).map_err(|e| io_err(what("ftruncate"), e))?;
    std::os::unix::fs::fchown(&f, Some(d.uid), Some(d.gid)).map_err(|e| io_err(what("fchown"), e))?;
    f.set_permissions(std::fs::Permissions::from_mode(d.mode & 0o7777)).map_err(|e| io_err(what("fchmod"), e))?;
    let ts = |ns: i128| {
        let secs = i64::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(0);
        let nanos = u32::try_from(ns.rem_euclid(1_000_000_000)).unwrap_or(0);
        std::time::UNIX_EPOCH + std::time::Duration::new(secs.max(0).cast_unsigned(), nanos)
    };
    let times = std::fs::FileTimes::new().set_accessed(ts(d.atime_ns)).set_modified(ts(d.mtime_ns));
    f.set_times(times).map_err(|e| io_err(what("setting its times"), e))?;
    Ok(f.into())
}

/// Exchanges the read-write descriptor a deleted file was made and filled through for a
/// read-only one: a file with a writer cannot be a process's executable (`PR_SET_MM_MAP`
/// refuses it with `EACCES`), and on the dumping kernel the file had no writer left if it
/// was one.
fn read_only(path: &str, fd: OwnedFd) -> Result<OwnedFd, RestoreError> {
    let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
    crate::files::open_path(&via, crate::abi::bits(libc::O_RDONLY))
        .map_err(|e| io_err(format!("deleted file {path}: reopening it read-only"), e))
}

/// Creates every object of the plan. One that cannot be created gives up the units of its
/// descriptions and of the processes mapping it.
pub fn prepare<S: Store>(plan: &Plan, reader: &mut Reader<S>, fails: &mut Failures) -> Objects {
    let mut out = Objects::default();
    for (tag, o) in &plan.file_objects {
        let made = match o {
            FileObject::PosixMq(q) => create_mq(*tag, q),
            FileObject::Memfd(m) => create_memfd(*tag, m, plan, reader),
            // Without a writer left (see `read_only`).
            FileObject::Deleted(f) => create_deleted(*tag, f, plan, reader).and_then(|fd| read_only(&f.path, fd)),
        };
        let (descs, inode) = match o {
            FileObject::PosixMq(q) => (&q.descs, None),
            FileObject::Memfd(m) => (&m.descs, Some((m.dev, m.ino))),
            FileObject::Deleted(f) => (&f.descs, Some((f.dev, f.ino))),
        };
        match made {
            Ok(fd) => {
                if let Some(key) = inode {
                    let path = format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd());
                    MEMFDS.lock().unwrap_or_else(|p| p.into_inner()).insert(key, path);
                    out.memfds.push(key);
                }
                for d in descs {
                    out.by_desc.insert(*d, *tag);
                }
                if matches!(o, FileObject::Memfd(_)) {
                    out.untaken.lock().unwrap_or_else(|p| p.into_inner()).insert(*tag);
                }
                out.fds.insert(*tag, fd);
            }
            Err(e) => {
                let why = chain(&e).to_string();
                log::error!("{why}");
                for d in descs {
                    fails.fail_desc(*d, why.clone());
                }
                if let Some((dev, ino)) = inode {
                    for p in plan.procs.values() {
                        let maps = p.mm.vmas.iter().any(|v| {
                            matches!(&v.kind, records::VmaKind::File { file, .. } if file.dev == dev && file.ino == ino)
                        });
                        if maps {
                            fails.fail_pid(p.rec.pid, why.clone());
                        }
                    }
                }
            }
        }
    }
    out
}

impl Objects {
    /// Whether description `id` opens one of the objects.
    pub fn has(&self, id: u32) -> bool {
        self.by_desc.contains_key(&id)
    }

    /// A new open, with `flags`, of the object description `id` opens. The first read-write
    /// description of a memfd is the restorer's own `memfd_create` description instead: an
    /// open of a file for writing counts as a writer, which `memfd_create`'s own description
    /// does not, and a file with writers cannot become (or be `execve`d as) an executable, as
    /// a process started from the memfd, or one that will be, needs.
    pub fn open(&self, id: u32, flags: u32) -> Result<OwnedFd, RestoreError> {
        let tag = self.by_desc.get(&id);
        let fd = tag
            .and_then(|t| self.fds.get(t))
            .ok_or_else(|| RestoreError::Corrupt { pid: 0, what: format!("file #{id}: its object was not created") })?;
        let rdwr = crate::abi::signed(flags) & libc::O_ACCMODE == libc::O_RDWR;
        if rdwr && tag.is_some_and(|t| self.untaken.lock().unwrap_or_else(|p| p.into_inner()).remove(t)) {
            return fd.try_clone().map_err(|e| RestoreError::File { id, what: "dup of the memfd".into(), source: e });
        }
        let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
        crate::files::open_path(&via, flags).map_err(|e| RestoreError::File {
            id,
            what: format!("reopen {via}"),
            source: e,
        })
    }
}
