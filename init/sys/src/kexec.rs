//! `kexec_file_load(2)` and the jump into the loaded kernel (`reboot(LINUX_REBOOT_CMD_KEXEC)`).

use crate::error::{SysError, SysResult};
use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `KEXEC_FILE_UNLOAD`: unload the currently loaded image.
pub const KEXEC_FILE_UNLOAD: libc::c_ulong = 0x1;
/// `KEXEC_FILE_ON_CRASH`: load a crash kernel (not used by seamless).
pub const KEXEC_FILE_ON_CRASH: libc::c_ulong = 0x2;
/// `KEXEC_FILE_NO_INITRAMFS`: no initramfs is passed.
pub const KEXEC_FILE_NO_INITRAMFS: libc::c_ulong = 0x4;

/// Loads `kernel` (and `initrd`, if any) with command line `cmdline` for a later
/// [`kexec_reboot`]. The kernel checks the image format and, when required, its signature.
///
/// Man page: `kexec_file_load(2)`.
pub fn kexec_file_load(kernel: &Path, initrd: Option<&Path>, cmdline: &str) -> SysResult<()> {
    const CALL: &str = "kexec_file_load";
    let subject = kernel.display().to_string();
    let k = std::fs::File::open(kernel).map_err(|e| SysError::new("open", subject.clone(), e))?;
    let i = initrd
        .map(|p| std::fs::File::open(p).map_err(|e| SysError::new("open", p.display().to_string(), e)))
        .transpose()?;
    let cmd = CString::new(cmdline)
        .map_err(|_| SysError::new(CALL, subject.clone(), io::Error::from(io::ErrorKind::InvalidInput)))?;
    let flags = if i.is_none() { KEXEC_FILE_NO_INITRAMFS } else { 0 };
    let initrd_fd = i.as_ref().map_or(-1, |f| f.as_raw_fd());
    // The length passed includes the terminating NUL, as the kernel expects.
    let len = cmd.as_bytes_with_nul().len() as libc::c_ulong;
    // SAFETY: the descriptors are open (owned by `k` and `i`, alive until after the call), the
    // command line is NUL-terminated with its length including the NUL, and the kernel only
    // reads from it during the call.
    let rc = unsafe { libc::syscall(libc::SYS_kexec_file_load, k.as_raw_fd(), initrd_fd, len, cmd.as_ptr(), flags) };
    if rc != 0 {
        return Err(SysError::last(CALL, subject));
    }
    Ok(())
}

/// Unloads the loaded kexec image, if any.
///
/// Man page: `kexec_file_load(2)` with `KEXEC_FILE_UNLOAD`.
pub fn kexec_file_unload() -> SysResult<()> {
    // SAFETY: with KEXEC_FILE_UNLOAD the kernel ignores the descriptors and the command line;
    // a null pointer with length 0 is what it expects.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            -1,
            -1,
            0 as libc::c_ulong,
            std::ptr::null::<libc::c_char>(),
            KEXEC_FILE_UNLOAD,
        )
    };
    if rc != 0 {
        return Err(SysError::last("kexec_file_load(KEXEC_FILE_UNLOAD)", "loaded image"));
    }
    Ok(())
}

/// Jumps into the loaded kernel. Returns only on failure (no image loaded, no permission).
/// Filesystems are NOT synced here: the caller syncs and freezes them first.
///
/// Man page: `reboot(2)` with `LINUX_REBOOT_CMD_KEXEC`.
pub fn kexec_reboot() -> SysError {
    // SAFETY: reboot(2) takes an integer command; on success it does not return.
    unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC) };
    SysError::last("reboot(LINUX_REBOOT_CMD_KEXEC)", "loaded kernel")
}
