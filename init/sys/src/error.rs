//! The error type shared by every wrapper of this crate.

use std::io;

/// A failed system call: which call, on what, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{call}({subject}) failed: {source}")]
pub struct SysError {
    /// The system call or operation, e.g. `"ptrace(PTRACE_GETREGSET)"`.
    pub call: &'static str,
    /// What it was applied to, e.g. `"pid 1234"` or a path.
    pub subject: String,
    /// The error the kernel returned.
    #[source]
    pub source: io::Error,
}

impl SysError {
    /// Builds an error from `errno` as it is right after a failed call.
    pub fn last(call: &'static str, subject: impl Into<String>) -> Self {
        Self { call, subject: subject.into(), source: io::Error::last_os_error() }
    }

    /// Builds an error from an explicit `io::Error`.
    pub fn new(call: &'static str, subject: impl Into<String>, source: io::Error) -> Self {
        Self { call, subject: subject.into(), source }
    }

    /// The raw errno, if the error came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Result alias for this crate.
pub type SysResult<T> = Result<T, SysError>;
