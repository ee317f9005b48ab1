//! File locks held by a process ([`super::FILE_LOCKS`], owner = pid): `flock`, POSIX record
//! locks, open-file-description (OFD) locks and leases, each with the descriptor through which
//! the restore takes it again in that process.

use serde::{Deserialize, Serialize};

/// Which kind of lock (who owns it, and with which call it is taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// `fcntl(F_SETLK)`: owned by the process (its descriptor table).
    Posix,
    /// `fcntl(F_OFD_SETLK)`: owned by the open file description.
    Ofd,
    /// `flock(2)`: owned by the open file description.
    Flock,
    /// `fcntl(F_SETLEASE)`: owned by the open file description; the process that takes it
    /// becomes the description's owner for the lease-break signal.
    Lease,
}

/// One lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    /// A descriptor of the process through which the lock is taken (for description-owned
    /// kinds any descriptor of that description).
    pub fd: i32,
    /// Kind.
    pub kind: LockKind,
    /// Write (exclusive) lock; else read (shared).
    pub write: bool,
    /// First byte (0 for `flock` and leases).
    pub start: u64,
    /// Length in bytes; 0 means up to the end of the file, however far it grows (always 0 for
    /// `flock` and leases).
    pub len: u64,
}

/// The file locks of one process, in the order they are taken again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FileLocks {
    /// Locks.
    pub locks: Vec<FileLock>,
}

impl FileLock {
    /// A short description, e.g. `fd 3 POSIX write 100+50`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            LockKind::Posix => "POSIX",
            LockKind::Ofd => "OFD",
            LockKind::Flock => "flock",
            LockKind::Lease => "lease",
        };
        let range = if self.len == 0 { format!("{}-EOF", self.start) } else { format!("{}+{}", self.start, self.len) };
        format!("fd {} {kind} {} {range}", self.fd, if self.write { "write" } else { "read" })
    }
}
