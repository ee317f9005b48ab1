//! Objects behind descriptors and mappings that no path of the root filesystem reaches:
//! POSIX message queues (`mq_open`) and memfds (`memfd_create`). Each is saved once (by
//! device and inode) as a [`FileObject`] with the description ids that open it; the
//! descriptions themselves are `Ghost` records carrying the object's name.
//!
//! A queue is read by opening it again through `/proc/PID/fd/N`: its attributes, owner and
//! mode, then every message, received in order (highest priority first, oldest first within
//! a priority) and sent back at once in the same order, which leaves the queue as it was
//! (the dumped processes are frozen meanwhile; `seamless check` does not read messages).
//! A queue with an `mq_notify` registration is read by [`super::mq_notify`] once the pre-check
//! has passed (sending its messages back into the emptied queue fires the registration, which
//! is then made again). Refused: a queue that another process filled while it was read.
//!
//! A memfd (held open or only mapped) is read through `/proc/PID/fd/N` or
//! `/proc/PID/map_files/...`: name, size, owner, mode, seals, and the data ranges
//! (`SEEK_DATA`/`SEEK_HOLE`: holes stay holes). Refused: hugetlbfs memfds (`MFD_HUGETLB`),
//! memfds larger than the dump's deleted-file limit.

use super::files::FilePlan;
use super::{DumpError, Frozen};
use seamless_image::records::{self, FileKind, FileObject, Memfd, PosixMq};
use seamless_image::{Store, Writer};
use seamless_sys::mqueue;
use seamless_trace::procfs;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

/// `MQUEUE_MAGIC`.
const MQUEUE_MAGIC: i64 = 0x1980_0202;
/// `HUGETLBFS_MAGIC`.
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// The objects of a dump.
#[derive(Debug, Default)]
pub struct Objects {
    /// Objects with the contents of memfds (runs' bytes, in order).
    pub list: Vec<(FileObject, Vec<Vec<u8>>)>,
    by_inode: BTreeMap<(u64, u64), usize>,
    /// Only `seamless check`'s look: no messages or contents are read.
    pub pre_flight: bool,
    /// Largest memfd whose contents are saved.
    pub max_size: u64,
    /// Queues with an `mq_notify` registration, read later ([`super::mq_notify`]).
    pub notify: Vec<super::mq_notify::Pending>,
    /// The registrations read, by registered process.
    pub notify_regs: BTreeMap<i32, records::MqNotify>,
}

fn unsupported(pid: i32, what: String, reason: impl Into<String>) -> DumpError {
    DumpError::Unsupported { pid, resource: what, reason: reason.into() }
}

impl Objects {
    fn add_desc(&mut self, key: (u64, u64), id: u32) -> Option<FileKind> {
        let &i = self.by_inode.get(&key)?;
        let (o, _) = &mut self.list[i];
        Some(match o {
            FileObject::PosixMq(q) => {
                q.descs.push(id);
                FileKind::Ghost { path: format!("/{}", q.name), size: 0, mode: 0o100000 | q.mode }
            }
            FileObject::Memfd(m) => {
                m.descs.push(id);
                FileKind::Ghost { path: format!("/memfd:{}", m.name), size: m.size, mode: m.mode }
            }
            FileObject::Deleted(f) => {
                f.descs.push(id);
                FileKind::Ghost { path: f.path.clone(), size: f.size, mode: f.mode }
            }
        })
    }

    fn insert(&mut self, key: (u64, u64), o: FileObject, data: Vec<Vec<u8>>) {
        self.by_inode.insert(key, self.list.len());
        self.list.push((o, data));
    }
}

