//! Process-level wrappers: `clone3` with `set_tid`, pidfds, `kcmp`, `tee`, process groups
//! and sessions, signals, resource limits, capabilities.

use crate::error::check;
use crate::{SysError, SysResult};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// This process's pid as the kernel's `pid_t` (`getpid(2)`).
///
/// Man page: `getpid(2)`.
pub fn own_pid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// Result of a fork-like call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the parent, with the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// `clone3` without `CLONE_VM` (a fork) whose child gets exactly `pid` (via `set_tid`) in the
/// caller's pid namespace, with `exit_signal` SIGCHLD.
///
/// The caller must be single-threaded (as after any fork, the child only has the calling
/// thread); the child should only do simple work (system calls, no allocation-heavy code that
/// could depend on locks held by vanished threads) and end with [`exit_now`].
///
/// Man page: `clone3(2)` with `set_tid`.
pub fn fork_with_pid(pid: i32) -> SysResult<Forked> {
    fork_with_pid_as(pid, false)
}

/// [`fork_with_pid`], where `sibling` makes the new process a child of the caller's parent
/// (`CLONE_PARENT`) instead of the caller's: a restored tree gets back the parent that ran
/// the restore, and does not lose its parent when the restorer exits. Not possible for
/// PID 1, which has no parent.
///
/// Man page: `clone3(2)` with `set_tid` (and `CLONE_PARENT`).
pub fn fork_with_pid_as(pid: i32, sibling: bool) -> SysResult<Forked> {
    let tids: [libc::pid_t; 1] = [pid];
    // SAFETY: `clone_args` is plain old data; zero is a valid value for every field.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    if sibling {
        // The exit signal is then the caller's own; clone3 wants 0 here.
        args.flags = libc::CLONE_PARENT as u64;
    } else {
        args.exit_signal = libc::SIGCHLD as u64;
    }
    args.set_tid = tids.as_ptr() as u64;
    args.set_tid_size = 1;
    // SAFETY: without CLONE_VM the child gets a copy of the address space, so continuing on the
    // same stack is sound (this is what fork does); `args` and `tids` outlive the call.
    let r = unsafe {
        libc::syscall(libc::SYS_clone3, &mut args as *mut libc::clone_args, std::mem::size_of::<libc::clone_args>())
    };
    match check(r, "clone3(set_tid)", || format!("pid {pid}"))? {
        0 => Ok(Forked::Child),
        p => Ok(Forked::Parent(p as i32)),
    }
}

/// `_exit(code)`: ends the process at once, without running destructors or atexit handlers.
///
/// Man page: `_exit(2)`.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// `pidfd_open(pid, 0)`.
///
/// Man page: `pidfd_open(2)`.
pub fn pidfd_open(pid: i32) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = check(r, "pidfd_open", || format!("pid {pid}"))?;
    // SAFETY: the kernel just returned this new descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(pidfd, fd, 0)`: a duplicate of another process's descriptor (close-on-exec set).
///
/// Man page: `pidfd_getfd(2)`.
pub fn pidfd_getfd(pidfd: &OwnedFd, fd: RawFd, pid: i32) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with scalar arguments; `pidfd` is a live descriptor.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    let nfd = check(r, "pidfd_getfd", || format!("pid {pid} fd {fd}"))?;
    // SAFETY: the kernel just returned this new descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(nfd as RawFd) })
}

/// `KCMP_FILE`: whether two descriptors of two processes refer to the same open file description.
///
/// Man page: `kcmp(2)` with `KCMP_FILE`.
pub fn kcmp_file(pid1: i32, fd1: RawFd, pid2: i32, fd2: RawFd) -> SysResult<bool> {
    const KCMP_FILE: libc::c_int = 0;
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1 as libc::c_ulong, fd2 as libc::c_ulong) };
    Ok(check(r, "kcmp(KCMP_FILE)", || format!("pid {pid1} fd {fd1} / pid {pid2} fd {fd2}"))? == 0)
}

