//! ptrace wrappers: seize/interrupt/detach, register sets (read and written by the
//! architecture layer, [`crate::arch`]), signal masks, pending-signal peeking, rseq
//! configuration, and waiting for traced threads.
//!
//! The general registers travel as [`Regs`], an array of words in the architecture's own
//! order, so callers need no `libc` types.

use crate::{SysError, SysResult};
use std::io;

pub use crate::arch::Regs;

/// `PTRACE_O_TRACECLONE`.
pub const O_TRACECLONE: u32 = 0x8;
/// `PTRACE_O_EXITKILL`.
pub const O_EXITKILL: u32 = 0x100000;
/// `PTRACE_EVENT_STOP`: the stop reported after `PTRACE_INTERRUPT` or for a group stop.
pub const EVENT_STOP: i32 = 128;
/// `PTRACE_EVENT_CLONE`.
pub const EVENT_CLONE: i32 = 3;

const PTRACE_SEIZE: u32 = 0x4206;
const PTRACE_INTERRUPT: u32 = 0x4207;
const PTRACE_PEEKSIGINFO: u32 = 0x4209;
const PTRACE_GETSIGMASK: u32 = 0x420a;
const PTRACE_SETSIGMASK: u32 = 0x420b;
const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;

pub(crate) fn subject(tid: i32) -> String {
    format!("tid {tid}")
}

/// `ptrace(req, tid, addr, data)` with `addr` and `data` passed as the kernel takes them.
///
/// # Safety
/// Where request `req` reads or writes memory through `addr` or `data`, that integer must be
/// the address of a live buffer of the size the request uses, valid for the whole call.
unsafe fn raw(req: u32, tid: i32, addr: usize, data: usize) -> Result<libc::c_long, io::Error> {
    // SAFETY: the caller guarantees that whatever `addr`/`data` point to for this request is
    // live and large enough; scalar arguments are read as integers.
    let r = unsafe { libc::ptrace(req as libc::c_uint, tid, addr as *mut libc::c_void, data as *mut libc::c_void) };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(0) {
            return Err(e);
        }
    }
    Ok(r)
}

/// `PTRACE_SEIZE` with the given `PTRACE_O_*` options: attaches without stopping the thread.
///
/// Man page: `ptrace(2)`.
pub fn seize(tid: i32, options: u32) -> SysResult<()> {
    // SAFETY: this request takes only scalar arguments.
    unsafe { raw(PTRACE_SEIZE, tid, 0, options as usize) }
        .map(|_| ())
        .map_err(|e| SysError::new("ptrace(PTRACE_SEIZE)", subject(tid), e))
}

/// `PTRACE_INTERRUPT`: asks a seized thread to stop (reported as [`EVENT_STOP`]).
///
/// Man page: `ptrace(2)`.
pub fn interrupt(tid: i32) -> SysResult<()> {
    // SAFETY: this request takes only scalar arguments.
    unsafe { raw(PTRACE_INTERRUPT, tid, 0, 0) }
        .map(|_| ())
        .map_err(|e| SysError::new("ptrace(PTRACE_INTERRUPT)", subject(tid), e))
}

/// `PTRACE_DETACH`, delivering `sig` (0 for none).
///
/// Man page: `ptrace(2)`.
pub fn detach(tid: i32, sig: i32) -> SysResult<()> {
    // SAFETY: this request takes only scalar arguments.
    unsafe { raw(libc::PTRACE_DETACH, tid, 0, sig as usize) }
        .map(|_| ())
        .map_err(|e| SysError::new("ptrace(PTRACE_DETACH)", subject(tid), e))
}

/// `PTRACE_CONT`, delivering `sig` (0 for none).
///
/// Man page: `ptrace(2)`.
pub fn cont(tid: i32, sig: i32) -> SysResult<()> {
    // SAFETY: this request takes only scalar arguments.
    unsafe { raw(libc::PTRACE_CONT, tid, 0, sig as usize) }
        .map(|_| ())
        .map_err(|e| SysError::new("ptrace(PTRACE_CONT)", subject(tid), e))
}

