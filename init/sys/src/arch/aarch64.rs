//! aarch64 (AArch64 state, Linux): the general registers of `user_pt_regs` (`NT_PRSTATUS`:
//! x0–x30, sp, pc, pstate) completed by the system call number (`NT_ARM_SYSTEM_CALL`) and the
//! thread pointer TPIDR_EL0 (`NT_ARM_TLS`); the FP/SIMD state `user_fpsimd_state`
//! (`NT_PRFPREG`: v0–v31, fpsr, fpcr); `svc #0` (x8 = number, x0–x5 = arguments, result in
//! x0) and `brk #0`.
//!
//! Two differences from x86-64 the engine relies on through this interface:
//! - the kernel rewinds an interrupted system call *before* the signal-delivery (or
//!   `PTRACE_INTERRUPT`) stop: the stop already shows pc on the `svc` and x0 holding the first
//!   argument again, with the syscall number reset to -1. Registers saved at such a stop
//!   restart the call by themselves, so [`interrupted_syscall`] is always `None` here;
//! - a `brk` stop reports pc *at* the `brk`, not after it ([`batch_stop_ip`]).
//!
//! Nothing of this file has run on aarch64 hardware or under qemu-system-aarch64 yet; it is
//! built and its pure functions unit-tested for the aarch64 target.

use crate::ptrace::{getregset, setregset, subject};
use crate::{SysError, SysResult};
use std::io;

/// The architecture's name as `uname -m` and the image's records say it.
pub const NAME: &str = "aarch64";

/// Words of `user_pt_regs`: x0–x30, sp, pc, pstate.
pub const PT_REGS_WORDS: usize = 34;
/// Words of [`Regs`]: `user_pt_regs`, then the syscall number and TPIDR_EL0.
pub const REGS_WORDS: usize = PT_REGS_WORDS + 2;
/// General registers: x0–x30, sp, pc, pstate (`user_pt_regs` order), then the system call
/// number (`NT_ARM_SYSTEM_CALL`, sign-extended) and TPIDR_EL0 (`NT_ARM_TLS`).
pub type Regs = [u64; REGS_WORDS];

/// Index of x0 (first argument, return value).
pub const REG_X0: usize = 0;
/// Index of x8 (system call number at `svc`).
pub const REG_X8: usize = 8;
/// Index of x19 (callee-saved; the batch runner's cursor).
pub const REG_X19: usize = 19;
/// Index of x20 (callee-saved; the batch runner's end).
pub const REG_X20: usize = 20;
/// Index of x30 (link register).
pub const REG_LR: usize = 30;
/// Index of sp.
pub const REG_SP: usize = 31;
/// Index of pc.
pub const REG_PC: usize = 32;
/// Index of pstate.
pub const REG_PSTATE: usize = 33;
/// Index of the system call number (`NT_ARM_SYSTEM_CALL`), -1 when none.
pub const REG_SYSCALLNO: usize = 34;
/// Index of TPIDR_EL0, the thread pointer (`NT_ARM_TLS`).
pub const REG_TPIDR: usize = 35;

const NT_PRSTATUS: usize = 1;
const NT_PRFPREG: usize = 2;
const NT_ARM_TLS: usize = 0x401;
const NT_ARM_SYSTEM_CALL: usize = 0x404;
const NT_ARM_SVE: usize = 0x405;
const NT_ARM_SSVE: usize = 0x40b;
const NT_ARM_ZA: usize = 0x40c;
/// `flags` of `user_sve_header`: which register set the regset holds.
const SVE_PT_REGS_MASK: u16 = 1;
/// `flags` value: the full SVE registers (`SVE_PT_REGS_SVE`), not FPSIMD only.
const SVE_PT_REGS_SVE: u16 = 1;
/// Bytes of `user_sve_header` and of `user_za_header` (the same layout).
pub const VEC_HEADER_SIZE: usize = 16;
/// pstate bit `M[4]`: the thread runs AArch32 code.
const PSR_MODE32_BIT: u64 = 0x10;

