//! Seccomp filters of a process (classic BPF programs as `PTRACE_SECCOMP_GET_FILTER` returns
//! them) and a small evaluator of such programs against a `struct seccomp_data`, used by the
//! dump to decide whether the system calls it injects pass a process's filters, and by
//! validation to refuse programs the kernel would not run.

use serde::{Deserialize, Serialize};

/// The seccomp filters of one process: stored under [`super::SECCOMP`], owner = pid, at most
/// one per live process. Not ignorable: a reader without it would restore the process
/// without its filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SeccompRecord {
    /// Distinct filters; the same index in two threads' chains is one filter shared by them.
    pub filters: Vec<SeccompFilter>,
    /// Each filtered thread with its chain: indices into `filters`, oldest first.
    pub threads: Vec<(i32, Vec<u32>)>,
}

/// One filter: its program and the flags it was installed with that the kernel reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct SeccompFilter {
    /// Instructions, each `code | jt << 16 | jf << 24 | k << 32` (`struct sock_filter`).
    pub prog: Vec<u64>,
    /// `SECCOMP_FILTER_FLAG_LOG` (2) or 0.
    pub flags: u32,
}

/// `SECCOMP_FILTER_FLAG_TSYNC`.
pub const FLAG_TSYNC: u32 = 1;
/// `SECCOMP_FILTER_FLAG_LOG`.
pub const FLAG_LOG: u32 = 2;
/// Longest program the kernel accepts (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// `SECCOMP_RET_ACTION_FULL`.
pub const RET_ACTION_FULL: u32 = 0xffff_0000;
/// `SECCOMP_RET_ALLOW`.
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_LOG`.
pub const RET_LOG: u32 = 0x7ffc_0000;
/// `SECCOMP_RET_USER_NOTIF`.
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// `struct seccomp_data`: what a filter sees of a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeccompData {
    /// System call number.
    pub nr: i32,
    /// `AUDIT_ARCH_*`.
    pub arch: u32,
    /// Address of the instruction after the `syscall`.
    pub instruction_pointer: u64,
    /// The six arguments.
    pub args: [u64; 6],
}

impl SeccompData {
    /// The 32-bit word at byte offset `off` (a multiple of 4 below 64), as `BPF_LD|BPF_ABS` reads it.
    fn word(&self, off: u32) -> Option<u32> {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&self.nr.to_le_bytes());
        b[4..8].copy_from_slice(&self.arch.to_le_bytes());
        b[8..16].copy_from_slice(&self.instruction_pointer.to_le_bytes());
        for (i, a) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let o = usize::try_from(off).ok().filter(|o| o % 4 == 0 && *o + 4 <= 64)?;
        Some(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]))
    }
}

/// Checks what the kernel checks before it runs a filter: a length of 1 to 4096, only the
/// instructions seccomp allows, every jump inside the program, the last instruction a return.
pub fn check_program(prog: &[u64]) -> Result<(), BadProgram> {
    if prog.is_empty() || prog.len() > MAX_INSNS {
        return Err(BadProgram::Length(prog.len()));
    }
    for (at, &insn) in prog.iter().enumerate() {
        let bad = BadProgram::Insn { at, insn };
        let (code, jt, jf, k) = parts(insn);
        let ok = match code {
            0x20 => k % 4 == 0 && k < 64,
            0x80 | 0x00 | 0x01 | 0x81 | 0x07 | 0x87 | 0x06 | 0x16 => true,
            0x60 | 0x61 | 0x02 | 0x03 => k < 16,
            c if c & 0x07 == 0x04 => matches!(c & 0xf0, 0x00..=0xa0) && !(matches!(c, 0x34 | 0x94) && k == 0),
            0x05 => usize::try_from(k).ok().and_then(|k| (at + 1).checked_add(k)).is_some_and(|t| t < prog.len()),
            c if c & 0x07 == 0x05 && matches!(c & 0xf0, 0x10..=0x40) => at + 1 + usize::from(jt.max(jf)) < prog.len(),
            _ => false,
        };
        if !ok {
            return Err(bad);
        }
    }
    match prog.last().map(|&i| parts(i).0) {
        Some(0x06 | 0x16) => Ok(()),
        _ => Err(BadProgram::Insn { at: prog.len() - 1, insn: prog[prog.len() - 1] }),
    }
}

/// The outcome of running a program on one [`SeccompData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The value returned (`SECCOMP_RET_*` action and data).
    pub ret: u32,
    /// Whether the path taken read the instruction pointer or an argument (the verdict may
    /// then differ for other values of them).
    pub read_args: bool,
}

