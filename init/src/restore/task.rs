//! Per-process state restored by injection: working directory and root, umask, signal
//! dispositions, interval timers, personality, prctl values, resource limits.

use super::child::Child;
use super::plan::ProcPlan;
use super::procfs;
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
    restore_timers(c, p)?;
    c.call("personality", libc::SYS_personality, [u64::from(r.personality), 0, 0, 0, 0, 0])?;
    // Before the credentials drop: a negative nice value needs CAP_SYS_NICE.
    c.call("setpriority", libc::SYS_setpriority, [libc::PRIO_PROCESS as u64, 0, r.nice as i64 as u64, 0, 0, 0])?;
    if r.child_subreaper {
        c.call("prctl(PR_SET_CHILD_SUBREAPER)", libc::SYS_prctl, [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0])?;
    }
    for (res, &(soft, hard)) in r.rlimits.iter().enumerate() {
        seamless_sys::proc::setrlimit_of(c.pid, res as u32, soft, hard)
            .map_err(|e| RestoreError::sys(c.pid, format!("resource limit {res}"), e))?;
    }
    Ok(())
}

/// Last per-process settings (after creds): dumpable and the parent-death signal. Both
/// are set here because changing the credentials makes the kernel reset them (dumpable to 0
/// for a process that dropped root, the parent-death signal to none).
pub fn finish_task(c: &mut Child, p: &ProcPlan) -> Result<(), RestoreError> {
    // Only for a process that has its original parent again: a tree root restored under a
    // stand-in parent would get the signal when that parent exits, a death that never happened.
    let parent_now = procfs::read_stat(c.pid).map(|s| s.field(4) as i32).unwrap_or(0);
    if p.rec.pdeath_signal != 0 && parent_now != p.rec.ppid {
        log::warn!(
            "pid {}: parent-death signal {} not restored: its parent is now {parent_now}, not {}",
            c.pid,
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
fn restore_settings(c: &mut Child, p: &ProcPlan) -> Result<(), RestoreError> {
    if p.settings.thp_disabled {
        c.call("prctl(PR_SET_THP_DISABLE)", libc::SYS_prctl, [libc::PR_SET_THP_DISABLE as u64, 1, 0, 0, 0, 0])?;
    }
    if p.settings.oom_score_adj != 0 {
        let path = format!("/proc/{}/oom_score_adj", c.pid);
        std::fs::write(&path, p.settings.oom_score_adj.to_string())
            .map_err(|e| RestoreError::io(c.pid, format!("setting oom_score_adj {}", p.settings.oom_score_adj), e))?;
    }
    Ok(())
}

const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;

/// POSIX timers with their original ids: via `PR_TIMER_CREATE_RESTORE_IDS` where the kernel
/// has it (6.16+), else by creating in id order with placeholders filling the gaps (ids are
/// handed out sequentially by older kernels).
fn restore_timers(c: &mut Child, p: &ProcPlan) -> Result<(), RestoreError> {
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
        // struct sigevent: value, signo, notify, tid.
        let mut ev = [0u8; 64];
        ev[0..8].copy_from_slice(&t.value.to_le_bytes());
        ev[8..12].copy_from_slice(&t.signo.to_le_bytes());
        ev[12..16].copy_from_slice(&t.notify.to_le_bytes());
        ev[16..20].copy_from_slice(&t.tid.to_le_bytes());
        let eva = c.put(0, &ev)?;
        loop {
            let ida = c.put(128, &t.id.to_le_bytes())?;
            c.call("timer_create", libc::SYS_timer_create, [t.clock as u64, eva, ida, 0, 0, 0])?;
            let mut b = [0u8; 4];
            c.mem.read(ida, &mut b).map_err(|e| RestoreError::io(c.pid, "reading timer id", e))?;
            let got = i32::from_le_bytes(b);
            if got == t.id {
                break;
            }
            if by_id || got > t.id {
                return Err(RestoreError::Failed {
                    pid: c.pid,
                    what: format!("POSIX timer {} recreated as {got}", t.id),
                });
            }
            placeholders.push(got);
        }
        // A timer whose signal was pending at the dump expires at once: the kernel then queues
        // its own signal (see threads::queue_pending, which does not queue the recorded copy).
        let pending = p.threads.iter().flat_map(|th| th.pending.iter()).chain(p.rec.shared_pending.iter());
        let next_ns = match pending.filter_map(|i| super::threads::timer_of_signal(i)).any(|id| id == t.id) {
            true => 1,
            false => t.next_ns,
        };
        let spec = [
            t.interval_ns / 1_000_000_000,
            t.interval_ns % 1_000_000_000,
            next_ns / 1_000_000_000,
            next_ns % 1_000_000_000,
        ];
        let sa = c.put_words(256, &spec)?;
        c.call("timer_settime", libc::SYS_timer_settime, [t.id as u64, 0, sa, 0, 0, 0])?;
    }
    for id in placeholders {
        c.call("timer_delete", libc::SYS_timer_delete, [id as u64, 0, 0, 0, 0, 0])?;
    }
    if by_id {
        c.call("prctl(PR_TIMER_CREATE_RESTORE_IDS)", libc::SYS_prctl, [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0, 0])?;
    }
    Ok(())
}
