//! Descriptors and open file descriptions. Classifies every descriptor of every process
//! (this is also the up-front refusal of unsupported kinds), groups descriptors that share an
//! open file description (`kcmp`), and captures pipe buffers and deleted files' contents.
//! Sockets, epoll and eventfd/signalfd/timerfd are handed to their own modules.

use super::{DumpError, DumpOptions, Frozen};
use seamless_image::records::{self, Fd, FdTable, FileDesc, FileKind, PipeRecord};
use seamless_image::{Store, Writer};
use seamless_sys::chain;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

/// Character devices that can simply be reopened by path.
const REOPENABLE_CHARDEVS: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];

/// Everything about files the dump writes.
#[derive(Debug, Default)]
pub struct FilePlan {
    /// Open file descriptions.
    pub descs: Vec<FileDesc>,
    /// Per-process descriptor tables.
    pub tables: BTreeMap<i32, FdTable>,
    /// Pipe buffers.
    pub pipes: BTreeMap<u64, PipeRecord>,
    /// Established TCP connections still to be read in repair mode
    /// ([`super::sockets::repair_pending`]).
    pub tcp_pending: Vec<super::sockets::PendingTcp>,
    /// Socket state beyond the socket records.
    pub socket_extras: Vec<records::SocketExtra>,
    /// Datagrams queued on UDP sockets.
    pub datagrams: Vec<records::DatagramQueue>,
    /// Messages queued on unix sockets ([`super::unix`]).
    pub unix_queues: Vec<records::UnixQueue>,
    /// Unix sockets whose peer was closed.
    pub unix_gone: Vec<records::UnixPeerGone>,
    /// Descriptors in flight on unix sockets.
    pub unix_in_flight: Vec<records::UnixInFlight>,
    /// Close states of TCP connections past ESTABLISHED (filled in by
    /// [`super::sockets::repair_pending`]).
    pub tcp_closes: Vec<records::TcpCloseState>,
    /// TCP sockets whose connection ended.
    pub tcp_ended: Vec<records::TcpEnded>,
    /// Pty pairs by pts index, while classifying.
    pub ptys_seen: BTreeMap<u32, super::tty::PendingPty>,
    /// Pty pairs.
    pub ptys: Vec<records::PtyRecord>,
    /// inotify instances.
    pub inotify: Vec<records::InotifyRecord>,
    /// pidfds, with the process and descriptor holding each first.
    pub pidfds: Vec<(i32, i32, records::PidfdRecord)>,
    /// File locks by the process that takes them again ([`super::locks`]).
    pub locks: BTreeMap<i32, records::FileLocks>,
    /// POSIX message queues and memfds.
    pub objects: super::objects::Objects,
    /// Deleted FIFOs and directories, executables that are objects ([`super::nodes`]).
    pub nodes: super::nodes::Nodes,
}

impl FilePlan {
    /// The table of one process (empty if none).
    pub fn table_of(&self, pid: i32) -> FdTable {
        self.tables.get(&pid).cloned().unwrap_or_default()
    }
}

struct FdInfo {
    pos: u64,
    flags: u32,
    /// `lock:` lines: file locks (flock, POSIX, OFD, leases) held through this descriptor.
    locks: Vec<String>,
}

