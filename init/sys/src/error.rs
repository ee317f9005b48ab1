//! The error type shared by every wrapper of this crate.

use std::io;

/// A failed system call: which call, on what, and the OS error (its source, not part of its
/// message: print errors with [`chain`]).
#[derive(Debug, thiserror::Error)]
#[error("{call}({subject}) failed")]
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

/// An error with every error under it, each printed once: `what failed: why: OS error`.
///
/// The one way seamless turns an error into text. An error's own message never repeats its
/// source (the convention of every error type here), so printing the chain shows each cause
/// exactly once; `anyhow`'s alternate form (`{:#}`) in the binaries prints the same.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

/// [`Chain`] of `e`, for `format!`/`log!`: `log::warn!("... {}", chain(&e))`.
pub fn chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Chain<'a> {
    Chain(e)
}

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

/// A raw system call return: `r` when not negative, else the `errno` left by `call` on
/// `subject` (computed only on failure).
pub(crate) fn check(r: libc::c_long, call: &'static str, subject: impl FnOnce() -> String) -> SysResult<libc::c_long> {
    if r < 0 {
        Err(SysError::last(call, subject()))
    } else {
        Ok(r)
    }
}

/// Takes ownership of descriptor `fd` that the kernel has just returned.
///
/// # Safety
/// `fd` must be an open descriptor that nothing else owns or will close.
pub(crate) unsafe fn own(fd: libc::c_long) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller guarantees `fd` is open and owned by nobody else.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as std::os::fd::RawFd) }
}

/// Result alias for this crate.
pub type SysResult<T> = Result<T, SysError>;
