//! Loading kernel modules from files with `finit_module(2)`.

use crate::error::{SysError, SysResult};
use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `MODULE_INIT_COMPRESSED_FILE`: the file is compressed (xz, zstd or gzip) and the kernel
/// decompresses it itself (needs `CONFIG_MODULE_DECOMPRESS`).
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// How a load ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The module was inserted.
    Inserted,
    /// A module of that name is already loaded (`EEXIST`).
    AlreadyLoaded,
}

/// Loads the module in `path` with parameters `params` (e.g. `""`). Compressed files
/// (`.ko.xz`, `.ko.zst`, `.ko.gz`) are handed to the kernel with
/// [`MODULE_INIT_COMPRESSED_FILE`].
///
/// Man page: `finit_module(2)`.
pub fn load_module_file(path: &Path, params: &str) -> SysResult<Loaded> {
    const CALL: &str = "finit_module";
    let subject = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| SysError::new("open", subject.clone(), e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let compressed = [".ko.xz", ".ko.zst", ".ko.gz"].iter().any(|s| name.ends_with(s));
    let flags = if compressed { MODULE_INIT_COMPRESSED_FILE } else { 0 };
    let params = CString::new(params)
        .map_err(|_| SysError::new(CALL, subject.clone(), io::Error::from(io::ErrorKind::InvalidInput)))?;
    // SAFETY: finit_module takes an open file descriptor (kept alive by `file` for the whole
    // call), a NUL-terminated parameter string alive for the call, and integer flags. It does
    // not retain the pointer.
    let rc =
        unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), libc::c_ulong::from(flags)) };
    if rc == 0 {
        return Ok(Loaded::Inserted);
    }
    let err = SysError::last(CALL, subject);
    if err.errno() == Some(libc::EEXIST) {
        return Ok(Loaded::AlreadyLoaded);
    }
    Err(err)
}
