//! The zdtm-style C workloads of `tests/workloads/` and their build.
//!
//! Each workload is one C file compiled by gcc (`-O1`, warnings are errors) into an output
//! directory; some are linked statically, some as static PIE, some dynamically against glibc, so
//! the engine sees every kind of executable. The protocol they follow is described in
//! `tests/workloads/README.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

/// How a workload binary is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// `-static`: a fixed-address static executable.
    Static,
    /// `-static-pie`: a static executable loaded at a random address.
    StaticPie,
    /// Dynamically linked against glibc (ld.so, libc.so mappings).
    Dynamic,
}

/// One C program of `tests/workloads/`.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Binary name, also the C file name without `.c`.
    pub name: &'static str,
    /// How it is linked.
    pub link: Link,
    /// What it exercises (one line).
    pub summary: &'static str,
    /// Whether the VM upgrade scenarios run it across kernels (A→B and B→A): every workload
    /// whose resources the README says survive an upgrade. The others need a peer outside the
    /// guest, are refusal or benchmark programs, or take one mode per run.
    pub crosses_kernels: bool,
}

/// Every workload, in the order of the task list.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "threads_fpu",
        link: Link::StaticPie,
        summary: "4 threads with live vector (AVX-512/AVX/SSE), x87, MXCSR and general registers",
        crosses_kernels: true,
    },
    Workload {
        name: "memory",
        link: Link::Static,
        summary: "anonymous/shared/file private/file shared/stack/brk/PROT_NONE/read-only/sparse areas",
        crosses_kernels: true,
    },
    Workload {
        name: "big_mem",
        link: Link::Static,
        summary: "one 1 GiB anonymous area with a pattern (size in MiB as second argument, busy threads as third)",
        crosses_kernels: false,
    },
    Workload {
        name: "precopy_writer",
        link: Link::Static,
        summary: "a thread rewriting checksummed pages, dropping, replacing and growing areas while it is pre-copied",
        crosses_kernels: true,
    },
    Workload {
        name: "brk",
        link: Link::Dynamic,
        summary: "program break grown and shrunk with sbrk, glibc malloc on it, growth after restore",
        crosses_kernels: true,
    },
    Workload {
        name: "pipes",
        link: Link::Static,
        summary: "pipes with unread data, full and enlarged pipes, a pipe shared with a child, a FIFO",
        crosses_kernels: true,
    },
    Workload {
        name: "files",
        link: Link::Dynamic,
        summary: "file offsets, O_APPEND, a deleted open file, dup'ed descriptors, /dev/null, cwd, umask",
        crosses_kernels: true,
    },
    Workload {
        name: "signals",
        link: Link::Static,
        summary: "handlers with flags and masks, blocked pending signals with siginfo, sigaltstack",
        crosses_kernels: true,
    },
    Workload {
        name: "timers",
        link: Link::Dynamic,
        summary: "ITIMER_REAL and a POSIX timer that fire after restore, an idle POSIX timer",
        crosses_kernels: true,
    },
    Workload {
        name: "sigev_thread",
        link: Link::Dynamic,
        summary: "SIGEV_THREAD POSIX timers (glibc's helper thread) that keep firing after restore",
        crosses_kernels: true,
    },
    Workload {
        name: "cow_fork",
        link: Link::Dynamic,
        summary: "16 MiB (64 on the host) shared copy-on-write by a parent and 4 forked children, still shared after restore",
        crosses_kernels: true,
    },
    Workload {
        name: "stopped",
        link: Link::Dynamic,
        summary: "processes in a group stop (SIGSTOP from the parent, a raise(SIGSTOP), a threaded one) stay stopped",
        crosses_kernels: true,
    },
    Workload {
        name: "seccomp_filter",
        link: Link::Dynamic,
        summary: "seccomp filters shared by three threads and per thread, each thread's answers and counts kept",
        crosses_kernels: true,
    },
    Workload {
        name: "tree",
        link: Link::Static,
        summary: "three-level tree with a session leader, process groups and zombies",
        crosses_kernels: true,
    },
    Workload {
        name: "blocking",
        link: Link::Dynamic,
        summary: "a child blocked in nanosleep/read/futex/poll/epoll_wait/accept (mode argument)",
        crosses_kernels: false,
    },
    Workload {
        name: "vdso_glibc",
        link: Link::Dynamic,
        summary: "clock_gettime/gettimeofday/time through the vDSO in a loop, glibc rseq registration",
        crosses_kernels: true,
    },
    Workload {
        name: "tcp_loopback",
        link: Link::Dynamic,
        summary: "loopback TCP connections with both ends in the tree (IPv4, IPv6, v4-mapped), data queued both ways",
        crosses_kernels: true,
    },
    Workload {
        name: "tcp_states",
        link: Link::Dynamic,
        summary: "loopback TCP connections in FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK and CLOSING with bytes queued",
        crosses_kernels: true,
    },
    Workload {
        name: "tcp_closer",
        link: Link::Dynamic,
        summary: "a service holding connections to outside peers in CLOSE_WAIT, FIN_WAIT2, FIN_WAIT1, LAST_ACK and CLOSING (tests/tests/tcp_states.rs)",
        crosses_kernels: false,
    },
    Workload {
        name: "sysctl_ping",
        link: Link::Dynamic,
        summary: "an ICMP datagram socket allowed by net.ipv4.ping_group_range set at run time; pings after restore",
        crosses_kernels: true,
    },
    Workload {
        name: "refuse_netlink",
        link: Link::Dynamic,
        summary: "holds a NETLINK_ROUTE socket: the dump must refuse and leave it running",
        crosses_kernels: false,
    },
    Workload {
        name: "anonfds",
        link: Link::Dynamic,
        summary: "eventfd (plain and semaphore), timerfd, signalfd with a pending signal, epoll over them",
        crosses_kernels: true,
    },
    Workload {
        name: "creds",
        link: Link::Dynamic,
        summary: "uids/gids/groups, capabilities, bounding set, no_new_privs, rlimits, nice, personality, comm",
        crosses_kernels: true,
    },
    Workload {
        name: "fanout",
        link: Link::Static,
        summary: "a root with N-1 small children (N as second argument, default 16)",
        crosses_kernels: true,
    },
    Workload {
        name: "epoll_eventfd",
        link: Link::Dynamic,
        summary: "epoll watches (LT/ET/ONESHOT, data, numbers) shared with a child, eventfds with counters",
        crosses_kernels: true,
    },
    Workload {
        name: "timerfd_signalfd",
        link: Link::Static,
        summary: "armed/expired/disarmed timerfds on three clocks, a signalfd with a pending signal",
        crosses_kernels: true,
    },
    Workload {
        name: "tcp_listen",
        link: Link::Dynamic,
        summary: "IPv4/IPv6 listeners with options, an in-process TCP connection (repair), UDP",
        crosses_kernels: true,
    },
    Workload {
        name: "tcp_established",
        link: Link::Dynamic,
        summary: "a TCP connection to an echo server outside the tree, full queues, no reconnect (PORT arg)",
        crosses_kernels: false,
    },
    Workload {
        name: "tcp_echo",
        link: Link::Dynamic,
        summary: "an echo server (PORT arg, v6 for [::1]) whose client outside the tree streams through the dump",
        crosses_kernels: false,
    },
    Workload {
        name: "tcp_service",
        link: Link::Static,
        summary: "a service for clients outside the tree (PORT arg): uploads checked, paced downloads, idle keep-alive connections",
        crosses_kernels: false,
    },
    Workload {
        name: "ping_socket",
        link: Link::Dynamic,
        summary: "an ICMP datagram socket: needs net.ipv4.ping_group_range where it is recreated",
        crosses_kernels: false,
    },
    Workload {
        name: "unix_pair",
        link: Link::StaticPie,
        summary: "unix socketpairs across processes with queued data, shutdown, path and abstract listeners",
        crosses_kernels: true,
    },
    Workload {
        name: "unix_dgram",
        link: Link::Dynamic,
        summary: "messages queued on unix datagram and seqpacket sockets: a bound server's from named, abstract, unnamed and exited senders, pairs both ways, a connected datagram socket",
        crosses_kernels: true,
    },
    Workload {
        name: "unix_closed_peer",
        link: Link::Dynamic,
        summary: "unix sockets whose peer end was closed with bytes or packets still queued for them: pairs of every type, a listener's client and an accepted connection",
        crosses_kernels: true,
    },
    Workload {
        name: "unix_scm",
        link: Link::Dynamic,
        summary: "descriptors in flight (SCM_RIGHTS) in unread unix messages: a pipe, a file at an offset, a socket, an eventfd, on datagram, stream and seqpacket pairs",
        crosses_kernels: true,
    },
    Workload {
        name: "pty_session",
        link: Link::Dynamic,
        summary: "a multiplexer-like tree on a pty: session leader with it as controlling terminal, foreground and background groups, settings, window size, packet and exclusive modes, unread bytes both ways",
        crosses_kernels: true,
    },
    Workload {
        name: "inotify",
        link: Link::Dynamic,
        summary: "two inotify instances: watches on a directory and files with their descriptors (a gap), masks with IN_ONESHOT and IN_EXCL_UNLINK, real events after restore",
        crosses_kernels: true,
    },
    Workload {
        name: "pidfd",
        link: Link::Dynamic,
        summary: "pidfds of a child and of itself (blocking and PIDFD_NONBLOCK), O_PATH descriptors of a file and a directory, an epoll watching a closed duplicate of an eventfd",
        crosses_kernels: true,
    },
    Workload {
        name: "refuse",
        link: Link::Dynamic,
        summary: "one resource seamless cannot restore exactly (MODE argument): dump and check must refuse",
        crosses_kernels: false,
    },
    Workload {
        name: "reuseaddr",
        link: Link::Dynamic,
        summary: "TCP sockets with and without SO_REUSEADDR, an established connection: options unchanged",
        crosses_kernels: true,
    },
    Workload {
        name: "tmpfs_service",
        link: Link::Dynamic,
        summary: "runtime files on tmpfs: a /run directory with a pid file and a unix listener, POSIX shm, a /tmp file",
        crosses_kernels: true,
    },
    Workload {
        name: "sockopts",
        link: Link::Dynamic,
        summary: "SO_LINGER, buffer sizes and their locks, classic BPF filters (locked too), SO_REUSEPORT groups",
        crosses_kernels: true,
    },
    Workload {
        name: "udp_queue",
        link: Link::Dynamic,
        summary: "UDP servers (IPv4, IPv6, wildcard, dual stack, connected) with unread datagrams from their senders",
        crosses_kernels: true,
    },
    Workload {
        name: "file_locks",
        link: Link::Dynamic,
        summary: "flock, POSIX, OFD locks and leases held by two processes: the same locks by the same owners",
        crosses_kernels: true,
    },
    Workload {
        name: "sched_attrs",
        link: Link::Dynamic,
        summary: "per-thread policies, priorities, nice, affinity, I/O priority, names; ambient caps, securebits",
        crosses_kernels: true,
    },
    Workload {
        name: "sysv_ipc",
        link: Link::Dynamic,
        summary: "System V segments (keyed, private, read-only, removed while attached, unattached; holes), a semaphore set, message queues (one made by another uid), shared with a child",
        crosses_kernels: true,
    },
    Workload {
        name: "posix_mq",
        link: Link::Dynamic,
        summary: "POSIX message queues (named and unlinked; shared, distinct and dup'ed descriptors) with messages of several priorities",
        crosses_kernels: true,
    },
    Workload {
        name: "mq_notify",
        link: Link::Dynamic,
        summary: "mq_notify registrations (signal with a value, none; by the root and a child) on named and unlinked queues, with and without messages",
        crosses_kernels: true,
    },
    Workload {
        name: "memfd",
        link: Link::Dynamic,
        summary: "memfds: sparse contents, seals (also no sealing, noexec), modes, positions, shared and private mappings, a mapped-only one, shared with a child",
        // Its MFD_NOEXEC_SEAL memfd carries F_SEAL_EXEC, which 6.1 does not have: `check`
        // refuses it for a 6.1 target (`new kernel F_SEAL_EXEC`), so it cannot cross both ways.
        crosses_kernels: false,
    },
    Workload {
        name: "deleted_files",
        link: Link::Dynamic,
        summary: "deleted files: sparse contents, owner, mode, mtime, two descriptions of one file, shared and private mappings, a mapped-only one",
        crosses_kernels: false,
    },
    Workload {
        name: "deleted_fifo",
        link: Link::Dynamic,
        summary: "FIFOs removed while open (read and write ends in two processes, read-write, a lone writer) with queued bytes, removed directories held open and as a working directory",
        crosses_kernels: true,
    },
    Workload {
        name: "memfd_exec",
        link: Link::Dynamic,
        summary: "a child exec'd from a sealed memfd (fexecve) and one running a deleted copy: /proc/self/exe, its bytes and mappings",
        crosses_kernels: true,
    },
    Workload {
        name: "timerfd_flags",
        link: Link::Dynamic,
        summary: "timerfds set with TFD_TIMER_ABSTIME and TFD_TIMER_CANCEL_ON_SET (armed and disarmed), an unread expiration",
        // Not run in the VM scenarios yet.
        crosses_kernels: false,
    },
    Workload {
        name: "access_modes",
        link: Link::Dynamic,
        summary: "mappings whose protection differs from their file's open mode, mlock/mlock2 areas, deleted files of mode 0000 and of another owner, a chrooted child",
        crosses_kernels: true,
    },
    Workload {
        name: "cgroup_member",
        link: Link::Dynamic,
        summary: "a root and a child in cgroup v2 groups of their own (with pids.max and memory.max where the controllers exist)",
        crosses_kernels: true,
    },
    Workload {
        name: "cached_file",
        link: Link::Dynamic,
        summary: "a data file kept hot in the page cache (MiB argument): resident and as fast as before afterwards",
        crosses_kernels: false,
    },
];

