//! Per-thread records: registers, extended state, signal mask, rseq, robust list.

use serde::{Deserialize, Serialize};

/// A syscall the thread was inside when it was stopped, and how to resume it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyscallState {
    /// Not in a syscall (or the syscall had completed): registers are resumed as saved.
    None,
    /// Interrupted by the freeze: restart syscall `nr` (rax = nr, rip -= 2) on restore.
    Restart {
        /// The syscall number (`orig_rax`).
        nr: u64,
        /// The kernel's return code seen at dump time (-ERESTART*).
        code: i64,
    },
}

/// One thread: stored under [`super::THREAD`], owner = pid, tag = tid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadRecord {
    /// Thread id.
    pub tid: i32,
    /// General registers, `user_regs_struct` order (27 words, incl. fs_base/gs_base).
    pub regs: Vec<u64>,
    /// The XSAVE area as `PTRACE_GETREGSET(NT_X86_XSTATE)` returned it.
    pub xstate: Vec<u8>,
    /// Blocked signals.
    pub sigmask: u64,
    /// Thread-private pending signals, raw 128-byte siginfos.
    pub pending: Vec<Vec<u8>>,
    /// Syscall restart information.
    pub syscall: SyscallState,
    /// rseq registration: (area, length, signature), if any.
    pub rseq: Option<(u64, u32, u32)>,
    /// Robust futex list head and length, if set.
    pub robust_list: Option<(u64, u64)>,
    /// `clear_child_tid` (set_tid_address), 0 when none.
    pub clear_child_tid: u64,
    /// sigaltstack: (sp, flags, size).
    pub altstack: (u64, i32, u64),
    /// `comm` of the thread.
    pub comm: String,
}