/// `KCMP_EPOLL_TFD`: whether descriptor `fd1` of `pid1` is the file of the `toff`-th watch
/// registered under descriptor number `tfd` in epoll descriptor `epfd` of `pid2` (the watch
/// keeps its number after that descriptor is closed).
///
/// Man page: `kcmp(2)` with `KCMP_EPOLL_TFD`.
pub fn kcmp_epoll_tfd(pid1: i32, fd1: RawFd, pid2: i32, epfd: RawFd, tfd: RawFd, toff: u32) -> SysResult<bool> {
    const KCMP_EPOLL_TFD: libc::c_int = 7;
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot { efd: epfd as u32, tfd: tfd as u32, toff };
    // SAFETY: the kernel reads one struct kcmp_epoll_slot through the pointer, which is valid
    // for the call.
    let r = unsafe {
        libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_EPOLL_TFD, fd1 as libc::c_ulong, &slot as *const Slot)
    };
    Ok(check(r, "kcmp(KCMP_EPOLL_TFD)", || format!("pid {pid1} fd {fd1} / pid {pid2} epoll fd {epfd} tfd {tfd}"))? == 0)
}

/// `KCMP_VM`: whether two processes share one address space (`CLONE_VM` without
/// `CLONE_THREAD`, e.g. a `vfork` child before its `exec`).
///
/// Man page: `kcmp(2)` with `KCMP_VM`.
pub fn kcmp_vm(pid1: i32, pid2: i32) -> SysResult<bool> {
    const KCMP_VM: libc::c_int = 1;
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_VM, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    Ok(check(r, "kcmp(KCMP_VM)", || format!("pid {pid1} / pid {pid2}"))? == 0)
}

/// `tee(fd_in, fd_out, len, SPLICE_F_NONBLOCK)`: copies pipe contents without consuming them.
///
/// Man page: `tee(2)`.
pub fn tee(fd_in: RawFd, fd_out: RawFd, len: usize) -> SysResult<usize> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::tee(fd_in, fd_out, len, libc::SPLICE_F_NONBLOCK) };
    Ok(check(r as libc::c_long, "tee", || format!("fd {fd_in} -> fd {fd_out}"))? as usize)
}

/// `ioctl(fd, FIONREAD)`: bytes waiting in a pipe.
///
/// Man page: `ioctl(2)` `FIONREAD`, in `pipe(7)`.
pub fn fionread(fd: RawFd) -> SysResult<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n as *mut libc::c_int) };
    check(r as libc::c_long, "ioctl(FIONREAD)", || format!("fd {fd}"))?;
    Ok(n as usize)
}

/// `fcntl(fd, F_GETPIPE_SZ)`.
///
/// Man page: `fcntl(2)` `F_GETPIPE_SZ`.
pub fn pipe_size(fd: RawFd) -> SysResult<usize> {
    // SAFETY: plain fcntl with scalar arguments.
    let r = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    Ok(check(r as libc::c_long, "fcntl(F_GETPIPE_SZ)", || format!("fd {fd}"))? as usize)
}

/// `fcntl(fd, F_SETPIPE_SZ, size)`.
///
/// Man page: `fcntl(2)` `F_SETPIPE_SZ`.
pub fn set_pipe_size(fd: RawFd, size: usize) -> SysResult<()> {
    // SAFETY: plain fcntl with scalar arguments.
    let r = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size as libc::c_int) };
    check(r as libc::c_long, "fcntl(F_SETPIPE_SZ)", || format!("fd {fd}")).map(|_| ())
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
///
/// Man page: `pipe2(2)`.
pub fn pipe() -> SysResult<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    check(r as libc::c_long, "pipe2", String::new)?;
    // SAFETY: the kernel just returned these descriptors; we own them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`.
///
/// Man page: `prctl(2)` `PR_SET_CHILD_SUBREAPER`.
pub fn set_child_subreaper() -> SysResult<()> {
    // SAFETY: plain prctl with scalar arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    check(r as libc::c_long, "prctl(PR_SET_CHILD_SUBREAPER)", String::new).map(|_| ())
}

