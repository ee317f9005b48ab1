//! Freezing: walk the trees, `PTRACE_SEIZE` + `PTRACE_INTERRUPT` every thread, wait for the
//! stops, and repeat until no new thread or child appears. [`Frozen`] detaches on drop.

use super::DumpError;
use seamless_sys::chain;
use seamless_sys::ptrace::{self, WaitStatus};
use seamless_trace::procfs;
use std::collections::BTreeSet;

/// One frozen process.
#[derive(Debug, Clone)]
pub struct FrozenProc {
    /// Pid.
    pub pid: i32,
    /// Parent pid.
    pub ppid: i32,
    /// Threads, leader first (empty for zombies).
    pub tids: Vec<i32>,
    /// Raw wait status of a zombie.
    pub zombie: Option<i32>,
    /// The signal that stopped the process (group stop: SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU)
    /// when it was stopped before the freeze.
    pub stop_signal: Option<i32>,
}

/// Processes held in ptrace stops. Dropping it resumes them.
#[derive(Debug)]
pub struct Frozen {
    procs: Vec<FrozenProc>,
    seized: Vec<i32>,
    done: bool,
    /// The network lock table installed for these processes' connections, if any.
    net_lock: Option<String>,
    /// Threads found in a group stop, with its signal.
    stopped: std::collections::BTreeMap<i32, i32>,
}

impl Frozen {
    /// The processes, parents before children.
    pub fn procs(&self) -> &[FrozenProc] {
        &self.procs
    }

    /// Takes charge of the network lock table `table`: lifted when the processes are resumed
    /// (or the dump is abandoned), left in place for the restore when they are killed.
    pub fn hold_net_lock(&mut self, table: String) {
        crate::supervisor::note(&crate::supervisor::Undo::NetLocked(table.clone()));
        self.net_lock = Some(table);
    }

    /// Detaches from every thread; the processes continue where they were. The network lock,
    /// if any, is lifted once their sockets are out of repair mode.
    pub fn resume(mut self) {
        super::sockets::leave_repair();
        self.detach_all();
        self.lift_net_lock();
    }

    /// Kills every process with SIGKILL (then detaches). The network lock stays: the killed
    /// processes' connections are silent until `seamless restore` has repaired them.
    pub fn kill(mut self) {
        for p in &self.procs {
            if p.zombie.is_none() {
                let _ = seamless_sys::proc::kill(p.pid, libc::SIGKILL);
            }
        }
        self.detach_all();
        super::sockets::repair_for_kill();
        if let Some(table) = self.net_lock.take() {
            log::info!(
                "network lock: table inet {table} stays until `seamless restore` has repaired the connections \
                 (or `nft delete table inet {table}` gives them up)"
            );
            crate::supervisor::note(&crate::supervisor::Undo::NetReleased(table));
        }
    }

    fn lift_net_lock(&mut self) {
        if let Some(table) = self.net_lock.take() {
            seamless_restore::netlock::lift_logged(&table, "resuming the dumped processes");
            crate::supervisor::note(&crate::supervisor::Undo::NetReleased(table));
        }
    }

    fn detach_all(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        for &t in &self.seized {
            if let Err(e) = ptrace::detach(t, 0) {
                log::debug!("detach tid {t}: {}", chain(&e));
            }
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.done {
            super::sockets::leave_repair();
        }
        self.detach_all();
        self.lift_net_lock();
    }
}

/// Seizes and stops `tid`; returns the group-stop signal when it was stopped already (a
/// seized tracee reports a group stop as `PTRACE_EVENT_STOP` with the stop signal, any other
/// stop of ours with SIGTRAP).
pub(super) fn seize_one(tid: i32) -> Result<Option<i32>, seamless_sys::SysError> {
    ptrace::seize(tid, 0)?;
    ptrace::interrupt(tid)?;
    loop {
        let (_, st) = ptrace::wait(tid)?;
        match st {
            WaitStatus::Stopped { event: ptrace::EVENT_STOP, sig } => {
                let group = [libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU].contains(&sig);
                return Ok(group.then_some(sig));
            }
            WaitStatus::Stopped { sig, event: 0 } => {
                // A signal-delivery stop came first: leave the signal pending and wait for our stop.
                log::debug!("tid {tid}: signal {sig} while freezing; re-queued");
                ptrace::cont(tid, sig)?;
            }
            WaitStatus::Stopped { .. } => ptrace::cont(tid, 0)?,
            WaitStatus::Exited(_) | WaitStatus::Signaled(_) => {
                return Err(seamless_sys::SysError::new(
                    "waitpid",
                    format!("tid {tid}"),
                    std::io::Error::from_raw_os_error(libc::ESRCH),
                ))
            }
        }
    }
}

/// Whether `pid` is one of `roots` or a descendant of one (parent links in `/proc`).
fn descends_from(pid: i32, roots: &[i32]) -> bool {
    let mut cur = pid;
    for _ in 0..4096 {
        if roots.contains(&cur) {
            return true;
        }
        match procfs::read_stat(cur).ok().and_then(|s| i32::try_from(s.field(4)).ok()) {
            Some(ppid) if ppid > 1 && ppid != cur => cur = ppid,
            _ => return false,
        }
    }
    false
}

/// The `TracerPid:` of a thread's status (0: not traced), `None` when unreadable.
fn tracer_of(tid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("TracerPid:")).and_then(|v| v.trim().parse().ok())
}

/// Most instructions a thread is single-stepped to leave the vDSO.
const VDSO_STEP_LIMIT: usize = 100_000;

