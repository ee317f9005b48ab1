//! System V IPC: shared memory segments, semaphore sets and message queues, by raw system
//! call with the kernel's own x86-64 structures (`ipc64_perm`, `shmid64_ds`, `semid64_ds`,
//! `msqid64_ds`), so that the layout never depends on the C library the binary is linked
//! with. Also the one thread-local credential switch the restorer needs to create an object
//! with its creator's ids (`cuid`/`cgid` are the creating thread's effective ids).
//!
//! Man pages: `shmget(2)`, `shmat(2)`, `shmctl(2)`, `semget(2)`, `semctl(2)`, `msgget(2)`,
//! `msgop(2)`, `msgctl(2)`, `mincore(2)`.

use crate::error::check;
use crate::{SysError, SysResult};

const PAGE: usize = 4096;
/// `IPC_CREAT`.
pub const IPC_CREAT: i32 = 0o1000;
/// `IPC_EXCL`.
pub const IPC_EXCL: i32 = 0o2000;
const IPC_RMID: i32 = 0;
const IPC_SET: i32 = 1;
const IPC_STAT: i32 = 2;
const SHM_LOCK: i32 = 11;
const GETPID: i32 = 11;
const GETALL: i32 = 13;
const SETALL: i32 = 17;
const IPC_NOWAIT: i64 = 0o4000;
const MSG_NOERROR: i64 = 0o10000;
const MSG_COPY: i64 = 0o40000;
/// `SHM_RDONLY`.
pub const SHM_RDONLY: i32 = 0o10000;
/// `SHM_EXEC`.
pub const SHM_EXEC: i32 = 0o100000;

/// The status words of one object (the kernel's `*id64_ds`, read as words; large enough
/// for all three kinds, 112 bytes at most).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Ds([u8; 128]);

impl Ds {
    fn zero() -> Self {
        Ds([0; 128])
    }
    fn u32_at(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[off..off + 4]);
        u32::from_ne_bytes(b)
    }
    fn u64_at(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[off..off + 8]);
        u64::from_ne_bytes(b)
    }
    fn set_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn set_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
    /// `ipc64_perm`: key, uid, gid, cuid, cgid, mode (bytes 0..24).
    fn perm(&self) -> Perm {
        Perm {
            key: self.u32_at(0) as i32,
            uid: self.u32_at(4),
            gid: self.u32_at(8),
            cuid: self.u32_at(12),
            cgid: self.u32_at(16),
            mode: self.u32_at(20) & 0xffff,
        }
    }
    fn set_owner(&mut self, uid: u32, gid: u32, mode: u32) {
        self.set_u32(4, uid);
        self.set_u32(8, gid);
        self.set_u32(20, mode);
    }
}

/// The permission part of an object's status (`struct ipc64_perm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    /// Key (`IPC_PRIVATE` = 0).
    pub key: i32,
    /// Owner.
    pub uid: u32,
    /// Owner's group.
    pub gid: u32,
    /// Creator.
    pub cuid: u32,
    /// Creator's group.
    pub cgid: u32,
    /// Mode: permission bits, and for segments `SHM_DEST` (0o1000) and `SHM_LOCKED` (0o2000).
    pub mode: u32,
}

fn ctl(nr: libc::c_long, call: &'static str, id: i32, cmd: i32, arg: usize, ds: *mut Ds) -> SysResult<libc::c_long> {
    // SAFETY: `ds` points at a 128-byte buffer, larger than any `*id64_ds` the kernel reads or
    // writes; the other arguments are scalars.
    let r = unsafe {
        if nr == libc::SYS_semctl {
            libc::syscall(nr, id, arg, cmd, ds)
        } else {
            libc::syscall(nr, id, cmd, ds)
        }
    };
    check(r, call, || format!("id {id} cmd {cmd}"))
}

/// A shared memory segment's status (`shmctl(IPC_STAT)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmStat {
    /// Permissions.
    pub perm: Perm,
    /// Size in bytes.
    pub size: u64,
    /// Creator pid.
    pub cpid: i32,
    /// Pid of the last `shmat`/`shmdt`.
    pub lpid: i32,
    /// Attachments.
    pub nattch: u64,
}

/// `shmget(key, size, flags)`.
/// Man page: `shmget(2)`.
pub fn shmget(key: i32, size: u64, flags: i32) -> SysResult<i32> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::syscall(libc::SYS_shmget, key, size, flags) };
    Ok(check(r, "shmget", || format!("key {key:#x} size {size}"))? as i32)
}