/// `PTRACE_SINGLESTEP`.
///
/// Man page: `ptrace(2)`.
pub fn singlestep(tid: i32) -> SysResult<()> {
    // SAFETY: this request takes only scalar arguments.
    unsafe { raw(libc::PTRACE_SINGLESTEP, tid, 0, 0) }
        .map(|_| ())
        .map_err(|e| SysError::new("ptrace(PTRACE_SINGLESTEP)", subject(tid), e))
}

/// `PTRACE_GETEVENTMSG` (e.g. the new thread's id after [`EVENT_CLONE`]).
///
/// Man page: `ptrace(2)`.
pub fn event_msg(tid: i32) -> SysResult<u64> {
    let mut v: libc::c_ulong = 0;
    // SAFETY: the pointers point into buffers of this frame, sized for the request.
    unsafe { raw(libc::PTRACE_GETEVENTMSG, tid, 0, &mut v as *mut libc::c_ulong as usize) }
        .map_err(|e| SysError::new("ptrace(PTRACE_GETEVENTMSG)", subject(tid), e))?;
    Ok(v as u64)
}

pub(crate) fn getregset(tid: i32, nt: usize, buf: &mut [u8], call: &'static str) -> SysResult<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: the pointers point into buffers of this frame, sized for the request.
    unsafe { raw(libc::PTRACE_GETREGSET, tid, nt, &mut iov as *mut libc::iovec as usize) }
        .map_err(|e| SysError::new(call, subject(tid), e))?;
    Ok(iov.iov_len)
}

pub(crate) fn setregset(tid: i32, nt: usize, buf: &[u8], call: &'static str) -> SysResult<()> {
    // The kernel only reads through this iovec for SETREGSET.
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: the pointers point into buffers of this frame, sized for the request.
    unsafe { raw(libc::PTRACE_SETREGSET, tid, nt, &mut iov as *mut libc::iovec as usize) }
        .map_err(|e| SysError::new(call, subject(tid), e))?;
    Ok(())
}

/// Reads the general registers ([`crate::arch::read_regs`]).
///
/// Man page: `ptrace(2)`.
pub fn get_regs(tid: i32) -> SysResult<Regs> {
    crate::arch::read_regs(tid)
}

/// Writes the general registers ([`crate::arch::write_regs`]).
///
/// Man page: `ptrace(2)`.
pub fn set_regs(tid: i32, regs: &Regs) -> SysResult<()> {
    crate::arch::write_regs(tid, regs)
}

/// The thread's blocked-signal mask (`PTRACE_GETSIGMASK`), bit `n-1` for signal `n`.
///
/// Man page: `ptrace(2)`.
pub fn get_sigmask(tid: i32) -> SysResult<u64> {
    let mut m: u64 = 0;
    // SAFETY: the pointers point into buffers of this frame, sized for the request.
    unsafe { raw(PTRACE_GETSIGMASK, tid, 8, &mut m as *mut u64 as usize) }
        .map_err(|e| SysError::new("ptrace(PTRACE_GETSIGMASK)", subject(tid), e))?;
    Ok(m)
}

/// Sets the thread's blocked-signal mask (`PTRACE_SETSIGMASK`).
///
/// Man page: `ptrace(2)`.
pub fn set_sigmask(tid: i32, mask: u64) -> SysResult<()> {
    let m = mask;
    // SAFETY: the pointers point into buffers of this frame, sized for the request.
    unsafe { raw(PTRACE_SETSIGMASK, tid, 8, &m as *const u64 as usize) }
        .map(|_| ())
        .map_err(|e| SysError::new("ptrace(PTRACE_SETSIGMASK)", subject(tid), e))
}

/// A pending signal as the kernel's 128-byte `siginfo_t`.
pub type RawSiginfo = [u8; 128];

