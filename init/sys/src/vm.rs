//! Copies between this process's memory and another's in one kernel copy (no bounce page,
//! unlike `/proc/PID/mem`): `process_vm_readv(2)`, `process_vm_writev(2)`.

use crate::error::{SysError, SysResult};

/// Reads up to `buf.len()` bytes at `remote` of process `pid` into `buf`; returns how many
/// (fewer when a page is unmapped or not readable there: the copy stops at it).
///
/// Man page: `process_vm_readv(2)`.
pub fn read(pid: i32, remote: u64, buf: &mut [u8]) -> SysResult<usize> {
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let far = libc::iovec { iov_base: remote as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: `local` describes `buf`, which is exclusively borrowed for the call; the kernel
    // only writes into it; the remote range is checked by the kernel against the other process.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &far, 1, 0) };
    if n < 0 {
        return Err(SysError::last("process_vm_readv", format!("pid {pid} at {remote:#x}+{:#x}", buf.len())));
    }
    Ok(n as usize)
}

/// Writes up to `bytes.len()` bytes of `bytes` at `remote` of process `pid`; returns how many
/// (fewer when a page is unmapped or not writable there: the copy stops at it).
///
/// Man page: `process_vm_writev(2)`.
pub fn write(pid: i32, remote: u64, bytes: &[u8]) -> SysResult<usize> {
    let local = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    let far = libc::iovec { iov_base: remote as *mut libc::c_void, iov_len: bytes.len() };
    // SAFETY: `local` describes `bytes`, borrowed for the call, which the kernel only reads;
    // the remote range is checked by the kernel against the other process.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &far, 1, 0) };
    if n < 0 {
        return Err(SysError::last("process_vm_writev", format!("pid {pid} at {remote:#x}+{:#x}", bytes.len())));
    }
    Ok(n as usize)
}
