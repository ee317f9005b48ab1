//! Per-process state restored by injection: working directory and root, umask, signal
//! dispositions, interval timers, personality, prctl values, resource limits.

use crate::abi;
use crate::plan::ProcPlan;
use crate::procfs;
use crate::tracee::{Batch, Tracee};
use crate::RestoreError;

/// Restores the process-wide state of `p` into `c` (before threads are created, so they
/// inherit what is inherited).
pub fn restore_task<T: Tracee + ?Sized>(c: &mut T, p: &ProcPlan) -> Result<(), RestoreError> {
    let r = &p.rec;
    // One batch (every call as it would be made alone, in order, up to the first failure),
    // its structures laid out in scratch beforehand.
    let mut s = c.scratch();
    let mut b = Batch::new();
    // The working directory first, by its path as the dumper saw it (from the restorer's
    // root); chroot leaves it where it is, inside the new root or not, as it was.
    // A deleted working directory is the restorer's recreation of it ([`crate::nodes`]).
    let cwd = crate::nodes::cwd_path(r.pid).unwrap_or_else(|| r.cwd.clone());
    let a = s.put_str(c, &cwd)?;
    b.call_for(format!("chdir {}", r.cwd), "chdir", libc::SYS_chdir, [a, 0, 0, 0, 0, 0]);
    if r.root != "/" && !r.root.is_empty() {
        let a = s.put_str(c, &r.root)?;
        b.call_for(format!("chroot {}", r.root), "chroot", libc::SYS_chroot, [a, 0, 0, 0, 0, 0]);
    }
    b.call("umask", libc::SYS_umask, [u64::from(r.umask), 0, 0, 0, 0, 0]);
    let sigs: Vec<u64> =
        (1..=64u64).filter(|&sig| sig != libc::SIGKILL as u64 && sig != libc::SIGSTOP as u64).collect();
    let mut acts = Vec::new();
    for &sig in &sigs {
        let act = r.sigactions.iter().find(|s| u64::from(s.sig) == sig);
        acts.push(match act {
            Some(s) => abi::kernel_sigaction(s.handler, s.flags, s.restorer, s.mask),
            None => abi::kernel_sigaction(0, 0, 0, 0),
        });
    }
    // Every disposition in one write: the calls point into it.
    let stride = acts.first().map_or(0, |w| w.len() as u64 * 8);
    let base = s.put_words(c, &acts.concat())?;
    for (i, &sig) in (0u64..).zip(&sigs) {
        let args = [sig, base + i * stride, 0, abi::KERNEL_SIGSET_SIZE, 0, 0];
        b.call_for(format!("signal {sig} disposition"), "rt_sigaction", libc::SYS_rt_sigaction, args);
    }
    for t in &r.itimers {
        let w = abi::interval_value(t.interval_us, t.value_us, 1_000_000);
        let a = s.put_words(c, &w)?;
        b.call("setitimer", libc::SYS_setitimer, [u64::from(t.which), a, 0, 0, 0, 0]);
    }
    b.call("personality", libc::SYS_personality, [u64::from(r.personality), 0, 0, 0, 0, 0]);
    // Before the credentials drop: a negative nice value needs CAP_SYS_NICE.
    b.call("setpriority", libc::SYS_setpriority, [libc::PRIO_PROCESS as u64, 0, abi::int(r.nice), 0, 0, 0]);
    if r.child_subreaper {
        b.call("prctl(PR_SET_CHILD_SUBREAPER)", libc::SYS_prctl, [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0]);
    }
    c.run(&mut s, b).map(|_| ())
}

/// Sets the resource limits of process `pid` from outside (`prlimit(2)`).
pub fn restore_rlimits(pid: i32, p: &ProcPlan) -> Result<(), RestoreError> {
    for (res, &(soft, hard)) in (0u32..).zip(p.rec.rlimits.iter()) {
        seamless_sys::proc::setrlimit_of(pid, res, soft, hard)
            .map_err(|e| RestoreError::sys(pid, format!("resource limit {res}"), e))?;
    }
    Ok(())
}

