//! Signals handled synchronously: the interrupting signals are blocked in the calling thread
//! and collected with `sigtimedwait(2)` at points where the caller can roll back, instead of
//! running asynchronous handlers. Also a plain `fork(2)` for the supervisor split.

use crate::{SysError, SysResult};
use std::time::Duration;

/// A set of signal numbers.
#[derive(Debug, Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// The set holding exactly `sigs`.
    pub fn of(sigs: &[i32]) -> Self {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it fully before any use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable sigset_t.
        unsafe { libc::sigemptyset(&mut set) };
        for &s in sigs {
            // SAFETY: `set` is initialised; an invalid number only makes sigaddset return -1.
            unsafe { libc::sigaddset(&mut set, s) };
        }
        Self(set)
    }
}

/// Adds `set` to the calling thread's blocked signals (`sigprocmask(SIG_BLOCK)`). Blocked
/// signals stay pending until [`take`] or [`wait`] collects them; the mask is inherited
/// across fork.
///
/// Man page: `pthread_sigmask(3)` with `SIG_BLOCK`.
pub fn block(set: &SigSet) -> SysResult<()> {
    // SAFETY: both pointers are valid for the call; a null old-set pointer is allowed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set.0, std::ptr::null_mut()) };
    if r != 0 {
        return Err(SysError::new("pthread_sigmask(SIG_BLOCK)", "signal set", std::io::Error::from_raw_os_error(r)));
    }
    Ok(())
}

/// Removes `set` from the calling thread's blocked signals.
///
/// Man page: `pthread_sigmask(3)` with `SIG_UNBLOCK`.
pub fn unblock(set: &SigSet) -> SysResult<()> {
    // SAFETY: as in [`block`].
    let r = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set.0, std::ptr::null_mut()) };
    if r != 0 {
        return Err(SysError::new("pthread_sigmask(SIG_UNBLOCK)", "signal set", std::io::Error::from_raw_os_error(r)));
    }
    Ok(())
}

/// Gives each of `sigs` its default action (`SIG_DFL`) in the calling process and the
/// programs it starts afterwards, undoing an inherited `SIG_IGN` (a background job of a
/// non-interactive shell starts with SIGINT and SIGQUIT ignored, and an ignored signal that
/// is not blocked is dropped when it is sent).
///
/// Man page: `sigaction(2)`.
pub fn default_action(sigs: &[i32]) -> SysResult<()> {
    for &sig in sigs {
        // SAFETY: sigaction is plain data; all zeroes is SIG_DFL with an empty mask and no flags.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = libc::SIG_DFL;
        // SAFETY: `act` is a valid sigaction; a null pointer for the old action is allowed.
        let r = unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) };
        if r != 0 {
            return Err(SysError::new("sigaction(SIG_DFL)", name(sig), std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Waits up to `timeout` for one signal of `set` (which must be blocked) and returns its
/// number and the sending pid, or `None` when the time ran out.
///
/// Man page: `sigtimedwait(2)`.
pub fn wait(set: &SigSet, timeout: Duration) -> SysResult<Option<(i32, i32)>> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    loop {
        // SAFETY: siginfo_t is plain data the kernel fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: the set, the siginfo buffer and the timespec are valid for the call.
        let r = unsafe { libc::sigtimedwait(&set.0, &mut info, &ts) };
        if r > 0 {
            // SAFETY: the kernel filled `info` for signal `r`; si_pid is valid for signals sent
            // by kill(2) and reads as 0 otherwise.
            let pid = unsafe { info.si_pid() };
            return Ok(Some((r, pid)));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(None),
            Some(libc::EINTR) => continue,
            _ => return Err(SysError::new("sigtimedwait", "signal set", e)),
        }
    }
}

/// Collects one pending signal of `set` without waiting.
///
/// Man page: `sigtimedwait(2)` with a zero timeout.
pub fn take(set: &SigSet) -> Option<i32> {
    wait(set, Duration::ZERO).ok().flatten().map(|(s, _)| s)
}

/// Result of [`fork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// In the parent, with the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// `fork(2)`. The caller must be single-threaded: the child has only the calling thread.
///
/// Man page: `fork(2)`.
pub fn fork() -> SysResult<Fork> {
    // SAFETY: the caller is single-threaded (documented precondition), so no lock can be held
    // by a thread that vanishes in the child; the child continues on its own copy of memory.
    let r = unsafe { libc::fork() };
    match r {
        r if r < 0 => Err(SysError::last("fork", "seamless")),
        0 => Ok(Fork::Child),
        p => Ok(Fork::Parent(p)),
    }
}

/// The parent's pid (`getppid(2)`).
///
/// Man page: `getppid(2)`.
pub fn parent_pid() -> i32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getppid() }
}

/// Name of a signal number for messages (`SIGINT`, ...).
pub fn name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGTRAP => "SIGTRAP".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGPIPE => "SIGPIPE".into(),
        libc::SIGCHLD => "SIGCHLD".into(),
        s => format!("signal {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_signal_is_collected_not_delivered() {
        let set = SigSet::of(&[libc::SIGUSR2]);
        block(&set).unwrap();
        assert_eq!(take(&set), None);
        // Thread-directed, so other test threads (which do not block it) never see it.
        // SAFETY: raise(3) only sends a signal to the calling thread, which blocks it.
        assert_eq!(unsafe { libc::raise(libc::SIGUSR2) }, 0);
        let got = wait(&set, Duration::from_secs(5)).unwrap();
        assert_eq!(got.map(|(s, _)| s), Some(libc::SIGUSR2));
        unblock(&set).unwrap();
        assert_eq!(name(libc::SIGINT), "SIGINT");
    }
}