/// The instruction pointer.
pub fn ip(r: &Regs) -> u64 {
    r[REG_PC]
}

/// Sets the instruction pointer.
pub fn set_ip(r: &mut Regs, v: u64) {
    r[REG_PC] = v;
}

/// The stack pointer.
pub fn sp(r: &Regs) -> u64 {
    r[REG_SP]
}

/// The return value register (x0).
pub fn ret(r: &Regs) -> i64 {
    r[REG_X0] as i64
}

/// The system call the thread is in (`NT_ARM_SYSTEM_CALL`), -1 when none.
pub fn syscall_no(r: &Regs) -> i64 {
    r[REG_SYSCALLNO] as i64
}

/// Marks the thread as not in a system call (syscall number -1), so that the kernel does
/// not treat x0 as a restart code when it resumes with these registers.
pub fn forget_syscall(r: &mut Regs) {
    r[REG_SYSCALLNO] = u64::MAX;
}

/// Loads system call `nr` with `args` to run at `at` (an `svc #0`).
pub fn load_syscall(r: &mut Regs, at: u64, nr: u64, args: [u64; 6]) {
    r[REG_X8] = nr;
    r[REG_X0..REG_X0 + 6].copy_from_slice(&args);
    forget_syscall(r);
    r[REG_PC] = at;
}

/// `svc #0`.
pub const SYSCALL_INSN: &[u8] = &[0x01, 0x00, 0x00, 0xd4];

/// The code an injected call runs: `svc #0; brk #0`.
pub const TRAMPOLINE: &[u8] = &[0x01, 0x00, 0x00, 0xd4, 0x00, 0x00, 0x20, 0xd4];

/// Filler of unused code bytes: 0, a permanently undefined instruction (`udf #0`) when read
/// as a word.
pub const TRAP_FILL: u8 = 0x00;

/// Offset of an `svc #0` in `code` (instructions are 4-byte aligned).
pub fn find_syscall_insn(code: &[u8]) -> Option<usize> {
    super::find_aligned(code, SYSCALL_INSN, 4)
}

/// The batch runner: runs the calls of a table ([`super::BATCH_ENTRY`] bytes each: number, six
/// arguments, result) from x19 up to x20, storing each result, and stops on `brk` after the
/// table's end or the first failing call (x0 in -4095..-1). Assembled with GNU as for
/// aarch64:
///
/// ```text
///  0: cmp  x19, x20              eb14027f
///  4: b.hs 2c                    54000142
///  8: ldp  x8, x0, [x19]         a9400268
///  c: ldp  x1, x2, [x19, #16]    a9410a61
/// 10: ldp  x3, x4, [x19, #32]    a9421263
/// 14: ldr  x5, [x19, #48]        f9401a65
/// 18: svc  #0                    d4000001
/// 1c: str  x0, [x19, #56]        f9001e60
/// 20: add  x19, x19, #64         91010273
/// 24: cmn  x0, #4095             b13ffc1f
/// 28: b.lo 0                     54fffec3
/// 2c: brk  #0                    d4200000
/// ```
pub const BATCH_CODE: &[u8] = &[
    0x7f, 0x02, 0x14, 0xeb, 0x42, 0x01, 0x00, 0x54, 0x68, 0x02, 0x40, 0xa9, 0x61, 0x0a, 0x41, 0xa9, 0x63, 0x12, 0x42,
    0xa9, 0x65, 0x1a, 0x40, 0xf9, 0x01, 0x00, 0x00, 0xd4, 0x60, 0x1e, 0x00, 0xf9, 0x73, 0x02, 0x01, 0x91, 0x1f, 0xfc,
    0x3f, 0xb1, 0xc3, 0xfe, 0xff, 0x54, 0x00, 0x00, 0x20, 0xd4,
];

