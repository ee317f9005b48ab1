//! Mounting and switching the root: `mount(2)` (including `MS_MOVE`), `umount2(2)` and
//! `chroot(2)`, with C strings built and checked here.

use crate::error::{SysError, SysResult};
use std::ffi::CString;
use std::io;
use std::path::Path;

pub use libc::{MS_BIND, MS_MOVE, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_RELATIME, MS_REMOUNT};

/// `MNT_DETACH` for [`umount`]: detach now, clean up when no longer busy.
pub const MNT_DETACH: i32 = libc::MNT_DETACH;

fn cstr(call: &'static str, s: &[u8], subject: &str) -> SysResult<CString> {
    CString::new(s).map_err(|_| SysError::new(call, subject, io::Error::from(io::ErrorKind::InvalidInput)))
}

fn path_cstr(call: &'static str, p: &Path) -> SysResult<CString> {
    use std::os::unix::ffi::OsStrExt;
    cstr(call, p.as_os_str().as_bytes(), &p.display().to_string())
}

/// `mount(source, target, fstype, flags, data)`. `fstype` and `data` may be `None`.
///
/// Man page: `mount(2)`.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> SysResult<()> {
    const CALL: &str = "mount";
    let subject = format!("{source} on {} ({})", target.display(), fstype.unwrap_or("-"));
    let src = cstr(CALL, source.as_bytes(), &subject)?;
    let tgt = path_cstr(CALL, target)?;
    let fs = fstype.map(|f| cstr(CALL, f.as_bytes(), &subject)).transpose()?;
    let dat = data.map(|d| cstr(CALL, d.as_bytes(), &subject)).transpose()?;
    // SAFETY: every pointer is either null or points to a NUL-terminated string owned by this
    // frame and alive for the duration of the call; the kernel only reads them.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            dat.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if rc != 0 {
        return Err(SysError::last(CALL, subject));
    }
    Ok(())
}

/// Moves the mount at `from` to `to` (`mount --move`).
///
/// Man page: `mount(2)` with `MS_MOVE`.
pub fn move_mount(from: &Path, to: &Path) -> SysResult<()> {
    use std::os::unix::ffi::OsStrExt;
    mount(&String::from_utf8_lossy(from.as_os_str().as_bytes()), to, None, MS_MOVE, None)
}

/// `umount2(target, flags)`.
///
/// Man page: `umount2(2)`.
pub fn umount(target: &Path, flags: i32) -> SysResult<()> {
    let tgt = path_cstr("umount2", target)?;
    // SAFETY: `tgt` is a valid NUL-terminated string alive for the call.
    let rc = unsafe { libc::umount2(tgt.as_ptr(), flags) };
    if rc != 0 {
        return Err(SysError::last("umount2", target.display().to_string()));
    }
    Ok(())
}

/// `chroot(path)`. The caller changes directory afterwards.
///
/// Man page: `chroot(2)`.
pub fn chroot(path: &Path) -> SysResult<()> {
    let p = path_cstr("chroot", path)?;
    // SAFETY: `p` is a valid NUL-terminated string alive for the call.
    let rc = unsafe { libc::chroot(p.as_ptr()) };
    if rc != 0 {
        return Err(SysError::last("chroot", path.display().to_string()));
    }
    Ok(())
}

/// The device number (`st_dev`) of the filesystem holding `path`, without following a final
/// symlink. Used to stay on one filesystem while deleting the initramfs.
///
/// Man page: `lstat(2)` (`st_dev`).
pub fn device_of(path: &Path) -> SysResult<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).map(|m| m.dev()).map_err(|e| SysError::new("lstat", path.display().to_string(), e))
}
