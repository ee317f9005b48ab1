//! eventfd, signalfd and timerfd, recreated in the restorer (their state does not depend on
//! the process that reads them: a signalfd reads the signals of whoever reads it) and passed
//! in like every other open file. A timerfd is re-armed with its remaining time, relative to
//! now (a `CLOCK_REALTIME` timer whose wall clock jumped meanwhile fires at the remaining
//! interval, not at the absolute time), and its unread expirations are put back with
//! `TFD_IOC_SET_TICKS`. A timer set with `TFD_TIMER_ABSTIME` is armed absolute again (now on
//! its clock plus the remaining time), with its `TFD_TIMER_CANCEL_ON_SET`, so it keeps
//! following clock changes as it did (and a disarmed one keeps its flags).

use crate::RestoreError;
use seamless_image::records::TimerFdRecord;
use seamless_sys::{eventfd as sys, SysError};
use std::os::fd::{AsRawFd, OwnedFd};

fn fail(id: u32, what: &str, e: SysError) -> RestoreError {
    RestoreError::File { id, what: format!("{what} ({}({}))", e.call, e.subject), source: e.source }
}

/// An eventfd with counter `count`.
pub fn eventfd(id: u32, count: u64, semaphore: bool) -> Result<OwnedFd, RestoreError> {
    let fd = sys::eventfd(0, if semaphore { libc::EFD_SEMAPHORE } else { 0 }).map_err(|e| fail(id, "eventfd", e))?;
    if count > 0 {
        sys::eventfd_add(fd.as_raw_fd(), count).map_err(|e| fail(id, "eventfd counter", e))?;
    }
    Ok(fd)
}

/// A signalfd for `mask`.
pub fn signalfd(id: u32, mask: u64) -> Result<OwnedFd, RestoreError> {
    sys::signalfd(mask, 0).map_err(|e| fail(id, "signalfd", e))
}

/// `TFD_TIMER_ABSTIME`.
const TFD_TIMER_ABSTIME: u32 = 1;

/// A timerfd armed like `t`.
pub fn timerfd(id: u32, t: &TimerFdRecord) -> Result<OwnedFd, RestoreError> {
    let fd = sys::timerfd_create(t.clock, 0).map_err(|e| fail(id, "timerfd_create", e))?;
    let absolute = t.settime_flags & TFD_TIMER_ABSTIME != 0;
    if t.value_ns > 0 || t.settime_flags != 0 {
        let value = if absolute && t.value_ns > 0 {
            let now = seamless_sys::timens::clock_ns(t.clock).map_err(|e| fail(id, "clock_gettime", e))?;
            u64::try_from(now).unwrap_or(0).saturating_add(t.value_ns)
        } else {
            t.value_ns
        };
        let flags = i32::try_from(t.settime_flags).unwrap_or(0);
        sys::timerfd_settime(fd.as_raw_fd(), flags, value, t.interval_ns)
            .map_err(|e| fail(id, "timerfd_settime", e))?;
    }
    if t.ticks > 0 {
        sys::timerfd_set_ticks(fd.as_raw_fd(), t.ticks).map_err(|e| fail(id, "timerfd ticks", e))?;
    }
    Ok(fd)
}