/// `shmctl(id, IPC_STAT)`.
pub fn shm_stat(id: i32) -> SysResult<ShmStat> {
    let mut ds = Ds::zero();
    ctl(libc::SYS_shmctl, "shmctl(IPC_STAT)", id, IPC_STAT, 0, &mut ds)?;
    Ok(ShmStat {
        perm: ds.perm(),
        size: ds.u64_at(48),
        cpid: ds.u32_at(80) as i32,
        lpid: ds.u32_at(84) as i32,
        nattch: ds.u64_at(88),
    })
}

/// `shmctl(id, IPC_SET)`: owner, group and permission bits.
pub fn shm_set(id: i32, uid: u32, gid: u32, mode: u32) -> SysResult<()> {
    let mut ds = Ds::zero();
    ds.set_owner(uid, gid, mode);
    ctl(libc::SYS_shmctl, "shmctl(IPC_SET)", id, IPC_SET, 0, &mut ds).map(|_| ())
}

/// `shmctl(id, IPC_RMID)`.
pub fn shm_rmid(id: i32) -> SysResult<()> {
    ctl(libc::SYS_shmctl, "shmctl(IPC_RMID)", id, IPC_RMID, 0, std::ptr::null_mut()).map(|_| ())
}

/// `shmctl(id, SHM_LOCK)`.
pub fn shm_lock(id: i32) -> SysResult<()> {
    ctl(libc::SYS_shmctl, "shmctl(SHM_LOCK)", id, SHM_LOCK, 0, std::ptr::null_mut()).map(|_| ())
}

/// A segment attached in this process, detached on drop.
struct Attached {
    addr: *mut u8,
}

impl Attached {
    fn new(id: i32, flags: i32) -> SysResult<Self> {
        // SAFETY: the kernel picks the address (NULL), so nothing of ours is replaced.
        let r = unsafe { libc::syscall(libc::SYS_shmat, id, std::ptr::null::<u8>(), flags) };
        let addr = check(r, "shmat", || format!("id {id}"))? as *mut u8;
        Ok(Attached { addr })
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: detaches exactly the attachment made in `new`; no slice of it outlives us.
        unsafe { libc::syscall(libc::SYS_shmdt, self.addr) };
    }
}

/// Bytes of a segment at an offset.
pub type Run = (u64, Vec<u8>);

/// The pages of segment `id` (`size` bytes) that hold data, as runs `(offset, bytes)`:
/// attached read-only in this process, the resident pages found with `mincore` (a hole stays
/// a hole); with `all` (some of the segment is swapped out, which `mincore` does not show)
/// every page that is not all zeroes instead. Also returns the filesystem type (`statfs`
/// `f_type`) of the segment's file, to tell hugetlbfs segments.
/// Man page: `shmat(2)`.
pub fn shm_read(id: i32, size: u64, all: bool) -> SysResult<(Vec<Run>, i64)> {
    let len = usize::try_from(size)
        .map_err(|_| SysError::new("shmat", format!("id {id}"), std::io::ErrorKind::InvalidInput.into()))?;
    if len == 0 {
        return Ok((Vec::new(), 0));
    }
    let a = Attached::new(id, SHM_RDONLY)?;
    let pages = len.div_ceil(PAGE);
    let mut vec = vec![0u8; pages];
    // SAFETY: `a.addr` starts a mapping of `len` bytes; `vec` has one byte per page of it.
    let r = unsafe { libc::mincore(a.addr.cast(), len, vec.as_mut_ptr()) };
    if r != 0 {
        return Err(SysError::last("mincore", format!("shm id {id}")));
    }
    let magic = {
        let path = format!("/proc/self/map_files/{:x}-{:x}", a.addr as usize, a.addr as usize + pages * PAGE);
        let f = std::fs::File::open(&path).map_err(|e| SysError::new("open", path, e))?;
        fs_type(&f)?
    };
    // SAFETY: the attachment is readable for `len` bytes and stays attached until `a` drops,
    // after the last use of the slice.
    let mem = unsafe { std::slice::from_raw_parts(a.addr.cast_const(), len) };
    let mut runs: Vec<Run> = Vec::new();
    for (i, v) in vec.iter().enumerate() {
        let page = &mem[i * PAGE..((i + 1) * PAGE).min(len)];
        let keep = if all { page.iter().any(|b| *b != 0) } else { v & 1 != 0 };
        if !keep {
            continue;
        }
        let off = (i * PAGE) as u64;
        match runs.last_mut() {
            Some((start, data)) if *start + data.len() as u64 == off => data.extend_from_slice(page),
            _ => runs.push((off, page.to_vec())),
        }
    }
    drop(a);
    Ok((runs, magic))
}

