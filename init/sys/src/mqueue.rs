//! POSIX message queues and memfds: `mq_open(2)` and the other queue calls by raw system call
//! (names without the leading `/`, as the kernel takes them), `memfd_create(2)` with flags,
//! seals (`fcntl(F_GET_SEALS, F_ADD_SEALS)`) and the data/hole walk of a file
//! (`lseek(SEEK_DATA, SEEK_HOLE)`).

use crate::error::{check, own};
use crate::{SysError, SysResult};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// `struct mq_attr` (eight longs).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct MqAttr {
    flags: i64,
    maxmsg: i64,
    msgsize: i64,
    curmsgs: i64,
    pad: [i64; 4],
}

/// A queue's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueAttr {
    /// `O_NONBLOCK` of the description the attributes were read through.
    pub flags: i64,
    /// Most messages.
    pub maxmsg: u64,
    /// Largest message.
    pub msgsize: u64,
    /// Messages queued.
    pub curmsgs: u64,
}

/// `mq_open(name, flags | O_CLOEXEC, mode, {maxmsg, msgsize})` (`name` without the leading `/`).
pub fn mq_open(name: &str, flags: i32, mode: u32, attr: Option<(u64, u64)>) -> SysResult<OwnedFd> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| SysError::new("mq_open", name, std::io::ErrorKind::InvalidInput.into()))?;
    let a =
        attr.map(|(maxmsg, msgsize)| MqAttr { maxmsg: maxmsg as i64, msgsize: msgsize as i64, ..MqAttr::default() });
    let ap = a.as_ref().map_or(std::ptr::null(), |a| a as *const MqAttr);
    // SAFETY: `c` is a NUL-terminated string and `ap` NULL or a valid `mq_attr` for the call.
    let r = unsafe { libc::syscall(libc::SYS_mq_open, c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_ulong, ap) };
    let fd = check(r, "mq_open", || format!("/{name}"))?;
    // SAFETY: the kernel has just returned `fd`; nothing else owns it.
    Ok(unsafe { own(fd) })
}

/// `mq_unlink(name)` (`name` without the leading `/`).
pub fn mq_unlink(name: &str) -> SysResult<()> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| SysError::new("mq_unlink", name, std::io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: `c` is a NUL-terminated string.
    let r = unsafe { libc::syscall(libc::SYS_mq_unlink, c.as_ptr()) };
    check(r, "mq_unlink", || format!("/{name}")).map(|_| ())
}

/// `mq_getattr(fd)`.
pub fn mq_getattr(fd: RawFd) -> SysResult<QueueAttr> {
    let mut a = MqAttr::default();
    // SAFETY: the kernel writes one `mq_attr` into `a`.
    let r = unsafe { libc::syscall(libc::SYS_mq_getsetattr, fd, std::ptr::null::<MqAttr>(), &mut a as *mut MqAttr) };
    check(r, "mq_getattr", || format!("fd {fd}"))?;
    Ok(QueueAttr { flags: a.flags, maxmsg: a.maxmsg as u64, msgsize: a.msgsize as u64, curmsgs: a.curmsgs as u64 })
}