/// Offset of the runner's `brk` in [`BATCH_CODE`].
const BATCH_TRAP: u64 = 0x2c;

/// Loads the batch runner at `code` over the table `table..end`.
pub fn load_batch(r: &mut Regs, code: u64, table: u64, end: u64) {
    forget_syscall(r);
    r[REG_PC] = code;
    r[REG_X19] = table;
    r[REG_X20] = end;
}

/// Where the runner's cursor (x19) stands.
pub fn batch_cursor(r: &Regs) -> u64 {
    r[REG_X19]
}

/// The pc the trap stop of a runner at `code` reports: the `brk` itself (the kernel does not
/// step over it).
pub fn batch_stop_ip(code: u64) -> u64 {
    code + BATCH_TRAP
}

/// Always `None` on aarch64: at the stop the kernel has already rewound an interrupted call
/// (pc on the `svc`, x0 = its first argument, the number reset to -1), so the saved
/// registers run it again as they are.
pub fn interrupted_syscall(_r: &Regs) -> Option<(u64, i64)> {
    None
}

/// Sets up call `nr` to run again: x8 = nr, pc back over the 4-byte `svc`. `false` when pc
/// is too low. (x0 must hold the call's first argument, as the kernel's own rewind leaves it.)
pub fn restart_syscall(r: &mut Regs, nr: u64) -> bool {
    let Some(back) = r[REG_PC].checked_sub(SYSCALL_INSN.len() as u64) else { return false };
    r[REG_X8] = nr;
    r[REG_PC] = back;
    true
}

fn fail(call: &'static str, tid: i32, why: String) -> SysError {
    SysError::new(call, subject(tid), io::Error::other(why))
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0)
}

/// Reads `user_pt_regs` (`NT_PRSTATUS`), the system call number (`NT_ARM_SYSTEM_CALL`) and
/// TPIDR_EL0 (`NT_ARM_TLS`).
///
/// Man page: `ptrace(2)`.
pub fn read_regs(tid: i32) -> SysResult<Regs> {
    const CALL: &str = "ptrace(PTRACE_GETREGSET, NT_PRSTATUS)";
    let mut b = [0u8; PT_REGS_WORDS * 8];
    let n = getregset(tid, NT_PRSTATUS, &mut b, CALL)?;
    if n != b.len() {
        return Err(fail(CALL, tid, format!("kernel returned {n} bytes, expected {}", b.len())));
    }
    let mut r = [0u64; REGS_WORDS];
    for (i, w) in r.iter_mut().take(PT_REGS_WORDS).enumerate() {
        *w = read_u64(&b, i * 8);
    }
    let mut nr = [0u8; 4];
    let n = getregset(tid, NT_ARM_SYSTEM_CALL, &mut nr, "ptrace(PTRACE_GETREGSET, NT_ARM_SYSTEM_CALL)")?;
    if n != 4 {
        return Err(fail("ptrace(PTRACE_GETREGSET, NT_ARM_SYSTEM_CALL)", tid, format!("kernel returned {n} bytes")));
    }
    r[REG_SYSCALLNO] = i64::from(i32::from_le_bytes(nr)) as u64;
    // 8 bytes (TPIDR_EL0), 16 with SME (TPIDR2_EL0 after it).
    let mut tls = [0u8; 16];
    let n = getregset(tid, NT_ARM_TLS, &mut tls, "ptrace(PTRACE_GETREGSET, NT_ARM_TLS)")?;
    if n < 8 {
        return Err(fail("ptrace(PTRACE_GETREGSET, NT_ARM_TLS)", tid, format!("kernel returned {n} bytes")));
    }
    r[REG_TPIDR] = read_u64(&tls, 0);
    Ok(r)
}

