//! Threads: created by injected `clone3(CLONE_THREAD, set_tid)` in the leader, each then
//! gets its rseq area, robust list, clear_child_tid, alternate stack, name and credentials
//! by injection in itself, and finally its saved registers, XSAVE area and signal mask.
//! Syscalls interrupted by the freeze are restarted (`rax = orig_rax`, `rip -= 2`).

use super::child::{wait_event_stop, Child};
use super::inject::Remote;
use super::plan::ProcPlan;
use super::RestoreError;
use seamless_image::records::{Creds, SyscallState, ThreadRecord};
use seamless_sys::ptrace::{self, Regs, REG_ORIG_RAX, REG_RAX, REG_RIP, USER_REGS_WORDS};

const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// Creates the non-leader threads with their saved tids; returns a [`Remote`] per thread
/// (leader excluded).
pub fn create_threads(c: &mut Child, p: &ProcPlan) -> Result<Vec<Remote>, RestoreError> {
    let mut out = Vec::new();
    for t in p.threads.iter().skip(1) {
        let tid_addr = c.put_words(256, &[t.tid as u64])?;
        // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        // stack_size, tls, set_tid, set_tid_size, cgroup.
        let args = [THREAD_FLAGS, 0, 0, 0, 0, 0, 0, 0, tid_addr, 1, 0];
        let a = c.put_words(0, &args)?;
        let got = c
            .call("clone3(thread)", libc::SYS_clone3, [a, 88, 0, 0, 0, 0])
            .map_err(|e| RestoreError::Failed { pid: c.pid, what: format!("creating thread {}: {e}", t.tid) })?;
        if got as i32 != t.tid {
            return Err(RestoreError::Failed { pid: c.pid, what: format!("thread {} created as {got}", t.tid) });
        }
        wait_event_stop(t.tid)?;
        let _ = c.remote.new_threads.pop();
        out.push(Remote::new(t.tid, c.tramp).map_err(|e| RestoreError::inject(t.tid, "take over new thread", e))?);
    }
    Ok(out)
}

fn call(pid: i32, r: &mut Remote, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, RestoreError> {
    r.syscall(name, nr, args).map_err(|e| RestoreError::inject(pid, name, e))
}

/// Per-thread kernel state that only the thread can set for itself.
pub fn thread_state(c: &Child, r: &mut Remote, t: &ThreadRecord) -> Result<(), RestoreError> {
    let pid = c.pid;
    if let Some((area, len, sig)) = t.rseq {
        call(pid, r, "rseq", libc::SYS_rseq, [area, u64::from(len), 0, u64::from(sig), 0, 0])?;
    }
    if let Some((head, len)) = t.robust_list {
        call(pid, r, "set_robust_list", libc::SYS_set_robust_list, [head, len, 0, 0, 0, 0])?;
    }
    call(pid, r, "set_tid_address", libc::SYS_set_tid_address, [t.clear_child_tid, 0, 0, 0, 0, 0])?;
    let (sp, flags, size) = t.altstack;
    let a = c.put_words(512, &[sp, flags as u32 as u64, size])?;
    if flags & libc::SS_DISABLE == 0 {
        call(pid, r, "sigaltstack", libc::SYS_sigaltstack, [a, 0, 0, 0, 0, 0])?;
    } else {
        let a = c.put_words(512, &[0, libc::SS_DISABLE as u64, 0])?;
        call(pid, r, "sigaltstack", libc::SYS_sigaltstack, [a, 0, 0, 0, 0, 0])?;
    }
    let name = c.put_str(1024, &t.comm.chars().take(15).collect::<String>())?;
    call(pid, r, "prctl(PR_SET_NAME)", libc::SYS_prctl, [libc::PR_SET_NAME as u64, name, 0, 0, 0, 0])?;
    Ok(())
}

/// The signal number of a raw siginfo (its first four bytes).
fn signo(pid: i32, tid: i32, info: &[u8]) -> Result<i32, RestoreError> {
    match info.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
        Some(b) if info.len() == seamless_image::validate::SIGINFO_SIZE => Ok(i32::from_le_bytes(b)),
        _ => Err(RestoreError::Corrupt {
            pid,
            what: format!("thread {tid}: pending signal info of {} bytes, expected 128", info.len()),
        }),
    }
}

