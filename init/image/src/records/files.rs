//! Open files: per-process descriptor tables, image-wide open file descriptions (shared
//! between descriptors and processes), pipes with their buffered data.

use serde::{Deserialize, Serialize};

/// What an open file description refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file or directory reachable by path.
    Regular {
        /// Path.
        path: String,
        /// File size at dump time.
        size: u64,
        /// Mode bits.
        mode: u32,
    },
    /// A file that was deleted while open: its contents are in blobs (owner 0, tag = desc id,
    /// consecutive chunks in order).
    Ghost {
        /// Path the file had (with the ` (deleted)` suffix removed).
        path: String,
        /// File size.
        size: u64,
        /// Mode bits.
        mode: u32,
    },
    /// One end of a pipe; the pipe itself is a [`PipeRecord`].
    Pipe {
        /// Pipe inode number (the pipe's identity).
        pipe: u64,
    },
    /// A FIFO reached by path; its buffered data is in the [`PipeRecord`] of its inode.
    Fifo {
        /// Path.
        path: String,
        /// FIFO inode.
        pipe: u64,
    },
    /// A character device reopened by path (e.g. /dev/null).
    CharDev {
        /// Path.
        path: String,
        /// Device number.
        rdev: u64,
    },
    /// A socket (see [`super::sockets`]).
    Socket(super::sockets::SocketRecord),
    /// An eventfd.
    EventFd {
        /// Counter value.
        count: u64,
        /// `EFD_SEMAPHORE`.
        semaphore: bool,
    },
    /// A signalfd.
    SignalFd {
        /// Signal mask (bit n-1 = signal n).
        mask: u64,
    },
    /// A timerfd.
    TimerFd(super::eventfd::TimerFdRecord),
    /// An epoll instance with its watches.
    Epoll(super::epoll::EpollRecord),
}

/// One open file description: stored under [`super::FILE_DESC`], owner 0, tag = id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDesc {
    /// Image-wide id (referenced by [`Fd::desc`]).
    pub id: u32,
    /// `O_*` status flags and access mode (without O_CLOEXEC).
    pub flags: u32,
    /// File position.
    pub pos: u64,
    /// Object.
    pub kind: FileKind,
}

/// One descriptor of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd {
    /// Descriptor number.
    pub fd: i32,
    /// Close-on-exec.
    pub cloexec: bool,
    /// The open file description.
    pub desc: u32,
}

/// A process's descriptor table: stored under [`super::FDS`], owner = pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FdTable {
    /// Descriptors, ascending.
    pub fds: Vec<Fd>,
}

/// A pipe or FIFO buffer: stored under [`super::PIPE`], owner 0, tag = inode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PipeRecord {
    /// Inode number.
    pub ino: u64,
    /// Pipe capacity (F_GETPIPE_SZ).
    pub capacity: u64,
    /// Bytes that were buffered.
    pub data: Vec<u8>,
}
