//! aarch64 thread state: a thread of an aarch64 image keeps its [`super::ThreadRecord`]
//! (tid, signal mask, pending signals, rseq, ...) with `regs` and `xstate` empty, and its CPU
//! state in three records of its own (new kinds rather than new fields: see FORMAT.md,
//! "Compatibility"): [`Aarch64Regs`], [`Aarch64Fpsimd`] and [`Aarch64Tls`], each with owner =
//! pid and tag = tid.
//!
//! [`Aarch64Thread`] converts between these records and the word and byte layouts of
//! `seamless_sys::arch` on aarch64 (`user_pt_regs`, then the syscall number and TPIDR_EL0;
//! `user_fpsimd_state`), so the engine needs no architecture knowledge of its own.

use serde::{Deserialize, Serialize};

/// Words of `user_pt_regs`: x0–x30, sp, pc, pstate.
pub const PT_REGS_WORDS: usize = 34;
/// Words of the architecture layer's register array: `user_pt_regs`, the syscall number,
/// TPIDR_EL0.
pub const ARCH_REGS_WORDS: usize = PT_REGS_WORDS + 2;
/// Bytes of the 32 128-bit SIMD registers.
pub const VREGS_BYTES: usize = 512;
/// Bytes of `user_fpsimd_state`: the registers, fpsr, fpcr and 8 reserved bytes.
pub const FPSIMD_BYTES: usize = VREGS_BYTES + 16;
/// Index of sp in [`Aarch64Regs::regs`].
pub const SP: usize = 31;
/// Index of pc.
pub const PC: usize = 32;
/// Index of pstate.
pub const PSTATE: usize = 33;

/// General registers of one thread: stored under [`super::AARCH64_REGS`], owner = pid,
/// tag = tid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aarch64Regs {
    /// Thread id.
    pub tid: i32,
    /// x0–x30, sp, pc, pstate (`user_pt_regs` order, 34 words).
    pub regs: Vec<u64>,
}

/// FP/SIMD state of one thread (`user_fpsimd_state`): stored under [`super::AARCH64_FPSIMD`],
/// owner = pid, tag = tid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aarch64Fpsimd {
    /// Thread id.
    pub tid: i32,
    /// v0–v31, 16 bytes each, little-endian (512 bytes).
    pub vregs: Vec<u8>,
    /// FPSR.
    pub fpsr: u32,
    /// FPCR.
    pub fpcr: u32,
}

/// Thread pointer of one thread: stored under [`super::AARCH64_TLS`], owner = pid, tag = tid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aarch64Tls {
    /// Thread id.
    pub tid: i32,
    /// TPIDR_EL0 (`NT_ARM_TLS`).
    pub tpidr_el0: u64,
}

/// The three records of one aarch64 thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aarch64Thread {
    /// General registers.
    pub regs: Aarch64Regs,
    /// FP/SIMD state.
    pub fpsimd: Aarch64Fpsimd,
    /// Thread pointer.
    pub tls: Aarch64Tls,
}

impl Aarch64Thread {
    /// From the architecture layer's registers ([`ARCH_REGS_WORDS`] words) and FP/SIMD state
    /// ([`FPSIMD_BYTES`] bytes); `None` when either has another length. The syscall number
    /// is not kept: at a dump's stop the kernel has already rewound an interrupted call.
    pub fn from_arch(tid: i32, words: &[u64], fp: &[u8]) -> Option<Self> {
        if words.len() != ARCH_REGS_WORDS || fp.len() != FPSIMD_BYTES {
            return None;
        }
        let word = |at: usize| u32::from_le_bytes([fp[at], fp[at + 1], fp[at + 2], fp[at + 3]]);
        Some(Self {
            regs: Aarch64Regs { tid, regs: words[..PT_REGS_WORDS].to_vec() },
            fpsimd: Aarch64Fpsimd {
                tid,
                vregs: fp[..VREGS_BYTES].to_vec(),
                fpsr: word(VREGS_BYTES),
                fpcr: word(VREGS_BYTES + 4),
            },
            tls: Aarch64Tls { tid, tpidr_el0: words[ARCH_REGS_WORDS - 1] },
        })
    }

    /// The architecture layer's register words (syscall number -1: not in a call); `None`
    /// when the stored registers are not 34 words.
    pub fn arch_words(&self) -> Option<Vec<u64>> {
        if self.regs.regs.len() != PT_REGS_WORDS {
            return None;
        }
        let mut w = self.regs.regs.clone();
        w.push(u64::MAX);
        w.push(self.tls.tpidr_el0);
        Some(w)
    }

    /// `user_fpsimd_state` bytes; `None` when the stored registers are not 512 bytes.
    pub fn arch_fp(&self) -> Option<Vec<u8>> {
        if self.fpsimd.vregs.len() != VREGS_BYTES {
            return None;
        }
        let mut b = self.fpsimd.vregs.clone();
        b.extend_from_slice(&self.fpsimd.fpsr.to_le_bytes());
        b.extend_from_slice(&self.fpsimd.fpcr.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arch_layouts_round_trip_and_wrong_lengths_are_refused() {
        let words: Vec<u64> = (0..ARCH_REGS_WORDS as u64).collect();
        let mut fp: Vec<u8> = (0..FPSIMD_BYTES).map(|i| i.to_le_bytes()[0]).collect();
        fp[FPSIMD_BYTES - 8..].fill(0);
        let t = Aarch64Thread::from_arch(7, &words, &fp).unwrap();
        assert_eq!(t.tls.tpidr_el0, 35);
        assert_eq!(t.fpsimd.fpsr, u32::from_le_bytes([0, 1, 2, 3]));
        let mut back = words.clone();
        back[PT_REGS_WORDS] = u64::MAX;
        assert_eq!(t.arch_words().unwrap(), back);
        assert_eq!(t.arch_fp().unwrap(), fp);
        assert_eq!(Aarch64Thread::from_arch(7, &words[..27], &fp), None);
        assert_eq!(Aarch64Thread::from_arch(7, &words, &fp[..512]), None);
        let mut short = t.clone();
        short.regs.regs.pop();
        assert_eq!(short.arch_words(), None);
    }
}
