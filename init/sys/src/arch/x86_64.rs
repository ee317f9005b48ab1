//! x86-64: `user_regs_struct` (27 words, `fs_base`/`gs_base` included), the XSAVE area
//! (`NT_X86_XSTATE`, falling back to the 512-byte FXSAVE area of `NT_PRFPREG`), `syscall`
//! (rax = number, rdi, rsi, rdx, r10, r8, r9; result in rax) and `int3`.

use crate::ptrace::{getregset, setregset, subject};
use crate::{SysError, SysResult};
use std::io;

/// The architecture's name as `uname -m` and the image's records say it.
pub const NAME: &str = "x86_64";

/// Number of 64-bit words of the x86-64 `user_regs_struct`.
pub const REGS_WORDS: usize = 27;
/// General registers in `user_regs_struct` order.
pub type Regs = [u64; REGS_WORDS];

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

const NT_PRSTATUS: usize = 1;
const NT_PRFPREG: usize = 2;
const NT_X86_XSTATE: usize = 0x202;

/// The instruction pointer.
pub fn ip(r: &Regs) -> u64 {
    r[REG_RIP]
}

/// Sets the instruction pointer.
pub fn set_ip(r: &mut Regs, v: u64) {
    r[REG_RIP] = v;
}

/// The stack pointer.
pub fn sp(r: &Regs) -> u64 {
    r[REG_RSP]
}

/// The return value register (rax) as the kernel left it.
pub fn ret(r: &Regs) -> i64 {
    r[REG_RAX] as i64
}

/// The system call the thread is in (`orig_rax`), -1 when none.
pub fn syscall_no(r: &Regs) -> i64 {
    r[REG_ORIG_RAX] as i64
}

/// Marks the thread as not in a system call (`orig_rax` = -1), so that the kernel does not
/// restart anything when it resumes with these registers.
pub fn forget_syscall(r: &mut Regs) {
    r[REG_ORIG_RAX] = u64::MAX;
}

/// Loads system call `nr` with `args` to run at `at` (a [`SYSCALL_INSN`]).
pub fn load_syscall(r: &mut Regs, at: u64, nr: u64, args: [u64; 6]) {
    r[REG_RAX] = nr;
    forget_syscall(r);
    r[REG_RDI] = args[0];
    r[REG_RSI] = args[1];
    r[REG_RDX] = args[2];
    r[REG_R10] = args[3];
    r[REG_R8] = args[4];
    r[REG_R9] = args[5];
    r[REG_RIP] = at;
}

/// The `syscall` instruction.
pub const SYSCALL_INSN: &[u8] = &[0x0f, 0x05];

/// The code an injected call runs: `syscall; int3; int3`.
pub const TRAMPOLINE: &[u8] = &[0x0f, 0x05, 0xcc, 0xcc];

/// Filler of unused code bytes: `int3`.
pub const TRAP_FILL: u8 = 0xcc;

/// Offset of a `syscall` instruction in `code` (any offset: x86 code is not aligned).
pub fn find_syscall_insn(code: &[u8]) -> Option<usize> {
    super::find_aligned(code, SYSCALL_INSN, 1)
}

/// The batch runner: runs the calls of a table ([`super::BATCH_ENTRY`] bytes each: number, six
/// arguments, result) from r12 up to r13, storing each result, and stops on `int3` after
/// the table's end or the first failing call.
///
/// ```text
///  0: cmp r12, r13            4d 39 ec
///  3: jae 3a                  73 35
///  5: mov rax, [r12]          49 8b 04 24
///  9: mov rdi, [r12+8]        49 8b 7c 24 08
///  e: mov rsi, [r12+16]       49 8b 74 24 10
/// 13: mov rdx, [r12+24]       49 8b 54 24 18
/// 18: mov r10, [r12+32]       4d 8b 54 24 20
/// 1d: mov r8, [r12+40]        4d 8b 44 24 28
/// 22: mov r9, [r12+48]        4d 8b 4c 24 30
/// 27: syscall                 0f 05
/// 29: mov [r12+56], rax       49 89 44 24 38
/// 2e: add r12, 64             49 83 c4 40
/// 32: cmp rax, -4095          48 3d 01 f0 ff ff
/// 38: jb 0                    72 c6
/// 3a: int3                    cc
/// ```
pub const BATCH_CODE: &[u8] = &[
    0x4d, 0x39, 0xec, 0x73, 0x35, 0x49, 0x8b, 0x04, 0x24, 0x49, 0x8b, 0x7c, 0x24, 0x08, 0x49, 0x8b, 0x74, 0x24, 0x10,
    0x49, 0x8b, 0x54, 0x24, 0x18, 0x4d, 0x8b, 0x54, 0x24, 0x20, 0x4d, 0x8b, 0x44, 0x24, 0x28, 0x4d, 0x8b, 0x4c, 0x24,
    0x30, 0x0f, 0x05, 0x49, 0x89, 0x44, 0x24, 0x38, 0x49, 0x83, 0xc4, 0x40, 0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x72,
    0xc6, 0xcc,
];

