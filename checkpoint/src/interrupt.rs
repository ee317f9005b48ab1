//! Interruption by the operator or a service manager: SIGINT, SIGTERM, SIGHUP and SIGQUIT are
//! blocked while seamless holds processes, and collected at points where everything can still
//! be put back ([`check`]). No asynchronous handler runs in the middle of a ptrace
//! conversation; the stage that sees the signal stops, and the ordinary error path resumes
//! the processes, thaws the filesystems and unloads the kernel.

use seamless_sys::signal::{self, SigSet};
use std::sync::atomic::{AtomicI32, Ordering};

/// The signals that mean "stop and put everything back".
pub const SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The first interrupting signal seen (0: none).
static SEEN: AtomicI32 = AtomicI32::new(0);

/// An interrupting signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {} during {stage}", signal::name(*signal))]
pub struct Interrupted {
    /// The signal.
    pub signal: i32,
    /// What was being done when it was seen.
    pub stage: &'static str,
}

/// The interrupting signals as a set.
pub fn set() -> SigSet {
    SigSet::of(&SIGNALS)
}

/// Blocks the interrupting signals in the calling thread (and the threads and children it
/// creates afterwards), so that they wait for [`check`].
pub fn block() -> Result<(), seamless_sys::SysError> {
    signal::block(&set())
}

/// Returns an error if an interrupting signal has arrived (now or at any earlier check).
pub fn check(stage: &'static str) -> Result<(), Interrupted> {
    let seen = SEEN.load(Ordering::Relaxed);
    if seen != 0 {
        return Err(Interrupted { signal: seen, stage });
    }
    match signal::take(&set()) {
        Some(sig) => {
            SEEN.store(sig, Ordering::Relaxed);
            log::warn!("{} received during {stage}: stopping and putting everything back", signal::name(sig));
            Err(Interrupted { signal: sig, stage })
        }
        None => Ok(()),
    }
}