/// `mq_timedreceive(fd, buf, msgsize, &prio, NULL)`: the next message as (priority, text);
/// on a non-blocking description `EAGAIN` when the queue is empty.
pub fn mq_receive(fd: RawFd, msgsize: usize) -> SysResult<(u32, Vec<u8>)> {
    let mut buf = vec![0u8; msgsize.max(1)];
    let mut prio: u32 = 0;
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf` and the priority into `prio`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_timedreceive,
            fd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut prio as *mut u32,
            std::ptr::null::<u8>(),
        )
    };
    let n = check(r, "mq_timedreceive", || format!("fd {fd}"))? as usize;
    buf.truncate(n);
    Ok((prio, buf))
}

/// `mq_timedsend(fd, data, prio, NULL)`.
pub fn mq_send(fd: RawFd, prio: u32, data: &[u8]) -> SysResult<()> {
    // SAFETY: the kernel reads `data.len()` bytes from `data`.
    let r =
        unsafe { libc::syscall(libc::SYS_mq_timedsend, fd, data.as_ptr(), data.len(), prio, std::ptr::null::<u8>()) };
    check(r, "mq_timedsend", || format!("fd {fd} ({} bytes, priority {prio})", data.len())).map(|_| ())
}

/// `MFD_CLOEXEC`.
pub const MFD_CLOEXEC: u32 = 1;
/// `MFD_ALLOW_SEALING`.
pub const MFD_ALLOW_SEALING: u32 = 2;
/// `MFD_EXEC` (Linux 6.3 and later).
pub const MFD_EXEC: u32 = 0x10;

/// `memfd_create(name, flags)`.
pub fn memfd_create(name: &str, flags: u32) -> SysResult<OwnedFd> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| SysError::new("memfd_create", name, std::io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: `c` is a NUL-terminated string; scalar flags.
    let r = unsafe { libc::syscall(libc::SYS_memfd_create, c.as_ptr(), flags as libc::c_ulong) };
    let fd = check(r, "memfd_create", || format!("{name:?} flags {flags:#x}"))?;
    // SAFETY: the kernel has just returned `fd`; nothing else owns it.
    Ok(unsafe { own(fd) })
}

/// `fcntl(fd, F_GET_SEALS)`.
pub fn get_seals(fd: &impl AsRawFd) -> SysResult<u32> {
    // SAFETY: plain fcntl with scalar arguments.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    Ok(check(r.into(), "fcntl(F_GET_SEALS)", || format!("fd {}", fd.as_raw_fd()))? as u32)
}

/// `fcntl(fd, F_ADD_SEALS, seals)`.
pub fn add_seals(fd: &impl AsRawFd, seals: u32) -> SysResult<()> {
    // SAFETY: plain fcntl with scalar arguments.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals as libc::c_int) };
    check(r.into(), "fcntl(F_ADD_SEALS)", || format!("fd {} seals {seals:#x}", fd.as_raw_fd())).map(|_| ())
}

/// The data ranges `(offset, length)` of the first `size` bytes of `f` (`SEEK_DATA` and
/// `SEEK_HOLE`; the file position changes).
pub fn data_ranges(f: &impl AsRawFd, size: u64) -> SysResult<Vec<(u64, u64)>> {
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < size {
        // SAFETY: plain lseek with scalar arguments.
        let d = unsafe { libc::lseek(fd, at as libc::off_t, libc::SEEK_DATA) };
        if d < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return Err(SysError::last("lseek(SEEK_DATA)", format!("fd {fd} at {at}")));
        }
        // SAFETY: as above.
        let h = unsafe { libc::lseek(fd, d, libc::SEEK_HOLE) };
        if h < 0 {
            return Err(SysError::last("lseek(SEEK_HOLE)", format!("fd {fd} at {d}")));
        }
        let (d, h) = (d as u64, (h as u64).min(size));
        if h > d {
            out.push((d, h - d));
        }
        at = h.max(d + 1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_gives_back_its_messages_by_priority() {
        let name = format!("seamless-sys-test-{}", std::process::id());
        let q = mq_open(&name, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_NONBLOCK, 0o600, Some((4, 64)))
            .unwrap();
        mq_unlink(&name).unwrap();
        mq_send(q.as_raw_fd(), 1, b"low").unwrap();
        mq_send(q.as_raw_fd(), 9, b"high").unwrap();
        let a = mq_getattr(q.as_raw_fd()).unwrap();
        assert_eq!((a.maxmsg, a.msgsize, a.curmsgs), (4, 64, 2));
        assert_eq!(mq_receive(q.as_raw_fd(), 64).unwrap(), (9, b"high".to_vec()));
        assert_eq!(mq_receive(q.as_raw_fd(), 64).unwrap(), (1, b"low".to_vec()));
        assert_eq!(mq_receive(q.as_raw_fd(), 64).unwrap_err().errno(), Some(libc::EAGAIN));
    }

    #[test]
    fn a_memfd_shows_its_data_ranges_and_seals() {
        use std::os::unix::fs::FileExt;
        let fd = memfd_create("t", MFD_ALLOW_SEALING | MFD_CLOEXEC).unwrap();
        let f = std::fs::File::from(fd);
        f.set_len(5 * 4096).unwrap();
        f.write_all_at(b"x", 2 * 4096 + 5).unwrap();
        assert_eq!(data_ranges(&f, 5 * 4096).unwrap(), [(2 * 4096, 4096)]);
        add_seals(&f, libc::F_SEAL_GROW as u32).unwrap();
        assert_eq!(get_seals(&f).unwrap(), libc::F_SEAL_GROW as u32);
    }
}
