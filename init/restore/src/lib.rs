//! Restore: recreate the saved process trees with their original pids, address spaces,
//! threads, registers, files and signal state.
//!
//! # Design: syscall injection driven from outside
//!
//! The restorer (the `seamless restore` command, or `seamless-init` as PID 1 after a kexec)
//! never runs code inside the restored address space except single system calls. It forks
//! each process with `clone3(set_tid = [pid])` ([`tree`]); the forked helper only joins its
//! session/group, forks its own children the same way and waits in `pause()`. The restorer
//! then `PTRACE_SEIZE`s it and turns it into the saved process by *injecting* system calls:
//! it maps a one-page trampoline holding `syscall; int3` at an address that is free in both
//! the current and the saved layout ([`child`]), loads a call into the registers, points
//! `rip` at the trampoline and single-steps ([`inject`]). With that it unmaps the helper's
//! memory, maps every saved area at its address and writes the pages through
//! `/proc/PID/mem` ([`mm`]), installs descriptors with `pidfd_getfd` on the restorer
//! ([`files`]), sets dispositions, limits, cwd, timers ([`process`]), creates the other
//! threads with `clone3(CLONE_THREAD, set_tid)` and gives each its rseq area, robust list,
//! alternate stack and credentials ([`threads`]); last it unmaps the trampoline, loads every
//! thread's registers, XSAVE area and signal mask, and detaches.
//!
//! Why not a position-independent restorer blob run inside the target (the other classic
//! design): the blob must itself live somewhere in the target's address space while it
//! replaces that address space, must be written in a freestanding subset of the language,
//! and its failures surface as a dead process with no message. Injection keeps all logic in
//! ordinary, testable Rust in the restorer, reports every failing step with the pid, call
//! and address, works identically from `seamless-init` as PID 1, and costs one ptrace round
//! trip per syscall (a few microseconds, but two context switches each, which dominated the
//! restore of small processes: about 120 per process). So the code placed in the target is
//! the 2-byte `syscall` instruction and, beside it, a 59-byte loop that runs a table of
//! system calls and stops on a trap after the last or the first that failed
//! ([`inject::BATCH_CODE`]): steps whose calls do not depend on each other's results (the 62
//! signal dispositions, the credentials, a thread's own state, the unmapping of the helper's
//! memory) go as one batch, one round trip ([`tracee::Batch`]), with the same order, the same
//! checks and the same error naming the failed call as call after call.
//!
//! # vDSO across kernels
//!
//! See [`vdso`]: on the same kernel the helper's own vvar/vdso are `mremap`ed to the saved
//! addresses; on a different kernel (detected by comparing the saved vDSO bytes with the
//! running one) the new vDSO is placed near the old address and a copy of the old vDSO is
//! mapped at the old address with every exported function patched into a jump to the new
//! vDSO's function of the same name. Forced for tests with
//! [`RestoreOptions::force_vdso_trampoline`] (`SEAMLESS_FORCE_VDSO_TRAMPOLINE=1`).
//!
//! # Interrupted system calls
//!
//! A thread frozen inside a syscall was left by the kernel with `rax = -ERESTART*`,
//! `orig_rax = nr`; restore sets `rax = nr` and `rip -= 2`, so the syscall is issued again
//! (a relative sleep restarts with its full interval; `restart_syscall` is never used since
//! its kernel-side state does not survive).

// Record fields become syscall arguments and buffer sizes: no conversion may drop bits unseen.
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

pub mod abi;
pub mod cgroup;
pub mod child;
pub mod cow;
pub mod epoll;
pub mod eventfd;
pub mod files;
pub mod inotify;
pub mod locks;
pub mod mm;
pub mod mq_notify;
pub mod netlock;
pub mod nodes;
pub mod objects;
pub mod paths;
pub mod pidfd;
pub mod plan;
pub mod process;
pub mod sched;
pub mod seccomp;
pub mod sockets;
pub mod sysv;
pub mod tcp_states;
pub mod threads;
pub mod tracee;
pub mod tree;
pub mod tty;
pub mod unix;
pub mod vdso;

// The tracing machinery lives in its own crate, shared with the dump side.
pub use seamless_trace::{inject, memio, procfs};

use inject::InjectError;
use seamless_image::{ImageError, Reader, Store};
use seamless_sys::chain;
use seamless_sys::SysError;
use seamless_trace::error::ProcError;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tracee::Tracee;