fn fdinfo(pid: i32, fd: i32) -> Result<FdInfo, DumpError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .map_err(|e| DumpError::io(pid, format!("reading fdinfo of fd {fd}"), e))?;
    let mut info = FdInfo { pos: 0, flags: 0, locks: Vec::new() };
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("pos:") {
            info.pos = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("flags:") {
            info.flags = u32::from_str_radix(v.trim(), 8).unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("lock:") {
            info.locks.push(v.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    Ok(info)
}

fn unsupported(pid: i32, fd: i32, link: &str, reason: &str) -> DumpError {
    DumpError::Unsupported { pid, resource: format!("fd {fd} ({link})"), reason: reason.into() }
}

pub(super) fn read_pipe(pid: i32, fd: i32, ino: u64) -> Result<PipeRecord, DumpError> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| DumpError::io(pid, format!("opening pipe of fd {fd}"), e))?;
    let raw = f.as_raw_fd();
    let capacity = seamless_sys::proc::pipe_size(raw).map_err(|e| DumpError::sys(pid, format!("pipe fd {fd}"), e))?;
    let n = seamless_sys::proc::fionread(raw).map_err(|e| DumpError::sys(pid, format!("pipe fd {fd}"), e))?;
    let mut data = Vec::new();
    if n > 0 {
        let (r, w) = seamless_sys::proc::pipe().map_err(|e| DumpError::sys(pid, "temporary pipe", e))?;
        seamless_sys::proc::set_pipe_size(w.as_raw_fd(), capacity.max(n))
            .map_err(|e| DumpError::sys(pid, "temporary pipe", e))?;
        let got = seamless_sys::proc::tee(raw, w.as_raw_fd(), n)
            .map_err(|e| DumpError::sys(pid, format!("copying pipe of fd {fd}"), e))?;
        drop(w);
        let mut rf = std::fs::File::from(r);
        rf.read_to_end(&mut data).map_err(|e| DumpError::io(pid, "reading pipe copy", e))?;
        if got != n || data.len() != n {
            return Err(unsupported(
                pid,
                fd,
                &format!("pipe:[{ino}]"),
                &format!("copied {} of {n} buffered bytes", data.len()),
            ));
        }
    }
    Ok(PipeRecord { ino, capacity: capacity as u64, data })
}

/// Classifies every descriptor of every (live) process.
pub fn collect(frozen: &Frozen, opts: &DumpOptions) -> Result<FilePlan, DumpError> {
    let max_ghost = opts.max_ghost_size.unwrap_or(256 << 20);
    let mut plan = FilePlan::default();
    plan.objects.pre_flight = opts.pre_flight;
    plan.objects.max_size = max_ghost;
    // Candidates for sharing, keyed by link text: (pid, fd, desc id).
    let mut by_link: BTreeMap<String, Vec<(i32, i32, u32)>> = BTreeMap::new();
    let mut socks = super::sockets::Ctx::default();
    socks.pre_flight = opts.pre_flight;
    let mut epolls = Vec::new();
    let mut held = Vec::new();
    for p in frozen.procs() {
        if p.zombie.is_some() {
            continue;
        }
        let pid = p.pid;
        let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map_err(|e| DumpError::io(pid, "listing /proc/PID/fd", e))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort_unstable();
        let mut table = FdTable::default();
        for fd in fds {
            let link_path = format!("/proc/{pid}/fd/{fd}");
            let link =
                std::fs::read_link(&link_path).map_err(|e| DumpError::io(pid, format!("readlink fd {fd}"), e))?;
            let link = link.to_string_lossy().into_owned();
            let mut info = fdinfo(pid, fd)?;
            // A lease turns O_ASYNC on (its break is signalled); taking it again does the same,
            // and the lease's owner and signal are checked by `locks`.
            if super::locks::has_lease(&info.locks) {
                info.flags &= !(libc::O_ASYNC as u32);
            }
            if info.flags & libc::O_ASYNC as u32 != 0 {
                return Err(unsupported(
                    pid,
                    fd,
                    &link,
                    "signal-driven I/O (O_ASYNC): the owner and signal (F_SETOWN, F_SETSIG) are not checkpointed",
                ));
            }
            let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
            let flags = info.flags & !(libc::O_CLOEXEC as u32);
            // Shared description?
            let mut desc = None;
            if let Some(cands) = by_link.get(&link) {
                for &(cp, cfd, id) in cands {
                    if seamless_sys::proc::kcmp_file(pid, fd, cp, cfd)
                        .map_err(|e| DumpError::sys(pid, format!("comparing fd {fd}"), e))?
                    {
                        desc = Some(id);
                        break;
                    }
                }
            }
            let id = match desc {
                Some(id) => id,
                None => {
                    let id = plan.descs.len() as u32 + 1;
                    let kind = if link == "anon_inode:[eventpoll]" {
                        epolls.push(super::epoll::Pending { pid, fd, id });
                        super::epoll::placeholder(pid)
                    } else if let Some(ino) = link.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                        super::sockets::classify(&mut socks, pid, fd, ino.parse().unwrap_or(0))?
                    } else if link == seamless_image::records::pidfd::PIDFD_PATH {
                        super::pidfd::classify(pid, fd, id, flags, &mut plan.pidfds)?
                    } else {
                        classify(pid, fd, &link, &link_path, &mut plan, id)?
                    };
                    plan.descs.push(FileDesc { id, flags, pos: info.pos, kind });
                    by_link.entry(link.clone()).or_default().push((pid, fd, id));
                    id
                }
            };
            if !info.locks.is_empty() {
                held.push(super::locks::Held { pid, fd, desc: id, link: link.clone(), lines: info.locks });
            }
            table.fds.push(Fd { fd, cloexec, desc: id });
        }
        plan.tables.insert(pid, table);
    }
    // Descriptors in flight in unix queues: descriptions like the others (the dumper holds
    // copies until the end of the dump's walk).
    let mut copies = Vec::new();
    while !socks.unix_pending.in_flight_new.is_empty() {
        for (ino, index, fds) in std::mem::take(&mut socks.unix_pending.in_flight_new) {
            let mut ids = Vec::new();
            for f in fds {
                ids.push(in_flight(&mut plan, &mut socks, &mut by_link, ino, &f)?);
                copies.push(f);
            }
            socks.unix_pending.in_flight.entry(ino).or_default().push((index, ids));
        }
    }
    super::epoll::resolve(&epolls, &mut plan)?;
    super::pidfd::check(frozen, &plan.pidfds)?;
    plan.ptys = super::tty::finish(frozen, &plan.ptys_seen, !opts.pre_flight)?;
    // `seamless check` does not walk datagram and packet queues (`super::unix`): a pair's
    // other end may be in flight there, which only the dump can see.
    if !socks.unix_pending.unwalked {
        super::sockets::check_pairs(&plan)?;
    }
    (plan.unix_queues, plan.unix_gone, plan.unix_in_flight) =
        super::unix::finish(&mut plan, &mut socks.unix_pending, &socks.unix_names)?;
    drop(copies);
    plan.locks = super::locks::resolve(frozen, &plan, &held, opts.carry_clocks)?;
    plan.tcp_pending = std::mem::take(&mut socks.pending);
    // The socket records carry inodes; the extra records are filed under description ids.
    for d in &plan.descs {
        if let FileKind::Socket(s) = &d.kind {
            if let Some(mut x) = socks.extras.remove(&s.ino) {
                x.desc = d.id;
                plan.socket_extras.push(x);
            }
            if let Some(datagrams) = socks.datagrams.remove(&s.ino) {
                plan.datagrams.push(records::DatagramQueue { desc: d.id, datagrams });
            }
            if socks.ended.remove(&s.ino) {
                plan.tcp_ended.push(records::TcpEnded { desc: d.id });
            }
        }
    }
    Ok(plan)
}

