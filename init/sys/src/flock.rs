//! Advisory whole-file locks (`flock(2)`), used to keep two writers out of one image
//! directory.

use crate::error::{SysError, SysResult};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Tries to take an exclusive `flock` on `fd` without waiting. `Ok(true)`: taken (released
/// when every descriptor of that open file description is closed); `Ok(false)`: another open
/// file description holds a lock on the same file.
///
/// Man page: `flock(2)` with `LOCK_EX | LOCK_NB`.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>, subject: &str) -> SysResult<bool> {
    // SAFETY: flock takes a descriptor (kept open by the borrow) and scalar flags; it touches
    // no memory of ours.
    let r = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(SysError::new("flock(LOCK_EX|LOCK_NB)", subject, err))
}

/// The owner of descriptor `fd` for `SIGIO`/`SIGURG` and lease-break signals
/// (`F_GETOWN_EX`): (type, pid); type 0 = thread, 1 = process, 2 = process group; pid 0 =
/// none.
///
/// Man page: `fcntl(2)` (`F_GETOWN_EX`).
pub fn owner_of(fd: BorrowedFd<'_>, subject: &str) -> SysResult<(i32, i32)> {
    #[repr(C)]
    struct OwnerEx {
        ty: libc::c_int,
        pid: libc::pid_t,
    }
    const F_GETOWN_EX: libc::c_int = 16;
    let mut o = OwnerEx { ty: 0, pid: 0 };
    // SAFETY: `o` is a valid, writable `struct f_owner_ex`; the descriptor is kept open by the
    // borrow.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut o as *mut OwnerEx) };
    if r < 0 {
        return Err(SysError::last("fcntl(F_GETOWN_EX)", subject));
    }
    Ok((o.ty, o.pid))
}

/// The signal sent when I/O is possible or a lease breaks (`F_GETSIG`; 0 = `SIGIO`).
///
/// Man page: `fcntl(2)` (`F_GETSIG`).
pub fn signal_of(fd: BorrowedFd<'_>, subject: &str) -> SysResult<i32> {
    const F_GETSIG: libc::c_int = 11;
    // SAFETY: scalar arguments; the descriptor is kept open by the borrow.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) };
    if r < 0 {
        return Err(SysError::last("fcntl(F_GETSIG)", subject));
    }
    Ok(r)
}