/// The POSIX timer a pending signal comes from (`si_code == SI_TIMER`, `si_timerid`).
pub fn timer_of_signal(info: &[u8]) -> Option<i32> {
    let word = |at: usize| info.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(i32::from_le_bytes);
    // si_code at 8; the union of fields starts at 16 on 64-bit, with the timer id first.
    (word(8)? == libc::SI_TIMER).then(|| word(16)).flatten()
}

/// Re-queues the thread's (and, for the leader, the process's) pending signals; they stay
/// pending because every signal is blocked until the final mask is set. A pending signal of one
/// of the process's POSIX timers (`timers`) is not queued here: that timer is armed to expire at
/// once instead ([`super::task`]), so the kernel queues the timer's own signal, which later
/// expiries add to as overruns rather than as a second signal.
pub fn queue_pending(
    c: &Child,
    r: &mut Remote,
    t: &ThreadRecord,
    shared: &[Vec<u8>],
    timers: &[i32],
) -> Result<(), RestoreError> {
    let pid = c.pid;
    let own_timer = |info: &[u8]| timer_of_signal(info).is_some_and(|id| timers.contains(&id));
    for info in t.pending.iter().filter(|i| !own_timer(i)) {
        let sig = signo(pid, t.tid, info)?;
        let a = c.put(2048, info)?;
        call(
            pid,
            r,
            "rt_tgsigqueueinfo",
            libc::SYS_rt_tgsigqueueinfo,
            [pid as u64, t.tid as u64, sig as u64, a, 0, 0],
        )?;
    }
    for info in shared.iter().filter(|i| !own_timer(i)) {
        let sig = signo(pid, t.tid, info)?;
        let a = c.put(2048, info)?;
        call(pid, r, "rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo, [pid as u64, sig as u64, a, 0, 0, 0])?;
    }
    Ok(())
}

/// Sets the credentials of one thread (last, as they may drop the privileges the other
/// steps need).
pub fn set_creds(c: &Child, r: &mut Remote, cr: &Creds) -> Result<(), RestoreError> {
    let pid = c.pid;
    for cap in 0..64u64 {
        if cr.cap_bnd & (1 << cap) == 0 {
            let res =
                r.syscall("prctl(PR_CAPBSET_DROP)", libc::SYS_prctl, [libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0, 0]);
            if res.is_err() {
                break; // past the last capability the kernel knows
            }
        }
    }
    let groups: Vec<u8> = cr.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let a = c.put(4096, &groups)?;
    call(pid, r, "setgroups", libc::SYS_setgroups, [cr.groups.len() as u64, a, 0, 0, 0, 0])?;
    call(
        pid,
        r,
        "setresgid",
        libc::SYS_setresgid,
        [u64::from(cr.gids[0]), u64::from(cr.gids[1]), u64::from(cr.gids[2]), 0, 0, 0],
    )?;
    call(pid, r, "setfsgid", libc::SYS_setfsgid, [u64::from(cr.gids[3]), 0, 0, 0, 0, 0])?;
    let keep = cr.cap_prm != 0 && cr.uids[1] != 0;
    if keep {
        call(pid, r, "prctl(PR_SET_KEEPCAPS)", libc::SYS_prctl, [libc::PR_SET_KEEPCAPS as u64, 1, 0, 0, 0, 0])?;
    }
    call(
        pid,
        r,
        "setresuid",
        libc::SYS_setresuid,
        [u64::from(cr.uids[0]), u64::from(cr.uids[1]), u64::from(cr.uids[2]), 0, 0, 0],
    )?;
    call(pid, r, "setfsuid", libc::SYS_setfsuid, [u64::from(cr.uids[3]), 0, 0, 0, 0, 0])?;
    // capset: header {version 3, pid 0}, two data words {effective, permitted, inheritable}.
    let lo = |v: u64| v & 0xffff_ffff;
    let hi = |v: u64| v >> 32;
    let hdr = c.put(3072, &[0x22u8, 0x05, 0x08, 0x20, 0, 0, 0, 0])?;
    let mut data = Vec::new();
    for w in [lo(cr.cap_eff), lo(cr.cap_prm), lo(cr.cap_inh), hi(cr.cap_eff), hi(cr.cap_prm), hi(cr.cap_inh)] {
        data.extend_from_slice(&(w as u32).to_le_bytes());
    }
    let d = c.put(3136, &data)?;
    call(pid, r, "capset", libc::SYS_capset, [hdr, d, 0, 0, 0, 0])?;
    if keep {
        call(pid, r, "prctl(PR_SET_KEEPCAPS)", libc::SYS_prctl, [libc::PR_SET_KEEPCAPS as u64, 0, 0, 0, 0, 0])?;
    }
    if let Some(bits) = cr.securebits {
        let _ = r.syscall(
            "prctl(PR_SET_SECUREBITS)",
            libc::SYS_prctl,
            [libc::PR_SET_SECUREBITS as u64, u64::from(bits), 0, 0, 0, 0],
        );
    }
    if cr.no_new_privs {
        call(pid, r, "prctl(PR_SET_NO_NEW_PRIVS)", libc::SYS_prctl, [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0])?;
    }
    Ok(())
}

/// The registers a thread resumes with: the saved ones, with an interrupted syscall set up
/// to run again.
pub fn final_regs(t: &ThreadRecord) -> Result<Regs, String> {
    if t.regs.len() != USER_REGS_WORDS {
        return Err(format!("thread {}: {} register words saved, expected {USER_REGS_WORDS}", t.tid, t.regs.len()));
    }
    let mut r = [0u64; USER_REGS_WORDS];
    r.copy_from_slice(&t.regs);
    if let SyscallState::Restart { nr, .. } = t.syscall {
        r[REG_RAX] = nr;
        r[REG_RIP] = r[REG_RIP].checked_sub(2).ok_or_else(|| {
            format!("thread {}: rip {:#x} cannot be moved back to restart a syscall", t.tid, r[REG_RIP])
        })?;
    }
    r[REG_ORIG_RAX] = u64::MAX;
    Ok(r)
}

/// Loads the final registers, extended state and signal mask into a stopped thread.
pub fn load_thread(pid: i32, t: &ThreadRecord) -> Result<(), RestoreError> {
    let regs = final_regs(t).map_err(|what| RestoreError::Corrupt { pid, what })?;
    ptrace::set_regs(t.tid, &regs).map_err(|e| RestoreError::sys(pid, format!("registers of thread {}", t.tid), e))?;
    if let Err(e) = ptrace::set_xstate(t.tid, &t.xstate) {
        log::warn!("pid {pid} thread {}: full XSAVE area refused ({e}); restoring x87/SSE state only", t.tid);
        let n = t.xstate.len().min(512);
        ptrace::set_fpregs(t.tid, &t.xstate[..n])
            .map_err(|e| RestoreError::sys(pid, format!("FP state of thread {}", t.tid), e))?;
    }
    ptrace::set_sigmask(t.tid, t.sigmask)
        .map_err(|e| RestoreError::sys(pid, format!("signal mask of thread {}", t.tid), e))?;
    Ok(())
}

#[cfg(test)]
mod timer_signal_tests {
    use super::timer_of_signal;

    #[test]
    fn a_timer_signal_names_its_timer() {
        let mut info = vec![0u8; 128];
        info[0..4].copy_from_slice(&10i32.to_le_bytes());
        info[8..12].copy_from_slice(&libc::SI_TIMER.to_le_bytes());
        info[16..20].copy_from_slice(&7i32.to_le_bytes());
        assert_eq!(timer_of_signal(&info), Some(7));
        info[8..12].copy_from_slice(&libc::SI_QUEUE.to_le_bytes());
        assert_eq!(timer_of_signal(&info), None);
        assert_eq!(timer_of_signal(&info[..10]), None);
    }
}