/// Last per-process settings (after creds): dumpable and the parent-death signal. Both
/// are set here because changing the credentials makes the kernel reset them (dumpable to 0
/// for a process that dropped root, the parent-death signal to none).
pub fn finish_task<T: Tracee + ?Sized>(c: &mut T, p: &ProcPlan) -> Result<(), RestoreError> {
    let pid = c.pid();
    // Only for a process that has its original parent again: a tree root restored under a
    // stand-in parent would get the signal when that parent exits, a death that never happened.
    let parent_now = procfs::read_stat(pid).ok().and_then(|s| i32::try_from(s.field(4)).ok()).unwrap_or(0);
    if p.rec.pdeath_signal != 0 && parent_now != p.rec.ppid {
        log::warn!(
            "pid {pid}: parent-death signal {} not restored: its parent is now {parent_now}, not {}",
            p.rec.pdeath_signal,
            p.rec.ppid
        );
    } else if p.rec.pdeath_signal != 0 {
        c.call(
            "prctl(PR_SET_PDEATHSIG)",
            libc::SYS_prctl,
            [libc::PR_SET_PDEATHSIG as u64, u64::from(p.rec.pdeath_signal), 0, 0, 0, 0],
        )?;
    }
    c.call(
        "prctl(PR_SET_DUMPABLE)",
        libc::SYS_prctl,
        [libc::PR_SET_DUMPABLE as u64, u64::from(p.rec.dumpable), 0, 0, 0, 0],
    )?;
    restore_settings(c, p)
}

/// The memory-management settings of the settings record: `PR_SET_THP_DISABLE` (only the
/// process itself can set it) and `oom_score_adj` (written from outside; a value below the
/// restorer's own needs `CAP_SYS_RESOURCE`).
fn restore_settings<T: Tracee + ?Sized>(c: &mut T, p: &ProcPlan) -> Result<(), RestoreError> {
    let pid = c.pid();
    if p.settings.thp_disabled {
        c.call("prctl(PR_SET_THP_DISABLE)", libc::SYS_prctl, [libc::PR_SET_THP_DISABLE as u64, 1, 0, 0, 0, 0])?;
    }
    if p.settings.oom_score_adj != 0 {
        let path = format!("/proc/{pid}/oom_score_adj");
        std::fs::write(&path, p.settings.oom_score_adj.to_string())
            .map_err(|e| RestoreError::io(pid, format!("setting oom_score_adj {}", p.settings.oom_score_adj), e))?;
    }
    Ok(())
}

const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;

/// POSIX timers with their original ids: via `PR_TIMER_CREATE_RESTORE_IDS` where the kernel
/// has it (6.16+), else by creating in id order with placeholders filling the gaps (ids are
/// handed out sequentially by older kernels). Called once every thread exists: a
/// `SIGEV_THREAD_ID` timer (glibc's `SIGEV_THREAD` timers aim at its helper thread) can only
/// be created for a live thread of the process.
pub fn restore_timers<T: Tracee + ?Sized>(c: &mut T, p: &ProcPlan) -> Result<(), RestoreError> {
    let pid = c.pid();
    let mut timers = p.rec.posix_timers.clone();
    if timers.is_empty() {
        return Ok(());
    }
    timers.sort_by_key(|t| t.id);
    let by_id = c
        .call("prctl(PR_TIMER_CREATE_RESTORE_IDS)", libc::SYS_prctl, [PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0, 0])
        .is_ok();
    let mut placeholders = Vec::new();
    for t in &timers {
        let mut s = c.scratch();
        let eva = s.put(c, &abi::sigevent(t.value, t.signo, t.notify, t.tid))?;
        let ida = s.reserve(pid, 4)?;
        loop {
            // The wanted id, for PR_TIMER_CREATE_RESTORE_IDS; the kernel writes the id it gave.
            c.write_mem(ida, &t.id.to_le_bytes()).map_err(|e| RestoreError::io(pid, "writing the timer id", e))?;
            c.call("timer_create", libc::SYS_timer_create, [abi::int(t.clock), eva, ida, 0, 0, 0])?;
            let mut b = [0u8; 4];
            c.read_mem(ida, &mut b).map_err(|e| RestoreError::io(pid, "reading timer id", e))?;
            let got = i32::from_le_bytes(b);
            if got == t.id {
                break;
            }
            if by_id || got > t.id {
                return Err(RestoreError::Failed { pid, what: format!("POSIX timer {} recreated as {got}", t.id) });
            }
            placeholders.push(got);
        }
        // A timer whose signal was pending at the dump expires at once: the kernel then queues
        // its own signal (see threads::queue_pending, which does not queue the recorded copy).
        let pending = p.threads.iter().flat_map(|th| th.pending.iter()).chain(p.rec.shared_pending.iter());
        let next_ns = match pending.filter_map(|i| crate::threads::timer_of_signal(i)).any(|id| id == t.id) {
            true => 1,
            false => t.next_ns,
        };
        let sa = s.put_words(c, &abi::interval_value(t.interval_ns, next_ns, 1_000_000_000))?;
        c.call("timer_settime", libc::SYS_timer_settime, [abi::int(t.id), 0, sa, 0, 0, 0])?;
    }
    for id in placeholders {
        c.call("timer_delete", libc::SYS_timer_delete, [abi::int(id), 0, 0, 0, 0, 0])?;
    }
    if by_id {
        c.call("prctl(PR_TIMER_CREATE_RESTORE_IDS)", libc::SYS_prctl, [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0, 0])?;
    }
    Ok(())
}
