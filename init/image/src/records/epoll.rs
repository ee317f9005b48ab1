//! epoll instances and their watches: the [`FileKind::Epoll`](super::FileKind::Epoll) variant
//! of an open file description, stored inside its [`FileDesc`](super::FileDesc) record.

use serde::{Deserialize, Serialize};

/// One watched descriptor of an epoll instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollItem {
    /// Descriptor number in [`EpollRecord::owner`] the watch was registered with.
    pub tfd: i32,
    /// Description id the watch refers to.
    pub target: u32,
    /// Event mask (`EPOLLIN`, `EPOLLET`, ...).
    pub events: u32,
    /// User data.
    pub data: u64,
}

/// An epoll instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollRecord {
    /// Process whose descriptor numbers the `tfd`s are (the watches are added there).
    pub owner: i32,
    /// Watches.
    pub items: Vec<EpollItem>,
}
