//! Freezing and thawing filesystems (`FIFREEZE` / `FITHAW`) and syncing them.

use crate::error::{SysError, SysResult};
use std::os::fd::AsRawFd;
use std::path::Path;

/// `_IOWR('X', 119, int)`.
const FIFREEZE: libc::c_ulong = 0xC004_5877;
/// `_IOWR('X', 120, int)`.
const FITHAW: libc::c_ulong = 0xC004_5878;

fn ioctl_on(path: &Path, call: &'static str, request: libc::c_ulong) -> SysResult<()> {
    let subject = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| SysError::new("open", subject.clone(), e))?;
    // SAFETY: FIFREEZE and FITHAW take no argument (the kernel ignores the third parameter);
    // the descriptor is open for the duration of the call.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), request, 0) };
    if rc != 0 {
        return Err(SysError::last(call, subject));
    }
    Ok(())
}

/// Freezes the filesystem mounted at `mountpoint`: flushes it, makes it consistent on disk
/// (journal emptied) and blocks every new write until [`thaw`].
///
/// Man page: `ioctl(2)` `FIFREEZE`, in `ioctl_fs(2)` / `fsfreeze(8)`.
pub fn freeze(mountpoint: &Path) -> SysResult<()> {
    ioctl_on(mountpoint, "ioctl(FIFREEZE)", FIFREEZE)
}

/// Thaws a filesystem frozen with [`freeze`].
///
/// Man page: `ioctl(2)` `FITHAW`, in `ioctl_fs(2)` / `fsfreeze(8)`.
pub fn thaw(mountpoint: &Path) -> SysResult<()> {
    ioctl_on(mountpoint, "ioctl(FITHAW)", FITHAW)
}

/// `sync(2)`: schedules every dirty buffer of every filesystem for writing and waits.
///
/// Man page: `sync(2)`.
pub fn sync_all() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}