/// `prctl(PR_SET_PDEATHSIG, sig)`.
///
/// Man page: `prctl(2)` `PR_SET_PDEATHSIG`.
pub fn set_parent_death_signal(sig: i32) -> SysResult<()> {
    // SAFETY: plain prctl with scalar arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    check(r as libc::c_long, "prctl(PR_SET_PDEATHSIG)", String::new).map(|_| ())
}

/// `kill(pid, sig)`.
///
/// Man page: `kill(2)`.
pub fn kill(pid: i32, sig: i32) -> SysResult<()> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::kill(pid, sig) };
    check(r as libc::c_long, "kill", || format!("pid {pid} signal {sig}")).map(|_| ())
}

/// `tgkill(tgid, tid, sig)`: a signal to one thread.
///
/// Man page: `tgkill(2)`.
pub fn tgkill(tgid: i32, tid: i32, sig: i32) -> SysResult<()> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) };
    check(r, "tgkill", || format!("pid {tgid} thread {tid} signal {sig}")).map(|_| ())
}

/// `setsid()`.
///
/// Man page: `setsid(2)`.
pub fn setsid() -> SysResult<i32> {
    // SAFETY: no arguments.
    let r = unsafe { libc::setsid() };
    Ok(check(r as libc::c_long, "setsid", String::new)? as i32)
}

/// `setpgid(pid, pgid)`.
///
/// Man page: `setpgid(2)`.
pub fn setpgid(pid: i32, pgid: i32) -> SysResult<()> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::setpgid(pid, pgid) };
    check(r as libc::c_long, "setpgid", || format!("pid {pid} pgid {pgid}")).map(|_| ())
}

/// Joins process group `pgid` (`setpgid(0, pgid)`) without allocating (for a freshly forked
/// child of a possibly multi-threaded process): whether it worked.
///
/// Man page: `setpgid(2)`.
pub fn join_group(pgid: i32) -> bool {
    // SAFETY: plain syscall with scalar arguments.
    unsafe { libc::setpgid(0, pgid) == 0 }
}

/// This process's process group and session (`getpgid(0)`, `getsid(0)`), without allocating.
///
/// Man page: `getpgid(2)`, `getsid(2)`.
pub fn own_group_and_session() -> (i32, i32) {
    // SAFETY: plain syscalls with scalar arguments.
    unsafe { (libc::getpgid(0), libc::getsid(0)) }
}

/// Resets signal `sig` to its default action (used by helpers before re-raising a fatal signal).
///
/// Man page: `signal(2)` with `SIG_DFL`.
pub fn default_signal(sig: i32) -> SysResult<()> {
    // SAFETY: installing SIG_DFL involves no handler code.
    let r = unsafe { libc::signal(sig, libc::SIG_DFL) };
    if r == libc::SIG_ERR {
        return Err(SysError::last("signal(SIG_DFL)", format!("signal {sig}")));
    }
    Ok(())
}

/// Blocks until a signal arrives (`pause()`).
///
/// Man page: `pause(2)`.
pub fn pause() {
    // SAFETY: no arguments.
    unsafe { libc::pause() };
}

/// `close_range(first, ~0, 0)`: closes every descriptor from `first` up.
///
/// Man page: `close_range(2)`.
pub fn close_from(first: u32) -> SysResult<()> {
    // SAFETY: plain syscall with scalar arguments; callers own the descriptors being closed.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    check(r, "close_range", || format!("from fd {first}")).map(|_| ())
}

/// `dup2(old, new)` without close-on-exec on the new descriptor.
///
/// Man page: `dup2(2)`.
pub fn dup2(old: RawFd, new: RawFd) -> SysResult<()> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::dup2(old, new) };
    check(r as libc::c_long, "dup2", || format!("fd {old} -> fd {new}")).map(|_| ())
}