/// A thread stopped in the middle of a vDSO function (not in a system call made from it) is
/// single-stepped until it has left the vDSO: on another kernel the old vDSO's code is only a
/// trampoline at each function's first instruction (see `seamless_restore::vdso`), and
/// the rest of the old code reads data pages that no longer exist. The thread only runs its
/// own code a little further, as if the freeze had come a few instructions later.
pub fn settle_out_of_vdso(p: &FrozenProc) -> Result<(), DumpError> {
    let maps = procfs::read_maps(p.pid).map_err(|e| DumpError::io(p.pid, "reading maps", e))?;
    let Some(vdso) = maps.iter().find(|m| m.name == "[vdso]").map(|m| m.start..m.end) else {
        return Ok(());
    };
    for &tid in &p.tids {
        let regs = ptrace::get_regs(tid).map_err(|e| DumpError::sys(p.pid, format!("registers of thread {tid}"), e))?;
        let in_syscall = seamless_sys::arch::interrupted_syscall(&regs).is_some();
        if !vdso.contains(&seamless_sys::arch::ip(&regs)) || in_syscall {
            continue;
        }
        let (mut remote, mask) = super::process::take_over(p.pid, tid, 0)?;
        let out = remote.step_out_of(vdso.clone(), VDSO_STEP_LIMIT);
        super::process::finish(p.pid, &mut remote, mask)?;
        match out {
            Ok(true) => log::debug!("pid {}: thread {tid} stepped out of the vDSO", p.pid),
            Ok(false) => log::warn!(
                "pid {}: thread {tid} is still inside the vDSO after {VDSO_STEP_LIMIT} instructions; a restore on \
                 another kernel may fail for it",
                p.pid
            ),
            Err(e) => return Err(DumpError::inject(p.pid, format!("stepping thread {tid} out of the vDSO"), e)),
        }
    }
    Ok(())
}

/// Freezes the trees rooted at `roots`.
pub fn freeze_trees(roots: &[i32]) -> Result<Frozen, DumpError> {
    let me = seamless_sys::proc::own_pid();
    let mut frozen =
        Frozen { procs: Vec::new(), seized: Vec::new(), done: false, net_lock: None, stopped: Default::default() };
    let mut seized: BTreeSet<i32> = BTreeSet::new();
    for &r in roots {
        if r == me || r <= 1 {
            return Err(DumpError::BadTarget { pid: r, reason: "cannot dump init or seamless itself".into() });
        }
        procfs::read_stat(r)
            .map_err(|e| DumpError::BadTarget { pid: r, reason: format!("no such process ({})", chain(&e)) })?;
    }
    // Repeat until a whole pass finds nothing new.
    loop {
        crate::interrupt::check("freeze")?;
        let mut changed = false;
        let mut order: Vec<(i32, i32)> = Vec::new(); // (pid, ppid)
        let mut queue: Vec<(i32, i32)> = roots.iter().map(|&r| (r, 0)).collect();
        let mut seen = BTreeSet::new();
        while let Some((pid, _)) = queue.first().copied() {
            queue.remove(0);
            if !seen.insert(pid) {
                continue;
            }
            let stat = match procfs::read_stat(pid) {
                Ok(s) => s,
                Err(e) => return Err(DumpError::io(pid, "reading /proc/PID/stat", e)),
            };
            order.push((pid, stat.field(4) as i32));
            if stat.state() == 'Z' || stat.state() == 'X' {
                continue;
            }
            let tids = procfs::tids(pid).map_err(|e| DumpError::io(pid, "listing threads", e))?;
            for t in tids {
                if seized.contains(&t) {
                    continue;
                }
                match seize_one(t) {
                    Ok(stop) => {
                        if let Some(sig) = stop {
                            frozen.stopped.insert(t, sig);
                        }
                        seized.insert(t);
                        frozen.seized.push(t);
                        changed = true;
                    }
                    Err(e) if e.errno() == Some(libc::ESRCH) => changed = true,
                    Err(e) if e.errno() == Some(libc::EPERM) && tracer_of(t).is_some_and(|x| x != 0) => {
                        let tracer = tracer_of(t).unwrap_or(0);
                        let inside = if descends_from(tracer, roots) {
                            "a process of the dumped trees"
                        } else {
                            "a process outside the dumped trees"
                        };
                        return Err(DumpError::Unsupported {
                            pid,
                            resource: format!("thread {t}"),
                            reason: format!(
                                "is traced (ptrace) by pid {tracer}, {inside}: a thread has one tracer, and ptrace relationships and ptrace stops are not restored; detach the tracer (debugger, strace) first"
                            ),
                        });
                    }
                    Err(e) => return Err(DumpError::sys(pid, format!("freezing thread {t}"), e)),
                }
            }
            for c in procfs::children(pid).map_err(|e| DumpError::io(pid, "listing children", e))? {
                queue.push((c, pid));
            }
        }
        if !changed {
            for (pid, ppid) in order {
                let stat = procfs::read_stat(pid).map_err(|e| DumpError::io(pid, "reading /proc/PID/stat", e))?;
                let zombie = if stat.state() == 'Z' { Some(stat.field(52) as i32) } else { None };
                let tids = if zombie.is_some() {
                    Vec::new()
                } else {
                    procfs::tids(pid).map_err(|e| DumpError::io(pid, "listing threads", e))?
                };
                let stop_signal = tids.iter().find_map(|t| frozen.stopped.get(t).copied());
                frozen.procs.push(FrozenProc { pid, ppid, tids, zombie, stop_signal });
            }
            return Ok(frozen);
        }
    }
}
