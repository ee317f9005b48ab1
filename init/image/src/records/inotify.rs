//! inotify instances. The open file description stays a
//! [`FileKind::CharDev`](super::FileKind::CharDev) description with the placeholder path
//! [`INOTIFY_PATH`] (it carries the status flags); its watches are an [`InotifyRecord`]
//! (kind [`super::INOTIFY`]), without which a reader could not restore the description: the
//! kind is not ignorable.

use serde::{Deserialize, Serialize};

/// Path of the placeholder description of an inotify instance (what `/proc/PID/fd` shows).
pub const INOTIFY_PATH: &str = "anon_inode:inotify";

/// Most watches kept per instance.
pub const MAX_WATCHES: usize = 1 << 16;

/// The event and flag bits a watch mask may hold (`IN_ALL_EVENTS`, `IN_ONESHOT`,
/// `IN_EXCL_UNLINK`).
pub const MASK_BITS: u32 = 0x0000_0fff | 0x8000_0000 | 0x0400_0000;

/// One watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InotifyWatch {
    /// Watch descriptor, the same after the restore.
    pub wd: i32,
    /// Absolute path of the watched file or directory, added again by this path.
    pub path: String,
    /// Event mask with `IN_ONESHOT` and `IN_EXCL_UNLINK`.
    pub mask: u32,
    /// Inode number of the watched file at dump time.
    pub ino: u64,
    /// Device of the watched file at dump time (`st_dev`).
    pub dev: u64,
}

/// The watches of one inotify instance: stored under [`super::INOTIFY`], owner 0, tag = the
/// description id. The instance had no unread events (the dump refuses one that has).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InotifyRecord {
    /// The instance's description (a [`INOTIFY_PATH`] placeholder).
    pub desc: u32,
    /// Watches, ascending by watch descriptor.
    pub watches: Vec<InotifyWatch>,
}

impl InotifyRecord {
    /// What makes no sense in this record on its own, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.watches.len() > MAX_WATCHES {
            return Some(format!("{} watches, more than {MAX_WATCHES}", self.watches.len()));
        }
        let mut last = 0;
        for w in &self.watches {
            if w.wd <= last {
                return Some(format!("watch descriptor {} after {last}: not ascending from 1", w.wd));
            }
            last = w.wd;
            if !w.path.starts_with('/') || w.path.contains('\0') {
                return Some(format!("watch {}: path {:?} is not absolute", w.wd, w.path));
            }
            if w.mask & !MASK_BITS != 0 || w.mask & 0xfff == 0 {
                return Some(format!("watch {}: mask {:#x}", w.wd, w.mask));
            }
        }
        None
    }
}