/// Writes `user_pt_regs`, the system call number and TPIDR_EL0.
///
/// Man page: `ptrace(2)`.
pub fn write_regs(tid: i32, regs: &Regs) -> SysResult<()> {
    let mut b = [0u8; PT_REGS_WORDS * 8];
    for (i, w) in regs.iter().take(PT_REGS_WORDS).enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    setregset(tid, NT_PRSTATUS, &b, "ptrace(PTRACE_SETREGSET, NT_PRSTATUS)")?;
    let nr = (regs[REG_SYSCALLNO] as i64).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    setregset(tid, NT_ARM_SYSTEM_CALL, &nr.to_le_bytes(), "ptrace(PTRACE_SETREGSET, NT_ARM_SYSTEM_CALL)")?;
    setregset(tid, NT_ARM_TLS, &regs[REG_TPIDR].to_le_bytes(), "ptrace(PTRACE_SETREGSET, NT_ARM_TLS)")
}

/// Whether the stopped thread runs AArch64 code: an AArch32 (compat) thread presents 18
/// 32-bit words instead of `user_pt_regs`, or has bit 4 of pstate (`M[4]`, AArch32 state) set.
///
/// Man page: `ptrace(2)`.
pub fn native_mode(tid: i32) -> SysResult<bool> {
    let mut b = [0u8; PT_REGS_WORDS * 8];
    let n = getregset(tid, NT_PRSTATUS, &mut b, "ptrace(PTRACE_GETREGSET, NT_PRSTATUS)")?;
    Ok(n == b.len() && read_u64(&b, REG_PSTATE * 8) & PSR_MODE32_BIT == 0)
}

/// Size of `user_fpsimd_state`: 32 128-bit registers, fpsr, fpcr, 8 reserved bytes.
pub const FP_LEGACY_SIZE: usize = 528;

/// Reads `user_fpsimd_state` (`NT_PRFPREG`, 528 bytes). SVE and SME state beyond it are not
/// read: a thread with such state is refused first ([`uncarried_state`]).
///
/// Man page: `ptrace(2)`.
pub fn read_fpstate(tid: i32) -> SysResult<Vec<u8>> {
    const CALL: &str = "ptrace(PTRACE_GETREGSET, NT_PRFPREG)";
    let mut b = vec![0u8; FP_LEGACY_SIZE];
    let n = getregset(tid, NT_PRFPREG, &mut b, CALL)?;
    if n != FP_LEGACY_SIZE {
        return Err(fail(CALL, tid, format!("kernel returned {n} bytes, expected {FP_LEGACY_SIZE}")));
    }
    Ok(b)
}

/// Writes `user_fpsimd_state` (`NT_PRFPREG`).
///
/// Man page: `ptrace(2)`.
pub fn write_fpstate(tid: i32, state: &[u8]) -> SysResult<()> {
    setregset(tid, NT_PRFPREG, state, "ptrace(PTRACE_SETREGSET, NT_PRFPREG)")
}

/// The same as [`write_fpstate`]: aarch64 has no smaller FP state to fall back to.
///
/// Man page: `ptrace(2)`.
pub fn write_fpstate_legacy(tid: i32, state: &[u8]) -> SysResult<()> {
    write_fpstate(tid, state)
}

/// The header both `NT_ARM_SVE`/`NT_ARM_SSVE` (`user_sve_header`) and `NT_ARM_ZA`
/// (`user_za_header`) start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VecHeader {
    /// Bytes of the whole regset as the kernel would return it (header included).
    pub size: u32,
    /// Vector length in bytes.
    pub vl: u16,
    /// `SVE_PT_REGS_*` and `SVE_PT_VL_*` bits.
    pub flags: u16,
}

/// Parses a vector-extension header, `None` when shorter than [`VEC_HEADER_SIZE`].
pub fn parse_vec_header(b: &[u8]) -> Option<VecHeader> {
    let b = b.get(..VEC_HEADER_SIZE)?;
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    Some(VecHeader { size: u32::from_le_bytes([b[0], b[1], b[2], b[3]]), vl: u16_at(8), flags: u16_at(12) })
}