/// One resource limit (soft, hard).
///
/// Man page: `prlimit(2)` (`prlimit64`).
pub fn getrlimit_of(pid: i32, resource: u32) -> SysResult<(u64, u64)> {
    // SAFETY: rlimit is plain old data.
    let mut old: libc::rlimit64 = unsafe { std::mem::zeroed() };
    // SAFETY: `old` is valid and writable; new limit pointer is null (read only).
    let r = unsafe { libc::prlimit64(pid, resource as _, std::ptr::null(), &mut old) };
    check(r as libc::c_long, "prlimit64", || format!("pid {pid} resource {resource}"))?;
    Ok((old.rlim_cur, old.rlim_max))
}

/// Sets one resource limit of `pid`.
///
/// Man page: `prlimit(2)` (`prlimit64`).
pub fn setrlimit_of(pid: i32, resource: u32, soft: u64, hard: u64) -> SysResult<()> {
    let new = libc::rlimit64 { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `new` is valid for reading; the old-limit pointer is null.
    let r = unsafe { libc::prlimit64(pid, resource as _, &new, std::ptr::null_mut()) };
    check(r as libc::c_long, "prlimit64", || format!("pid {pid} resource {resource}")).map(|_| ())
}

/// Capability sets of a thread: (effective, permitted, inheritable), 64 bits each.
///
/// Man page: `capget(2)`.
pub fn capget(tid: i32) -> SysResult<(u64, u64, u64)> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header { version: 0x20080522, pid: tid };
    let mut d = [Data::default(); 2];
    // SAFETY: header and the two-element data array (version 3 layout) are valid and writable.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) };
    check(r, "capget", || format!("tid {tid}"))?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(d[0].effective, d[1].effective),
        join(d[0].permitted, d[1].permitted),
        join(d[0].inheritable, d[1].inheritable),
    ))
}

/// Raw errno of the last failure, for callers that probe.
///
/// Man page: `errno(3)`.
pub fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `fcntl(fd, F_SETFL, flags)` (only the flags the kernel lets F_SETFL change take effect).
///
/// Man page: `fcntl(2)` `F_SETFL`.
pub fn set_status_flags(fd: RawFd, flags: i32) -> SysResult<()> {
    // SAFETY: plain fcntl with scalar arguments.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    check(r as libc::c_long, "fcntl(F_SETFL)", || format!("fd {fd}")).map(|_| ())
}

/// `memfd_create(name, MFD_CLOEXEC)`.
///
/// Man page: `memfd_create(2)`.
pub fn memfd_create(name: &str) -> SysResult<OwnedFd> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| SysError::new("memfd_create", name, io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let r = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
    let fd = check(r as libc::c_long, "memfd_create", || name.to_string())?;
    // SAFETY: the kernel just returned this new descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Maps `len` bytes of shared anonymous memory (`MAP_SHARED | MAP_ANONYMOUS`, read-write) in
/// the calling process and returns its address. The mapping is never unmapped by this crate;
/// it is only accessed through `/proc/self/mem` and `/proc/self/map_files`, so no Rust
/// reference to it exists.
///
/// Man page: `mmap(2)` with `MAP_SHARED | MAP_ANONYMOUS`.
pub fn map_shared_anon(len: usize) -> SysResult<u64> {
    // SAFETY: a fresh anonymous mapping at a kernel-chosen address cannot alias existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(SysError::last("mmap(MAP_SHARED|MAP_ANONYMOUS)", format!("{len} bytes")));
    }
    Ok(p as u64)
}

/// `tcdrain(fd)` when `fd` is a terminal: waits until its output has been sent (a serial
/// console's last lines before a kexec). Not a terminal: nothing to do.
///
/// Man page: `tcdrain(3)`, `isatty(3)`.
pub fn drain_tty(fd: RawFd) {
    // SAFETY: isatty and tcdrain take a descriptor number and no pointers.
    unsafe {
        if libc::isatty(fd) == 1 {
            libc::tcdrain(fd);
        }
    }
}