/// Reads queued signals without dequeuing them (`PTRACE_PEEKSIGINFO`): the thread's private
/// queue, or the process-wide one when `shared`.
///
/// Man page: `ptrace(2)`.
pub fn peek_siginfo(tid: i32, shared: bool) -> SysResult<Vec<RawSiginfo>> {
    #[repr(C)]
    struct Args {
        off: u64,
        flags: u32,
        nr: i32,
    }
    let mut out = Vec::new();
    loop {
        let mut buf = [[0u8; 128]; 32];
        let args = Args { off: out.len() as u64, flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 }, nr: 32 };
        // SAFETY: the pointers point into buffers of this frame, sized for the request.
        let n = unsafe { raw(PTRACE_PEEKSIGINFO, tid, &args as *const Args as usize, buf.as_mut_ptr() as usize) }
            .map_err(|e| SysError::new("ptrace(PTRACE_PEEKSIGINFO)", subject(tid), e))?;
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
        if n < 32 {
            break;
        }
    }
    Ok(out)
}

/// A thread's registered rseq area (`PTRACE_GET_RSEQ_CONFIGURATION`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RseqConfig {
    /// Address of the `struct rseq` area, 0 when none is registered.
    pub pointer: u64,
    /// Its registered length.
    pub size: u32,
    /// The abort signature.
    pub signature: u32,
    /// Registration flags.
    pub flags: u32,
}

/// Reads the thread's rseq registration.
///
/// Man page: `ptrace(2)`.
pub fn get_rseq(tid: i32) -> SysResult<RseqConfig> {
    #[repr(C)]
    #[derive(Default)]
    struct Conf {
        ptr: u64,
        size: u32,
        sig: u32,
        flags: u32,
        pad: u32,
    }
    let mut c = Conf::default();
    // SAFETY: the pointers point into buffers of this frame, sized for the request.
    unsafe { raw(PTRACE_GET_RSEQ_CONFIGURATION, tid, std::mem::size_of::<Conf>(), &mut c as *mut Conf as usize) }
        .map_err(|e| SysError::new("ptrace(PTRACE_GET_RSEQ_CONFIGURATION)", subject(tid), e))?;
    Ok(RseqConfig { pointer: c.ptr, size: c.size, signature: c.sig, flags: c.flags })
}

/// A thread's syscall user dispatch setting (`PR_SET_SYSCALL_USER_DISPATCH`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SudConfig {
    /// `PR_SYS_DISPATCH_*` mode (0: off).
    pub mode: u64,
    /// Address of the selector byte.
    pub selector: u64,
    /// Start of the always-allowed code range.
    pub offset: u64,
    /// Length of that range.
    pub len: u64,
}

/// Reads the thread's syscall user dispatch setting (`PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG`,
/// Linux 6.4 and later; older kernels fail with `EIO`).
///
/// Man page: `ptrace(2)`.
pub fn get_syscall_user_dispatch(tid: i32) -> SysResult<SudConfig> {
    const PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG: u32 = 0x4211;
    // struct ptrace_sud_config: mode, selector, offset, len (four u64); `addr` is its size.
    let mut words = [0u64; 4];
    // SAFETY: the pointers point into buffers of this frame, sized for the request.
    unsafe {
        raw(PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG, tid, std::mem::size_of_val(&words), words.as_mut_ptr() as usize)
    }
    .map_err(|e| SysError::new("ptrace(PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG)", subject(tid), e))?;
    Ok(SudConfig { mode: words[0], selector: words[1], offset: words[2], len: words[3] })
}

/// What `waitpid` reported for a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// ptrace stop: the signal and the `PTRACE_EVENT_*` (0 for a plain signal stop).
    Stopped { sig: i32, event: i32 },
}

/// `waitpid(tid, __WALL)`, retrying on EINTR.
///
/// Man page: `waitpid(2)`.
pub fn wait(tid: i32) -> SysResult<(i32, WaitStatus)> {
    wait_flags(tid, 0).map(|o| o.expect("blocking wait returns a status"))
}