/// The description of a descriptor in flight (the dumper's copy `f`) in a message queued on
/// socket `ino`: one the processes hold too (`kcmp`), or a new one. Refused: kinds whose
/// state belongs to a process (epoll, pidfds, ttys, locks, signal-driven I/O), established TCP
/// connections, and unix sockets that carry descriptors in flight themselves.
fn in_flight(
    plan: &mut FilePlan,
    socks: &mut super::sockets::Ctx,
    by_link: &mut BTreeMap<String, Vec<(i32, i32, u32)>>,
    ino: u64,
    f: &std::os::fd::OwnedFd,
) -> Result<u32, DumpError> {
    let me = std::process::id() as i32;
    let raw = f.as_raw_fd();
    let (pid, fd) = plan
        .descs
        .iter()
        .find(|d| matches!(&d.kind, FileKind::Socket(s) if s.ino == ino))
        .and_then(|d| plan.tables.iter().find_map(|(p, t)| t.fds.iter().find(|x| x.desc == d.id).map(|x| (*p, x.fd))))
        .unwrap_or((0, -1));
    let link_path = format!("/proc/{me}/fd/{raw}");
    let link =
        std::fs::read_link(&link_path).map_err(|e| DumpError::io(pid, "readlink of a descriptor in flight", e))?;
    let link = link.to_string_lossy().into_owned();
    let refuse = |why: &str| DumpError::Unsupported {
        pid,
        resource: format!("fd {fd} (socket:[{ino}])"),
        reason: format!("a descriptor in flight in its queue ({link}): {why}"),
    };
    if let Some(cands) = by_link.get(&link) {
        for &(cp, cfd, id) in cands {
            if seamless_sys::proc::kcmp_file(me, raw, cp, cfd)
                .map_err(|e| DumpError::sys(pid, "comparing a descriptor in flight", e))?
            {
                return Ok(id);
            }
        }
    }
    if link == "anon_inode:[eventpoll]"
        || link == seamless_image::records::pidfd::PIDFD_PATH
        || link.starts_with("/dev/pts/")
        || link == "/dev/ptmx"
        || link.starts_with("/dev/tty")
    {
        return Err(refuse("only held in flight, and its kind (epoll, pidfd, tty) is not restored there"));
    }
    let info = fdinfo(me, raw)?;
    if !info.locks.is_empty() || info.flags & libc::O_ASYNC as u32 != 0 {
        return Err(refuse("only held in flight, with file locks or signal-driven I/O"));
    }
    let flags = info.flags & !(libc::O_CLOEXEC as u32);
    let id = plan.descs.len() as u32 + 1;
    let kind = if let Some(n) = link.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
        let sock_ino: u64 = n.parse().unwrap_or(0);
        let tcp = socks.pending.len();
        let kind = super::sockets::classify(socks, me, raw, sock_ino)?;
        if socks.pending.len() != tcp {
            return Err(refuse("an established TCP connection held only in flight is not checkpointed"));
        }
        if socks.unix_pending.in_flight_new.iter().any(|(i, _, _)| *i == sock_ino) {
            return Err(refuse(
                "a unix socket in flight that carries descriptors in flight itself is not checkpointed",
            ));
        }
        kind
    } else {
        classify(me, raw, &link, &link_path, plan, id)?
    };
    plan.descs.push(FileDesc { id, flags, pos: info.pos, kind });
    by_link.entry(link).or_default().push((me, raw, id));
    Ok(id)
}