/// Why (part of) a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The image could not be read.
    #[error("reading the image failed")]
    Image(#[source] ImageError),
    /// A record failed validation: nothing was changed.
    #[error("image refused before anything was changed, nothing is restored (the image is damaged or was written by an incompatible seamless: start the services again, and keep the image for a bug report)")]
    Invalid(#[source] seamless_image::validate::Invalid),
    /// The image's threads were dumped on another CPU architecture: nothing was changed.
    #[error("image refused before anything was changed: its threads were dumped on {image}, this restorer runs on {running}; an image restores only on the architecture it was dumped on")]
    Architecture {
        /// The architecture of the image's thread records (`x86_64`, `aarch64`).
        image: &'static str,
        /// This build's ([`seamless_sys::arch::NAME`]).
        running: &'static str,
    },
    /// The image holds a socket connected to journald's stdout stream, which this build does
    /// not restore yet: nothing was changed.
    #[error("image refused before anything was changed: file #{desc} (unit {unit:?}) is a stream to systemd-journald, which this restorer cannot rebuild yet; upgrade seamless-init on the target, or run the service with StandardOutput= other than journal")]
    JournalStream {
        /// The socket's description id.
        desc: u32,
        /// The unit the stream logs for.
        unit: String,
    },
    /// The image is inconsistent.
    #[error("pid {pid}: inconsistent image: {what}")]
    Corrupt {
        /// Process.
        pid: i32,
        /// What.
        what: String,
    },
    /// A step failed in one process (a system call of the restorer, `/proc` or memory, an
    /// injected call).
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// A step failed for a reason of its own (no underlying error).
    #[error("pid {pid}: {what}")]
    Failed {
        /// Process.
        pid: i32,
        /// What.
        what: String,
    },
    /// A mapped file differs from the dumped one.
    #[error("pid {pid}: mapped file {path} changed since the dump: {detail}")]
    FileChanged {
        /// Process.
        pid: i32,
        /// File.
        path: String,
        /// Differences.
        detail: String,
    },
    /// A recorded path is relative: it would resolve against the restorer's directory.
    #[error("pid {pid}{}: recorded {what} path {path:?} is not absolute; refusing the image (a relative path would resolve against the restorer's working directory)", fd.map(|f| format!(" fd {f}")).unwrap_or_default())]
    RelativePath {
        /// Process (0 when no process refers to the file).
        pid: i32,
        /// Descriptor, for open files.
        fd: Option<i32>,
        /// What the path is.
        what: String,
        /// The path.
        path: String,
    },
    /// A System V IPC object could not be recreated as it was.
    #[error("{what}")]
    Ipc {
        /// Which object and step.
        what: String,
        /// Failure.
        #[source]
        source: Option<SysError>,
    },
    /// An open file could not be reopened.
    #[error("file #{id}: {what}")]
    File {
        /// Description id.
        id: u32,
        /// Step.
        what: String,
        /// Failure.
        #[source]
        source: std::io::Error,
    },
}

impl RestoreError {
    pub(crate) fn sys(pid: i32, what: impl Into<String>, source: SysError) -> Self {
        ProcError::sys(pid, what, source).into()
    }
    pub(crate) fn io(pid: i32, what: impl Into<String>, source: std::io::Error) -> Self {
        ProcError::io(pid, what, source).into()
    }
    pub(crate) fn inject(pid: i32, what: impl Into<String>, source: InjectError) -> Self {
        ProcError::inject(pid, what, source).into()
    }
}

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Always use the cross-kernel vDSO trampoline, even on the same kernel (for tests).
    pub force_vdso_trampoline: bool,
}

impl RestoreOptions {
    /// Options from the environment (`SEAMLESS_FORCE_VDSO_TRAMPOLINE=1`).
    pub fn from_env() -> Self {
        Self { force_vdso_trampoline: std::env::var_os("SEAMLESS_FORCE_VDSO_TRAMPOLINE").is_some_and(|v| v == "1") }
    }
}

/// A unit of trees (see [`plan::Units`]) that was not restored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedTree {
    /// Roots of the trees in the unit.
    pub roots: Vec<i32>,
    /// Every process of the unit (all killed, none left running).
    pub pids: Vec<i32>,
    /// The first error met while recreating one of its processes or resources.
    pub reason: String,
}

/// Outcome of [`restore_all`].
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Processes running again (incl. zombies recreated).
    pub restored: Vec<i32>,
    /// Processes that could not be restored, with the reason.
    pub failed: Vec<(i32, String)>,
    /// The trees those processes belonged to, each with the error that sank it.
    pub failed_trees: Vec<FailedTree>,
    /// Threads restored.
    pub threads: usize,
    /// Pages written.
    pub pages: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// The units given up so far, with the first reason of each.
