//! epoll instances, created empty for the restorer (`epoll_create1(2)`); their watches are
//! added by the restored process itself with injected `epoll_ctl(2)` calls.

use crate::error::{check, own};
use crate::SysResult;
use std::os::fd::OwnedFd;

/// `epoll_create1(flags | EPOLL_CLOEXEC)`.
///
/// Man page: `epoll_create1(2)`.
pub fn epoll_create() -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let fd = check(r.into(), "epoll_create1", String::new)?;
    // SAFETY: the kernel has just returned `fd`; nothing else owns it.
    Ok(unsafe { own(fd) })
}
