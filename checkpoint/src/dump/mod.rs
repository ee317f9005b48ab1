//! Process dump: freeze a set of process trees with ptrace, refuse up front what cannot be
//! restored, then write the processes, threads, address spaces and files into an image.
//!
//! Stages, one module each: [`freeze`] (seize + interrupt every thread, walk the tree),
//! [`precheck`] (every refusal, shared with `seamless check`; reads only),
//! [`files`] (descriptor tables, open file descriptions, pipes; doubles as the pre-check of
//! descriptors), [`mm`] (VMAs and present pages), [`threads`] (registers, XSAVE, signal masks,
//! rseq), [`sockets`], [`epoll`], [`eventfd`] (sockets incl. TCP repair, epoll watches,
//! eventfd/signalfd/timerfd), [`process`] (per-process state read by injecting syscalls: sigactions, timers, brk,
//! ...). The processes stay frozen in a [`Frozen`] until the caller kills or resumes them.

pub mod access;
pub mod cgroup;
pub mod cow;
pub mod epoll;
pub mod eventfd;
pub mod fanotify;
pub mod files;
pub mod freeze;
pub mod inotify;
pub mod listeners;
pub mod locks;
pub mod mm;
pub mod mq_notify;
pub mod nodes;
pub mod objects;
pub mod pidfd;
pub mod precheck;
pub mod precopy;
pub mod process;
pub mod sched;
pub mod seccomp;
pub mod sockets;
pub mod sysv;
pub mod tcp_states;
pub mod threads;
pub mod tty;
pub mod unix;

pub use freeze::Frozen;

use seamless_image::records::{self, TreeRecord};
use seamless_image::{ImageError, Store, Writer};
use seamless_trace::error::ProcError;
use std::time::{Duration, Instant};

/// Why a dump failed. Every variant names the process and resource concerned.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// A resource of a kind seamless does not checkpoint.
    #[error("pid {pid}: unsupported {resource}: {reason}")]
    Unsupported {
        /// Process.
        pid: i32,
        /// Which resource (e.g. `fd 3 (socket:[1234])`).
        resource: String,
        /// Why.
        reason: String,
    },
    /// A step of the dump failed in one process (a system call, `/proc` or memory, an
    /// injected call).
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// Writing the image failed.
    #[error("writing the image failed")]
    Image(#[from] ImageError),
    /// The operator (or a service manager) asked seamless to stop.
    #[error("{0}")]
    Interrupted(crate::interrupt::Interrupted),
    /// The network lock for the preserved TCP connections could not be installed.
    #[error("cannot hold the network still for {conns} TCP connection(s), without which their peers would see resets: make nf_tables available (CONFIG_NF_TABLES, `modprobe nf_tables`) or close the connections first")]
    NetLock {
        /// How many connections.
        conns: usize,
        /// Why.
        #[source]
        source: seamless_restore::netlock::NetLockError,
    },
    /// The given pid does not exist or is not dumpable.
    #[error("pid {pid}: {reason}")]
    BadTarget {
        /// Process.
        pid: i32,
        /// Why.
        reason: String,
    },
}

impl DumpError {
    pub(crate) fn io(pid: i32, what: impl Into<String>, source: std::io::Error) -> Self {
        ProcError::io(pid, what, source).into()
    }
    pub(crate) fn sys(pid: i32, what: impl Into<String>, source: seamless_sys::SysError) -> Self {
        ProcError::sys(pid, what, source).into()
    }
    pub(crate) fn inject(pid: i32, what: impl Into<String>, source: seamless_trace::inject::InjectError) -> Self {
        ProcError::inject(pid, what, source).into()
    }
}

impl From<crate::interrupt::Interrupted> for DumpError {
    fn from(i: crate::interrupt::Interrupted) -> Self {
        Self::Interrupted(i)
    }
}