/// What an `NT_ARM_SVE` (`streaming` false) or `NT_ARM_SSVE` (`streaming` true) header says
/// the image would lose: `Some(reason)` when the regset holds the full SVE registers (for
/// `NT_ARM_SSVE`: the thread is in streaming mode).
pub fn sve_header_refusal(h: &VecHeader, streaming: bool) -> Option<String> {
    if h.flags & SVE_PT_REGS_MASK != SVE_PT_REGS_SVE {
        return None;
    }
    Some(if streaming {
        format!(
            "is in SME streaming mode (streaming vector length {} bytes): the image carries the FP/SIMD registers only, not the streaming SVE registers",
            h.vl
        )
    } else {
        format!(
            "has live SVE register state (vector length {} bytes): the image carries the FP/SIMD registers only (the low 128 bits of each Z register, no P or FFR registers)",
            h.vl
        )
    })
}

/// What an `NT_ARM_ZA` header says the image would lose: `Some(reason)` when ZA storage is
/// enabled (the regset is longer than its header).
pub fn za_header_refusal(h: &VecHeader) -> Option<String> {
    (h.size as usize > VEC_HEADER_SIZE).then(|| {
        format!(
            "has SME ZA storage enabled ({} bytes): the image does not carry the ZA array",
            h.size as usize - VEC_HEADER_SIZE
        )
    })
}