/// Writes `data` at `offset` into segment `id` of `size` bytes (attached read-write for the
/// copy, detached after).
/// Man page: `shmat(2)`.
pub fn shm_write(id: i32, size: u64, offset: u64, data: &[u8]) -> SysResult<()> {
    let bad = || SysError::new("shm write", format!("id {id} at {offset:#x}"), std::io::ErrorKind::InvalidInput.into());
    let len = usize::try_from(size).map_err(|_| bad())?;
    let at = usize::try_from(offset).map_err(|_| bad())?;
    if at.checked_add(data.len()).is_none_or(|e| e > len) {
        return Err(bad());
    }
    let a = Attached::new(id, 0)?;
    // SAFETY: the attachment is writable for `len` bytes; `at + data.len() <= len` (above);
    // nothing else in this process references it.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), a.addr.add(at), data.len()) };
    drop(a);
    Ok(())
}

/// Filesystem type (`statfs` `f_type`) of an open file.
/// Man page: `fstatfs(2)`.
pub fn fs_type(f: &std::fs::File) -> SysResult<i64> {
    use std::os::fd::AsRawFd;
    // SAFETY: `statfs` is plain old data; zeroed is a valid initial value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer for the duration of the call.
    let r = unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) };
    if r != 0 {
        return Err(SysError::last("fstatfs", format!("fd {}", f.as_raw_fd())));
    }
    Ok(st.f_type as i64)
}

/// `semget(key, nsems, flags)`.
/// Man page: `semget(2)`.
pub fn semget(key: i32, nsems: u32, flags: i32) -> SysResult<i32> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::syscall(libc::SYS_semget, key, nsems, flags) };
    Ok(check(r, "semget", || format!("key {key:#x} nsems {nsems}"))? as i32)
}

/// `semctl(id, 0, IPC_STAT)`: permissions and the number of semaphores.
pub fn sem_stat(id: i32) -> SysResult<(Perm, u64)> {
    let mut ds = Ds::zero();
    ctl(libc::SYS_semctl, "semctl(IPC_STAT)", id, IPC_STAT, 0, &mut ds)?;
    Ok((ds.perm(), ds.u64_at(80)))
}

/// `semctl(id, 0, GETALL)`.
/// Man page: `semctl(2)` (`GETALL`)`.
pub fn sem_getall(id: i32, nsems: usize) -> SysResult<Vec<u16>> {
    let mut v = vec![0u16; nsems.max(1)];
    // SAFETY: the kernel writes `nsems` values of 16 bits into `v`, which has room for them.
    let r = unsafe { libc::syscall(libc::SYS_semctl, id, 0, GETALL, v.as_mut_ptr()) };
    check(r, "semctl(GETALL)", || format!("id {id}"))?;
    v.truncate(nsems);
    Ok(v)
}

/// `semctl(id, 0, SETALL)`.
/// Man page: `semctl(2)` (`SETALL`)`.
pub fn sem_setall(id: i32, values: &[u16]) -> SysResult<()> {
    // SAFETY: the kernel reads as many 16-bit values as the set has; `values` has that many
    // (the caller created the set with `values.len()` semaphores).
    let r = unsafe { libc::syscall(libc::SYS_semctl, id, 0, SETALL, values.as_ptr()) };
    check(r, "semctl(SETALL)", || format!("id {id}")).map(|_| ())
}

/// `semctl(id, num, GETPID)`: the pid of the last operation on semaphore `num`.
/// Man page: `semctl(2)` (`GETPID`)`.
pub fn sem_getpid(id: i32, num: u32) -> SysResult<i32> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::syscall(libc::SYS_semctl, id, num, GETPID, 0usize) };
    Ok(check(r, "semctl(GETPID)", || format!("id {id} sem {num}"))? as i32)
}

/// `semctl(id, 0, IPC_SET)`.
pub fn sem_set(id: i32, uid: u32, gid: u32, mode: u32) -> SysResult<()> {
    let mut ds = Ds::zero();
    ds.set_owner(uid, gid, mode);
    ctl(libc::SYS_semctl, "semctl(IPC_SET)", id, IPC_SET, 0, &mut ds).map(|_| ())
}

