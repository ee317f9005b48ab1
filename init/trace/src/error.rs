//! The error of one step of dump or restore in one process: the single wrapper that adds the
//! process (and what was being done to it) to a lower-level failure.

use crate::inject::InjectError;
use seamless_sys::SysError;

/// The failure under a [`ProcError`].
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// A system call of the tracer.
    #[error(transparent)]
    Sys(SysError),
    /// Reading or writing `/proc` or the tracee's memory.
    #[error(transparent)]
    Io(std::io::Error),
    /// A system call injected into the tracee.
    #[error(transparent)]
    Inject(InjectError),
}

/// A step that failed for process `pid`; what went wrong underneath is its source.
#[derive(Debug, thiserror::Error)]
#[error("pid {pid}: {what}")]
pub struct ProcError {
    /// The process.
    pub pid: i32,
    /// What was being done (names the thread, descriptor or address where there is one).
    pub what: String,
    /// Why it failed.
    #[source]
    pub cause: Cause,
}

impl ProcError {
    /// A failed system call of the tracer.
    pub fn sys(pid: i32, what: impl Into<String>, e: SysError) -> Self {
        Self { pid, what: what.into(), cause: Cause::Sys(e) }
    }
    /// A failed read or write of `/proc` or memory.
    pub fn io(pid: i32, what: impl Into<String>, e: std::io::Error) -> Self {
        Self { pid, what: what.into(), cause: Cause::Io(e) }
    }
    /// A failed injected system call.
    pub fn inject(pid: i32, what: impl Into<String>, e: InjectError) -> Self {
        Self { pid, what: what.into(), cause: Cause::Inject(e) }
    }
    /// The errno underneath, if the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match &self.cause {
            Cause::Sys(e) => e.errno(),
            Cause::Io(e) => e.raw_os_error(),
            Cause::Inject(InjectError::Failed { err, .. }) => err.raw_os_error(),
            Cause::Inject(InjectError::Sys(e)) => e.errno(),
            Cause::Inject(InjectError::Unexpected { .. }) => None,
            Cause::Inject(InjectError::Table { source, .. }) => source.raw_os_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seamless_sys::chain;

    /// The context wrapper, the system call and the OS error each appear once.
    #[test]
    fn chain_prints_each_cause_once() {
        let os = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = ProcError::sys(7, "reading maps", SysError::new("open", "/proc/7/maps", os));
        assert_eq!(e.to_string(), "pid 7: reading maps");
        assert_eq!(
            chain(&e).to_string(),
            "pid 7: reading maps: open(/proc/7/maps) failed: No such file or directory (os error 2)"
        );
        assert_eq!(e.errno(), Some(libc::ENOENT));
        let err = std::io::Error::from_raw_os_error(libc::EPERM);
        let e = ProcError::inject(7, "setresuid", InjectError::Failed { tid: 8, name: "setresuid", err });
        let text = chain(&e).to_string();
        assert_eq!(
            text,
            "pid 7: setresuid: tid 8: injected syscall setresuid failed: Operation not permitted (os error 1)"
        );
    }
}
