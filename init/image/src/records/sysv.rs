//! System V IPC objects of the image: shared memory segments (their pages are blobs), semaphore
//! sets, message queues, and each process's attachments of segments. Objects are image-wide
//! (owner 0, tag = the object's id); the restorer recreates them with the same ids before the
//! processes and attaches the segments at their addresses.

use serde::{Deserialize, Serialize};

/// Blob tags of segment pages: this plus the segment id (deleted files' blobs use description
/// ids, below 2^32).
pub const SHM_BLOB_TAG: u64 = 1 << 32;

/// Owner, creator and mode of an object (`struct ipc_perm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IpcPerm {
    /// Id (what `shmget`/`semget`/`msgget` returned; the same after restore).
    pub id: i32,
    /// Key (0 = `IPC_PRIVATE`, also every removed segment's).
    pub key: i32,
    /// Owner.
    pub uid: u32,
    /// Owner's group.
    pub gid: u32,
    /// Creator.
    pub cuid: u32,
    /// Creator's group.
    pub cgid: u32,
    /// Permission bits (0o777); for segments also [`ShmRecord::DEST`] and [`ShmRecord::LOCKED`].
    pub mode: u32,
}

/// A shared memory segment: stored under [`super::SYSV_SHM`], owner 0, tag = id. Its pages
/// are blobs (owner 0, tag [`SHM_BLOB_TAG`] + id), in the order of `runs`, their lengths
/// adding up to the runs' total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ShmRecord {
    /// Owner, creator, mode.
    pub perm: IpcPerm,
    /// Size in bytes.
    pub size: u64,
    /// The byte ranges `(offset, length)` that hold pages, page aligned (the last may end at
    /// `size`), ascending; everything else is a hole.
    pub runs: Vec<(u64, u64)>,
    /// A live process of the image that uses it (see [`SemRecord::user`]).
    pub user: i32,
}

impl ShmRecord {
    /// `SHM_DEST`: removed (`IPC_RMID`) while attached; goes away with its last attachment.
    pub const DEST: u32 = 0o1000;
    /// `SHM_LOCKED`: locked in memory (`SHM_LOCK`).
    pub const LOCKED: u32 = 0o2000;
}

/// A semaphore set: stored under [`super::SYSV_SEM`], owner 0, tag = id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SemRecord {
    /// Owner, creator, mode.
    pub perm: IpcPerm,
    /// The value of each semaphore (at most 32767 each).
    pub values: Vec<u16>,
    /// A live process of the image that uses it: the restore makes it the object's last user
    /// as the kernel records it (`sempid`, `msg_lspid`, `shm_lpid`), so that a later dump of
    /// the restored processes finds the object theirs again.
    pub user: i32,
}

/// A message queue: stored under [`super::SYSV_MSG`], owner 0, tag = id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MsgRecord {
    /// Owner, creator, mode.
    pub perm: IpcPerm,
    /// Most bytes the queue may hold (`msg_qbytes`).
    pub qbytes: u64,
    /// Messages, oldest first: (type, text); types are positive.
    pub messages: Vec<(i64, Vec<u8>)>,
    /// A live process of the image that uses it (see [`SemRecord::user`]).
    pub user: i32,
}

/// The segments a process has attached: stored under [`super::SHM_ATTACH`], owner = pid, at
/// most one per live process. These areas are not in the process's `mm` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ShmAttachments {
    /// Attachments, ascending by address.
    pub areas: Vec<ShmArea>,
}

/// One attachment: the whole segment at `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmArea {
    /// Address.
    pub start: u64,
    /// End (exclusive): `start` plus the segment's size rounded up to pages.
    pub end: u64,
    /// Segment id.
    pub shmid: i32,
    /// `PROT_READ` always, `PROT_WRITE` unless attached `SHM_RDONLY`, `PROT_EXEC` with `SHM_EXEC`.
    pub prot: u32,
}

fn perm_str(p: &IpcPerm) -> String {
    format!("id {} key {:#x} owner {}:{} creator {}:{} mode {:04o}", p.id, p.key, p.uid, p.gid, p.cuid, p.cgid, p.mode)
}

