//! The kernel keyring, for dm-crypt keys given by reference (`:64:logon:cryptsetup:...` in a
//! table line, as cryptsetup does for LUKS2): `add_key(2)` of a `logon` key (never readable
//! from user space) into the calling thread's keyring, where dm-crypt's `request_key` finds
//! it while the table is loaded, and `keyctl(KEYCTL_INVALIDATE)` right after.

use crate::secret::Secret;
use crate::{SysError, SysResult};
use std::ffi::CString;

/// `KEY_SPEC_THREAD_KEYRING`.
const KEY_SPEC_THREAD_KEYRING: libc::c_long = -1;
/// `KEYCTL_INVALIDATE`.
const KEYCTL_INVALIDATE: libc::c_long = 21;

/// Adds `key` as a `logon` key named `description` (`prefix:rest`) to the calling thread's
/// keyring; returns its serial number.
///
/// Man page: `add_key(2)`.
pub fn add_logon_key(description: &str, key: &Secret) -> SysResult<i32> {
    let bad = || {
        SysError::new(
            "add_key(logon)",
            description.to_string(),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad description"),
        )
    };
    let desc = CString::new(description).map_err(|_| bad())?;
    if !description.contains(':') {
        return Err(bad());
    }
    // SAFETY: the type and description are NUL-terminated strings and the payload pointer
    // and length describe `key`'s bytes; all live for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"logon".as_ptr(),
            desc.as_ptr(),
            key.as_bytes().as_ptr(),
            key.len(),
            KEY_SPEC_THREAD_KEYRING,
        )
    };
    crate::error::check(r, "add_key(logon)", || description.to_string()).map(|id| id as i32)
}

/// Invalidates key `id` (`KEYCTL_INVALIDATE`): the kernel unlinks it everywhere and frees it.
///
/// Man page: `keyctl(2)`.
pub fn invalidate(id: i32) -> SysResult<()> {
    // SAFETY: KEYCTL_INVALIDATE takes one integer argument; no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, libc::c_long::from(id)) };
    crate::error::check(r, "keyctl(KEYCTL_INVALIDATE)", || format!("key {id}")).map(|_| ())
}
