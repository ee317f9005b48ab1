//! Record types of the process image (postcard-encoded). Each module defines the records of
//! one resource kind and the [`RecordKind`] numbers (16 and up) they are
//! stored under.
//!
//! Contract with the rest of the crate: [`kind_name`] names every kind defined here, and
//! [`describe`] turns a record's bytes into a one-line summary for `seamless inspect` (it
//! decodes with postcard and must fail gracefully on bad bytes; the fuzzer calls it).

use crate::RecordKind;

pub mod aarch64;
pub mod access;
pub mod epoll;
pub mod eventfd;
pub mod files;
pub mod inotify;
pub mod locks;
pub mod mm;
pub mod mq_notify;
pub mod netlock;
pub mod nodes;
pub mod pidfd;
pub mod process;
pub mod sched;
pub mod seccomp;
pub mod sockets;
pub mod sysv;
pub mod tcp_states;
pub mod threads;
pub mod tty;
pub mod unix;

pub use aarch64::{Aarch64Fpsimd, Aarch64Regs, Aarch64Thread, Aarch64Tls};
pub use access::{
    cgroup_path_ok, AccountArea, CgroupLimit, CgroupMembership, FlaggedArea, GhostOwner, VmaAccount, VmaFlags,
};
pub use epoll::{EpollItem, EpollRecord};
pub use eventfd::TimerFdRecord;
pub use files::{Fd, FdTable, FileDesc, FileKind, PipeRecord};
pub use inotify::{InotifyRecord, InotifyWatch};
pub use locks::{FileLock, FileLocks, LockKind};
pub use mm::{AdvisedArea, CowShared, FileId, MmRecord, Vma, VmaAdvice, VmaKind};
pub use mq_notify::{MqNotification, MqNotify};
pub use netlock::{HeldListeners, LockedConn, NetLockRecord, NET_LOCK_PREFIX};
pub use nodes::{DeletedNode, ExeObject};
pub use pidfd::PidfdRecord;
pub use process::{
    Creds, ITimer, JobStop, MmFields, PosixTimer, ProcState, ProcessRecord, ProcessSettings, SigAction, TreeRecord,
};
pub use sched::ThreadSched;
pub use sockets::{Addr, Datagram, DatagramQueue, SockOpt, SockState, SocketExtra, SocketRecord, TcpConn};
pub use sysv::{
    DeletedFile, FileObject, IpcPerm, Memfd, MsgRecord, PosixMq, SemRecord, ShmArea, ShmAttachments, ShmRecord,
};
pub use tcp_states::{TcpCloseState, TcpEnded};
pub use threads::{SyscallState, ThreadRecord};
pub use tty::{PtyRecord, Termios};
pub use unix::{JournalStream, UnixInFlight, UnixMessage, UnixPeerGone, UnixQueue};

