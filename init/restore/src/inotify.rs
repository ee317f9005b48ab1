//! inotify instances ([`InotifyRecord`]): created in the restorer and given their watches
//! again by path, with the same watch descriptors. The kernel hands out watch descriptors in
//! increasing order (cyclically, never reusing a removed one until it wraps), so the watches
//! are added in ascending order and a gap (a watch removed before the dump) is filled by a
//! watch on a scratch memfd that is removed at once (its `IN_IGNORED` event read away). The
//! number the kernel would hand out next can be lower than before the dump (it continues after
//! the highest watch kept, not after the highest ever used).

use crate::plan::Plan;
use crate::{abi, Failures};
use seamless_image::records::InotifyRecord;
use seamless_sys::chain;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// Why an inotify instance could not be recreated.
#[derive(Debug, thiserror::Error)]
pub enum InotifyError {
    /// A system call failed.
    #[error("inotify file #{desc}: {what}")]
    Sys {
        /// Description id.
        desc: u32,
        /// Step.
        what: String,
        /// Failure.
        #[source]
        source: seamless_sys::SysError,
    },
    /// The kernel handed out another watch descriptor than the saved one.
    #[error("inotify file #{desc}: watch on {path} got descriptor {got}, saved as {want}")]
    Wd {
        /// Description id.
        desc: u32,
        /// Watched path.
        path: String,
        /// Saved descriptor.
        want: i32,
        /// What the kernel gave.
        got: i32,
    },
    /// The path names another file than the watched one.
    #[error("inotify file #{desc}: {path} is no longer the watched file (inode {ino}): refusing to watch another one")]
    Changed {
        /// Description id.
        desc: u32,
        /// Watched path.
        path: String,
        /// Saved inode.
        ino: u64,
    },
}

fn drain(fd: i32) {
    let mut buf = [0u8; 4096];
    while matches!(seamless_sys::tty::read_now(fd, &mut buf), Ok(n) if n > 0) {}
}

/// Recreates one instance with flags `flags`.
pub fn create(n: &InotifyRecord, flags: u32) -> Result<OwnedFd, InotifyError> {
    let desc = n.desc;
    let se = |what: String| move |e| InotifyError::Sys { desc, what, source: e };
    let fd = seamless_sys::notify::inotify_init(libc::IN_NONBLOCK).map_err(se("inotify_init1".into()))?;
    let raw = fd.as_raw_fd();
    let mut next = 1;
    for w in &n.watches {
        while next < w.wd {
            let m = seamless_sys::proc::memfd_create("seamless-inotify-gap").map_err(se("memfd_create".into()))?;
            let gap =
                seamless_sys::notify::add_watch(raw, &format!("/proc/self/fd/{}", m.as_raw_fd()), libc::IN_ATTRIB)
                    .map_err(se("watch filling a gap".into()))?;
            seamless_sys::notify::rm_watch(raw, gap).map_err(se("removing the gap watch".into()))?;
            drain(raw);
            next = gap + 1;
        }
        let md = std::fs::symlink_metadata(&w.path).ok();
        if md.is_none_or(|m| m.ino() != w.ino || m.dev() != w.dev) {
            return Err(InotifyError::Changed { desc, path: w.path.clone(), ino: w.ino });
        }
        let got = seamless_sys::notify::add_watch(raw, &w.path, w.mask | libc::IN_DONT_FOLLOW)
            .map_err(se(format!("watch {}", w.path)))?;
        if got != w.wd {
            return Err(InotifyError::Wd { desc, path: w.path.clone(), want: w.wd, got });
        }
        next = got + 1;
    }
    seamless_sys::proc::set_status_flags(raw, abi::signed(flags)).map_err(se("fcntl(F_SETFL)".into()))?;
    Ok(fd)
}

/// Recreates every inotify instance of the plan into `by_id`; one that cannot be recreated
/// gives up its unit.
pub fn open_all(plan: &Plan, by_id: &mut BTreeMap<u32, OwnedFd>, fails: &mut Failures) {
    for n in plan.inotify.values() {
        if fails.desc_failed(n.desc) {
            continue;
        }
        let flags = plan.descs.get(&n.desc).map(|d| d.flags).unwrap_or(0);
        match create(n, flags) {
            Ok(fd) => {
                by_id.insert(n.desc, fd);
            }
            Err(e) => fails.fail_desc(n.desc, chain(&e).to_string()),
        }
    }
}