/// The benchmark's floor program (not a workload): populate + memcpy speed.
pub const MEMFLOOR: Workload = Workload {
    name: "memfloor",
    link: Link::Dynamic,
    summary: "mmap(MAP_POPULATE) + memcpy of N MiB, prints MiB/s",
    crosses_kernels: false,
};

/// The workloads the VM upgrade scenarios run across kernels, with their arguments (none).
pub fn crossing_kernels() -> Vec<(&'static str, &'static str)> {
    WORKLOADS.iter().filter(|w| w.crosses_kernels).map(|w| (w.name, "")).collect()
}

/// `tests/workloads/`.
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads")
}

/// Looks a workload (or `memfloor`) up by name.
pub fn find(name: &str) -> Result<Workload> {
    WORKLOADS
        .iter()
        .chain(std::iter::once(&MEMFLOOR))
        .find(|w| w.name == name)
        .copied()
        .with_context(|| format!("no workload named {name:?} in tests/workloads"))
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Compiles one workload into `out_dir` (created if missing) unless the binary there is newer
/// than its source and `wl.h`. Returns the binary's path. Safe against concurrent builds of the
/// same binary (each compiles to a private name and renames).
pub fn build(workload: &Workload, out_dir: &Path) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let src_dir = source_dir();
    let source = src_dir.join(format!("{}.c", workload.name));
    let header = src_dir.join("wl.h");
    let binary = out_dir.join(workload.name);
    let newest_input = [mtime(&source), mtime(&header)]
        .into_iter()
        .flatten()
        .max()
        .with_context(|| format!("workload source {} is missing", source.display()))?;
    if mtime(&binary).is_some_and(|built| built > newest_input) {
        return Ok(binary);
    }
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("creating workload output directory {}", out_dir.display()))?;
    let temp =
        out_dir.join(format!(".{}.{}.{}", workload.name, std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let mut cmd = Command::new("gcc");
    cmd.args(["-O1", "-g", "-Wall", "-Wextra", "-Werror", "-Wno-format-truncation", "-pthread"]);
    match workload.link {
        Link::Static => {
            cmd.arg("-static");
        }
        Link::StaticPie => {
            cmd.arg("-static-pie");
        }
        Link::Dynamic => {}
    }
    cmd.arg("-I").arg(&src_dir).arg("-o").arg(&temp).arg(&source);
    let out =
        cmd.output().with_context(|| format!("running gcc for workload {} (is gcc installed?)", workload.name))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&temp);
        bail!("gcc failed for workload {} ({}):\n{}", workload.name, out.status, String::from_utf8_lossy(&out.stderr));
    }
    std::fs::rename(&temp, &binary).with_context(|| format!("installing {}", binary.display()))?;
    Ok(binary)
}

/// Builds a workload by name.
pub fn build_named(name: &str, out_dir: &Path) -> Result<PathBuf> {
    build(&find(name)?, out_dir)
}

/// Builds every workload and the floor program into `out_dir`.
pub fn build_all(out_dir: &Path) -> Result<Vec<PathBuf>> {
    WORKLOADS.iter().chain(std::iter::once(&MEMFLOOR)).map(|w| build(w, out_dir)).collect()
}