/// [`ProcessRecord`], owner = pid.
pub const PROCESS: RecordKind = RecordKind(16);
/// [`ThreadRecord`], owner = pid, tag = tid.
pub const THREAD: RecordKind = RecordKind(17);
/// [`MmRecord`], owner = pid.
pub const MM: RecordKind = RecordKind(18);
/// [`FdTable`], owner = pid.
pub const FDS: RecordKind = RecordKind(19);
/// [`FileDesc`], owner 0, tag = description id.
pub const FILE_DESC: RecordKind = RecordKind(20);
/// [`PipeRecord`], owner 0, tag = inode.
pub const PIPE: RecordKind = RecordKind(21);
/// [`TreeRecord`], owner 0.
pub const TREE: RecordKind = RecordKind(22);
/// [`ProcessSettings`], owner = pid (at most one per process; none means all defaults).
pub const SETTINGS: RecordKind = RecordKind(23);
/// [`NetLockRecord`], owner 0, tag 0 (at most one; written `IGNORABLE`).
pub const NET_LOCK: RecordKind = RecordKind(24);
/// [`SocketExtra`], owner 0, tag = description id (at most one per socket; only when not all
/// defaults).
pub const SOCKET_EXTRA: RecordKind = RecordKind(25);
/// [`DatagramQueue`], owner 0, tag = description id (at most one per UDP socket).
pub const DATAGRAMS: RecordKind = RecordKind(26);
/// [`HeldListeners`], owner 0, tag 0 (at most one; written `IGNORABLE`).
pub const HELD_LISTENERS: RecordKind = RecordKind(27);
/// [`VmaAdvice`], owner = pid (at most one per process; written `IGNORABLE`).
pub const VMA_ADVICE: RecordKind = RecordKind(28);
/// [`PtyRecord`], owner 0, tag = pts index (one per pty pair whose master is in the image).
pub const PTY: RecordKind = RecordKind(40);
/// [`InotifyRecord`], owner 0, tag = description id (one per inotify instance).
pub const INOTIFY: RecordKind = RecordKind(41);
/// [`PidfdRecord`], owner 0, tag = description id (one per pidfd description).
pub const PIDFD: RecordKind = RecordKind(42);
/// [`FileLocks`], owner = pid (at most one per process, only with locks).
pub const FILE_LOCKS: RecordKind = RecordKind(30);
/// [`ThreadSched`], owner = pid, tag = tid (at most one per thread, only when not all
/// defaults).
pub const THREAD_SCHED: RecordKind = RecordKind(31);
/// [`CowShared`], owner = pid of a forked child (at most one per process; written `IGNORABLE`).
pub const COW_SHARED: RecordKind = RecordKind(45);
/// [`JobStop`], owner = pid of a stopped process (at most one per process).
pub const JOB_STOP: RecordKind = RecordKind(46);
/// [`seccomp::SeccompRecord`], owner = pid of a process with seccomp filters (at most one).
pub const SECCOMP: RecordKind = RecordKind(47);
/// [`VmaFlags`], owner = pid (at most one per process, only with flagged areas).
pub const VMA_FLAGS: RecordKind = RecordKind(55);
/// [`VmaAccount`], owner = pid (at most one per process; written `IGNORABLE`).
pub const VMA_ACCOUNT: RecordKind = RecordKind(48);
/// [`GhostOwner`], owner 0, tag = description id (at most one per ghost description, only
/// when not owned by root).
pub const GHOST_OWNER: RecordKind = RecordKind(56);
/// [`CgroupMembership`], owner = pid (at most one per process, only when its cgroup v2 is not
/// the dumper's).
pub const CGROUP: RecordKind = RecordKind(57);
/// [`UnixQueue`], owner 0, tag = description id (at most one per unix socket, only with
/// queued messages).
pub const UNIX_QUEUE: RecordKind = RecordKind(58);
/// [`UnixPeerGone`], owner 0, tag = description id (at most one per unix socket whose peer
/// end was closed).
pub const UNIX_PEER_GONE: RecordKind = RecordKind(59);
/// [`UnixInFlight`], owner 0, tag = description id of the receiving socket (at most one per
/// unix socket, only with descriptors in flight).
pub const UNIX_IN_FLIGHT: RecordKind = RecordKind(60);
/// [`JournalStream`], owner 0, tag = description id of a unix stream socket connected to
/// systemd-journald's stdout stream (at most one per description).
pub const JOURNAL_STREAM: RecordKind = RecordKind(73);
/// [`TcpCloseState`], owner 0, tag = description id (at most one per TCP connection, only
/// past ESTABLISHED).
pub const TCP_CLOSE: RecordKind = RecordKind(68);
/// [`TcpEnded`], owner 0, tag = description id (at most one per TCP socket whose connection
/// ended).
pub const TCP_ENDED: RecordKind = RecordKind(69);
/// [`DeletedNode`], owner 0, tag = its id (a FIFO or directory deleted while held).
pub const DELETED_NODE: RecordKind = RecordKind(61);
/// [`ExeObject`], owner = pid (at most one per process, only when its executable is a memfd
/// or a deleted file).
pub const EXE_OBJECT: RecordKind = RecordKind(62);
/// [`MqNotify`], owner = pid (at most one per process, only with `mq_notify` registrations).
pub const MQ_NOTIFY: RecordKind = RecordKind(63);