#[derive(Debug)]
pub struct Failures<'a> {
    units: &'a plan::Units,
    reason: BTreeMap<usize, String>,
}

impl<'a> Failures<'a> {
    fn new(units: &'a plan::Units) -> Self {
        Self { units, reason: BTreeMap::new() }
    }

    fn fail_unit(&mut self, unit: usize, why: String) {
        if !self.reason.contains_key(&unit) {
            let roots = &self.units.roots[unit];
            log::error!("tree(s) of pid {roots:?} cannot be restored: {why}");
            self.reason.insert(unit, why);
        }
    }

    /// Gives up the unit of process `pid`.
    pub fn fail_pid(&mut self, pid: i32, why: String) {
        match self.units.of_pid.get(&pid) {
            Some(&u) => self.fail_unit(u, why),
            None => log::error!("pid {pid}: {why}"),
        }
    }

    /// Gives up the unit holding description `id` (one no process holds is only logged).
    pub fn fail_desc(&mut self, id: u32, why: String) {
        match self.units.of_desc.get(&id) {
            Some(&u) => self.fail_unit(u, why),
            None => log::warn!("file #{id}, held by no process: {why}"),
        }
    }

    /// Whether the unit holding description `id` was given up.
    pub fn desc_failed(&self, id: u32) -> bool {
        self.units.of_desc.get(&id).is_some_and(|u| self.reason.contains_key(u))
    }

    /// Whether the unit of `pid` was given up.
    pub fn pid_failed(&self, pid: i32) -> bool {
        self.units.of_pid.get(&pid).is_some_and(|u| self.reason.contains_key(u))
    }
}

struct Proc {
    c: child::Child,
    threads: Vec<inject::Remote>,
}

/// The thread record of the leader (first in the plan; validation proved it is there).
fn leader_record(pid: i32, p: &plan::ProcPlan) -> Result<&seamless_image::records::ThreadRecord, RestoreError> {
    p.threads.first().ok_or_else(|| RestoreError::Corrupt { pid, what: "no record of the thread-group leader".into() })
}

/// What [`stage_a`] works with besides the process itself.
struct Ctx<'a, S: Store> {
    plan: &'a plan::Plan,
    reader: &'a mut Reader<S>,
    open: &'a files::OpenFiles,
    opts: &'a RestoreOptions,
    shm: &'a BTreeMap<u64, mm::SharedObj>,
}

/// Rebuilds `pid` up to its pending signals and credentials. Children forked from it to keep
/// their pages shared ([`cow`]) are forked right after its memory and pushed on `forked`
/// (also when a later step fails, so that they are killed with it).
fn stage_a<S: Store>(
    pid: i32,
    p: &plan::ProcPlan,
    cx: &mut Ctx<'_, S>,
    forked: &mut Vec<i32>,
) -> Result<Proc, RestoreError> {
    let mut c = child::Child::new(pid, &sysv::target_areas(&p.mm.vmas, &p.shm_attach))?;
    let inh = if cow::forked_from_parent(cx.plan, pid) {
        cow::join_session(&mut c, p)?;
        cow::inherited(cx.plan, p)
    } else {
        cow::Inherited::default()
    };
    // Whatever the helper inherited from the restorer (or the parent it was forked from) goes.
    c.call("close_range", libc::SYS_close_range, [0, u64::from(u32::MAX), 0, 0, 0, 0])?;
    mm::restore_mm(&mut c, p, cx.reader, cx.opts, cx.shm, &inh)?;
    sysv::attach(&mut c, &p.shm_attach)?;
    for kid in cow::children(cx.plan, pid) {
        cow::fork(&mut c, kid)?;
        forked.push(kid);
    }
    files::install(&mut c, &p.fds, cx.open)?;
    locks::take(&mut c, &p.locks)?;
    process::restore_task(&mut c, p)?;
    process::restore_rlimits(pid, p)?;
    let leader_rec = leader_record(pid, p)?;
    let mut threads = threads::create_threads(&mut c, p)?;
    process::restore_timers(&mut c, p)?;
    mq_notify::register(&mut c, p.mq_notify.as_ref())?;
    // Leader first, then each thread in itself.
    threads::thread_state(&mut c, leader_rec)?;
    for (rt, t) in threads.iter_mut().zip(p.threads.iter().skip(1)) {
        threads::thread_state(&mut c.thread(rt), t)?;
    }
    Ok(Proc { c, threads })
}