/// Why a program cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadProgram {
    /// Empty or longer than [`MAX_INSNS`].
    #[error("program of {0} instructions (1 to 4096 allowed)")]
    Length(usize),
    /// An instruction seccomp does not allow, or a jump or load out of range.
    #[error("instruction {at} ({insn:#018x}) is not allowed in a seccomp filter or jumps out of the program")]
    Insn {
        /// Index.
        at: usize,
        /// The packed instruction.
        insn: u64,
    },
}

/// One decoded instruction.
fn parts(insn: u64) -> (u16, u8, u8, u32) {
    let b = insn.to_le_bytes();
    (u16::from_le_bytes([b[0], b[1]]), b[2], b[3], u32::from_le_bytes([b[4], b[5], b[6], b[7]]))
}

/// Runs `prog` (classic BPF, the subset seccomp accepts: loads of `seccomp_data` words and of
/// the length, the scratch memory, ALU, jumps, returns) on `data`. Every path of a program
/// the kernel accepted ends in a return; a program that does not (or uses anything else) is a
/// [`BadProgram`].
pub fn evaluate(prog: &[u64], data: &SeccompData) -> Result<Verdict, BadProgram> {
    if prog.is_empty() || prog.len() > MAX_INSNS {
        return Err(BadProgram::Length(prog.len()));
    }
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut read_args = false;
    let mut pc = 0usize;
    // Jumps only go forward, so at most len steps.
    for _ in 0..=prog.len() {
        let Some(&insn) = prog.get(pc) else { break };
        let at = pc;
        let bad = || BadProgram::Insn { at, insn };
        let (code, jt, jf, k) = parts(insn);
        let class = code & 0x07;
        let src_x = code & 0x08 != 0;
        let operand = if src_x { x } else { k };
        pc += 1;
        match class {
            // BPF_LD
            0x00 => {
                a = match code {
                    0x20 => {
                        // BPF_LD|BPF_W|BPF_ABS
                        if k >= 8 {
                            read_args = true;
                        }
                        data.word(k).ok_or_else(bad)?
                    }
                    0x80 => 64, // BPF_LD|BPF_W|BPF_LEN
                    0x00 => k,  // BPF_LD|BPF_IMM
                    0x60 => *mem.get(usize::try_from(k).map_err(|_| bad())?).ok_or_else(bad)?,
                    _ => return Err(bad()),
                }
            }
            // BPF_LDX
            0x01 => {
                x = match code {
                    0x01 => k,  // BPF_LDX|BPF_IMM
                    0x81 => 64, // BPF_LDX|BPF_W|BPF_LEN
                    0x61 => *mem.get(usize::try_from(k).map_err(|_| bad())?).ok_or_else(bad)?,
                    _ => return Err(bad()),
                }
            }
            // BPF_ST, BPF_STX
            0x02 | 0x03 => {
                let v = if class == 0x02 { a } else { x };
                *mem.get_mut(usize::try_from(k).map_err(|_| bad())?).ok_or_else(bad)? = v;
            }
            // BPF_ALU
            0x04 => {
                a = match code & 0xf0 {
                    0x00 => a.wrapping_add(operand),
                    0x10 => a.wrapping_sub(operand),
                    0x20 => a.wrapping_mul(operand),
                    0x30 => a.checked_div(operand).ok_or_else(bad)?,
                    0x40 => a | operand,
                    0x50 => a & operand,
                    0x60 => a.checked_shl(operand).unwrap_or(0),
                    0x70 => a.checked_shr(operand).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0x90 => a.checked_rem(operand).ok_or_else(bad)?,
                    0xa0 => a ^ operand,
                    _ => return Err(bad()),
                }
            }
            // BPF_JMP
            0x05 => {
                let op = code & 0xf0;
                if op == 0x00 {
                    // BPF_JA
                    pc = pc.checked_add(usize::try_from(k).map_err(|_| bad())?).ok_or_else(bad)?;
                } else {
                    let taken = match op {
                        0x10 => a == operand,
                        0x20 => a > operand,
                        0x30 => a >= operand,
                        0x40 => a & operand != 0,
                        _ => return Err(bad()),
                    };
                    pc += usize::from(if taken { jt } else { jf });
                }
                if pc >= prog.len() {
                    return Err(bad());
                }
            }
            // BPF_RET
            0x06 => {
                let ret = match code & 0x18 {
                    0x00 => k, // BPF_K
                    0x10 => a, // BPF_A
                    _ => return Err(bad()),
                };
                return Ok(Verdict { ret, read_args });
            }
            // BPF_MISC: TAX, TXA
            0x07 => match code {
                0x07 => x = a,
                0x87 => a = x,
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        }
    }
    Err(BadProgram::Insn { at: prog.len().saturating_sub(1), insn: prog.last().copied().unwrap_or(0) })
}

/// The verdict of a chain of filters (oldest first) on `data`: the kernel runs every filter
/// and takes the action with the highest precedence (the lowest value of
/// `ret & SECCOMP_RET_ACTION_FULL` read as signed, see `seccomp(2)`), the first such one
/// (newest first) on ties.
pub fn evaluate_chain(chain: &[&[u64]], data: &SeccompData) -> Result<Verdict, BadProgram> {
    let mut best: Option<Verdict> = None;
    let mut read_args = false;
    for prog in chain.iter().rev() {
        let v = evaluate(prog, data)?;
        read_args |= v.read_args;
        let rank = |r: u32| i32::from_ne_bytes((r & RET_ACTION_FULL).to_ne_bytes());
        if best.is_none_or(|b| rank(v.ret) < rank(b.ret)) {
            best = Some(v);
        }
    }
    let ret = best.map(|b| b.ret).unwrap_or(RET_ALLOW);
    Ok(Verdict { ret, read_args })
}

/// Whether a verdict lets the call run as if there were no filter.
pub fn allows(ret: u32) -> bool {
    matches!(ret & RET_ACTION_FULL, RET_ALLOW | RET_LOG)
}

/// Whether some path of `prog` can return `SECCOMP_RET_USER_NOTIF` (a constant return of
/// that action; a return of the accumulator counts as possible).
pub fn may_notify(prog: &[u64]) -> bool {
    prog.iter().any(|&i| {
        let (code, _, _, k) = parts(i);
        (code == 0x06 && k & RET_ACTION_FULL == RET_USER_NOTIF) || code == 0x16
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(code: u16, k: u32) -> u64 {
        u64::from(code) | u64::from(k) << 32
    }
    fn jump(code: u16, k: u32, jt: u8, jf: u8) -> u64 {
        u64::from(code) | u64::from(jt) << 16 | u64::from(jf) << 24 | u64::from(k) << 32
    }

    /// The shape libseccomp and systemd generate: check the arch, load nr, compare, return.
    fn deny(nr: u32, errno: u32) -> Vec<u64> {
        vec![
            stmt(0x20, 4),
            jump(0x15, AUDIT_ARCH_X86_64, 1, 0),
            stmt(0x06, 0), // kill
            stmt(0x20, 0),
            jump(0x15, nr, 0, 1),
            stmt(0x06, 0x0005_0000 | errno),
            stmt(0x06, RET_ALLOW),
        ]
    }

    #[test]
    fn a_deny_list_filter_is_evaluated_like_the_kernel() {
        let f = deny(39, 1);
        let d = |nr| SeccompData { nr, arch: AUDIT_ARCH_X86_64, ..Default::default() };
        assert_eq!(evaluate(&f, &d(39)).unwrap(), Verdict { ret: 0x0005_0001, read_args: false });
        assert_eq!(evaluate(&f, &d(40)).unwrap().ret, RET_ALLOW);
        let other_arch = SeccompData { nr: 39, arch: 0x4000_0003, ..Default::default() };
        assert_eq!(evaluate(&f, &other_arch).unwrap().ret, 0);
        // Chains: the strictest action wins (kill < errno < allow).
        let g = deny(40, 2);
        assert_eq!(evaluate_chain(&[&f, &g], &d(40)).unwrap().ret, 0x0005_0002);
        assert!(allows(evaluate_chain(&[&f, &g], &d(41)).unwrap().ret));
        assert!(!allows(0x0005_0001));
    }

    #[test]
    fn argument_reads_are_reported_and_bad_programs_refused() {
        let f = vec![stmt(0x20, 16), jump(0x15, 7, 0, 1), stmt(0x06, 0), stmt(0x06, RET_ALLOW)];
        let v = evaluate(&f, &SeccompData { args: [7, 0, 0, 0, 0, 0], ..Default::default() }).unwrap();
        assert_eq!(v, Verdict { ret: 0, read_args: true });
        assert!(matches!(evaluate(&[], &SeccompData::default()), Err(BadProgram::Length(0))));
        // A jump past the end, a load beyond seccomp_data, no return at the end.
        assert!(evaluate(&[jump(0x15, 0, 5, 5), stmt(0x06, 0)], &SeccompData::default()).is_err());
        assert!(evaluate(&[stmt(0x20, 64), stmt(0x06, 0)], &SeccompData::default()).is_err());
        assert!(evaluate(&[stmt(0x20, 0)], &SeccompData::default()).is_err());
        assert!(check_program(&deny(39, 1)).is_ok());
        assert!(check_program(&[jump(0x15, 0, 5, 5), stmt(0x06, 0)]).is_err());
        assert!(check_program(&[stmt(0x06, 0), stmt(0x20, 0)]).is_err());
        assert!(may_notify(&[stmt(0x06, RET_USER_NOTIF)]));
        assert!(!may_notify(&deny(1, 1)));
    }
}