/// [`Aarch64Regs`], owner = pid, tag = tid (one per thread of an aarch64 image).
pub const AARCH64_REGS: RecordKind = RecordKind(70);
/// [`Aarch64Fpsimd`], owner = pid, tag = tid (one per thread of an aarch64 image).
pub const AARCH64_FPSIMD: RecordKind = RecordKind(71);
/// [`Aarch64Tls`], owner = pid, tag = tid (one per thread of an aarch64 image).
pub const AARCH64_TLS: RecordKind = RecordKind(72);

/// [`ShmRecord`], owner 0, tag = segment id (System V shared memory).
pub const SYSV_SHM: RecordKind = RecordKind(35);
/// [`SemRecord`], owner 0, tag = semaphore set id.
pub const SYSV_SEM: RecordKind = RecordKind(36);
/// [`MsgRecord`], owner 0, tag = message queue id.
pub const SYSV_MSG: RecordKind = RecordKind(37);
/// [`ShmAttachments`], owner = pid (at most one per process, only with attachments).
pub const SHM_ATTACH: RecordKind = RecordKind(38);
/// [`FileObject`], owner 0, tag = a number unique among them (POSIX message queues, memfds).
pub const FILE_OBJECT: RecordKind = RecordKind(39);
/// The kinds of this module that writers store with `put_ignorable_record` (an older reader
/// skips them and still restores correctly). `seamless check` does not ask a target's
/// seamless-init to know them: a kind written `IGNORABLE` belongs in this list.
pub const WRITTEN_IGNORABLE: [RecordKind; 5] = [NET_LOCK, HELD_LISTENERS, VMA_ADVICE, COW_SHARED, VMA_ACCOUNT];

/// Kinds this build defines (format, validation) but does not restore yet: they are left out
/// of what this build says it reads ([`crate::compat::Formats::this_build`]), so a dumper that
/// writes one refuses this build's `seamless-init` as the target before anything is frozen.
pub const NOT_RESTORED: [RecordKind; 1] = [JOURNAL_STREAM];
/// Names of the record kinds defined in this module tree, for listings.
pub fn kind_name(kind: RecordKind) -> Option<&'static str> {
    Some(match kind {
        PROCESS => "process",
        THREAD => "thread",
        AARCH64_REGS => "aarch64-regs",
        AARCH64_FPSIMD => "aarch64-fpsimd",
        AARCH64_TLS => "aarch64-tls",
        MM => "mm",
        FDS => "fds",
        FILE_DESC => "file",
        PIPE => "pipe",
        TREE => "tree",
        SETTINGS => "settings",
        NET_LOCK => "netlock",
        SOCKET_EXTRA => "socket-extra",
        DATAGRAMS => "datagrams",
        HELD_LISTENERS => "held-listeners",
        VMA_ADVICE => "vma-advice",
        PTY => "pty",
        INOTIFY => "inotify",
        PIDFD => "pidfd",
        FILE_LOCKS => "file-locks",
        THREAD_SCHED => "thread-sched",
        COW_SHARED => "cow-shared",
        JOB_STOP => "job-stop",
        SECCOMP => "seccomp",
        SYSV_SHM => "sysv-shm",
        SYSV_SEM => "sysv-sem",
        SYSV_MSG => "sysv-msg",
        SHM_ATTACH => "shm-attach",
        FILE_OBJECT => "file-object",
        VMA_FLAGS => "vma-flags",
        VMA_ACCOUNT => "vma-account",
        GHOST_OWNER => "ghost-owner",
        CGROUP => "cgroup",
        UNIX_QUEUE => "unix-queue",
        UNIX_PEER_GONE => "unix-peer-gone",
        UNIX_IN_FLIGHT => "unix-in-flight",
        TCP_CLOSE => "tcp-close",
        TCP_ENDED => "tcp-ended",
        DELETED_NODE => "deleted-node",
        EXE_OBJECT => "exe-object",
        MQ_NOTIFY => "mq-notify",
        JOURNAL_STREAM => "journal-stream",
        _ => return None,
    })
}