/// Offset of the runner's `int3` in [`BATCH_CODE`].
const BATCH_TRAP: u64 = 0x3a;

/// Loads the batch runner at `code` over the table `table..end`.
pub fn load_batch(r: &mut Regs, code: u64, table: u64, end: u64) {
    forget_syscall(r);
    r[REG_RIP] = code;
    r[REG_R12] = table;
    r[REG_R13] = end;
}

/// Where the runner's cursor (r12) stands.
pub fn batch_cursor(r: &Regs) -> u64 {
    r[REG_R12]
}

/// The instruction pointer the trap stop of a runner at `code` reports (after the `int3`).
pub fn batch_stop_ip(code: u64) -> u64 {
    code + BATCH_TRAP + 1
}

/// The system call a stopped thread was interrupted in, when the kernel would restart it:
/// (number, restart code). On x86-64 the kernel rewinds only when it resumes the thread, so
/// the stop shows `orig_rax` >= 0 and rax = -ERESTART*.
pub fn interrupted_syscall(r: &Regs) -> Option<(u64, i64)> {
    let (orig, rax) = (syscall_no(r), ret(r));
    (orig >= 0 && super::RESTART_CODES.contains(&rax)).then_some((orig as u64, rax))
}

/// Sets up call `nr` to run again: rax = nr, rip back over the 2-byte `syscall`. `false`
/// when rip is too low to move back.
pub fn restart_syscall(r: &mut Regs, nr: u64) -> bool {
    let Some(back) = r[REG_RIP].checked_sub(SYSCALL_INSN.len() as u64) else { return false };
    r[REG_RAX] = nr;
    r[REG_RIP] = back;
    true
}

fn words_of(b: &[u8], r: &mut [u64]) {
    for (w, c) in r.iter_mut().zip(b.chunks_exact(8)) {
        *w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    }
}

/// Reads the general registers (`NT_PRSTATUS`), including fs_base/gs_base.
///
/// Man page: `ptrace(2)`.
pub fn read_regs(tid: i32) -> SysResult<Regs> {
    let mut b = [0u8; REGS_WORDS * 8];
    let n = getregset(tid, NT_PRSTATUS, &mut b, "ptrace(PTRACE_GETREGSET, NT_PRSTATUS)")?;
    if n != b.len() {
        return Err(SysError::new(
            "ptrace(PTRACE_GETREGSET, NT_PRSTATUS)",
            subject(tid),
            io::Error::other(format!("kernel returned {n} bytes, expected {}", b.len())),
        ));
    }
    let mut r = [0u64; REGS_WORDS];
    words_of(&b, &mut r);
    Ok(r)
}

/// Writes the general registers (`NT_PRSTATUS`).
///
/// Man page: `ptrace(2)`.
pub fn write_regs(tid: i32, regs: &Regs) -> SysResult<()> {
    let mut b = [0u8; REGS_WORDS * 8];
    for (i, w) in regs.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    setregset(tid, NT_PRSTATUS, &b, "ptrace(PTRACE_SETREGSET, NT_PRSTATUS)")
}

/// Whether the stopped thread runs 64-bit code: the kernel presents the general registers of
/// a thread in a 32-bit code segment in the i386 layout (68 bytes instead of 216).
///
/// Man page: `ptrace(2)`.
pub fn native_mode(tid: i32) -> SysResult<bool> {
    let mut b = [0u8; REGS_WORDS * 8];
    let n = getregset(tid, NT_PRSTATUS, &mut b, "ptrace(PTRACE_GETREGSET, NT_PRSTATUS)")?;
    Ok(n == b.len())
}

