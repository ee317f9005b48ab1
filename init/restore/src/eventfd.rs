//! eventfd, signalfd and timerfd, recreated in the restorer (their state does not depend on
//! the process that reads them: a signalfd reads the signals of whoever reads it) and passed
//! in like every other open file. A timerfd is re-armed with its remaining time, relative to
//! now (an absolute `TFD_TIMER_ABSTIME` timer keeps its expiry; a `CLOCK_REALTIME` timer whose
//! wall clock jumped meanwhile fires at the remaining interval, not at the absolute time), and
//! its unread expirations are put back with `TFD_IOC_SET_TICKS`.

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

/// A timerfd armed like `t`.
pub fn timerfd(id: u32, t: &TimerFdRecord) -> Result<OwnedFd, RestoreError> {
    let fd = sys::timerfd_create(t.clock, 0).map_err(|e| fail(id, "timerfd_create", e))?;
    if t.value_ns > 0 {
        sys::timerfd_settime(fd.as_raw_fd(), 0, t.value_ns, t.interval_ns)
            .map_err(|e| fail(id, "timerfd_settime", e))?;
    }
    if t.ticks > 0 {
        sys::timerfd_set_ticks(fd.as_raw_fd(), t.ticks).map_err(|e| fail(id, "timerfd ticks", e))?;
    }
    Ok(fd)
}
