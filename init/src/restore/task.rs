//! Per-process state restored by injection: working directory and root, umask, signal
//! dispositions, interval timers, personality, prctl values, resource limits.

use super::child::Child;
use super::plan::ProcPlan;
use super::RestoreError;

/// Restores the process-wide state of `p` into `c` (before threads are created, so they
/// inherit what is inherited).
pub fn restore_task(c: &mut Child, p: &ProcPlan) -> Result<(), RestoreError> {
    let r = &p.rec;
    if r.root != "/" && !r.root.is_empty() {
        let a = c.put_str(0, &r.root)?;
        c.call("chroot", libc::SYS_chroot, [a, 0, 0, 0, 0, 0])?;
    }
    let a = c.put_str(0, &r.cwd)?;
    c.call("chdir", libc::SYS_chdir, [a, 0, 0, 0, 0, 0])
        .map_err(|e| RestoreError::Failed { pid: c.pid, what: format!("chdir {}: {e}", r.cwd) })?;
    c.call("umask", libc::SYS_umask, [u64::from(r.umask), 0, 0, 0, 0, 0])?;
    for sig in 1..=64u64 {
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            continue;
        }
        let act = r.sigactions.iter().find(|s| u64::from(s.sig) == sig);
        let w = match act {
            Some(s) => [s.handler, s.flags, s.restorer, s.mask],
            None => [0, 0, 0, 0],
        };
        let a = c.put_words(0, &w)?;
        c.call("rt_sigaction", libc::SYS_rt_sigaction, [sig, a, 0, 8, 0, 0])
            .map_err(|e| RestoreError::Failed { pid: c.pid, what: format!("signal {sig} disposition: {e}") })?;
    }
    for t in &r.itimers {
        let w = [t.interval_us / 1_000_000, t.interval_us % 1_000_000, t.value_us / 1_000_000, t.value_us % 1_000_000];
        let a = c.put_words(0, &w)?;
        c.call("setitimer", libc::SYS_setitimer, [u64::from(t.which), a, 0, 0, 0, 0])?;
    }
    c.call("personality", libc::SYS_personality, [u64::from(r.personality), 0, 0, 0, 0, 0])?;
    if r.pdeath_signal != 0 {
        c.call("prctl(PR_SET_PDEATHSIG)", libc::SYS_prctl, [libc::PR_SET_PDEATHSIG as u64, u64::from(r.pdeath_signal), 0, 0, 0, 0])?;
    }
    if r.child_subreaper {
        c.call("prctl(PR_SET_CHILD_SUBREAPER)", libc::SYS_prctl, [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0])?;
    }
    for (res, &(soft, hard)) in r.rlimits.iter().enumerate() {
        seamless_sys::proc::setrlimit_of(c.pid, res as u32, soft, hard)
            .map_err(|e| RestoreError::sys(c.pid, format!("resource limit {res}"), e))?;
    }
    Ok(())
}

/// Last per-process settings (after creds): dumpable.
pub fn finish_task(c: &mut Child, p: &ProcPlan) -> Result<(), RestoreError> {
    if p.rec.dumpable != 1 {
        c.call("prctl(PR_SET_DUMPABLE)", libc::SYS_prctl, [libc::PR_SET_DUMPABLE as u64, u64::from(p.rec.dumpable), 0, 0, 0, 0])?;
    }
    Ok(())
}
