//! inotify instances (`inotify(7)`) and file handles (`open_by_handle_at(2)`), for the dump
//! that reads an instance's watches and the restorer that adds them again.

use crate::error::{check, own};
use crate::SysResult;
use std::ffi::CString;
use std::os::fd::{OwnedFd, RawFd};

/// `inotify_init1(flags | IN_CLOEXEC)`.
///
/// Man page: `inotify_init1(2)`.
pub fn inotify_init(flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::inotify_init1(flags | libc::IN_CLOEXEC) };
    let fd = check(r.into(), "inotify_init1", || format!("flags {flags:#x}"))?;
    // SAFETY: the kernel has just returned `fd`; nothing else owns it.
    Ok(unsafe { own(fd) })
}

/// `inotify_add_watch(fd, path, mask)`: the watch descriptor.
///
/// Man page: `inotify_add_watch(2)`.
pub fn add_watch(fd: RawFd, path: &str, mask: u32) -> SysResult<i32> {
    let c = CString::new(path)
        .map_err(|_| crate::SysError::new("inotify_add_watch", path, std::io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: `c` is a NUL-terminated string alive for the call; the kernel only reads it.
    let r = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) };
    Ok(check(r.into(), "inotify_add_watch", || format!("{path} mask {mask:#x}"))? as i32)
}

/// `inotify_rm_watch(fd, wd)`.
///
/// Man page: `inotify_rm_watch(2)`.
pub fn rm_watch(fd: RawFd, wd: i32) -> SysResult<()> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::inotify_rm_watch(fd, wd) };
    check(r.into(), "inotify_rm_watch", || format!("fd {fd} wd {wd}"))?;
    Ok(())
}

/// `open_by_handle_at(mount_fd, handle, flags | O_CLOEXEC)` with a handle of type `ty` and
/// bytes `bytes` (as `/proc/PID/fdinfo` shows them; needs `CAP_DAC_READ_SEARCH`).
///
/// Man page: `open_by_handle_at(2)`.
pub fn open_by_handle(mount_fd: RawFd, ty: i32, bytes: &[u8], flags: i32) -> SysResult<OwnedFd> {
    const MAX_HANDLE_SZ: usize = 128;
    if bytes.len() > MAX_HANDLE_SZ {
        return Err(crate::SysError::new("open_by_handle_at", "handle", std::io::ErrorKind::InvalidInput.into()));
    }
    // struct file_handle { unsigned int handle_bytes; int handle_type; unsigned char f_handle[]; }
    let mut buf = [0u32; 2 + MAX_HANDLE_SZ / 4];
    buf[0] = bytes.len() as u32;
    buf[1] = ty as u32;
    let mut raw = [0u8; MAX_HANDLE_SZ];
    raw[..bytes.len()].copy_from_slice(bytes);
    for (i, w) in raw.chunks(4).enumerate() {
        buf[2 + i] = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
    }
    // SAFETY: `buf` is a valid struct file_handle (header and MAX_HANDLE_SZ bytes), alive for
    // the call; the kernel only reads it.
    let r = unsafe { libc::syscall(libc::SYS_open_by_handle_at, mount_fd, buf.as_mut_ptr(), flags | libc::O_CLOEXEC) };
    let fd = check(r, "open_by_handle_at", || format!("mount fd {mount_fd} handle type {ty}"))?;
    // SAFETY: the kernel has just returned `fd`; nothing else owns it.
    Ok(unsafe { own(fd) })
}