fn stage_b(pr: &mut Proc, p: &plan::ProcPlan) -> Result<(), RestoreError> {
    let pid = pr.c.pid;
    // Pending signals, credentials, then drop the trampoline and load the registers.
    let leader_rec = leader_record(pid, p)?;
    let timers: Vec<i32> = p.rec.posix_timers.iter().map(|t| t.id).collect();
    threads::queue_pending(&mut pr.c, leader_rec, &p.rec.shared_pending, &timers)?;
    for (rt, t) in pr.threads.iter_mut().zip(p.threads.iter().skip(1)) {
        threads::queue_pending(&mut pr.c.thread(rt), t, &[], &timers)?;
    }
    if let Some(m) = &p.cgroup {
        cgroup::join(pid, m)?;
    }
    for rt in pr.threads.iter_mut() {
        threads::set_creds(&mut pr.c.thread(rt), &p.rec.creds)?;
    }
    threads::set_creds(&mut pr.c, &p.rec.creds)?;
    process::finish_task(&mut pr.c, p)?;
    sched::restore(pid, &p.sched)?;
    // Last: the filters (the dump proved the munmap below passes them).
    seccomp::install(&mut pr.c, &mut pr.threads, p)?;
    let tramp = pr.c.tramp;
    pr.c.call("munmap(trampoline)", libc::SYS_munmap, [tramp, child::TRAMP_LEN, 0, 0, 0, 0])?;
    for t in &p.threads {
        threads::load_thread(&mut pr.c, t, p.aarch64.get(&t.tid))?;
    }
    Ok(())
}