fn classify(
    pid: i32,
    fd: i32,
    link: &str,
    link_path: &str,
    plan: &mut FilePlan,
    id: u32,
) -> Result<FileKind, DumpError> {
    if let Some(rest) = link.strip_prefix("pipe:[") {
        let ino: u64 = rest.trim_end_matches(']').parse().unwrap_or(0);
        if let std::collections::btree_map::Entry::Vacant(e) = plan.pipes.entry(ino) {
            e.insert(read_pipe(pid, fd, ino)?);
        }
        return Ok(FileKind::Pipe { pipe: ino });
    }
    match link {
        "anon_inode:[eventfd]" => return super::eventfd::eventfd(pid, fd),
        "anon_inode:[signalfd]" => return super::eventfd::signalfd(pid, fd),
        "anon_inode:[timerfd]" => return super::eventfd::timerfd(pid, fd),
        "anon_inode:inotify" => return super::inotify::classify(pid, fd, id, &mut plan.inotify),
        _ => {}
    }
    if link == "anon_inode:[fanotify]" {
        let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        // The queued events' size, through a duplicate of the descriptor (an anonymous inode
        // cannot be opened again by its /proc link).
        let queued = seamless_sys::proc::pidfd_open(pid)
            .and_then(|p| seamless_sys::proc::pidfd_getfd(&p, fd, pid))
            .and_then(|f| seamless_sys::proc::fionread(f.as_raw_fd()))
            .ok()
            .and_then(|n| i32::try_from(n).ok());
        return Err(super::fanotify::refusal(pid, fd, &text, queued));
    }
    if link.starts_with("anon_inode:") {
        return Err(unsupported(pid, fd, link, super::fanotify::anon_reason(link)));
    }
    if link.starts_with("/memfd:") && link.ends_with(" (deleted)") {
        return super::objects::memfd_fd(pid, fd, link, link_path, plan, id);
    }
    if !link.starts_with('/') {
        return Err(unsupported(pid, fd, link, "not a file reachable by path"));
    }
    let md = std::fs::metadata(link_path).map_err(|e| DumpError::io(pid, format!("stat fd {fd}"), e))?;
    let ft = md.file_type();
    let deleted = link.ends_with(" (deleted)") && md.nlink() == 0;
    if ft.is_char_device() {
        if let Some(kind) = super::tty::classify(pid, fd, link, &md, &mut plan.ptys_seen, id)? {
            return Ok(kind);
        }
        if REOPENABLE_CHARDEVS.contains(&link) {
            return Ok(FileKind::CharDev { path: link.to_string(), rdev: md.rdev() });
        }
        return Err(unsupported(
            pid,
            fd,
            link,
            "character devices other than null/zero/full/random/urandom (ttys, ...) are not checkpointed",
        ));
    }
    if ft.is_fifo() {
        if deleted {
            return super::nodes::fifo(pid, fd, link, &md, plan, id);
        }
        same_file(pid, fd, link, &md)?;
        let ino = md.ino();
        if let std::collections::btree_map::Entry::Vacant(e) = plan.pipes.entry(ino) {
            e.insert(read_pipe(pid, fd, ino)?);
        }
        return Ok(FileKind::Fifo { path: link.to_string(), pipe: ino });
    }
    if ft.is_file() && super::objects::is_mqueue(pid, fd, link_path)? {
        return super::objects::posix_mq(pid, fd, link, link_path, &md, plan, id);
    }
    if ft.is_file() || ft.is_dir() {
        if deleted {
            if !ft.is_file() {
                return Ok(super::nodes::dir(link, &md, plan, id));
            }
            // One object per inode (sparse contents, owner, times), whichever descriptions open it.
            return super::objects::deleted_fd(pid, fd, link, link_path, plan, id);
        }
        same_file(pid, fd, link, &md)?;
        return Ok(FileKind::Regular { path: link.to_string(), size: md.size(), mode: md.mode() });
    }
    Err(unsupported(pid, fd, link, "unsupported file type (block device or socket file)"))
}

