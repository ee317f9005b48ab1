//! Clocks and time namespaces: restored processes must not see `CLOCK_MONOTONIC` or
//! `CLOCK_BOOTTIME` jump back to the new kernel's early boot values, so they are restored in
//! a time namespace whose offsets continue the old kernel's clocks.

use crate::{SysError, SysResult};
use std::fs::File;
use std::os::fd::AsRawFd;

/// `CLONE_NEWTIME` (Linux 5.6).
const CLONE_NEWTIME: libc::c_int = 0x80;

/// Reads a clock in nanoseconds (`CLOCK_MONOTONIC`, `CLOCK_BOOTTIME`, `CLOCK_REALTIME`...).
///
/// Man page: `clock_gettime(2)`.
pub fn clock_ns(clock: libc::clockid_t) -> SysResult<i64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    if r != 0 {
        return Err(SysError::last("clock_gettime", format!("clock {clock}")));
    }
    Ok(ts.tv_sec * 1_000_000_000 + ts.tv_nsec)
}

/// `CLOCK_MONOTONIC` in nanoseconds.
///
/// Man page: `clock_gettime(2)`.
pub fn monotonic_ns() -> SysResult<i64> {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_BOOTTIME` in nanoseconds.
///
/// Man page: `clock_gettime(2)`.
pub fn boottime_ns() -> SysResult<i64> {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// The calling process's current time namespace, to come back to later.
///
/// Man page: `time_namespaces(7)` (`/proc/self/ns/time`).
pub fn current_time_ns() -> SysResult<File> {
    File::open("/proc/self/ns/time").map_err(|e| SysError::new("open", "/proc/self/ns/time", e))
}

/// Creates a time namespace for the children created from now on (the caller stays in its
/// own) and sets its clock offsets. Must happen before any process enters it.
///
/// Man page: `unshare(2)` with `CLONE_NEWTIME`, `time_namespaces(7)`.
pub fn unshare_with_offsets(monotonic_ns: i64, boottime_ns: i64) -> SysResult<()> {
    // SAFETY: unshare takes no pointers; it only changes the caller's namespace membership.
    if unsafe { libc::unshare(CLONE_NEWTIME) } != 0 {
        return Err(SysError::last("unshare", "CLONE_NEWTIME"));
    }
    let line =
        |clock: &str, ns: i64| format!("{clock} {} {}\n", ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let text = line("monotonic", monotonic_ns) + &line("boottime", boottime_ns);
    std::fs::write("/proc/self/timens_offsets", text)
        .map_err(|e| SysError::new("write", "/proc/self/timens_offsets", e))
}

/// Makes `ns` the time namespace of the caller and of its future children (the caller must
/// be single-threaded).
///
/// Man page: `setns(2)`, `time_namespaces(7)`.
pub fn enter_time_ns(ns: &File) -> SysResult<()> {
    // SAFETY: the descriptor is valid for the life of `ns`; setns does not retain it.
    if unsafe { libc::setns(ns.as_raw_fd(), CLONE_NEWTIME) } != 0 {
        return Err(SysError::last("setns", "time namespace"));
    }
    Ok(())
}