/// [`super::describe`] for the kinds of this module.
pub(super) fn describe(kind: crate::RecordKind, bytes: &[u8]) -> Option<String> {
    Some(match kind {
        super::SYSV_SHM => {
            let r: ShmRecord = postcard::from_bytes(bytes).ok()?;
            let saved: u64 = r.runs.iter().map(|(_, l)| *l).sum();
            format!("sysv shm {} size {} saved {saved} B in {} run(s)", perm_str(&r.perm), r.size, r.runs.len())
        }
        super::SYSV_SEM => {
            let r: SemRecord = postcard::from_bytes(bytes).ok()?;
            format!("sysv sem {} values {:?}", perm_str(&r.perm), r.values)
        }
        super::SYSV_MSG => {
            let r: MsgRecord = postcard::from_bytes(bytes).ok()?;
            let b: usize = r.messages.iter().map(|(_, d)| d.len()).sum();
            format!("sysv msg {} qbytes {} {} message(s), {b} bytes", perm_str(&r.perm), r.qbytes, r.messages.len())
        }
        super::SHM_ATTACH => {
            let r: ShmAttachments = postcard::from_bytes(bytes).ok()?;
            let l: Vec<String> = r
                .areas
                .iter()
                .map(|a| format!("[{:#x}-{:#x} shm {} prot {}]", a.start, a.end, a.shmid, a.prot))
                .collect();
            format!("shm attachments: {}", l.join(" "))
        }
        super::FILE_OBJECT => match postcard::from_bytes::<FileObject>(bytes).ok()? {
            FileObject::PosixMq(q) => format!(
                "posix mq /{}{} mode {:o} owner {}:{} maxmsg {} msgsize {} {} message(s), files {:?}",
                q.name,
                if q.unlinked { " (unlinked)" } else { "" },
                q.mode,
                q.uid,
                q.gid,
                q.maxmsg,
                q.msgsize,
                q.messages.len(),
                q.descs
            ),
            FileObject::Deleted(f) => format!(
                "deleted file {} ino {} mode {:o} owner {}:{} size {} in {} run(s) files {:?}",
                f.path,
                f.ino,
                f.mode,
                f.uid,
                f.gid,
                f.size,
                f.runs.len(),
                f.descs
            ),
            FileObject::Memfd(m) => format!(
                "memfd:{} ino {} mode {:o} owner {}:{} size {} in {} run(s) seals {:#x} files {:?}",
                m.name,
                m.ino,
                m.mode,
                m.uid,
                m.gid,
                m.size,
                m.runs.len(),
                m.seals,
                m.descs
            ),
        },
        _ => return None,
    })
}

/// Blob tags of memfd and deleted files' contents: this plus the [`FileObject`] entry's tag.
pub const MEMFD_BLOB_TAG: u64 = 2 << 32;

/// A kernel object behind open file descriptions that is not reached by a path of the
/// root filesystem: stored under [`super::FILE_OBJECT`], owner 0, tag = a number unique
/// among these records. The descriptions listed (their [`super::FileDesc`] records say
/// `Ghost` with the object's name) are opens of this object: the restorer creates the
/// object once and opens each of them on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileObject {
    /// A POSIX message queue (`mq_open`).
    PosixMq(PosixMq),
    /// A memfd (`memfd_create`).
    Memfd(Memfd),
    /// A regular file deleted while open or mapped.
    Deleted(DeletedFile),
}

/// A regular file that was deleted (link count 0) while the processes held it open or
/// mapped. Its pages are blobs like a memfd's. Recreated nameless in the directory it was in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedFile {
    /// Path it had (without ` (deleted)`).
    pub path: String,
    /// Device and inode on the dumping kernel (what its mappings' [`super::FileId`]s name).
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Mode bits (file type included).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size.
    pub size: u64,
    /// Access time, nanoseconds since the epoch.
    pub atime_ns: i128,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Byte ranges holding data, like [`Memfd::runs`].
    pub runs: Vec<(u64, u64)>,
    /// Open file descriptions of the file (none when it is only mapped).
    pub descs: Vec<u32>,
}

/// A POSIX message queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixMq {
    /// Name without the leading `/`.
    pub name: String,
    /// Removed with `mq_unlink` while open.
    pub unlinked: bool,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `mq_maxmsg`.
    pub maxmsg: u64,
    /// `mq_msgsize`.
    pub msgsize: u64,
    /// Messages in the order `mq_receive` returns them (priority, text).
    pub messages: Vec<(u32, Vec<u8>)>,
    /// Open file descriptions of the queue.
    pub descs: Vec<u32>,
}

/// A memfd. Its pages are blobs (owner 0, tag [`MEMFD_BLOB_TAG`] + the entry's tag), in the
/// order of `runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memfd {
    /// Name given to `memfd_create` (without the `memfd:` prefix).
    pub name: String,
    /// Device and inode on the dumping kernel (what its mappings' [`super::FileId`]s name).
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Mode bits (file type included).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size.
    pub size: u64,
    /// Byte ranges holding data `(offset, length)`, ascending, page aligned (the last may end
    /// at `size`); the rest are holes.
    pub runs: Vec<(u64, u64)>,
    /// `F_GET_SEALS` (`F_SEAL_*` bits), applied after the contents.
    pub seals: u32,
    /// Open file descriptions of the memfd (none when it is only mapped).
    pub descs: Vec<u32>,
}