/// Refuses a descriptor whose path (reopened by restore) now names another file than the open
/// one (renamed, replaced, or on a mount the dumper does not see).
fn same_file(pid: i32, fd: i32, link: &str, md: &std::fs::Metadata) -> Result<(), DumpError> {
    match std::fs::metadata(link) {
        Ok(now) if now.dev() == md.dev() && now.ino() == md.ino() => Ok(()),
        Ok(_) => Err(unsupported(
            pid,
            fd,
            link,
            "the path now names another file than the open one (renamed or replaced): restore reopens it by path and would get the wrong file",
        )),
        Err(e) => Err(unsupported(
            pid,
            fd,
            link,
            &format!("the path of the open file cannot be opened ({}): restore reopens it by path", chain(&e)),
        )),
    }
}

/// Writes descriptions, pipe buffers and ghost contents.
/// Refuses the first descriptor whose records the reader (knowing record kinds `kinds`)
/// would not know.
pub fn readable_by(plan: &FilePlan, kinds: &[u16]) -> Result<(), DumpError> {
    let needs = plan
        .socket_extras
        .iter()
        .map(|x| (x.desc, records::SOCKET_EXTRA, "its SO_LINGER, buffer sizes or socket filter"))
        .chain(plan.datagrams.iter().map(|q| (q.desc, records::DATAGRAMS, "its queued datagrams")))
        .chain(plan.unix_queues.iter().map(|q| (q.desc, records::UNIX_QUEUE, "its queued unix messages")))
        .chain(plan.unix_gone.iter().map(|g| (g.desc, records::UNIX_PEER_GONE, "its closed unix peer")))
        .chain(plan.unix_in_flight.iter().map(|f| (f.desc, records::UNIX_IN_FLIGHT, "its descriptors in flight")))
        .chain(plan.ptys.iter().map(|t| (t.master, records::PTY, "its pty pair")))
        .chain(plan.inotify.iter().map(|n| (n.desc, records::INOTIFY, "its inotify watches")))
        .chain(plan.pidfds.iter().map(|(_, _, p)| (p.desc, records::PIDFD, "its pidfd")))
        .chain(
            super::tcp_states::closing_descs(plan).into_iter().map(|d| (d, records::TCP_CLOSE, "its TCP close state")),
        )
        .chain(plan.tcp_ended.iter().map(|t| (t.desc, records::TCP_ENDED, "its ended TCP connection")));
    for (desc, kind, what) in needs {
        if kinds.contains(&kind.0) {
            continue;
        }
        let (pid, fd) = plan
            .tables
            .iter()
            .find_map(|(pid, t)| t.fds.iter().find(|f| f.desc == desc).map(|f| (*pid, f.fd)))
            .unwrap_or((0, -1));
        return Err(DumpError::Unsupported {
            pid,
            resource: format!("fd {fd} (file #{desc})"),
            reason: format!(
                "{what} need record kind {kind}, which the target's seamless-init does not read: update it, or reset the option first"
            ),
        });
    }
    Ok(())
}

