//! File locks taken again in the restored process, through its own descriptors (installed
//! just before): `flock`, POSIX record locks (owned by the process, so they must be taken by
//! it), OFD locks and leases (owned by the open file description; a lease also makes the
//! taking process the description's owner for the lease-break signal, as `F_SETLEASE` did in
//! the original). Every call is non-blocking: the locks coexisted at the dump, so none of them
//! conflicts with another, and a conflict (someone else took the file meanwhile) fails the
//! process's tree instead of waiting.

use crate::tracee::Tracee;
use crate::RestoreError;
use seamless_image::records::{FileLock, LockKind};

const F_OFD_SETLK: u64 = 37;
/// `F_RDLCK` and `F_WRLCK` (`fcntl.h`), as `struct flock`'s `short l_type` and as the
/// `F_SETLEASE` argument.
const F_RDLCK: i16 = 0;
const F_WRLCK: i16 = 1;
const SEEK_SET: i16 = 0;

/// A `struct flock` (x86-64: type, whence, 4 bytes padding, start, len, pid, 4 bytes padding).
fn flock_struct(l: &FileLock) -> [u8; 32] {
    let mut b = [0u8; 32];
    let ty = if l.write { F_WRLCK } else { F_RDLCK };
    b[0..2].copy_from_slice(&ty.to_le_bytes());
    b[2..4].copy_from_slice(&SEEK_SET.to_le_bytes());
    b[8..16].copy_from_slice(&l.start.to_le_bytes());
    b[16..24].copy_from_slice(&l.len.to_le_bytes());
    b
}

/// Takes every lock of `locks` in `c` (after its descriptors are installed, while it still
/// has the restorer's credentials: a lease needs the file's owner or `CAP_LEASE`).
pub fn take<T: Tracee + ?Sized>(c: &mut T, locks: &[FileLock]) -> Result<(), RestoreError> {
    for l in locks {
        let fd = crate::abi::int(l.fd);
        let what = format!("taking file lock {}", l.describe());
        match l.kind {
            LockKind::Flock => {
                let op = if l.write { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
                c.call_for(what, "flock", libc::SYS_flock, [fd, crate::abi::int(op), 0, 0, 0, 0])?;
            }
            LockKind::Posix | LockKind::Ofd => {
                let cmd = if l.kind == LockKind::Posix { crate::abi::int(libc::F_SETLK) } else { F_OFD_SETLK };
                let a = c.scratch().put(c, &flock_struct(l))?;
                c.call_for(what, "fcntl(F_SETLK)", libc::SYS_fcntl, [fd, cmd, a, 0, 0, 0])?;
            }
            LockKind::Lease => {
                let ty = u64::from(if l.write { F_WRLCK } else { F_RDLCK }.unsigned_abs());
                let cmd = crate::abi::int(libc::F_SETLEASE);
                c.call_for(what, "fcntl(F_SETLEASE)", libc::SYS_fcntl, [fd, cmd, ty, 0, 0, 0])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracee::fake::Recorder;

    fn lock(fd: i32, kind: LockKind, write: bool, start: u64, len: u64) -> FileLock {
        FileLock { fd, kind, write, start, len }
    }

    #[test]
    fn each_kind_is_taken_with_its_own_call_without_waiting() {
        let mut t = Recorder::new(42);
        let locks = [
            lock(3, LockKind::Flock, true, 0, 0),
            lock(4, LockKind::Flock, false, 0, 0),
            lock(5, LockKind::Posix, true, 100, 50),
            lock(6, LockKind::Ofd, false, 7, 0),
            lock(7, LockKind::Lease, false, 0, 0),
        ];
        take(&mut t, &locks).unwrap();
        let calls = t.calls();
        assert_eq!(calls.len(), 5);
        assert_eq!(calls[0].args[..2], [3, (libc::LOCK_EX | libc::LOCK_NB) as u64]);
        assert_eq!(calls[1].args[..2], [4, (libc::LOCK_SH | libc::LOCK_NB) as u64]);
        assert_eq!(calls[2].args[..2], [5, libc::F_SETLK as u64]);
        let s = calls[2].mem(calls[2].args[2], 32);
        assert_eq!(i32::from(i16::from_le_bytes([s[0], s[1]])), libc::F_WRLCK);
        assert_eq!(u64::from_le_bytes(s[8..16].try_into().unwrap()), 100);
        assert_eq!(u64::from_le_bytes(s[16..24].try_into().unwrap()), 50);
        assert_eq!(calls[3].args[..2], [6, 37]);
        let s = calls[3].mem(calls[3].args[2], 32);
        assert_eq!(i32::from(i16::from_le_bytes([s[0], s[1]])), libc::F_RDLCK);
        assert_eq!(s[24..28], [0, 0, 0, 0], "l_pid must be 0 for OFD locks");
        assert_eq!(calls[4].args[..3], [7, libc::F_SETLEASE as u64, libc::F_RDLCK as u64]);
    }

    #[test]
    fn a_conflict_fails_naming_the_lock() {
        let mut t = Recorder::new(42);
        t.fail.push(("flock", libc::EWOULDBLOCK));
        let e = take(&mut t, &[lock(9, LockKind::Flock, true, 0, 0)]).unwrap_err();
        assert!(seamless_sys::chain(&e).to_string().contains("fd 9 flock write"), "{e}");
    }
}