impl Objects {
    /// Names (without the `/`) of the linked POSIX message queues.
    pub fn queue_names(&self) -> Vec<String> {
        self.list
            .iter()
            .filter_map(|(o, _)| match o {
                FileObject::PosixMq(q) if !q.unlinked => Some(q.name.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Whether the open file at `path` (a `/proc/PID/fd/N` link) is a POSIX message queue. Looked
/// at through an `O_PATH` descriptor: a real open of every regular file would break the
/// process's write leases (the lease holder gets SIGIO, which kills it by default) and
/// touch the files' access times.
pub fn is_mqueue(pid: i32, fd: i32, path: &str) -> Result<bool, DumpError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .map_err(|e| DumpError::io(pid, format!("opening fd {fd} (O_PATH)"), e))?;
    Ok(seamless_sys::sysv::fs_type(&f).map_err(|e| DumpError::sys(pid, format!("fd {fd}"), e))? == MQUEUE_MAGIC)
}

/// A descriptor of a POSIX message queue (`link` is `/NAME`, ` (deleted)` once unlinked).
pub fn posix_mq(
    pid: i32,
    fd: i32,
    link: &str,
    path: &str,
    md: &std::fs::Metadata,
    plan: &mut FilePlan,
    id: u32,
) -> Result<FileKind, DumpError> {
    let key = (md.dev(), md.ino());
    if let Some(k) = plan.objects.add_desc(key, id) {
        return Ok(k);
    }
    let what = format!("fd {fd} (POSIX message queue {link})");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| DumpError::io(pid, format!("opening the queue of fd {fd}"), e))?;
    // The queue file reads as "QSIZE:n NOTIFY:n SIGNO:n NOTIFY_PID:n".
    let mut status = String::new();
    (&f).read_to_string(&mut status).map_err(|e| DumpError::io(pid, format!("reading the queue of fd {fd}"), e))?;
    // A registration fires when a message arrives in the empty queue: its messages are read
    // once the pre-check has passed, by `super::mq_notify`, which registers it again.
    let notified = super::mq_notify::parse(pid, &what, &status, path)?;
    let attr = mqueue::mq_getattr(f.as_raw_fd()).map_err(|e| DumpError::sys(pid, what.clone(), e))?;
    let mut messages = Vec::new();
    if let Some(mut n) = notified {
        n.index = plan.objects.list.len();
        plan.objects.notify.push(n);
    } else if !plan.objects.pre_flight {
        for _ in 0..attr.curmsgs {
            match mqueue::mq_receive(f.as_raw_fd(), attr.msgsize as usize) {
                Ok(m) => messages.push(m),
                Err(e) if e.errno() == Some(libc::EAGAIN) => break,
                Err(e) => {
                    put_back(f.as_raw_fd(), &messages);
                    return Err(DumpError::sys(pid, what, e));
                }
            }
        }
        let intruder = mqueue::mq_getattr(f.as_raw_fd()).map(|a| a.curmsgs).unwrap_or(0);
        if let Some(e) = put_back(f.as_raw_fd(), &messages) {
            return Err(DumpError::sys(pid, format!("{what}: putting the messages back"), e));
        }
        if intruder != 0 || messages.len() as u64 != attr.curmsgs {
            return Err(unsupported(
                pid,
                what,
                "another process sent to or received from the queue while the dump read it: it is shared with processes outside the dump",
            ));
        }
    }
    let name = link.trim_start_matches('/').trim_end_matches(" (deleted)").to_string();
    let q = PosixMq {
        name,
        unlinked: md.nlink() == 0,
        mode: md.mode() & 0o777,
        uid: md.uid(),
        gid: md.gid(),
        maxmsg: attr.maxmsg,
        msgsize: attr.msgsize,
        messages,
        descs: Vec::new(),
    };
    plan.objects.insert(key, FileObject::PosixMq(q), Vec::new());
    Ok(plan.objects.add_desc(key, id).unwrap_or(FileKind::Ghost { path: link.into(), size: 0, mode: md.mode() }))
}

/// Sends `messages` back in order; the first error, if any.
fn put_back(fd: i32, messages: &[(u32, Vec<u8>)]) -> Option<seamless_sys::SysError> {
    messages.iter().find_map(|(p, m)| mqueue::mq_send(fd, *p, m).err())
}

fn read_memfd(pid: i32, what: &str, path: &str, objects: &Objects) -> Result<(Memfd, Vec<Vec<u8>>), DumpError> {
    let f = std::fs::File::open(path).map_err(|e| DumpError::io(pid, format!("opening {what}"), e))?;
    let md = f.metadata().map_err(|e| DumpError::io(pid, format!("stat {what}"), e))?;
    if seamless_sys::sysv::fs_type(&f).map_err(|e| DumpError::sys(pid, what.to_string(), e))? == HUGETLBFS_MAGIC {
        return Err(unsupported(pid, what.into(), "huge-page memfd (MFD_HUGETLB) is not checkpointed"));
    }
    let seals = mqueue::get_seals(&f).map_err(|e| DumpError::sys(pid, what.to_string(), e))?;
    let mut runs = Vec::new();
    let mut data = Vec::new();
    if !objects.pre_flight {
        if md.size() > objects.max_size {
            return Err(unsupported(
                pid,
                what.into(),
                format!(
                    "memfd of {} bytes exceeds the {}-byte limit of saved file contents",
                    md.size(),
                    objects.max_size
                ),
            ));
        }
        for (off, len) in mqueue::data_ranges(&f, md.size()).map_err(|e| DumpError::sys(pid, what.to_string(), e))? {
            let mut b = vec![0u8; len as usize];
            f.read_exact_at(&mut b, off).map_err(|e| DumpError::io(pid, format!("reading {what}"), e))?;
            runs.push((off, len));
            data.push(b);
        }
    }
    let m = Memfd {
        name: String::new(),
        dev: md.dev(),
        ino: md.ino(),
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        size: md.size(),
        runs,
        seals,
        descs: Vec::new(),
    };
    Ok((m, data))
}

fn memfd_name(link: &str) -> String {
    link.trim_start_matches("/memfd:").trim_end_matches(" (deleted)").to_string()
}

/// A descriptor of a memfd (`link` is `/memfd:NAME (deleted)`).
pub fn memfd_fd(
    pid: i32,
    fd: i32,
    link: &str,
    path: &str,
    plan: &mut FilePlan,
    id: u32,
) -> Result<FileKind, DumpError> {
    let md = std::fs::metadata(path).map_err(|e| DumpError::io(pid, format!("stat fd {fd}"), e))?;
    let key = (md.dev(), md.ino());
    if let Some(k) = plan.objects.add_desc(key, id) {
        return Ok(k);
    }
    let (mut m, data) = read_memfd(pid, &format!("fd {fd} ({link})"), path, &plan.objects)?;
    m.name = memfd_name(link);
    plan.objects.insert(key, FileObject::Memfd(m), data);
    Ok(plan.objects.add_desc(key, id).unwrap_or(FileKind::Ghost { path: link.into(), size: 0, mode: md.mode() }))
}

/// A deleted regular file held open (`link` is `PATH (deleted)`, link count 0): saved once by
/// inode, with its data ranges, owner, mode and times, whichever descriptions open it.
pub fn deleted_fd(
    pid: i32,
    fd: i32,
    link: &str,
    path: &str,
    plan: &mut FilePlan,
    id: u32,
) -> Result<FileKind, DumpError> {
    let md = std::fs::metadata(path).map_err(|e| DumpError::io(pid, format!("stat fd {fd}"), e))?;
    let key = (md.dev(), md.ino());
    if let Some(k) = plan.objects.add_desc(key, id) {
        return Ok(k);
    }
    let f = read_deleted(pid, &format!("fd {fd} ({link})"), link, path, &plan.objects)?;
    plan.objects.insert(key, f.0, f.1);
    Ok(plan.objects.add_desc(key, id).unwrap_or(FileKind::Ghost { path: link.into(), size: 0, mode: md.mode() }))
}

fn read_deleted(
    pid: i32,
    what: &str,
    name: &str,
    path: &str,
    objects: &Objects,
) -> Result<(FileObject, Vec<Vec<u8>>), DumpError> {
    let f = std::fs::File::open(path).map_err(|e| DumpError::io(pid, format!("opening {what}"), e))?;
    let md = f.metadata().map_err(|e| DumpError::io(pid, format!("stat {what}"), e))?;
    let mut runs = Vec::new();
    let mut data = Vec::new();
    if !objects.pre_flight {
        if md.size() > objects.max_size {
            return Err(unsupported(
                pid,
                what.into(),
                format!("deleted file of {} bytes exceeds the {}-byte limit", md.size(), objects.max_size),
            ));
        }
        for (off, len) in mqueue::data_ranges(&f, md.size()).map_err(|e| DumpError::sys(pid, what.to_string(), e))? {
            let mut b = vec![0u8; len as usize];
            f.read_exact_at(&mut b, off).map_err(|e| DumpError::io(pid, format!("reading {what}"), e))?;
            runs.push((off, len));
            data.push(b);
        }
    }
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    let d = records::DeletedFile {
        path: name.trim_end_matches(" (deleted)").to_string(),
        dev: md.dev(),
        ino: md.ino(),
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        size: md.size(),
        atime_ns: ns(md.atime(), md.atime_nsec()),
        mtime_ns: ns(md.mtime(), md.mtime_nsec()),
        runs,
        descs: Vec::new(),
    };
    Ok((FileObject::Deleted(d), data))
}

/// Whether a mapping named `name` is of a memfd the dump saves as such (not the restorer's
/// shared anonymous objects, which are `memfd:seamless-shm`).
pub fn is_memfd_mapping(name: &str) -> bool {
    name.starts_with("/memfd:") && name.ends_with(" (deleted)") && !name.starts_with("/memfd:seamless-shm")
}

/// Adds the memfds that the processes map without holding a descriptor of them.
pub fn mapped_memfds(frozen: &Frozen, plan: &mut FilePlan) -> Result<(), DumpError> {
    for p in frozen.procs().iter().filter(|p| p.zombie.is_none()) {
        let maps = procfs::read_maps(p.pid).map_err(|e| DumpError::io(p.pid, "reading maps", e))?;
        let deleted_file = |m: &&seamless_trace::procfs::MapLine| {
            m.ino != 0
                && m.name.starts_with('/')
                && m.name.ends_with(" (deleted)")
                && !m.name.starts_with("/memfd:")
                && !m.name.starts_with("/SYSV")
        };
        for m in maps.iter().filter(|m| is_memfd_mapping(&m.name) || deleted_file(m)) {
            let path = format!("/proc/{}/map_files/{:x}-{:x}", p.pid, m.start, m.end);
            let md = std::fs::metadata(&path).map_err(|e| DumpError::io(p.pid, format!("stat {path}"), e))?;
            let key = (md.dev(), md.ino());
            if plan.objects.by_inode.contains_key(&key) {
                continue;
            }
            let what = format!("mapping {:#x}-{:#x} ({})", m.start, m.end, m.name);
            if is_memfd_mapping(&m.name) {
                let (mut mf, data) = read_memfd(p.pid, &what, &path, &plan.objects)?;
                mf.name = memfd_name(&m.name);
                plan.objects.insert(key, FileObject::Memfd(mf), data);
            } else if md.nlink() == 0 && md.file_type().is_file() {
                let (o, data) = read_deleted(p.pid, &what, &m.name, &path, &plan.objects)?;
                plan.objects.insert(key, o, data);
            }
        }
    }
    Ok(())
}

/// Adds the memfd or deleted regular file that is the executable of `pid` (`link` is what
/// `/proc/PID/exe` shows, `path` that link) when no descriptor or mapping brought it in.
pub fn exe_object(pid: i32, link: &str, path: &str, plan: &mut FilePlan) -> Result<(), DumpError> {
    let md = std::fs::metadata(path).map_err(|e| DumpError::io(pid, format!("stat {path}"), e))?;
    let key = (md.dev(), md.ino());
    if plan.objects.by_inode.contains_key(&key) {
        return Ok(());
    }
    let what = format!("exe ({link})");
    if is_memfd_mapping(link) {
        let (mut mf, data) = read_memfd(pid, &what, path, &plan.objects)?;
        mf.name = memfd_name(link);
        plan.objects.insert(key, FileObject::Memfd(mf), data);
    } else {
        let (o, data) = read_deleted(pid, &what, link, path, &plan.objects)?;
        plan.objects.insert(key, o, data);
    }
    Ok(())
}

/// Refuses the objects when the reader (knowing record kinds `kinds`) does not know their kind.
pub fn readable_by(objects: &Objects, frozen: &Frozen, kinds: &[u16]) -> Result<(), DumpError> {
    if objects.list.is_empty() || kinds.contains(&records::FILE_OBJECT.0) {
        return Ok(());
    }
    let pid = frozen.procs().first().map(|p| p.pid).unwrap_or(0);
    Err(unsupported(
        pid,
        "POSIX message queues and memfds".into(),
        format!("need record kind {}, which the target's seamless-init does not read: update it", records::FILE_OBJECT),
    ))
}

/// Writes the objects, memfd contents as blobs.
pub fn write<S: Store>(objects: &Objects, w: &mut Writer<S>) -> Result<(), DumpError> {
    for (&pid, regs) in &objects.notify_regs {
        w.put_record(records::MQ_NOTIFY, pid.unsigned_abs(), 0, regs)?;
    }
    for (tag, (o, data)) in (0u64..).zip(&objects.list) {
        w.put_record(records::FILE_OBJECT, 0, tag, o)?;
        for d in data {
            for chunk in d.chunks(16 << 20) {
                w.put_blob(0, records::sysv::MEMFD_BLOB_TAG + tag, chunk)?;
            }
        }
    }
    Ok(())
}