pub fn write<S: Store>(plan: &FilePlan, w: &mut Writer<S>) -> Result<(), DumpError> {
    for d in &plan.descs {
        w.put_record(records::FILE_DESC, 0, u64::from(d.id), d)?;
    }
    for p in plan.pipes.values() {
        w.put_record(records::PIPE, 0, p.ino, p)?;
    }
    for x in &plan.socket_extras {
        w.put_record(records::SOCKET_EXTRA, 0, u64::from(x.desc), x)?;
    }
    for q in &plan.datagrams {
        w.put_record(records::DATAGRAMS, 0, u64::from(q.desc), q)?;
    }
    for q in &plan.unix_queues {
        w.put_record(records::UNIX_QUEUE, 0, u64::from(q.desc), q)?;
    }
    for g in &plan.unix_gone {
        w.put_record(records::UNIX_PEER_GONE, 0, u64::from(g.desc), g)?;
    }
    for f in &plan.unix_in_flight {
        w.put_record(records::UNIX_IN_FLIGHT, 0, u64::from(f.desc), f)?;
    }
    for t in &plan.tcp_closes {
        w.put_record(records::TCP_CLOSE, 0, u64::from(t.desc), t)?;
    }
    for t in &plan.tcp_ended {
        w.put_record(records::TCP_ENDED, 0, u64::from(t.desc), t)?;
    }
    for (_, _, p) in &plan.pidfds {
        w.put_record(records::PIDFD, 0, u64::from(p.desc), p)?;
    }
    for n in &plan.inotify {
        w.put_record(records::INOTIFY, 0, u64::from(n.desc), n)?;
    }
    for t in &plan.ptys {
        w.put_record(records::PTY, 0, u64::from(t.index), t)?;
    }
    super::objects::write(&plan.objects, w)?;
    super::nodes::write(&plan.nodes, w)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_needing_a_kind_the_reader_lacks_is_refused_by_pid_and_fd() {
        let mut plan = FilePlan::default();
        plan.tables.insert(10, FdTable { fds: vec![Fd { fd: 5, cloexec: false, desc: 3 }] });
        plan.socket_extras.push(records::SocketExtra { desc: 3, linger: Some(1), ..Default::default() });
        readable_by(&plan, &[records::SOCKET_EXTRA.0]).unwrap();
        match readable_by(&plan, &[records::DATAGRAMS.0]) {
            Err(DumpError::Unsupported { pid: 10, resource, reason }) => {
                assert_eq!(resource, "fd 5 (file #3)");
                assert!(reason.contains("socket-extra"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        plan.datagrams.push(records::DatagramQueue { desc: 3, datagrams: Vec::new() });
        assert!(readable_by(&plan, &[records::SOCKET_EXTRA.0]).is_err());
        readable_by(&plan, &[records::SOCKET_EXTRA.0, records::DATAGRAMS.0]).unwrap();
    }
}
