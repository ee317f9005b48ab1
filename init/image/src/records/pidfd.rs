//! pidfds (`pidfd_open(2)`, `CLONE_PIDFD`). The open file description stays a
//! [`FileKind::CharDev`](super::FileKind::CharDev) description with the placeholder path
//! [`PIDFD_PATH`] (it carries the status flags, `O_NONBLOCK` = `PIDFD_NONBLOCK`); the process
//! it refers to is a [`PidfdRecord`] (kind [`super::PIDFD`]), not ignorable.

use serde::{Deserialize, Serialize};

/// Path of the placeholder description of a pidfd (what `/proc/PID/fd` shows).
pub const PIDFD_PATH: &str = "anon_inode:[pidfd]";

/// A pidfd: stored under [`super::PIDFD`], owner 0, tag = the description id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PidfdRecord {
    /// The pidfd's description (a [`PIDFD_PATH`] placeholder).
    pub desc: u32,
    /// The process it refers to: a live process of the image (restored, the pidfd refers to
    /// the restored process).
    pub pid: i32,
}