/// Options of a dump.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// Largest deleted-but-open file whose contents are saved (bytes); default 256 MiB.
    pub max_ghost_size: Option<u64>,
    /// Print a progress line on stderr as processes are written.
    pub progress: bool,
    /// The dump is for an upgrade, which carries the processes' clocks to the new kernel: a
    /// time namespace of their own (one seamless-init made when it restored them on this
    /// kernel, with offsets that continue the previous kernel's clocks) is accepted, and its
    /// offsets are reported in [`DumpSummary::clock_offsets`]. A plain dump refuses it (the
    /// same-kernel restore puts the processes in the restorer's time namespace).
    pub carry_clocks: bool,
    /// Only the pre-flight of `seamless check` (or of an upgrade): what a later dump must see
    /// as it is is left alone. Queued datagrams are not peeked at: peeking marks an empty
    /// datagram as seen, which hides it from the next walk of the queue (the dump's).
    pub pre_flight: bool,
    /// The record kinds the restorer reads (the target's seamless-init for an upgrade), when
    /// known: a socket that needs a kind it does not know (see
    /// `check::formats::CONDITIONAL_KINDS`) is refused before anything is written.
    pub reader_kinds: Option<Vec<u16>>,
}

/// What was dumped, with the processes still frozen in `frozen`.
#[derive(Debug)]
pub struct DumpSummary {
    /// The processes, frozen; drop (or [`Frozen::resume`]) resumes them, [`Frozen::kill`] kills them.
    pub frozen: Frozen,
    /// Processes dumped.
    pub processes: usize,
    /// Threads dumped.
    pub threads: usize,
    /// Pages saved.
    pub pages: u64,
    /// Open file descriptions saved.
    pub files: usize,
    /// Time to freeze.
    pub freeze_time: Duration,
    /// Total time (freeze to last record written).
    pub total_time: Duration,
    /// How far the dumped processes' `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` are ahead of the
    /// dumper's (their time namespace's offsets minus its own), in nanoseconds; zero when they
    /// share its time namespace.
    pub clock_offsets: (i64, i64),
    /// The System V IPC objects and POSIX message queues in the image (removed by the caller
    /// when it kills the processes, see [`sysv::remove`]).
    pub sysv: sysv::SysvIds,
}

/// Dumps the process trees rooted at `pids` into `writer` (which the caller finishes).
/// On error every process is resumed untouched.
pub fn dump_trees<S: Store>(
    pids: &[i32],
    writer: &mut Writer<S>,
    opts: &DumpOptions,
) -> Result<DumpSummary, DumpError> {
    dump_trees_with(pids, writer, opts, None)
}