/// `waitpid(tid, __WALL | WNOHANG)`: `None` when nothing is ready.
///
/// Man page: `waitpid(2)`.
pub fn try_wait(tid: i32) -> SysResult<Option<(i32, WaitStatus)>> {
    wait_flags(tid, libc::WNOHANG)
}

fn wait_flags(tid: i32, extra: i32) -> SysResult<Option<(i32, WaitStatus)>> {
    loop {
        let mut st: libc::c_int = 0;
        // SAFETY: `st` is a valid, writable int for the duration of the call.
        let r = unsafe { libc::waitpid(tid, &mut st, libc::__WALL | extra) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(SysError::new("waitpid", subject(tid), e));
        }
        if r == 0 {
            return Ok(None);
        }
        let ws = if libc::WIFEXITED(st) {
            WaitStatus::Exited(libc::WEXITSTATUS(st))
        } else if libc::WIFSIGNALED(st) {
            WaitStatus::Signaled(libc::WTERMSIG(st))
        } else {
            WaitStatus::Stopped { sig: libc::WSTOPSIG(st), event: (st >> 16) & 0xff }
        };
        return Ok(Some((r, ws)));
    }
}

/// The classic BPF program of seccomp filter `index` of a stopped tracee (0 is the oldest,
/// the first installed; `ENOENT` past the newest), each instruction packed as
/// `code | jt << 16 | jf << 24 | k << 32` (`struct sock_filter`). Needs CAP_SYS_ADMIN.
///
/// Man page: `ptrace(2)` (`PTRACE_SECCOMP_GET_FILTER`).
pub fn seccomp_get_filter(tid: i32, index: u64) -> SysResult<Vec<u64>> {
    const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
    let e = |err| SysError::new("ptrace(PTRACE_SECCOMP_GET_FILTER)", format!("{} filter {index}", subject(tid)), err);
    // SAFETY: a null buffer only asks for the instruction count.
    let n =
        unsafe { raw(PTRACE_SECCOMP_GET_FILTER, tid, usize::try_from(index).unwrap_or(usize::MAX), 0) }.map_err(e)?;
    let mut words = vec![0u64; usize::try_from(n).unwrap_or(0)];
    // SAFETY: `words` holds `n` 8-byte `struct sock_filter` slots, what the kernel writes.
    let got = unsafe {
        raw(PTRACE_SECCOMP_GET_FILTER, tid, usize::try_from(index).unwrap_or(usize::MAX), words.as_mut_ptr() as usize)
    }
    .map_err(e)?;
    words.truncate(usize::try_from(got).unwrap_or(0));
    // The kernel wrote `struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }` in native
    // (little-endian) order, which is the packing above.
    Ok(words)
}

/// The flags of seccomp filter `index` of a stopped tracee (`SECCOMP_FILTER_FLAG_LOG` is the
/// only one the kernel reports). Needs CAP_SYS_ADMIN.
///
/// Man page: `ptrace(2)` (`PTRACE_SECCOMP_GET_METADATA`).
pub fn seccomp_get_metadata(tid: i32, index: u64) -> SysResult<u64> {
    const PTRACE_SECCOMP_GET_METADATA: u32 = 0x420d;
    // struct seccomp_metadata { u64 filter_off; u64 flags; }; `addr` is its size.
    let mut md = [index, 0u64];
    // SAFETY: the pointers point into a buffer of this frame, sized for the request.
    unsafe { raw(PTRACE_SECCOMP_GET_METADATA, tid, std::mem::size_of_val(&md), md.as_mut_ptr() as usize) }.map_err(
        |err| SysError::new("ptrace(PTRACE_SECCOMP_GET_METADATA)", format!("{} filter {index}", subject(tid)), err),
    )?;
    Ok(md[1])
}
