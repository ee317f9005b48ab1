//! ptrace wrappers: seize/interrupt/detach, register sets (general registers and the x86
//! XSAVE area), signal masks, pending-signal peeking, rseq configuration, and waiting for
//! traced threads.
//!
//! The general registers travel as `[u64; USER_REGS_WORDS]` in the kernel's
//! `user_regs_struct` order (see the `REG_*` indices), so callers need no `libc` types.

use crate::{SysError, SysResult};
use std::io;

/// Number of 64-bit words of the x86-64 `user_regs_struct`.
pub const USER_REGS_WORDS: usize = 27;
/// General registers in `user_regs_struct` order.
pub type Regs = [u64; USER_REGS_WORDS];

/// Index of r15 in [`Regs`].
pub const REG_R15: usize = 0;
/// Index of r14.
pub const REG_R14: usize = 1;
/// Index of r13.
pub const REG_R13: usize = 2;
/// Index of r12.
pub const REG_R12: usize = 3;
/// Index of rbp.
pub const REG_RBP: usize = 4;
/// Index of rbx.
pub const REG_RBX: usize = 5;
/// Index of r11.
pub const REG_R11: usize = 6;
/// Index of r10.
pub const REG_R10: usize = 7;
/// Index of r9.
pub const REG_R9: usize = 8;
/// Index of r8.
pub const REG_R8: usize = 9;
/// Index of rax.
pub const REG_RAX: usize = 10;
/// Index of rcx.
pub const REG_RCX: usize = 11;
/// Index of rdx.
pub const REG_RDX: usize = 12;
/// Index of rsi.
pub const REG_RSI: usize = 13;
/// Index of rdi.
pub const REG_RDI: usize = 14;
/// Index of orig_rax (the syscall number while in a syscall, else -1).
pub const REG_ORIG_RAX: usize = 15;
/// Index of rip.
pub const REG_RIP: usize = 16;
/// Index of cs.
pub const REG_CS: usize = 17;
/// Index of eflags.
pub const REG_EFLAGS: usize = 18;
/// Index of rsp.
pub const REG_RSP: usize = 19;
/// Index of ss.
pub const REG_SS: usize = 20;
/// Index of fs_base.
pub const REG_FS_BASE: usize = 21;
/// Index of gs_base.
pub const REG_GS_BASE: usize = 22;
/// Index of ds.
pub const REG_DS: usize = 23;
/// Index of es.
pub const REG_ES: usize = 24;
/// Index of fs.
pub const REG_FS: usize = 25;
/// Index of gs.
pub const REG_GS: usize = 26;

/// `PTRACE_O_TRACECLONE`.
pub const O_TRACECLONE: u32 = 0x8;
/// `PTRACE_O_EXITKILL`.
pub const O_EXITKILL: u32 = 0x100000;
/// `PTRACE_EVENT_STOP`: the stop reported after `PTRACE_INTERRUPT` or for a group stop.
pub const EVENT_STOP: i32 = 128;
/// `PTRACE_EVENT_CLONE`.
pub const EVENT_CLONE: i32 = 3;

const NT_PRSTATUS: usize = 1;
const NT_X86_XSTATE: usize = 0x202;
const PTRACE_SEIZE: u32 = 0x4206;
const PTRACE_INTERRUPT: u32 = 0x4207;
const PTRACE_PEEKSIGINFO: u32 = 0x4209;
const PTRACE_GETSIGMASK: u32 = 0x420a;
const PTRACE_SETSIGMASK: u32 = 0x420b;
const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;