/// Waits (up to `limit`) until every thread of each of `pids` is in a group stop (state `T`
/// in `/proc/PID/task/TID/stat`); one that does not get there in time is logged.
fn wait_stopped(pids: &[i32], limit: std::time::Duration) {
    let t0 = Instant::now();
    for &pid in pids {
        loop {
            let tids = procfs::tids(pid).unwrap_or_default();
            let running: Vec<i32> = tids
                .iter()
                .copied()
                .filter(|t| {
                    procfs::read_stat_path(&format!("/proc/{pid}/task/{t}/stat")).is_ok_and(|s| s.state() != 'T')
                })
                .collect();
            if running.is_empty() {
                break;
            }
            if t0.elapsed() > limit {
                log::warn!(
                    "pid {pid}: threads {running:?} not stopped again {:.1} s after the restore",
                    limit.as_secs_f64()
                );
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Kills every process of the failed units that was forked and collects what the kernel
/// reports to us about them (their ptrace exits; the tree roots that are our own children),
/// so no process of a failed tree is left running and no half-restored one ever runs its
/// own code: they are still ptrace-stopped with every signal blocked, SIGKILL is the only
/// thing they see.
fn kill_failed(plan: &plan::Plan, fails: &Failures, forked: &[i32], seized: &[i32]) {
    let doomed: Vec<i32> = forked.iter().copied().filter(|p| fails.pid_failed(*p)).collect();
    for &pid in &doomed {
        let _ = seamless_sys::proc::kill(pid, libc::SIGKILL);
    }
    for &pid in &doomed {
        let ours = seized.contains(&pid) || std::process::id() == 1 && plan.roots().contains(&pid);
        if !ours {
            continue;
        }
        // Threads first: a thread-group leader is reported after the rest of its group.
        let tids: Vec<i32> =
            plan.procs.get(&pid).map(|p| p.threads.iter().map(|t| t.tid).collect()).unwrap_or_default();
        for tid in tids.iter().copied().filter(|t| *t != pid).chain([pid]) {
            // Until it is reported exited or killed (or is not, or no longer, ours to wait for).
            while let Ok((_, seamless_sys::ptrace::WaitStatus::Stopped { .. })) = seamless_sys::ptrace::wait(tid) {
                let _ = seamless_sys::ptrace::cont(tid, 0);
            }
        }
    }
}

/// The processes of the restore in progress (empty when none): what the panic hook of PID 1
/// kills, so that no half-restored process is left stopped under ptrace (holding its pid,
/// ports and files) when the real init starts.
static IN_PROGRESS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

fn set_in_progress(pids: Vec<i32>) {
    match IN_PROGRESS.lock() {
        Ok(mut g) => *g = pids,
        Err(poisoned) => *poisoned.into_inner() = pids,
    }
}

/// Kills (SIGKILL) every process of the restore in progress. Never blocks: for the panic
/// hook, which may run while the list is being changed (then nothing is killed).
pub fn kill_in_progress() {
    let guard = match IN_PROGRESS.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    for &pid in guard.iter() {
        let _ = seamless_sys::proc::kill(pid, libc::SIGKILL);
    }
}

/// Holds the network lock of an image while its connections are rebuilt (see
/// [`crate::netlock`]); dropping it lifts the lock.
struct NetLockGuard(String);

impl NetLockGuard {
    fn install(
        (lock, listeners): &(seamless_image::records::NetLockRecord, Vec<seamless_image::records::Addr>),
    ) -> Self {
        if let Err(e) = crate::netlock::install_with(lock, listeners) {
            log::warn!(
                "network lock: {e}; the {} connection(s) are repaired without it, and segments that arrive \
                 before their repair can reset them",
                lock.conns.len()
            );
        }
        NetLockGuard(lock.table.clone())
    }
}

impl Drop for NetLockGuard {
    fn drop(&mut self) {
        crate::netlock::lift_logged(&self.0, "after repairing the TCP connections");
    }
}

/// Restores every process tree of the image, tree by tree (more exactly unit by unit, see
/// [`plan::Units`]): any error while recreating a process or a resource of a tree gives up
/// that tree (and the trees sharing state with it), whose processes are killed and reported
/// with the reason; every other tree is restored. Errors only when nothing could be
/// attempted (the image cannot be decoded or fails validation).
pub fn restore_all<S: Store>(reader: &mut Reader<S>, opts: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let plan = plan::load(reader)?;
    restore_plan(&plan, reader, opts)
}

/// Restores the trees of a plan loaded (and so validated) by [`plan::load`] from `reader`,
/// tree by tree as [`restore_all`] says.
pub fn restore_plan<S: Store>(
    plan: &plan::Plan,
    reader: &mut Reader<S>,
    opts: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let t0 = Instant::now();
    // The connections stay held (or are held again) until every one of them is repaired; the
    // guard lifts the lock on every way out of here, the explicit drop right after the repair.
    let net_lock = plan.lock().as_ref().map(NetLockGuard::install);
    paths::check(plan)?;
    let units = plan::Units::of(plan);
    let mut fails = Failures::new(&units);
    let mut open = files::open_all(plan, reader, &mut fails);
    drop(net_lock);
    let shm = mm::prepare_shared(plan, reader, &mut fails);
    let ipc = sysv::create_all(plan, reader, &mut fails);
    let skip: Vec<i32> = plan.roots().into_iter().filter(|r| fails.pid_failed(*r)).collect();
    let ttys = open.ptys.by_session(plan);
    let (forked, not_created) = tree::create_tree(plan, &skip, &ttys)?;
    set_in_progress(forked.clone());
    for (pid, why) in not_created {
        fails.fail_pid(pid, why);
    }
    let mut report = RestoreReport::default();
    let mut live: BTreeMap<i32, Proc> = BTreeMap::new();
    let mut seized: Vec<i32> = Vec::new();
    for &pid in &forked {
        if fails.pid_failed(pid) {
            continue;
        }
        match child::seize(pid) {
            Ok(()) => {
                seized.push(pid);
                if let Err(e) = seamless_sys::ptrace::set_sigmask(pid, !0) {
                    fails.fail_pid(pid, RestoreError::sys(pid, "block signals", e).to_string());
                }
            }
            Err(e) => fails.fail_pid(pid, chain(&e).to_string()),
        }
    }
    // pidfds and /proc files of the plan's processes, now that these exist (such a process is
    // never forked from its parent later: crate::cow::forked_from_parent).
    pidfd::open_all(plan, &mut open.by_id, &mut fails);
    files::open_proc_files(plan, &mut open.by_id, &mut fails);
    // Unix queues are refilled once the processes exist: a message's credentials name one.
    unix::finish(plan, &mut open.by_id, &mut fails, &|id, fd, s| {
        sockets::configure(plan.socket_extras.get(&id), id, fd, s)
    });
    let mut forked = forked;
    let mut cx = Ctx { plan, reader, open: &open, opts, shm: &shm };
    let mut next = 0;
    while let Some(&pid) = seized.get(next) {
        next += 1;
        if fails.pid_failed(pid) {
            continue;
        }
        let Some(p) = plan.procs.get(&pid) else { continue };
        let mut kids = Vec::new();
        let r = stage_a(pid, p, &mut cx, &mut kids);
        // Children forked from it are traced by us already: rebuilt next.
        forked.extend(kids.iter().copied());
        seized.extend(kids);
        set_in_progress(forked.clone());
        match r {
            Ok(pr) => {
                live.insert(pid, pr);
            }
            Err(e) => fails.fail_pid(pid, chain(&e).to_string()),
        }
    }
    let mut claimed = Vec::new();
    for (pid, pr) in live.iter_mut() {
        match sysv::claim(&mut pr.c, plan) {
            Ok(()) => claimed.push(*pid),
            Err(e) => fails.fail_pid(*pid, chain(&e).to_string()),
        }
    }
    sysv::send_unclaimed(plan, &claimed);
    sysv::remove_dest(&ipc);
    // Process groups, now that every group leader exists.
    for (pid, pr) in live.iter_mut() {
        if fails.pid_failed(*pid) {
            continue;
        }
        let Some(p) = plan.procs.get(pid) else { continue };
        let want = p.rec.pgid;
        let now = procfs::read_stat(*pid).ok().and_then(|s| i32::try_from(s.field(5)).ok()).unwrap_or(want);
        if now != want && p.rec.sid != *pid {
            if let Err(e) = pr.c.call("setpgid", libc::SYS_setpgid, [0, abi::int(want), 0, 0, 0, 0]) {
                log::warn!("pid {pid}: cannot join process group {want}: {}", chain(&e));
            }
        }
    }
    // Controlling terminals, now that every process is in its group.
    for t in plan.ptys.values().filter(|t| t.session != 0) {
        let (Some(pr), Some(ours)) = (live.get_mut(&t.session), open.ptys.slaves.get(&t.index)) else { continue };
        if fails.pid_failed(t.session) {
            continue;
        }
        if let Err(e) = tty::take_terminal(&mut pr.c, t, std::os::fd::AsRawFd::as_raw_fd(ours)) {
            fails.fail_pid(t.session, format!("controlling terminal /dev/pts/{}: {}", t.index, chain(&e)));
        }
    }
    for (pid, pr) in live.iter_mut() {
        if fails.pid_failed(*pid) {
            continue;
        }
        let Some(p) = plan.procs.get(pid) else { continue };
        if let Err(e) = stage_b(pr, p) {
            fails.fail_pid(*pid, chain(&e).to_string());
        }
    }
    // Nothing of a failed unit is detached: kill it all before anything else runs.
    live.retain(|pid, _| !fails.pid_failed(*pid));
    kill_failed(plan, &fails, &forked, &seized);
    drop(open);
    drop(shm);
    for (pid, _) in live.iter() {
        let Some(p) = plan.procs.get(pid) else { continue };
        if p.job_stop.is_some() {
            // Pending before the threads go: the first to leave its ptrace stop starts the
            // group stop, before any instruction of the process runs.
            if let Err(e) = seamless_sys::proc::kill(*pid, libc::SIGSTOP) {
                log::warn!("pid {pid}: stopping it again (it was stopped at the dump): {}", chain(&e));
            }
        }
        for t in &p.threads {
            if let Err(e) = seamless_sys::ptrace::detach(t.tid, 0) {
                log::warn!("pid {pid}: detaching thread {}: {}", t.tid, chain(&e));
            }
        }
        report.threads += p.threads.len();
        report.pages += p.chunks.iter().map(|c| c.len / 4096).sum::<u64>();
        report.restored.push(*pid);
    }
    // A restored group stop is part of the state: the restore is done when every thread of
    // such a process has stopped (they do so in the kernel, before any user instruction, but
    // on a busy machine only when each is scheduled).
    let stopped: Vec<i32> =
        live.keys().copied().filter(|pid| plan.procs.get(pid).is_some_and(|p| p.job_stop.is_some())).collect();
    wait_stopped(&stopped, std::time::Duration::from_secs(10));
    for p in plan.procs.values() {
        if p.is_zombie() && !fails.pid_failed(p.rec.pid) {
            report.restored.push(p.rec.pid);
        }
    }
    report.restored.sort_unstable();
    for (&u, why) in &fails.reason {
        let roots = units.roots[u].clone();
        for &pid in &units.pids[u] {
            report.failed.push((pid, format!("its tree (root {roots:?}) was not restored: {why}")));
        }
        report.failed_trees.push(FailedTree { roots, pids: units.pids[u].clone(), reason: why.clone() });
    }
    report.elapsed = t0.elapsed();
    set_in_progress(Vec::new());
    Ok(report)
}