/// [`dump_trees`] after [`precopy::run`] wrote `pre` into `writer`: only the pages changed
/// since are copied while the trees are frozen.
pub fn dump_trees_with<S: Store>(
    pids: &[i32],
    writer: &mut Writer<S>,
    opts: &DumpOptions,
    mut pre: Option<precopy::PreCopy>,
) -> Result<DumpSummary, DumpError> {
    let t0 = Instant::now();
    // New connections to the trees' listeners wait from now on (dropped if the freeze fails).
    let hold = listeners::hold(pids);
    let mut frozen = freeze::freeze_trees(pids)?;
    let held = hold.map(|h| h.hand_to(&mut frozen)).unwrap_or_default();
    let freeze_time = t0.elapsed();
    // On error `frozen` is dropped, which detaches (resumes) everything.
    let mut pages = 0;
    let mut threads = 0;
    // 1. Pre-check (reads only): every refusal, before anything in any process changes.
    let mut file_plan = precheck::run(&frozen, opts)?;
    let clock_offsets = precheck::clock_offsets(&frozen)?;
    let sysv_plan = sysv::collect(&frozen)?;
    if let Some(kinds) = &opts.reader_kinds {
        files::readable_by(&file_plan, kinds)?;
        sysv::readable_by(&sysv_plan, &frozen, kinds)?;
        objects::readable_by(&file_plan.objects, &frozen, kinds)?;
        nodes::readable_by(&file_plan, kinds)?;
    }
    // The network lock goes on before any TCP queue is read (see `seamless_restore::netlock`);
    // `frozen` lifts it on every path that resumes the processes, and keeps it when they are
    // killed, for the restore to lift after repair.
    let conns = sockets::lock_targets(&file_plan);
    let table = seamless_restore::netlock::table_name(std::process::id());
    // The listeners the image holds (the hold before the freeze found them running).
    let listeners = if held.is_empty() { Vec::new() } else { sockets::held_listeners(&file_plan) };
    let net_lock = if conns.is_empty() {
        None
    } else {
        let lock = records::NetLockRecord { table: table.clone(), conns };
        seamless_restore::netlock::install_with(&lock, &listeners)
            .map_err(|source| DumpError::NetLock { conns: lock.conns.len(), source })?;
        frozen.hold_net_lock(lock.table.clone());
        Some(lock)
    };
    let held_listeners = (!listeners.is_empty()).then(|| records::HeldListeners { table: table.clone(), listeners });
    // Established TCP connections are read in repair mode (a change, undone by `Frozen`'s
    // resume) only now that nothing can be refused any more except for repair errors.
    sockets::repair_pending(&mut file_plan)?;
    // Queues with mq_notify registrations are read (firing and registering them again) now.
    mq_notify::read(&mut file_plan)?;
    crate::interrupt::check("pre-check")?;
    // Only now, with every refusal behind us, may threads run (a few instructions of their own).
    for p in frozen.procs().iter().filter(|p| p.zombie.is_none()) {
        freeze::settle_out_of_vdso(p)?;
    }
    // 2. Write.
    let tree = TreeRecord {
        roots: pids.to_vec(),
        pids: frozen.procs().iter().map(|p| p.pid).collect(),
        kernel_release: seamless_sys::kernel_release(),
    };
    writer.put_record(records::TREE, 0, 0, &tree)?;
    if let Some(lock) = &net_lock {
        // Ignorable: a restorer that predates the lock restores as it always did.
        writer.put_ignorable_record(records::NET_LOCK, 0, 0, lock)?;
    }
    if let Some(h) = &held_listeners {
        // Ignorable: a restorer that predates it refuses new connections until the restore.
        writer.put_ignorable_record(records::HELD_LISTENERS, 0, 0, h)?;
    }
    files::write(&file_plan, writer)?;
    sysv::write(&sysv_plan, writer)?;
    let total = frozen.procs().len();
    let mut done = 0usize;
    for p in frozen.procs() {
        crate::interrupt::check("dump")?;
        let rec = process::process_record(p)?;
        writer.put_record(records::PROCESS, p.pid as u32, 0, &rec)?;
        if p.zombie.is_some() {
            done += 1;
            continue;
        }
        threads += p.tids.len();
        for t in threads::dump_threads(p)? {
            let (owner, tag) = (p.pid as u32, t.thread.tid as u64);
            writer.put_record(records::THREAD, owner, tag, &t.thread)?;
            if let Some(a) = &t.aarch64 {
                writer.put_record(records::AARCH64_REGS, owner, tag, &a.regs)?;
                writer.put_record(records::AARCH64_FPSIMD, owner, tag, &a.fpsimd)?;
                writer.put_record(records::AARCH64_TLS, owner, tag, &a.tls)?;
            }
        }
        let copied = pre.as_mut().and_then(|pre| pre.take(p.pid));
        let (mm_rec, n) = mm::dump_mm_with(p.pid, writer, copied)?;
        pages += n;
        writer.put_record(records::MM, p.pid as u32, 0, &mm_rec)?;
        if let Some(f) = seccomp::read(p.pid, &p.tids)? {
            writer.put_record(records::SECCOMP, p.pid as u32, 0, &f)?;
        }
        if let Some(signal) = p.stop_signal {
            writer.put_record(records::JOB_STOP, p.pid as u32, 0, &records::JobStop { signal })?;
        }
        let parent_live = frozen.procs().iter().any(|q| q.pid == p.ppid && q.zombie.is_none());
        if parent_live {
            if let Some(c) = cow::shared_with_parent(p.pid, p.ppid, &mm_rec)? {
                // Ignorable: a restorer without it gives the child its own copy of each page.
                writer.put_ignorable_record(records::COW_SHARED, p.pid as u32, 0, &c)?;
            }
        }
        let smaps = access::read_smaps(p.pid)?;
        let advice = mm::vma_advice(&smaps, &mm_rec);
        if !advice.areas.is_empty() {
            writer.put_ignorable_record(records::VMA_ADVICE, p.pid as u32, 0, &advice)?;
        }
        let (flags, account) = access::vma_flags(&smaps, &mm_rec);
        if !flags.areas.is_empty() {
            writer.put_record(records::VMA_FLAGS, p.pid as u32, 0, &flags)?;
        }
        if account != Default::default() {
            // Ignorable: a restorer without it charges the areas as their protection implies.
            writer.put_ignorable_record(records::VMA_ACCOUNT, p.pid as u32, 0, &account)?;
        }
        if let Some(c) = cgroup::membership(p.pid)? {
            writer.put_record(records::CGROUP, p.pid as u32, 0, &c)?;
        }
        let settings = precheck::process_settings(p.pid)?;
        if settings != Default::default() {
            writer.put_record(records::SETTINGS, p.pid as u32, 0, &settings)?;
        }
        writer.put_record(records::FDS, p.pid as u32, 0, &file_plan.table_of(p.pid))?;
        if let Some(locks) = file_plan.locks.get(&p.pid) {
            writer.put_record(records::FILE_LOCKS, p.pid as u32, 0, locks)?;
        }
        for t in sched::thread_sched(p)? {
            writer.put_record(records::THREAD_SCHED, p.pid as u32, t.tid as u64, &t)?;
        }
        done += 1;
        if opts.progress {
            eprint!(
                "\rseamless: dumped {done}/{total} processes, {} MiB of pages, {:.1} s",
                (pages * 4096) >> 20,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    if opts.progress {
        eprintln!();
    }
    if let Some(kinds) = &opts.reader_kinds {
        readable_records(writer, kinds)?;
    }
    Ok(DumpSummary {
        processes: frozen.procs().len(),
        threads,
        pages,
        files: file_plan.descs.len(),
        frozen,
        freeze_time,
        total_time: t0.elapsed(),
        clock_offsets,
        sysv: sysv::SysvIds { mq: file_plan.objects.queue_names(), ..sysv_plan.ids() },
    })
}

/// Refuses an image holding a record the target's seamless-init cannot read: a mandatory
/// (not `IGNORABLE`) entry of a process-state kind missing from `kinds` (what the target's
/// `seamless-init --image-formats` listed). `check` does not ask the target for the kinds a
/// process needs only for some state ([`crate::check::formats::CONDITIONAL_KINDS`]): this is
/// where such state meets an older target.
fn readable_records<S: Store>(writer: &Writer<S>, kinds: &[u16]) -> Result<(), DumpError> {
    let unread = writer.entries().iter().find(|e| {
        e.kind.0 >= records::PROCESS.0 && e.flags & seamless_image::Entry::IGNORABLE == 0 && !kinds.contains(&e.kind.0)
    });
    match unread {
        None => Ok(()),
        Some(e) => Err(DumpError::Unsupported {
            pid: i32::try_from(e.owner).unwrap_or(0),
            resource: format!("its {} record (kind {})", e.kind.name(), e.kind.0),
            reason: "the target's seamless-init does not read this record kind: update the seamless package of the target kernel's initramfs".into(),
        }),
    }
}
