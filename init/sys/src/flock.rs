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