/// Reads the header of vector regset `nt`, `None` when the kernel or CPU has no such
/// regset (`EINVAL`: no SVE or SME, or a kernel before it).
fn vec_header(tid: i32, nt: usize, call: &'static str) -> SysResult<Option<VecHeader>> {
    let mut b = [0u8; VEC_HEADER_SIZE];
    match getregset(tid, nt, &mut b, call) {
        Ok(n) => parse_vec_header(&b[..n]).map(Some).ok_or_else(|| {
            fail(call, tid, format!("kernel returned {n} bytes, expected a {VEC_HEADER_SIZE}-byte header"))
        }),
        Err(e) if matches!(e.errno(), Some(libc::EINVAL) | Some(libc::ENODEV)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Register state of the stopped thread that the image does not carry, as the reason to
/// refuse it: live SVE registers (`NT_ARM_SVE` says SVE, not FPSIMD only), SME streaming
/// mode (`NT_ARM_SSVE`) or an enabled ZA array (`NT_ARM_ZA`). `None` when there is none
/// (always on a CPU without SVE and SME).
///
/// Man page: `ptrace(2)`; kernel: Documentation/arch/arm64/sve.rst and sme.rst.
pub fn uncarried_state(tid: i32) -> SysResult<Option<String>> {
    if let Some(h) = vec_header(tid, NT_ARM_SSVE, "ptrace(PTRACE_GETREGSET, NT_ARM_SSVE)")? {
        if let Some(why) = sve_header_refusal(&h, true) {
            return Ok(Some(why));
        }
    }
    if let Some(h) = vec_header(tid, NT_ARM_ZA, "ptrace(PTRACE_GETREGSET, NT_ARM_ZA)")? {
        if let Some(why) = za_header_refusal(&h) {
            return Ok(Some(why));
        }
    }
    if let Some(h) = vec_header(tid, NT_ARM_SVE, "ptrace(PTRACE_GETREGSET, NT_ARM_SVE)")? {
        return Ok(sve_header_refusal(&h, false));
    }
    Ok(None)
}

/// Bytes of the jump the vDSO trampoline writes at a function's start: `b imm26`.
pub const JUMP_LEN: usize = 4;

/// Highest address a user mapping may end at with 48-bit virtual addresses (Debian's arm64
/// kernels).
pub const USER_TOP: u64 = 0xffff_ffff_f000;

/// The farthest a [`jump`] reaches (±128 MiB).
pub const JUMP_REACH: u64 = 1 << 27;

/// `b` at `from` to `to`, `None` when out of reach or either address is not 4-byte aligned.
pub fn jump(from: u64, to: u64) -> Option<Vec<u8>> {
    if !from.is_multiple_of(4) || !to.is_multiple_of(4) {
        return None;
    }
    let rel = i64::from_ne_bytes(to.wrapping_sub(from).to_ne_bytes());
    if !(-(JUMP_REACH as i64)..JUMP_REACH as i64).contains(&rel) {
        return None;
    }
    let insn = 0x1400_0000u32 | ((rel >> 2) as u32 & 0x03ff_ffff);
    Some(insn.to_le_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(size: u32, vl: u16, flags: u16) -> [u8; VEC_HEADER_SIZE] {
        let mut b = [0u8; VEC_HEADER_SIZE];
        b[0..4].copy_from_slice(&size.to_le_bytes());
        b[4..8].copy_from_slice(&8768u32.to_le_bytes()); // max_size
        b[8..10].copy_from_slice(&vl.to_le_bytes());
        b[10..12].copy_from_slice(&256u16.to_le_bytes()); // max_vl
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b
    }

    #[test]
    fn an_sve_header_is_refused_only_when_it_holds_sve_registers() {
        // FPSIMD only (flags 0), vector length 32: SVE_PT_SIZE = header + 512 + 16 + 16.
        let fpsimd = parse_vec_header(&header(16 + 528, 32, 0)).unwrap();
        assert_eq!(fpsimd, VecHeader { size: 544, vl: 32, flags: 0 });
        assert_eq!(sve_header_refusal(&fpsimd, false), None);
        assert_eq!(sve_header_refusal(&fpsimd, true), None, "not in streaming mode");
        // SVE_PT_VL_INHERIT (2) and SVE_PT_VL_ONEXEC (4) alone do not make the state live.
        assert_eq!(sve_header_refusal(&parse_vec_header(&header(544, 32, 6)).unwrap(), false), None);
        let sve = parse_vec_header(&header(16 + 32 * 32 + 17 * 4, 32, 1 | 2)).unwrap();
        let why = sve_header_refusal(&sve, false).expect("live SVE registers are refused");
        assert!(why.contains("SVE") && why.contains("32 bytes"), "{why}");
        let why = sve_header_refusal(&sve, true).expect("streaming mode is refused");
        assert!(why.contains("streaming"), "{why}");
        assert_eq!(parse_vec_header(&header(544, 32, 0)[..15]), None, "a short header is not parsed");
    }

    #[test]
    fn a_za_header_is_refused_only_when_za_is_enabled() {
        assert_eq!(za_header_refusal(&parse_vec_header(&header(16, 32, 0)).unwrap()), None);
        let why = za_header_refusal(&parse_vec_header(&header(16 + 32 * 32, 32, 0)).unwrap()).expect("ZA enabled");
        assert!(why.contains("ZA") && why.contains("1024 bytes"), "{why}");
    }

    #[test]
    fn the_branch_matches_the_assembler() {
        // GNU as: `b .+0x1000` at 0 is 14000400.
        assert_eq!(jump(0x30, 0x1030).unwrap(), 0x1400_0400u32.to_le_bytes());
        assert_eq!(jump(0x1000, 0x0ffc).unwrap(), 0x17ff_ffffu32.to_le_bytes());
        assert_eq!(jump(0x1002, 0x2000), None);
    }

    #[test]
    fn arguments_go_to_x0_to_x5_and_the_number_to_x8() {
        let mut r = [0u64; REGS_WORDS];
        load_syscall(&mut r, 0x5000, 222, [1, 2, 3, 4, 5, 6]);
        assert_eq!(&r[..6], &[1, 2, 3, 4, 5, 6]);
        assert_eq!((r[REG_X8], r[REG_PC], syscall_no(&r)), (222, 0x5000, -1));
        assert!(restart_syscall(&mut r, 98));
        assert_eq!((r[REG_X8], r[REG_PC]), (98, 0x4ffc));
    }
}