fn prot_str(p: u32) -> String {
    let f = |bit: u32, c: char| if p & bit != 0 { c } else { '-' };
    [f(1, 'r'), f(2, 'w'), f(4, 'x')].iter().collect()
}

/// A one-line human summary of a record of a kind defined here; `None` for other kinds or
/// bytes that do not decode.
pub fn describe(kind: RecordKind, bytes: &[u8]) -> Option<String> {
    fn de<'a, T: serde::Deserialize<'a>>(b: &'a [u8]) -> Option<T> {
        postcard::from_bytes(b).ok()
    }
    Some(match kind {
        PROCESS => {
            let p: ProcessRecord = de(bytes)?;
            format!(
                "process {} ({}) ppid {} pgid {} sid {} {:?} threads {:?} uid {} exe {} cwd {} sigactions {}",
                p.pid,
                p.comm,
                p.ppid,
                p.pgid,
                p.sid,
                p.state,
                p.tids,
                p.creds.uids[0],
                p.exe,
                p.cwd,
                p.sigactions.len()
            )
        }
        THREAD => {
            let t: ThreadRecord = de(bytes)?;
            let rip = t.regs.get(16).copied().unwrap_or(0);
            let rsp = t.regs.get(19).copied().unwrap_or(0);
            format!(
                "thread {} ({}) rip {rip:#x} rsp {rsp:#x} xstate {} B sigmask {:#x} {:?} rseq {}",
                t.tid,
                t.comm,
                t.xstate.len(),
                t.sigmask,
                t.syscall,
                t.rseq.is_some()
            )
        }
        MM => {
            let m: MmRecord = de(bytes)?;
            let mut s = format!("mm: {} areas, vdso {} B;", m.vmas.len(), m.vdso.len());
            for v in m.vmas.iter().take(64) {
                s.push_str(&format!(
                    " [{:#x}-{:#x} {}{} {} {}p]",
                    v.start,
                    v.end,
                    prot_str(v.prot),
                    if v.shared { 's' } else { 'p' },
                    if v.name.is_empty() { "anon" } else { &v.name },
                    v.saved_pages
                ));
            }
            s
        }
        FDS => {
            let t: FdTable = de(bytes)?;
            let list: Vec<String> =
                t.fds.iter().map(|f| format!("{}->#{}{}", f.fd, f.desc, if f.cloexec { "e" } else { "" })).collect();
            format!("descriptors: {}", list.join(" "))
        }
        FILE_DESC => {
            let d: FileDesc = de(bytes)?;
            match &d.kind {
                FileKind::Socket(s) => format!("file #{} flags {:#o} {}", d.id, d.flags, sockets::describe_socket(s)),
                k => format!("file #{} flags {:#o} pos {} {:?}", d.id, d.flags, d.pos, k),
            }
        }
        PIPE => {
            let p: PipeRecord = de(bytes)?;
            format!("pipe ino {} capacity {} buffered {} B", p.ino, p.capacity, p.data.len())
        }
        TREE => {
            let t: TreeRecord = de(bytes)?;
            format!("tree: roots {:?}, processes {:?}, kernel {}", t.roots, t.pids, t.kernel_release)
        }
        NET_LOCK => {
            let l: NetLockRecord = de(bytes)?;
            let conns: Vec<String> = l.conns.iter().map(|c| format!("{}<->{}", c.local, c.peer)).collect();
            format!("network lock: table inet {}, {} connection(s): {}", l.table, l.conns.len(), conns.join(" "))
        }
        SOCKET_EXTRA => {
            let x: SocketExtra = de(bytes)?;
            format!(
                "socket extras of file #{}: linger {:?}, buffer lock {:#x}, filter of {} instruction(s){}",
                x.desc,
                x.linger,
                x.buf_lock,
                x.filter.len(),
                if x.filter_locked { " (locked)" } else { "" }
            )
        }
        DATAGRAMS => {
            let q: DatagramQueue = de(bytes)?;
            let bytes: usize = q.datagrams.iter().map(|d| d.data.len()).sum();
            format!("datagrams queued on file #{}: {} datagram(s), {bytes} bytes", q.desc, q.datagrams.len())
        }
        HELD_LISTENERS => {
            let h: HeldListeners = de(bytes)?;
            let l: Vec<String> = h.listeners.iter().map(|a| a.to_string()).collect();
            format!("network lock: table inet {} holds new connections to {}", h.table, l.join(" "))
        }
        PTY => {
            let t: PtyRecord = de(bytes)?;
            format!(
                "pty /dev/pts/{} master file #{} session {} foreground {} winsize {:?} lflag {:#o}{}{} input {} B output {} B",
                t.index,
                t.master,
                t.session,
                t.foreground,
                t.winsize,
                t.termios.lflag,
                if t.locked { " locked" } else { "" },
                if t.packet { " packet" } else { "" },
                t.input.len(),
                t.output.len()
            )
        }
        INOTIFY => {
            let n: InotifyRecord = de(bytes)?;
            let w: Vec<String> =
                n.watches.iter().take(32).map(|w| format!("{}:{}:{:#x}", w.wd, w.path, w.mask)).collect();
            format!("inotify file #{}: {} watch(es) {}", n.desc, n.watches.len(), w.join(" "))
        }
        PIDFD => {
            let p: PidfdRecord = de(bytes)?;
            format!("pidfd file #{} of pid {}", p.desc, p.pid)
        }
        FILE_LOCKS => {
            let l: FileLocks = de(bytes)?;
            let list: Vec<String> = l.locks.iter().map(FileLock::describe).collect();
            format!("file locks: {}", list.join(", "))
        }
        VMA_FLAGS => {
            let f: VmaFlags = de(bytes)?;
            let list: Vec<String> =
                f.areas.iter().map(|a| format!("{:#x}-{:#x} {:#x}", a.start, a.end, a.flags)).collect();
            format!("vma flags: {}", list.join(", "))
        }
        VMA_ACCOUNT => {
            let a: VmaAccount = de(bytes)?;
            let show = |l: &[AccountArea]| {
                l.iter().map(|a| format!("{:#x}-{:#x}", a.start, a.end)).collect::<Vec<_>>().join(", ")
            };
            format!("vma account: charged {}; uncharged {}", show(&a.charged), show(&a.uncharged))
        }
        GHOST_OWNER => {
            let o: GhostOwner = de(bytes)?;
            format!("deleted file owner uid {} gid {}", o.uid, o.gid)
        }
        CGROUP => {
            let c: CgroupMembership = de(bytes)?;
            let l: Vec<String> = c.limits.iter().map(|l| format!("{}/{}={}", l.cgroup, l.file, l.value)).collect();
            format!("cgroup {} limits [{}]", c.path, l.join(", "))
        }
        UNIX_QUEUE => {
            let q: UnixQueue = de(bytes)?;
            let bytes: usize = q.messages.iter().map(|m| m.data.len()).sum();
            format!("unix messages queued on file #{}: {} message(s), {bytes} bytes", q.desc, q.messages.len())
        }
        JOURNAL_STREAM => {
            let j: JournalStream = de(bytes)?;
            format!(
                "unix socket file #{} logs to the journal as {:?} of unit {:?}, priority {}, level prefix {}, \
                 forward syslog {} kmsg {} console {}",
                j.desc,
                j.identifier,
                j.unit,
                j.priority,
                j.level_prefix,
                j.forward_to_syslog,
                j.forward_to_kmsg,
                j.forward_to_console
            )
        }
        UNIX_PEER_GONE => {
            let g: UnixPeerGone = de(bytes)?;
            format!(
                "unix socket file #{} whose peer {} was closed{}",
                g.desc,
                g.peer,
                if g.accepted { " (accepted connection)" } else { "" }
            )
        }
        UNIX_IN_FLIGHT => {
            let f: UnixInFlight = de(bytes)?;
            let l: Vec<String> = f.messages.iter().map(|(i, ids)| format!("{i}:{ids:?}")).collect();
            format!("descriptors in flight on file #{}: {}", f.desc, l.join(" "))
        }
        TCP_CLOSE => {
            let t: TcpCloseState = de(bytes)?;
            format!(
                "TCP connection of file #{} in {} (FIN {})",
                t.desc,
                t.state_name(),
                if t.fin_sent { "sent" } else { "not sent" }
            )
        }
        TCP_ENDED => {
            let t: TcpEnded = de(bytes)?;
            format!("TCP socket of file #{} whose connection ended", t.desc)
        }
        DELETED_NODE => {
            let n: DeletedNode = de(bytes)?;
            format!(
                "deleted {} {} mode {:o} owner {}:{} pipe {} files {:?} cwd of {:?}",
                if n.is_fifo() { "fifo" } else { "directory" },
                n.path,
                n.mode,
                n.uid,
                n.gid,
                n.pipe,
                n.descs,
                n.cwd_of
            )
        }
        EXE_OBJECT => {
            let e: ExeObject = de(bytes)?;
            format!("executable is the saved object of device {} inode {}", e.dev, e.ino)
        }
        MQ_NOTIFY => {
            let m: MqNotify = de(bytes)?;
            let l: Vec<String> = m
                .regs
                .iter()
                .map(|r| format!("fd {} notify {} signal {} value {:#x}", r.fd, r.notify, r.signo, r.value))
                .collect();
            format!("mq_notify registrations: {}", l.join(", "))
        }
        AARCH64_REGS => {
            let r: Aarch64Regs = de(bytes)?;
            let at = |i: usize| r.regs.get(i).copied().unwrap_or(0);
            format!(
                "aarch64 thread {} pc {:#x} sp {:#x} pstate {:#x}",
                r.tid,
                at(aarch64::PC),
                at(aarch64::SP),
                at(aarch64::PSTATE)
            )
        }
        AARCH64_FPSIMD => {
            let f: Aarch64Fpsimd = de(bytes)?;
            format!("aarch64 thread {} FP/SIMD {} B fpsr {:#x} fpcr {:#x}", f.tid, f.vregs.len(), f.fpsr, f.fpcr)
        }
        AARCH64_TLS => {
            let t: Aarch64Tls = de(bytes)?;
            format!("aarch64 thread {} tpidr_el0 {:#x}", t.tid, t.tpidr_el0)
        }
        THREAD_SCHED => {
            let t: ThreadSched = de(bytes)?;
            format!(
                "thread {} scheduling: policy {}{} priority {} nice {} affinity {:x?} ioprio {:#x}",
                t.tid,
                t.policy,
                if t.reset_on_fork { " (reset on fork)" } else { "" },
                t.priority,
                t.nice,
                t.affinity,
                t.ioprio
            )
        }
        COW_SHARED => {
            let c: CowShared = de(bytes)?;
            let pages: u64 = c.ranges.iter().map(|(a, b)| b.saturating_sub(*a) / 4096).sum();
            format!("{pages} page(s) in {} range(s) shared copy-on-write with parent {}", c.ranges.len(), c.parent)
        }
        JOB_STOP => {
            let j: JobStop = de(bytes)?;
            format!("stopped by signal {}", j.signal)
        }
        SECCOMP => {
            let r: seccomp::SeccompRecord = de(bytes)?;
            let insns: usize = r.filters.iter().map(|f| f.prog.len()).sum();
            let t: Vec<String> = r.threads.iter().map(|(tid, c)| format!("{tid}:{c:?}")).collect();
            format!("seccomp: {} filter(s), {insns} instructions; threads {}", r.filters.len(), t.join(" "))
        }
        SYSV_SHM | SYSV_SEM | SYSV_MSG | SHM_ATTACH | FILE_OBJECT => sysv::describe(kind, bytes)?,
        _ => return None,
    })
}
