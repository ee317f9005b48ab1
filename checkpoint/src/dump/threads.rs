//! Threads: general registers, the XSAVE area, signal mask, pending signals, rseq, and the
//! per-thread values read by injection (sigaltstack, clear_child_tid, robust list).

use super::freeze::FrozenProc;
use super::process::Scratch;
use super::DumpError;
use seamless_image::records::{Aarch64Thread, SyscallState, ThreadRecord};
use seamless_sys::{arch, ptrace};

pub use seamless_sys::arch::{ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS, ERESTART_RESTARTBLOCK};

/// A thread's records: the thread record, and on aarch64 its CPU state in the three records
/// of its own (the thread record's `regs` and `xstate` are then empty).
#[derive(Debug)]
pub struct DumpedThread {
    /// The thread record.
    pub thread: ThreadRecord,
    /// aarch64 registers, FP/SIMD state and thread pointer.
    pub aarch64: Option<Aarch64Thread>,
}

/// A thread record's `regs` and `xstate`, and the aarch64 records.
type CpuState = (Vec<u64>, Vec<u8>, Option<Aarch64Thread>);

/// The CPU state as the image holds it on this architecture ([`arch::NAME`]): x86-64 in the
/// thread record itself (`regs`, `xstate`), aarch64 in records of its own.
fn cpu_state(pid: i32, tid: i32, regs: &arch::Regs, fp: Vec<u8>) -> Result<CpuState, DumpError> {
    if arch::NAME == "aarch64" {
        let a = Aarch64Thread::from_arch(tid, regs, &fp).ok_or_else(|| DumpError::Unsupported {
            pid,
            resource: format!("thread {tid}"),
            reason: format!(
                "registers of {} words and FP/SIMD state of {} bytes: not the aarch64 layout",
                regs.len(),
                fp.len()
            ),
        })?;
        Ok((Vec::new(), Vec::new(), Some(a)))
    } else {
        Ok((regs.to_vec(), fp, None))
    }
}

/// Dumps every thread of a live process.
pub fn dump_threads(p: &FrozenProc) -> Result<Vec<DumpedThread>, DumpError> {
    let pid = p.pid;
    let mut out = Vec::new();
    let mut cpu = Vec::new();
    for &tid in &p.tids {
        let regs = ptrace::get_regs(tid).map_err(|e| DumpError::sys(pid, format!("registers of thread {tid}"), e))?;
        // x86-64: the XSAVE area, or the FXSAVE area without XSAVE (some emulated CPUs).
        let xstate =
            arch::read_fpstate(tid).map_err(|e| DumpError::sys(pid, format!("FPU state of thread {tid}"), e))?;
        let sigmask =
            ptrace::get_sigmask(tid).map_err(|e| DumpError::sys(pid, format!("sigmask of thread {tid}"), e))?;
        let pending = ptrace::peek_siginfo(tid, false)
            .map_err(|e| DumpError::sys(pid, format!("pending signals of thread {tid}"), e))?
            .iter()
            .map(|i| i.to_vec())
            .collect();
        let rseq = ptrace::get_rseq(tid).map_err(|e| DumpError::sys(pid, format!("rseq of thread {tid}"), e))?;
        let syscall = match arch::interrupted_syscall(&regs) {
            Some((nr, code)) => SyscallState::Restart { nr, code },
            None => SyscallState::None,
        };
        let comm =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default().trim_end().to_string();
        let (regs, xstate, aarch64) = cpu_state(pid, tid, &regs, xstate)?;
        cpu.push(aarch64);
        out.push(ThreadRecord {
            tid,
            regs,
            xstate,
            sigmask,
            pending,
            syscall,
            rseq: (rseq.pointer != 0).then_some((rseq.pointer, rseq.size, rseq.signature)),
            robust_list: None,
            clear_child_tid: 0,
            altstack: (0, libc::SS_DISABLE, 0),
            comm,
        });
    }
    // Per-thread values only the thread can read.
    let mut s = Scratch::new(pid, pid)?;
    let a = s.addr;
    for t in out.iter_mut() {
        if t.tid != s.remote.tid {
            s.switch_thread(pid, t.tid)?;
        }
        // One batch, each call reading into words of its own: stack_t (3), the address, the
        // list head and its length.
        s.batch(
            pid,
            &[
                ("sigaltstack", libc::SYS_sigaltstack, [0, a, 0, 0, 0, 0]),
                ("prctl(PR_GET_TID_ADDRESS)", libc::SYS_prctl, [libc::PR_GET_TID_ADDRESS as u64, a + 24, 0, 0, 0, 0]),
                ("get_robust_list", libc::SYS_get_robust_list, [0, a + 32, a + 40, 0, 0, 0]),
            ],
        )?;
        let w = s.words(pid, 0, 6)?;
        t.altstack = (w[0], w[1] as u32 as i32, w[2]);
        t.clear_child_tid = w[3];
        if w[4] != 0 {
            t.robust_list = Some((w[4], w[5]));
        }
    }
    if s.remote.tid != pid {
        s.switch_thread(pid, pid)?;
    }
    s.release(pid)?;
    Ok(out.into_iter().zip(cpu).map(|(thread, aarch64)| DumpedThread { thread, aarch64 }).collect())
}