/// `semctl(id, 0, IPC_RMID)`.
pub fn sem_rmid(id: i32) -> SysResult<()> {
    ctl(libc::SYS_semctl, "semctl(IPC_RMID)", id, IPC_RMID, 0, std::ptr::null_mut()).map(|_| ())
}

/// `KCMP_SYSVSEM`: whether two processes have the same semaphore undo list (two processes
/// that never used `SEM_UNDO` both have none, and compare equal).
/// Man page: `kcmp(2)` (`KCMP_SYSVSEM`)`.
pub fn kcmp_sysvsem(pid1: i32, pid2: i32) -> SysResult<bool> {
    const KCMP_SYSVSEM: libc::c_int = 6;
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_SYSVSEM, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    Ok(check(r, "kcmp(KCMP_SYSVSEM)", || format!("pid {pid1} / pid {pid2}"))? == 0)
}

/// A message queue's status (`msgctl(IPC_STAT)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgStat {
    /// Permissions.
    pub perm: Perm,
    /// Bytes queued.
    pub cbytes: u64,
    /// Messages queued.
    pub qnum: u64,
    /// Most bytes the queue may hold.
    pub qbytes: u64,
    /// Pid of the last `msgsnd`.
    pub lspid: i32,
    /// Pid of the last `msgrcv`.
    pub lrpid: i32,
}

/// `msgget(key, flags)`.
/// Man page: `msgget(2)`.
pub fn msgget(key: i32, flags: i32) -> SysResult<i32> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::syscall(libc::SYS_msgget, key, flags) };
    Ok(check(r, "msgget", || format!("key {key:#x}"))? as i32)
}

/// `msgctl(id, IPC_STAT)`.
pub fn msg_stat(id: i32) -> SysResult<MsgStat> {
    let mut ds = Ds::zero();
    ctl(libc::SYS_msgctl, "msgctl(IPC_STAT)", id, IPC_STAT, 0, &mut ds)?;
    Ok(MsgStat {
        perm: ds.perm(),
        cbytes: ds.u64_at(72),
        qnum: ds.u64_at(80),
        qbytes: ds.u64_at(88),
        lspid: ds.u32_at(96) as i32,
        lrpid: ds.u32_at(100) as i32,
    })
}

/// `msgctl(id, IPC_SET)`: owner, group, permission bits and the queue's byte limit.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> SysResult<()> {
    let mut ds = Ds::zero();
    ds.set_owner(uid, gid, mode);
    ds.set_u64(88, qbytes);
    ctl(libc::SYS_msgctl, "msgctl(IPC_SET)", id, IPC_SET, 0, &mut ds).map(|_| ())
}

/// `msgctl(id, IPC_RMID)`.
pub fn msg_rmid(id: i32) -> SysResult<()> {
    ctl(libc::SYS_msgctl, "msgctl(IPC_RMID)", id, IPC_RMID, 0, std::ptr::null_mut()).map(|_| ())
}

/// `msgrcv(id, buf, max, index, IPC_NOWAIT | MSG_COPY)`: a copy of message number `index`
/// (from 0, oldest first) as (type, text), leaving the queue as it was. Needs a kernel with
/// `CONFIG_CHECKPOINT_RESTORE`.
/// Man page: `msgrcv(2)` (`MSG_COPY`)`.
pub fn msg_copy(id: i32, index: u64, max: usize) -> SysResult<(i64, Vec<u8>)> {
    let mut buf = vec![0u8; 8 + max];
    // SAFETY: the kernel writes the type (8 bytes) and at most `max` bytes of text into `buf`,
    // which has room for both.
    let r = unsafe {
        libc::syscall(libc::SYS_msgrcv, id, buf.as_mut_ptr(), max, index, IPC_NOWAIT | MSG_COPY | MSG_NOERROR)
    };
    let n = check(r, "msgrcv(MSG_COPY)", || format!("id {id} message {index}"))? as usize;
    let mut t = [0u8; 8];
    t.copy_from_slice(&buf[..8]);
    buf.truncate(8 + n.min(max));
    Ok((i64::from_ne_bytes(t), buf.split_off(8)))
}