fn subject(tid: i32) -> String {
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

fn getregset(tid: i32, nt: usize, buf: &mut [u8], call: &'static str) -> SysResult<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: the pointers point into buffers of this frame, sized for the request.
    unsafe { raw(libc::PTRACE_GETREGSET, tid, nt, &mut iov as *mut libc::iovec as usize) }
        .map_err(|e| SysError::new(call, subject(tid), e))?;
    Ok(iov.iov_len)
}

fn setregset(tid: i32, nt: usize, buf: &[u8], call: &'static str) -> SysResult<()> {
    // The kernel only reads through this iovec for SETREGSET.
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: the pointers point into buffers of this frame, sized for the request.
    unsafe { raw(libc::PTRACE_SETREGSET, tid, nt, &mut iov as *mut libc::iovec as usize) }
        .map_err(|e| SysError::new(call, subject(tid), e))?;
    Ok(())
}

/// Reads the general registers (`NT_PRSTATUS`), including fs_base/gs_base.
///
/// Man page: `ptrace(2)`.
pub fn get_regs(tid: i32) -> SysResult<Regs> {
    let mut b = [0u8; USER_REGS_WORDS * 8];
    let n = getregset(tid, NT_PRSTATUS, &mut b, "ptrace(PTRACE_GETREGSET, NT_PRSTATUS)")?;
    if n != b.len() {
        return Err(SysError::new(
            "ptrace(PTRACE_GETREGSET, NT_PRSTATUS)",
            subject(tid),
            io::Error::other(format!("kernel returned {n} bytes, expected {}", b.len())),
        ));
    }
    let mut r = [0u64; USER_REGS_WORDS];
    for (i, w) in r.iter_mut().enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i * 8..i * 8 + 8]);
        *w = u64::from_le_bytes(a);
    }
    Ok(r)
}

/// Whether the stopped thread runs 64-bit code: the kernel presents the general registers of
/// a thread in a 32-bit code segment in the i386 layout (68 bytes instead of 216).
///
/// Man page: `ptrace(2)`.
pub fn in_64bit_mode(tid: i32) -> SysResult<bool> {
    let mut b = [0u8; USER_REGS_WORDS * 8];
    let n = getregset(tid, NT_PRSTATUS, &mut b, "ptrace(PTRACE_GETREGSET, NT_PRSTATUS)")?;
    Ok(n == b.len())
}

/// Writes the general registers (`NT_PRSTATUS`).
///
/// Man page: `ptrace(2)`.
pub fn set_regs(tid: i32, regs: &Regs) -> SysResult<()> {
    let mut b = [0u8; USER_REGS_WORDS * 8];
    for (i, w) in regs.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    setregset(tid, NT_PRSTATUS, &b, "ptrace(PTRACE_SETREGSET, NT_PRSTATUS)")
}

/// Reads the full XSAVE area (`NT_X86_XSTATE`); the length is what the kernel reports.
///
/// Man page: `ptrace(2)`.
pub fn get_xstate(tid: i32) -> SysResult<Vec<u8>> {
    let mut b = vec![0u8; 64 * 1024];
    let n = getregset(tid, NT_X86_XSTATE, &mut b, "ptrace(PTRACE_GETREGSET, NT_X86_XSTATE)")?;
    b.truncate(n);
    Ok(b)
}

/// Writes an XSAVE area (`NT_X86_XSTATE`).
///
/// Man page: `ptrace(2)`.
pub fn set_xstate(tid: i32, xstate: &[u8]) -> SysResult<()> {
    setregset(tid, NT_X86_XSTATE, xstate, "ptrace(PTRACE_SETREGSET, NT_X86_XSTATE)")
}

/// Reads the legacy FXSAVE area (`NT_PRFPREG`, 512 bytes): what a CPU without XSAVE has
/// (the XSTATE regset then fails with `ENODEV`).
///
/// Man page: `ptrace(2)`.
pub fn get_fpregs(tid: i32) -> SysResult<Vec<u8>> {
    let mut b = vec![0u8; 512];
    let n = getregset(tid, 2, &mut b, "ptrace(PTRACE_GETREGSET, NT_PRFPREG)")?;
    b.truncate(n);
    Ok(b)
}

/// Writes the legacy FXSAVE area (`NT_PRFPREG`, 512 bytes): x87/SSE state only, used when a
/// saved XSAVE area does not fit the running kernel.
///
/// Man page: `ptrace(2)`.
pub fn set_fpregs(tid: i32, fxsave: &[u8]) -> SysResult<()> {
    setregset(tid, 2, fxsave, "ptrace(PTRACE_SETREGSET, NT_PRFPREG)")
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
