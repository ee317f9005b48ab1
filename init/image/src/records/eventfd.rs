//! eventfd, signalfd and timerfd: variants of [`FileKind`](super::FileKind)
//! ([`EventFd`](super::FileKind::EventFd), [`SignalFd`](super::FileKind::SignalFd),
//! [`TimerFd`](super::FileKind::TimerFd)) stored inside the [`FileDesc`](super::FileDesc)
//! record of their open file description; the timerfd's state is a record of its own type.

use serde::{Deserialize, Serialize};

/// A timerfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerFdRecord {
    /// Clock id.
    pub clock: i32,
    /// Remaining time to the next expiry (ns; 0 = disarmed), restored as a relative time.
    pub value_ns: u64,
    /// Interval (ns).
    pub interval_ns: u64,
    /// Expirations not read yet.
    pub ticks: u64,
    /// `settime` flags the timer was armed with (`TFD_TIMER_ABSTIME`, ...).
    pub settime_flags: u32,
}
