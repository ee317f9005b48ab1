//! eventfd, signalfd and timerfd, created for the restorer: `eventfd(2)`, `signalfd(2)`,
//! `timerfd_create(2)` and the `TFD_IOC_SET_TICKS` ioctl (`timerfd_create(2)`).

use crate::error::{check, own};
use crate::SysResult;
use std::os::fd::{OwnedFd, RawFd};

/// `eventfd(count, flags | EFD_CLOEXEC)`.
///
/// Man page: `eventfd(2)`.
pub fn eventfd(count: u32, flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::eventfd(count, flags | libc::EFD_CLOEXEC) };
    let fd = check(r.into(), "eventfd", || format!("count {count}"))?;
    // SAFETY: the kernel has just returned `fd`; nothing else owns it.
    Ok(unsafe { own(fd) })
}

/// Writes a 64-bit counter increment to an eventfd.
///
/// Man page: `write(2)` on an eventfd, `eventfd(2)`.
pub fn eventfd_add(fd: RawFd, v: u64) -> SysResult<()> {
    let b = v.to_ne_bytes();
    // SAFETY: `b` is valid for reads of 8 bytes.
    let r = unsafe { libc::write(fd, b.as_ptr().cast(), 8) };
    check(r as libc::c_long, "write(eventfd)", || format!("fd {fd}"))?;
    Ok(())
}

/// `read(fd, &u64, 8)` on an eventfd (eventfd(2)): the whole counter, or 1 in semaphore mode.
/// Blocks when the counter is zero and the description is blocking.
///
/// Man page: `eventfd(2)`.
pub fn eventfd_read(fd: RawFd) -> SysResult<u64> {
    let mut b = [0u8; 8];
    // SAFETY: `b` is valid for writes of 8 bytes.
    let r = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 8) };
    check(r as libc::c_long, "read(eventfd)", || format!("fd {fd}"))?;
    Ok(u64::from_ne_bytes(b))
}

/// `signalfd(-1, mask, flags | SFD_CLOEXEC)` with a 64-bit kernel sigset.
///
/// Man page: `signalfd(2)` (the `signalfd4` system call).
pub fn signalfd(mask: u64, flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: the kernel reads 8 bytes of mask; scalar arguments otherwise.
    let r = unsafe { libc::syscall(libc::SYS_signalfd4, -1, &mask as *const u64, 8usize, flags | libc::SFD_CLOEXEC) };
    let fd = check(r, "signalfd4", || format!("mask {mask:#x}"))?;
    // SAFETY: the kernel has just returned `fd`; nothing else owns it.
    Ok(unsafe { own(fd) })
}

/// `timerfd_create(clock, flags | TFD_CLOEXEC)`.
///
/// Man page: `timerfd_create(2)`.
pub fn timerfd_create(clock: i32, flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::timerfd_create(clock, flags | libc::TFD_CLOEXEC) };
    let fd = check(r.into(), "timerfd_create", || format!("clock {clock}"))?;
    // SAFETY: the kernel has just returned `fd`; nothing else owns it.
    Ok(unsafe { own(fd) })
}

/// `timerfd_settime(fd, flags, {interval, value})`, times in nanoseconds.
///
/// Man page: `timerfd_settime(2)`.
pub fn timerfd_settime(fd: RawFd, flags: i32, value_ns: u64, interval_ns: u64) -> SysResult<()> {
    let ts = |ns: u64| libc::timespec { tv_sec: (ns / 1_000_000_000) as _, tv_nsec: (ns % 1_000_000_000) as _ };
    let its = libc::itimerspec { it_interval: ts(interval_ns), it_value: ts(value_ns) };
    // SAFETY: `its` is a valid itimerspec; the old value is not requested.
    let r = unsafe { libc::timerfd_settime(fd, flags, &its, std::ptr::null_mut()) };
    check(r.into(), "timerfd_settime", || format!("fd {fd}"))?;
    Ok(())
}

/// `timerfd_gettime(fd)` (timerfd_create(2)): the time left and the interval, in nanoseconds.
/// On a periodic timer that expired unread the kernel moves it to its next expiry here, adding
/// the expirations missed meanwhile to the count a read returns.
///
/// Man page: `timerfd_gettime(2)`.
pub fn timerfd_gettime(fd: RawFd) -> SysResult<(u64, u64)> {
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let mut its = libc::itimerspec { it_interval: zero, it_value: zero };
    // SAFETY: `its` is a valid itimerspec for the kernel to write.
    let r = unsafe { libc::timerfd_gettime(fd, &mut its) };
    check(r.into(), "timerfd_gettime", || format!("fd {fd}"))?;
    let ns = |t: libc::timespec| (t.tv_sec.max(0) as u64) * 1_000_000_000 + t.tv_nsec.max(0) as u64;
    Ok((ns(its.it_value), ns(its.it_interval)))
}

/// `TFD_IOC_SET_TICKS`: sets the number of unread expirations of a timerfd.
///
/// Man page: `ioctl(2)` `TFD_IOC_SET_TICKS`, in `timerfd_create(2)`.
pub fn timerfd_set_ticks(fd: RawFd, ticks: u64) -> SysResult<()> {
    const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
    // SAFETY: the request reads one u64 through the pointer, which is valid for the call.
    let r = unsafe { libc::ioctl(fd, TFD_IOC_SET_TICKS as _, &ticks as *const u64) };
    check(r.into(), "ioctl(TFD_IOC_SET_TICKS)", || format!("fd {fd}"))?;
    Ok(())
}