/// `msgsnd(id, {mtype, data}, IPC_NOWAIT)`.
/// Man page: `msgsnd(2)`.
pub fn msgsnd(id: i32, mtype: i64, data: &[u8]) -> SysResult<()> {
    let mut buf = Vec::with_capacity(8 + data.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(data);
    // SAFETY: the kernel reads the type and `data.len()` bytes of text from `buf`.
    let r = unsafe { libc::syscall(libc::SYS_msgsnd, id, buf.as_ptr(), data.len(), IPC_NOWAIT) };
    check(r, "msgsnd", || format!("id {id} type {mtype} ({} bytes)", data.len())).map(|_| ())
}

/// Runs `f` with the calling thread's effective user and group ids set to `euid`/`egid` (raw
/// `setresgid`/`setresuid` system calls change only the calling thread, unlike the C library's
/// wrappers), then sets them back to 0: what `f` creates has them as its creator ids. Needs
/// root (the real and saved ids stay 0, so going back to 0 restores the capabilities). Done on
/// the calling thread: seamless-init may be where no new thread can be made (after
/// `unshare(CLONE_NEWTIME)`, `clone(CLONE_VM)` fails with EINVAL until it enters the namespace).
/// Man page: `setresuid(2)`, `setresgid(2)`.
pub fn as_creator<T>(euid: u32, egid: u32, f: impl FnOnce() -> SysResult<T>) -> SysResult<T> {
    let keep = u32::MAX as libc::c_ulong;
    // SAFETY: plain syscalls with scalar arguments, affecting this thread only.
    let r = unsafe { libc::syscall(libc::SYS_setresgid, keep, egid as libc::c_ulong, keep) };
    check(r, "setresgid", || format!("egid {egid}"))?;
    // SAFETY: as above.
    let r = unsafe { libc::syscall(libc::SYS_setresuid, keep, euid as libc::c_ulong, keep) };
    let out = check(r, "setresuid", || format!("euid {euid}")).and_then(|_| f());
    // SAFETY: as above; back to euid 0 first (it may set the group id again).
    let r = unsafe { libc::syscall(libc::SYS_setresuid, keep, 0 as libc::c_ulong, keep) };
    let back = check(r, "setresuid", || "euid 0 again".to_string());
    // SAFETY: as above.
    let r = unsafe { libc::syscall(libc::SYS_setresgid, keep, 0 as libc::c_ulong, keep) };
    let back = back.and_then(|_| check(r, "setresgid", || "egid 0 again".to_string()));
    let v = out?;
    back.map(|_| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private segment with one written page among holes: stat, contents and holes read
    /// back, then removed.
    #[test]
    fn a_segment_is_stated_read_sparsely_and_removed() {
        let id = shmget(0, 4 * PAGE as u64, IPC_CREAT | 0o600).unwrap();
        shm_write(id, 4 * PAGE as u64, PAGE as u64 * 2, b"hello").unwrap();
        let st = shm_stat(id).unwrap();
        assert_eq!(st.size, 4 * PAGE as u64);
        assert_eq!(st.perm.mode & 0o777, 0o600);
        let (runs, _) = shm_read(id, st.size, false).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].0, 2 * PAGE as u64);
        assert_eq!(&runs[0].1[..5], b"hello");
        assert_eq!(runs[0].1.len(), PAGE);
        shm_rmid(id).unwrap();
        assert!(shm_stat(id).is_err());
    }

    #[test]
    fn a_queue_is_copied_without_being_consumed() {
        let id = msgget(0, IPC_CREAT | 0o600).unwrap();
        msgsnd(id, 7, b"first").unwrap();
        msgsnd(id, 3, b"").unwrap();
        let st = msg_stat(id).unwrap();
        assert_eq!((st.qnum, st.cbytes), (2, 5));
        assert_eq!(msg_copy(id, 0, 64).unwrap(), (7, b"first".to_vec()));
        assert_eq!(msg_copy(id, 1, 64).unwrap(), (3, Vec::new()));
        assert_eq!(msg_stat(id).unwrap().qnum, 2);
        msg_rmid(id).unwrap();
    }

    #[test]
    fn semaphore_values_are_read_and_set() {
        let id = semget(0, 3, IPC_CREAT | 0o600).unwrap();
        sem_setall(id, &[1, 0, 42]).unwrap();
        let (perm, n) = sem_stat(id).unwrap();
        assert_eq!((perm.mode & 0o777, n), (0o600, 3));
        assert_eq!(sem_getall(id, 3).unwrap(), [1, 0, 42]);
        assert_eq!(sem_getpid(id, 2).unwrap(), std::process::id() as i32);
        sem_rmid(id).unwrap();
    }
}