/// Register state of the stopped thread that the image does not carry: none on x86-64 (the
/// whole XSAVE area is read by [`read_fpstate`]).
pub fn uncarried_state(_tid: i32) -> SysResult<Option<String>> {
    Ok(None)
}

/// Size of the legacy FP state: the FXSAVE area.
pub const FP_LEGACY_SIZE: usize = 512;

/// Reads the FP/vector state: the full XSAVE area (`NT_X86_XSTATE`, the length the kernel
/// reports), or, on a CPU without XSAVE (that regset fails with `ENODEV`), the 512-byte FXSAVE
/// area (`NT_PRFPREG`).
///
/// Man page: `ptrace(2)`.
pub fn read_fpstate(tid: i32) -> SysResult<Vec<u8>> {
    let mut b = vec![0u8; 64 * 1024];
    match getregset(tid, NT_X86_XSTATE, &mut b, "ptrace(PTRACE_GETREGSET, NT_X86_XSTATE)") {
        Ok(n) => {
            b.truncate(n);
            Ok(b)
        }
        Err(e) if e.errno() == Some(libc::ENODEV) => {
            let mut b = vec![0u8; FP_LEGACY_SIZE];
            let n = getregset(tid, NT_PRFPREG, &mut b, "ptrace(PTRACE_GETREGSET, NT_PRFPREG)")?;
            b.truncate(n);
            Ok(b)
        }
        Err(e) => Err(e),
    }
}

/// Writes an XSAVE area (`NT_X86_XSTATE`).
///
/// Man page: `ptrace(2)`.
pub fn write_fpstate(tid: i32, state: &[u8]) -> SysResult<()> {
    setregset(tid, NT_X86_XSTATE, state, "ptrace(PTRACE_SETREGSET, NT_X86_XSTATE)")
}

/// Writes the legacy FXSAVE area (`NT_PRFPREG`, 512 bytes): x87/SSE state only, used when a
/// saved XSAVE area does not fit the running kernel.
///
/// Man page: `ptrace(2)`.
pub fn write_fpstate_legacy(tid: i32, fxsave: &[u8]) -> SysResult<()> {
    setregset(tid, NT_PRFPREG, fxsave, "ptrace(PTRACE_SETREGSET, NT_PRFPREG)")
}

/// Bytes of the jump the vDSO trampoline writes at a function's start: `jmp rel32`.
pub const JUMP_LEN: usize = 5;

/// `jmp rel32` at `from` to `to`, `None` when `to` is more than 2 GiB away.
pub fn jump(from: u64, to: u64) -> Option<Vec<u8>> {
    // The displacement counts from the end of the instruction, modulo 2^64, read as signed.
    let rel = i64::from_ne_bytes(to.wrapping_sub(from.wrapping_add(JUMP_LEN as u64)).to_ne_bytes());
    let rel: i32 = rel.try_into().ok()?;
    let mut j = vec![0xe9];
    j.extend_from_slice(&rel.to_le_bytes());
    Some(j)
}

/// Highest address a user mapping may end at with 4-level page tables.
pub const USER_TOP: u64 = 0x7fff_ffff_f000;

/// The farthest a [`jump`] reaches.
pub const JUMP_REACH: u64 = 1 << 31;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_moves_back_over_syscall_and_loads_the_number() {
        let mut r = [0u64; REGS_WORDS];
        r[REG_RIP] = 0x40_1002;
        r[REG_ORIG_RAX] = 35;
        r[REG_RAX] = (-512i64) as u64;
        assert_eq!(interrupted_syscall(&r), Some((35, -512)));
        assert!(restart_syscall(&mut r, 35));
        assert_eq!((r[REG_RIP], r[REG_RAX]), (0x40_1000, 35));
        r[REG_RIP] = 1;
        assert!(!restart_syscall(&mut r, 35));
        r[REG_RAX] = (-4i64) as u64;
        assert_eq!(interrupted_syscall(&r), None, "EINTR is a result, not a restart");
    }

    #[test]
    fn the_jump_is_jmp_rel32_from_its_end() {
        assert_eq!(jump(0x1000, 0x1005).unwrap(), vec![0xe9, 0, 0, 0, 0]);
        assert_eq!(jump(0x1000, 0x1000).unwrap(), vec![0xe9, 0xfb, 0xff, 0xff, 0xff]);
    }
}
