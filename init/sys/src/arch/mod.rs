//! The architecture layer: everything the dump and restore engines need to know about the
//! CPU, behind one interface. The register set and how ptrace reads and writes it, the
//! FP/SIMD state, the system-call instruction and how an injected call is loaded and its
//! result read, the batch runner's machine code, the restart of an interrupted system call,
//! the check that a thread runs native 64-bit code, and the jump the cross-kernel vDSO
//! trampoline writes.
//!
//! The architecture is chosen here and only here; the modules above (`seamless-trace`,
//! `seamless-restore`, `seamless`) use these names without any `cfg(target_arch)` of their own.
//!
//! Both implementations provide the same items:
//! - [`NAME`], [`REGS_WORDS`], [`Regs`];
//! - accessors [`ip`], [`set_ip`], [`sp`], [`ret`], [`syscall_no`], [`forget_syscall`];
//! - [`load_syscall`], [`SYSCALL_INSN`], [`TRAMPOLINE`], [`find_syscall_insn`];
//! - the batch runner [`BATCH_CODE`], [`load_batch`], [`batch_cursor`], [`batch_stop_ip`];
//! - [`interrupted_syscall`], [`restart_syscall`];
//! - ptrace access [`read_regs`], [`write_regs`], [`native_mode`], [`uncarried_state`], [`read_fpstate`],
//!   [`write_fpstate`], [`write_fpstate_legacy`], [`FP_LEGACY_SIZE`];
//! - the vDSO jump [`JUMP_LEN`], [`jump`].

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
pub use self::aarch64::*;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("seamless supports x86_64 and aarch64 only");

/// Kernel-internal restart codes a system call interrupted by a signal (or the freeze)
/// returns while the thread is stopped.
pub const ERESTARTSYS: i64 = -512;
/// See [`ERESTARTSYS`].
pub const ERESTARTNOINTR: i64 = -513;
/// See [`ERESTARTSYS`].
pub const ERESTARTNOHAND: i64 = -514;
/// See [`ERESTARTSYS`].
pub const ERESTART_RESTARTBLOCK: i64 = -516;
/// All four restart codes.
pub const RESTART_CODES: [i64; 4] = [ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK];

/// Bytes of one entry of a batch table: number, six arguments, result (the layout both
/// batch runners read).
pub const BATCH_ENTRY: u64 = 64;

/// Position of the first occurrence of `insn` in `code` at a multiple of `align` bytes.
pub(crate) fn find_aligned(code: &[u8], insn: &[u8], align: usize) -> Option<usize> {
    (0..code.len().saturating_sub(insn.len() - 1)).step_by(align).find(|&i| code[i..].starts_with(insn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_syscall_instruction_is_found_at_an_aligned_offset_only() {
        let mut code = vec![0u8; 64];
        code[40..40 + SYSCALL_INSN.len()].copy_from_slice(SYSCALL_INSN);
        assert_eq!(find_syscall_insn(&code), Some(40));
        assert_eq!(find_syscall_insn(&code[..40]), None);
        assert_eq!(find_aligned(&[0, 1, 2, 3, 4, 5, 6, 7], &[4, 5, 6, 7], 4), Some(4));
        assert_eq!(find_aligned(&[0, 1, 2, 3, 4, 5, 6, 7], &[1, 2, 3, 4], 4), None);
        assert_eq!(find_aligned(&[0, 1, 2, 3, 4, 5, 6, 7], &[1, 2, 3, 4], 1), Some(1));
    }

    #[test]
    fn a_loaded_syscall_reads_back_through_the_accessors() {
        let mut r: Regs = [0; REGS_WORDS];
        set_ip(&mut r, 0x1000);
        load_syscall(&mut r, 0x2000, 57, [1, 2, 3, 4, 5, 6]);
        assert_eq!(ip(&r), 0x2000);
        assert_eq!(syscall_no(&r), -1, "an injected call is never taken for one to restart");
        assert_eq!(interrupted_syscall(&r), None);
        load_batch(&mut r, 0x3000, 0x4000, 0x4080);
        assert_eq!((ip(&r), batch_cursor(&r)), (0x3000, 0x4000));
    }

    #[test]
    fn the_trampoline_is_the_syscall_instruction_then_a_trap() {
        assert!(TRAMPOLINE.starts_with(SYSCALL_INSN));
        assert_eq!(find_syscall_insn(TRAMPOLINE), Some(0));
        assert!(BATCH_CODE.len() as u64 >= batch_stop_ip(0) - 4, "the stop lies inside the runner or just after it");
    }

    #[test]
    fn a_jump_reaches_its_target_and_refuses_what_is_out_of_reach() {
        let j = jump(0x10_0000, 0x20_0000).expect("1 MiB is in reach");
        assert_eq!(j.len(), JUMP_LEN);
        assert_eq!(jump(0x10_0000, 0x10_0000 + (1 << 40)), None);
    }
}
