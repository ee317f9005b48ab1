//! POSIX message queues and memfds ([`FileObject`] records), created once in the restorer
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
    let btag = records::sysv::MEMFD_BLOB_TAG + tag;
    let blobs = plan.blobs.get(&btag).map(Vec::as_slice).unwrap_or(&[]);
    // The blobs hold the runs' bytes back to back.
    let mut runs = m.runs.iter().copied();
    let mut cur = runs.next();
    for &b in blobs {
        let data = reader.blob(b).map_err(RestoreError::Image)?;
        let mut rest = data.as_slice();
        while !rest.is_empty() {
            let Some((off, len)) = cur else {
                return Err(RestoreError::Corrupt { pid: 0, what: what("contents longer than its runs") });
            };
            let k = rest.len().min(seamless_image::usize_of(len));
            f.write_all_at(&rest[..k], off).map_err(|e| io_err(what("writing its contents"), e))?;
            rest = &rest[k..];
            let left = len - k as u64;
            cur = if left == 0 { runs.next() } else { Some((off + k as u64, left)) };
        }
    }
    std::os::unix::fs::fchown(&f, Some(m.uid), Some(m.gid)).map_err(|e| io_err(what("fchown"), e))?;
    f.set_permissions(std::fs::Permissions::from_mode(m.mode & 0o7777)).map_err(|e| io_err(what("fchmod"), e))?;
    if m.seals != 0 {
        mqueue::add_seals(&f, m.seals).map_err(|e| obj_err(what(&format!("F_ADD_SEALS {:#x}", m.seals)), e))?;
    }
    Ok(f.into())
}

/// Creates every object of the plan. One that cannot be created gives up the units of its
/// descriptions and of the processes mapping it.
pub fn prepare<S: Store>(plan: &Plan, reader: &mut Reader<S>, fails: &mut Failures) -> Objects {
    let mut out = Objects::default();
    for (tag, o) in &plan.file_objects {
        let made = match o {
            FileObject::PosixMq(q) => create_mq(*tag, q),
            FileObject::Memfd(m) => create_memfd(*tag, m, plan, reader),
        };
        let descs = match o {
            FileObject::PosixMq(q) => &q.descs,
            FileObject::Memfd(m) => &m.descs,
        };
        match made {
            Ok(fd) => {
                if let FileObject::Memfd(m) = o {
                    let path = format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd());
                    MEMFDS.lock().unwrap_or_else(|p| p.into_inner()).insert((m.dev, m.ino), path);
                    out.memfds.push((m.dev, m.ino));
                }
                for d in descs {
                    out.by_desc.insert(*d, *tag);
                }
                out.fds.insert(*tag, fd);
            }
            Err(e) => {
                let why = chain(&e).to_string();
                log::error!("{why}");
                for d in descs {
                    fails.fail_desc(*d, why.clone());
                }
                if let FileObject::Memfd(m) = o {
                    for p in plan.procs.values() {
                        let maps = p.mm.vmas.iter().any(|v| {
                            matches!(&v.kind, records::VmaKind::File { file, .. } if file.dev == m.dev && file.ino == m.ino)
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

    /// A new open, with `flags`, of the object description `id` opens.
    pub fn open(&self, id: u32, flags: u32) -> Result<OwnedFd, RestoreError> {
        let fd = self
            .by_desc
            .get(&id)
            .and_then(|t| self.fds.get(t))
            .ok_or_else(|| RestoreError::Corrupt { pid: 0, what: format!("file #{id}: its object was not created") })?;
        let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
        crate::files::open_path(&via, flags).map_err(|e| RestoreError::File {
            id,
            what: format!("reopen {via}"),
            source: e,
        })
    }
}
