//! Making a FIFO by name (`mkfifo(3)`, which the standard library lacks), for restoring a
//! FIFO that was deleted while open.

use crate::error::check;
use crate::{SysError, SysResult};
use std::os::unix::ffi::OsStrExt;

/// `mkfifo(path, mode)`: fails with `EEXIST` when the name is taken (it never follows or
/// replaces an existing name).
/// Man page: `mkfifo(3)`.
pub fn mkfifo(path: &std::path::Path, mode: u32) -> SysResult<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SysError::new("mkfifo", path.display().to_string(), std::io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: `c` is a NUL-terminated path; the call reads it only.
    let r = unsafe { libc::mkfifo(c.as_ptr(), mode) };
    check(libc::c_long::from(r), "mkfifo", || path.display().to_string()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn makes_a_fifo_and_never_reuses_a_name() {
        let p = std::env::temp_dir().join(format!("seamless-sys-fifo.{}", std::process::id()));
        super::mkfifo(&p, 0o600).unwrap();
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_fifo());
        assert_eq!(super::mkfifo(&p, 0o600).unwrap_err().errno(), Some(libc::EEXIST));
        std::fs::remove_file(&p).unwrap();
    }
}
