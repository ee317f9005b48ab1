//! Sockets, recreated in the restorer and passed into the processes like every other open
//! file (see [`crate::files`]).
//!
//! - Listening TCP/unix sockets: `socket`, options, `bind` (a stale unix socket file is
//!   unlinked first; its mode is restored), `listen(backlog)`. Listeners are created before
//!   any connection bound to the same port (see [`open_order`]).
//! - Established TCP connections (`TCP_REPAIR`, see `seamless::dump::sockets` for the dump
//!   side and the invariants; a connection whose peer has no route in this system is replaced
//!   by an unconnected socket the process sees as broken, with a warning): `socket`, repair on, both queue sequence numbers set to where the
//!   saved queues start, `bind` to the original local address (falling back to `IP_FREEBIND`
//!   when the address is not configured yet), `connect` (sends nothing in repair mode),
//!   MSS/window scale/SACK/timestamp options, the timestamp clock, the receive queue and the
//!   already-sent part of the send queue refilled in repair mode, the window, repair off
//!   (the kernel sends one window probe), then the never-sent bytes through an ordinary send,
//!   then the saved options.
//! - Unix socket pairs with both ends in the image: one `socketpair`, each end's receive queue
//!   refilled through the other end, shutdown state re-applied. Names are not restored (an
//!   accepted connection comes back unnamed). Queued datagrams and packets, descriptors in
//!   flight, closed peers and the connections of unix datagram sockets: [`crate::unix`].
//! - UDP: `bind`, the queued datagrams queued again from their source addresses (raw IP
//!   packets over loopback, see `requeue_datagrams`), and `connect` when it was connected.
//! - Beyond the socket record: `SO_LINGER`, the buffer sizes the process set, a classic BPF
//!   filter and its lock ([`SocketExtra`], applied after the options).

use crate::RestoreError;
use seamless_image::records::{Addr, Datagram, FileKind, SockState, SocketExtra, SocketRecord, TcpCloseState, TcpConn};
use seamless_sys::chain;
use seamless_sys::sockets as net;
use seamless_sys::SysError;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Order in which descriptions are opened: listeners first, established TCP connections last.
pub fn open_order(kind: &FileKind) -> u8 {
    match kind {
        FileKind::Socket(SocketRecord { state: SockState::Listen { .. }, .. }) => 0,
        FileKind::Socket(SocketRecord { state: SockState::Tcp(_), .. }) => 2,
        _ => 1,
    }
}

/// State shared while opening the sockets of one image.
#[derive(Debug, Default)]
pub struct Ctx {
    /// Unix sockets by inode (to find the other end of a pair).
    by_ino: BTreeMap<u64, SocketRecord>,
    /// Second ends of pairs already created, by inode.
    pending: BTreeMap<u64, OwnedFd>,
    /// TCP connections still in repair mode: (description id, duplicate, record).
    repairing: Vec<(u32, OwnedFd, SocketRecord)>,
    /// State beyond the socket records, by description id.
    extras: BTreeMap<u32, SocketExtra>,
    /// Datagrams to queue again on UDP sockets, by description id.
    datagrams: BTreeMap<u32, Vec<Datagram>>,
    /// Close states of TCP connections past ESTABLISHED, by description id
    /// ([`crate::tcp_states`]).
    closes: BTreeMap<u32, TcpCloseState>,
    /// TCP sockets whose connection ended, by description id ([`crate::tcp_states::end`]).
    ended: std::collections::BTreeSet<u32>,
}

impl Ctx {
    /// A context knowing every socket of the image.
    ///
    /// When the image has IP sockets, the loopback interface is brought up first: after a
    /// kexec nothing has raised it yet, and a loopback connection cannot even be rebuilt (the
    /// repair-mode `connect` needs a route). Other interfaces and their addresses are the new
    /// system's business; a local address not configured yet is bound with `IP_FREEBIND`.
    pub fn new<'a>(
        kinds: impl Iterator<Item = &'a FileKind>,
        extras: BTreeMap<u32, SocketExtra>,
        datagrams: BTreeMap<u32, Vec<Datagram>>,
    ) -> Self {
        let mut c = Ctx { extras, datagrams, ..Ctx::default() };
        for k in kinds {
            if let FileKind::Socket(s) = k {
                c.by_ino.insert(s.ino, s.clone());
            }
        }
        if c.by_ino.values().any(|s| s.family != libc::AF_UNIX) {
            match net::link_up("lo") {
                Ok(true) => log::info!("brought the loopback interface up for the restored sockets"),
                Ok(false) => {}
                Err(e) => log::warn!("cannot bring the loopback interface up: {}", chain(&e)),
            }
        }
        c
    }

    /// The close states of the image's TCP connections past ESTABLISHED.
    pub fn with_closes(mut self, closes: BTreeMap<u32, TcpCloseState>) -> Self {
        self.closes = closes;
        self
    }

    /// The image's TCP sockets whose connection ended.
    pub fn with_ended(mut self, ended: std::collections::BTreeSet<u32>) -> Self {
        self.ended = ended;
        self
    }
}

fn fail(id: u32, what: &str, e: SysError) -> RestoreError {
    RestoreError::File { id, what: format!("socket {what} ({}({}))", e.call, e.subject), source: e.source }
}

/// Buffer sizes are not re-set as options: that would lock them and stop the kernel's
/// autotuning (whether the process had set them itself is not visible). A connection whose
/// saved queues would not fit the fresh socket's buffers gets them forced (see [`fit_buffers`]).
fn is_buffer_opt(level: i32, name: i32) -> bool {
    level == libc::SOL_SOCKET && (name == libc::SO_SNDBUF || name == libc::SO_RCVBUF)
}

fn saved_opt(s: &SocketRecord, level: i32, name: i32) -> Option<i32> {
    s.opts.iter().find(|o| o.level == level && o.name == name).map(|o| o.value)
}

/// Forces the send/receive buffers to hold the saved queues (`SO_*BUFFORCE`, values as the
/// kernel reported them, i.e. doubled) when the fresh socket's buffers are smaller.
fn fit_buffers(id: u32, fd: RawFd, s: &SocketRecord, sendq: usize, recvq: usize) -> Result<(), RestoreError> {
    for (opt, force, need) in
        [(libc::SO_SNDBUF, libc::SO_SNDBUFFORCE, sendq), (libc::SO_RCVBUF, libc::SO_RCVBUFFORCE, recvq)]
    {
        if need == 0 {
            continue;
        }
        let now =
            usize::try_from(net::get_int(fd, libc::SOL_SOCKET, opt).map_err(|e| fail(id, "SO_*BUF", e))?).unwrap_or(0);
        // Queued bytes also cost their buffer overhead (about as much again).
        let saved = saved_opt(s, libc::SOL_SOCKET, opt).and_then(|v| usize::try_from(v).ok()).unwrap_or(0);
        let want = (2 * need + (64 << 10)).max(saved);
        if now < want {
            net::set_int(fd, libc::SOL_SOCKET, force, i32::try_from(want / 2).unwrap_or(i32::MAX))
                .map_err(|e| fail(id, "SO_*BUFFORCE", e))?;
        }
    }
    Ok(())
}

fn set_opts(id: u32, fd: RawFd, s: &SocketRecord, skip_v6only: bool) -> Result<(), RestoreError> {
    for o in &s.opts {
        if skip_v6only && o.level == libc::IPPROTO_IPV6 && o.name == libc::IPV6_V6ONLY {
            continue;
        }
        if is_buffer_opt(o.level, o.name) {
            continue;
        }
        // Keepalive timing options refuse 0; a default value of the kernel is never 0 anyway.
        if let Err(e) = net::set_int(fd, o.level, o.name, o.value) {
            if o.value != 0 {
                return Err(fail(id, &format!("setsockopt({}, {}) = {}", o.level, o.name, o.value), e));
            }
        }
    }
    Ok(())
}

fn v6only(s: &SocketRecord) -> Option<i32> {
    s.opts.iter().find(|o| o.level == libc::IPPROTO_IPV6 && o.name == libc::IPV6_V6ONLY).map(|o| o.value)
}

fn bind_ip(id: u32, fd: RawFd, s: &SocketRecord) -> Result<(), RestoreError> {
    if let Some(v) = v6only(s) {
        net::set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, v).map_err(|e| fail(id, "IPV6_V6ONLY", e))?;
    }
    if s.local.is_none() {
        return Ok(());
    }
    let raw = s.local.to_raw();
    match net::bind(fd, &raw) {
        Ok(()) => Ok(()),
        Err(e) if e.errno() == Some(libc::EADDRNOTAVAIL) => {
            // The address may not be configured yet (early after a kexec).
            let level = if s.family == libc::AF_INET6 { libc::IPPROTO_IPV6 } else { libc::IPPROTO_IP };
            let opt = if s.family == libc::AF_INET6 { libc::IPV6_FREEBIND } else { libc::IP_FREEBIND };
            net::set_int(fd, level, opt, 1).map_err(|e| fail(id, "IP_FREEBIND", e))?;
            net::bind(fd, &raw).map_err(|e| fail(id, &format!("bind {}", s.local), e))
        }
        Err(e) => Err(fail(id, &format!("bind {}", s.local), e)),
    }
}

/// Creates the socket of description `id` in the restorer.
pub fn open(ctx: &mut Ctx, id: u32, s: &SocketRecord) -> Result<OwnedFd, RestoreError> {
    if let Some(fd) = ctx.pending.remove(&s.ino) {
        apply_extra(id, fd.as_raw_fd(), s, ctx.extras.get(&id))?;
        return Ok(fd);
    }
    let sock = || net::socket(s.family, s.ty, s.protocol).map_err(|e| fail(id, "socket", e));
    if ctx.ended.contains(&id) {
        // Not bound: the kernel gave its port back when the connection ended.
        let fd = sock()?;
        set_opts(id, fd.as_raw_fd(), s, false)?;
        apply_extra(id, fd.as_raw_fd(), s, ctx.extras.get(&id))?;
        crate::tcp_states::end(id, fd.as_raw_fd())?;
        return Ok(fd);
    }
    match &s.state {
        SockState::Tcp(c) => {
            let fd = match tcp_established(id, s, c, ctx.closes.get(&id)) {
                Ok(fd) => fd,
                Err(RestoreError::File { source, what, .. }) if unreachable(&source) => {
                    // No route to the peer in this system (yet): the process gets a socket
                    // that reports the connection as broken (EPOLLHUP, ENOTCONN) instead of
                    // failing as a whole.
                    log::warn!(
                        "file #{id}: connection {} -> {} cannot be rebuilt ({what}: {source}); the process                          sees it as broken",
                        s.local,
                        s.peer
                    );
                    return net::socket(s.family, libc::SOCK_STREAM, s.protocol).map_err(|e| fail(id, "socket", e));
                }
                Err(e) => return Err(e),
            };
            let dup = fd.try_clone().map_err(|e| RestoreError::File { id, what: "dup".into(), source: e })?;
            ctx.repairing.push((id, dup, s.clone()));
            Ok(fd)
        }
        SockState::UnixPair { peer, queue, shutdown } => {
            let other = ctx.by_ino.get(peer).cloned().ok_or_else(|| RestoreError::Corrupt {
                pid: 0,
                what: format!("unix socket {} paired with unknown socket {peer}", s.ino),
            })?;
            let (a, b) = net::socketpair(libc::AF_UNIX, s.ty).map_err(|e| fail(id, "socketpair", e))?;
            set_opts(id, a.as_raw_fd(), s, false)?;
            set_opts(id, b.as_raw_fd(), &other, false)?;
            apply_extra(id, a.as_raw_fd(), s, ctx.extras.get(&id))?;
            // The other end's extras are applied when its description is "opened" (below).
            let fill = |to: &OwnedFd, data: &[u8]| -> Result<(), RestoreError> {
                let mut done = 0;
                while done < data.len() {
                    done += net::send(to.as_raw_fd(), &data[done..], libc::MSG_DONTWAIT).map_err(|e| {
                        fail(id, &format!("refilling unix queue ({} of {} bytes)", done, data.len()), e)
                    })?;
                }
                Ok(())
            };
            // Bytes waiting for `a` are written by `b`, and the other way round.
            fill(&b, queue)?;
            if let SockState::UnixPair { queue: q2, shutdown: sh2, .. } = &other.state {
                fill(&a, q2)?;
                apply_shutdown(id, &b, *sh2)?;
            }
            apply_shutdown(id, &a, *shutdown)?;
            ctx.pending.insert(*peer, b);
            Ok(a)
        }
        SockState::Listen { backlog } => {
            let fd = bound(id, sock()?, s)?;
            apply_extra(id, fd.as_raw_fd(), s, ctx.extras.get(&id))?;
            net::listen(fd.as_raw_fd(), *backlog).map_err(|e| fail(id, "listen", e))?;
            Ok(fd)
        }
        SockState::Unconnected | SockState::Connected => {
            let fd = bound(id, sock()?, s)?;
            apply_extra(id, fd.as_raw_fd(), s, ctx.extras.get(&id))?;
            if let Some(queue) = ctx.datagrams.get(&id) {
                // Before the connect: a connected socket takes datagrams from its peer only.
                requeue_datagrams(id, fd.as_raw_fd(), s, queue)?;
            }
            // A unix datagram socket is connected once every queue is refilled (`crate::unix`).
            if matches!(s.state, SockState::Connected) && s.family != libc::AF_UNIX {
                net::connect(fd.as_raw_fd(), &s.peer.to_raw())
                    .map_err(|e| fail(id, &format!("connect {}", s.peer), e))?;
            }
            Ok(fd)
        }
    }
}

/// Gives a unix socket made by [`crate::unix`] its options and extras.
pub fn configure(extra: Option<&SocketExtra>, id: u32, fd: RawFd, s: &SocketRecord) -> Result<(), RestoreError> {
    set_opts(id, fd, s, false)?;
    apply_extra(id, fd, s, extra)
}

/// Gives a fresh socket its options and its saved local address (a unix path is bound
/// first, IP options such as SO_REUSEADDR must come before the bind).
fn bound(id: u32, fd: OwnedFd, s: &SocketRecord) -> Result<OwnedFd, RestoreError> {
    if s.family == libc::AF_UNIX {
        bind_unix(id, &fd, s)?;
        set_opts(id, fd.as_raw_fd(), s, false)?;
    } else {
        set_opts(id, fd.as_raw_fd(), s, true)?;
        bind_ip(id, fd.as_raw_fd(), s)?;
    }
    Ok(fd)
}

fn unreachable(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EADDRNOTAVAIL))
}

fn apply_shutdown(id: u32, fd: &OwnedFd, how: u8) -> Result<(), RestoreError> {
    // sk_shutdown bits: 1 = RCV_SHUTDOWN, 2 = SEND_SHUTDOWN.
    let r = match how & 3 {
        0 => return Ok(()),
        1 => libc::SHUT_RD,
        2 => libc::SHUT_WR,
        _ => libc::SHUT_RDWR,
    };
    net::shutdown(fd.as_raw_fd(), r).map_err(|e| fail(id, "shutdown", e))
}

fn bind_unix(id: u32, fd: &OwnedFd, s: &SocketRecord) -> Result<(), RestoreError> {
    let Addr::Unix { path } = &s.local else { return Ok(()) };
    if path.is_empty() {
        return Ok(());
    }
    if path[0] != 0 {
        let p = std::path::Path::new(std::str::from_utf8(path).unwrap_or(""));
        // A socket file left by the dead original would make bind fail with EADDRINUSE.
        if std::fs::symlink_metadata(p).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_socket()
        }) {
            let _ = std::fs::remove_file(p);
        }
    }
    net::bind(fd.as_raw_fd(), &s.local.to_raw()).map_err(|e| fail(id, &format!("bind {}", s.local), e))?;
    if path[0] != 0 && s.path_mode != 0 {
        use std::os::unix::fs::PermissionsExt;
        let p = std::path::Path::new(std::str::from_utf8(path).unwrap_or(""));
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(s.path_mode));
    }
    Ok(())
}

fn tcp_established(
    id: u32,
    s: &SocketRecord,
    c: &TcpConn,
    close: Option<&TcpCloseState>,
) -> Result<OwnedFd, RestoreError> {
    let fd = net::socket(s.family, libc::SOCK_STREAM, s.protocol).map_err(|e| fail(id, "socket", e))?;
    let raw = fd.as_raw_fd();
    fit_buffers(id, raw, s, c.send_queue.len(), c.recv_queue.len())?;
    net::tcp_repair(raw, true).map_err(|e| fail(id, "TCP_REPAIR on", e))?;
    let sent = c.send_queue.len() - (c.unsent as usize).min(c.send_queue.len());
    net::tcp_repair_queue(raw, net::TCP_SEND_QUEUE).map_err(|e| fail(id, "TCP_REPAIR_QUEUE send", e))?;
    net::set_tcp_queue_seq(raw, crate::tcp_states::send_queue_start(c, close))
        .map_err(|e| fail(id, "TCP_QUEUE_SEQ send", e))?;
    net::tcp_repair_queue(raw, net::TCP_RECV_QUEUE).map_err(|e| fail(id, "TCP_REPAIR_QUEUE recv", e))?;
    net::set_tcp_queue_seq(raw, crate::tcp_states::recv_queue_start(c, close))
        .map_err(|e| fail(id, "TCP_QUEUE_SEQ recv", e))?;
    bind_ip(id, raw, s)?;
    net::connect(raw, &s.peer.to_raw()).map_err(|e| fail(id, &format!("connect {} (repair)", s.peer), e))?;
    let mut opts = vec![(net::TCPOPT_MSS, c.mss)];
    if let Some((snd, rcv)) = c.wscale {
        opts.push((net::TCPOPT_WINDOW, u32::from(snd) | (u32::from(rcv) << 16)));
    }
    if c.sack {
        opts.push((net::TCPOPT_SACK_PERM, 0));
    }
    if c.timestamps {
        opts.push((net::TCPOPT_TIMESTAMP, 0));
    }
    net::tcp_repair_options(raw, &opts).map_err(|e| fail(id, "TCP_REPAIR_OPTIONS", e))?;
    if c.timestamps {
        // The kernel reads the option as the u32 clock value.
        net::set_int(raw, libc::IPPROTO_TCP, libc::TCP_TIMESTAMP, i32::from_ne_bytes(c.tsval.to_ne_bytes()))
            .map_err(|e| fail(id, "TCP_TIMESTAMP", e))?;
    }
    let refill = |queue: i32, data: &[u8], what: &str| -> Result<(), RestoreError> {
        net::tcp_repair_queue(raw, queue).map_err(|e| fail(id, "TCP_REPAIR_QUEUE", e))?;
        let mut done = 0;
        while done < data.len() {
            let n = net::send(raw, &data[done..], 0)
                .map_err(|e| fail(id, &format!("refilling the {what} queue ({done} of {} bytes)", data.len()), e))?;
            if n == 0 {
                return Err(RestoreError::File {
                    id,
                    what: format!("refilling the {what} queue"),
                    source: std::io::ErrorKind::WriteZero.into(),
                });
            }
            done += n;
        }
        Ok(())
    };
    refill(net::TCP_RECV_QUEUE, &c.recv_queue, "receive")?;
    refill(net::TCP_SEND_QUEUE, &c.send_queue[..sent], "send")?;
    net::tcp_repair_queue(raw, 0).map_err(|e| fail(id, "TCP_REPAIR_QUEUE none", e))?;
    net::set_tcp_repair_window(raw, crate::tcp_states::window_before_fin(c, close))
        .map_err(|e| fail(id, "TCP_REPAIR_WINDOW", e))?;
    if let Some(t) = close {
        crate::tcp_states::in_repair(id, raw, s, c, t)?;
    }
    Ok(fd)
}

/// Takes every restored connection out of repair mode, once all of them exist: leaving repair
/// mode sends a window probe, and a peer that is itself being restored must already be there
/// (or its kernel would answer with RST). Then sends the never-sent bytes and sets the options.
/// Connections for which `skip` holds (their tree is given up) stay in repair mode, so
/// closing them later sends nothing to the peer. Returns the connections that failed.
pub fn finish(ctx: &mut Ctx, skip: impl Fn(u32) -> bool) -> Vec<(u32, RestoreError)> {
    let mut failed = Vec::new();
    let extras = std::mem::take(&mut ctx.extras);
    let closes = std::mem::take(&mut ctx.closes);
    for (id, fd, s) in ctx.repairing.drain(..) {
        if skip(id) {
            continue;
        }
        let raw = fd.as_raw_fd();
        let extra = extras.get(&id).unwrap_or(&SocketExtra::default()).clone();
        let r = (|| {
            // The receive buffer the process had set goes back before the first segment
            // leaves (the window probe of leaving repair mode): every window this socket
            // advertises is then one the buffer can hold, as before the dump. With the larger
            // buffer that held the queue, the peer would size its segments to a window the
            // socket then drops for want of memory, and wait on its backed-off timer.
            set_sizes(id, raw, &s, &extra, &[libc::SO_RCVBUF])?;
            net::tcp_repair(raw, false).map_err(|e| fail(id, "TCP_REPAIR off", e))?;
            let SockState::Tcp(c) = &s.state else { return Ok(()) };
            let sent = c.send_queue.len() - (c.unsent as usize).min(c.send_queue.len());
            send_rest(id, raw, &c.send_queue[sent..])?;
            if let Some(t) = closes.get(&id) {
                crate::tcp_states::after_repair(id, raw, &s, c, t)?;
            }
            set_opts(id, raw, &s, true)?;
            // Always: the buffers forced to hold the saved queues must go back to autotuning
            // unless the process had sized them itself.
            apply_extra(id, raw, &s, Some(&extra))
        })();
        if let Err(e) = r {
            failed.push((id, e));
        }
    }
    failed
}

/// `SO_LOCK_FILTER`.
const SO_LOCK_FILTER: i32 = 44;
/// `SO_BUF_LOCK` (Linux 5.14).
const SO_BUF_LOCK: i32 = 72;

/// Applies a socket's [`SocketExtra`] (after its options): `SO_LINGER`, the buffer sizes the
/// process had set (forced to the saved values, which the kernel reported doubled) and then
/// exactly the saved `SO_BUF_LOCK` bits (setting a size locks it; a size the process never
/// set goes back to autotuning), the classic BPF filter and its lock.
fn apply_extra(id: u32, fd: RawFd, s: &SocketRecord, x: Option<&SocketExtra>) -> Result<(), RestoreError> {
    let Some(x) = x else { return Ok(()) };
    if let Some(secs) = x.linger {
        let mut l = Vec::with_capacity(8);
        l.extend_from_slice(&1i32.to_ne_bytes());
        l.extend_from_slice(&secs.to_ne_bytes());
        net::set_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, &l).map_err(|e| fail(id, "SO_LINGER", e))?;
    }
    set_sizes(id, fd, s, x, &[libc::SO_SNDBUF, libc::SO_RCVBUF])?;
    match net::set_int(fd, libc::SOL_SOCKET, SO_BUF_LOCK, i32::from(x.buf_lock)) {
        Ok(()) => {}
        // A kernel before 5.14: sizes set above stay locked, as they always did.
        Err(e) if e.errno() == Some(libc::ENOPROTOOPT) && x.buf_lock == 0 => {}
        Err(e) => return Err(fail(id, "SO_BUF_LOCK", e)),
    }
    if !x.filter.is_empty() {
        net::attach_filter(fd, &x.filter).map_err(|e| fail(id, "SO_ATTACH_FILTER", e))?;
    }
    if x.filter_locked {
        net::set_int(fd, libc::SOL_SOCKET, SO_LOCK_FILTER, 1).map_err(|e| fail(id, "SO_LOCK_FILTER", e))?;
    }
    Ok(())
}

/// Sets the buffer sizes among `which` (`SO_SNDBUF`, `SO_RCVBUF`) that the process had set
/// itself (locked) back to their saved values, which [`fit_buffers`] raised to hold the queues.
fn set_sizes(id: u32, fd: RawFd, s: &SocketRecord, x: &SocketExtra, which: &[i32]) -> Result<(), RestoreError> {
    for (bit, name, force) in
        [(1u8, libc::SO_SNDBUF, libc::SO_SNDBUFFORCE), (2u8, libc::SO_RCVBUF, libc::SO_RCVBUFFORCE)]
    {
        if x.buf_lock & bit != 0 && which.contains(&name) {
            if let Some(v) = saved_opt(s, libc::SOL_SOCKET, name) {
                net::set_int(fd, libc::SOL_SOCKET, force, v / 2).map_err(|e| fail(id, "SO_*BUFFORCE", e))?;
            }
        }
    }
    Ok(())
}

/// `IPPROTO_UDP` as the byte of an IP header.
const IPPROTO_UDP: u8 = 17;

/// The Internet checksum (RFC 1071) of `parts`, concatenated (each part of even length but
/// the last).
pub(crate) fn inet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for b in parts.iter().flat_map(|p| p.iter().copied()) {
        match odd.take() {
            Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
            None => odd = Some(b),
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

/// An IPv4-mapped IPv6 address as IPv4.
pub(crate) fn unmapped(ip: &[u8; 16]) -> Option<[u8; 4]> {
    (ip[..10] == [0; 10] && ip[10..12] == [0xff, 0xff]).then(|| [ip[12], ip[13], ip[14], ip[15]])
}

/// One UDP datagram as a whole IP packet from `from` to `to` (IPv4: header checksum and
/// length left to the kernel, no UDP checksum, which IPv4 allows; IPv6: UDP checksum
/// computed, as IPv6 requires).
fn udp_packet(from: &Addr, to: &Addr, data: &[u8]) -> Option<Vec<u8>> {
    // Lengths that do not fit their header fields (a datagram too long for IPv4) give `None`.
    let udp_len = u16::try_from(8 + data.len()).ok()?;
    let v4 = |f: [u8; 4], fport: u16, t: [u8; 4], tport: u16| -> Option<Vec<u8>> {
        let total = udp_len.checked_add(20)?;
        let mut p = Vec::with_capacity(usize::from(total));
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, IPPROTO_UDP, 0, 0]);
        p.extend_from_slice(&f);
        p.extend_from_slice(&t);
        p.extend_from_slice(&fport.to_be_bytes());
        p.extend_from_slice(&tport.to_be_bytes());
        p.extend_from_slice(&udp_len.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(data);
        Some(p)
    };
    match (from, to) {
        (Addr::V4 { ip: f, port: fp }, Addr::V4 { ip: t, port: tp }) => v4(*f, *fp, *t, *tp),
        (Addr::V6 { ip: f, port: fp, .. }, Addr::V6 { ip: t, port: tp, .. }) => {
            if let (Some(f4), Some(t4)) = (unmapped(f), unmapped(t)) {
                return v4(f4, *fp, t4, *tp);
            }
            let mut udp = Vec::with_capacity(usize::from(udp_len));
            udp.extend_from_slice(&fp.to_be_bytes());
            udp.extend_from_slice(&tp.to_be_bytes());
            udp.extend_from_slice(&udp_len.to_be_bytes());
            udp.extend_from_slice(&[0, 0]);
            udp.extend_from_slice(data);
            let pseudo_len = u32::from(udp_len).to_be_bytes();
            let pseudo_next = [0, 0, 0, IPPROTO_UDP];
            let sum = match inet_checksum(&[f, t, &pseudo_len, &pseudo_next, &udp]) {
                0 => 0xffff,
                x => x,
            };
            udp[6..8].copy_from_slice(&sum.to_be_bytes());
            let mut p = Vec::with_capacity(40 + usize::from(udp_len));
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&udp_len.to_be_bytes());
            p.extend_from_slice(&[IPPROTO_UDP, 64]);
            p.extend_from_slice(f);
            p.extend_from_slice(t);
            p.extend_from_slice(&udp);
            Some(p)
        }
        _ => None,
    }
}

/// Queues `queue` again on the freshly bound UDP socket `fd`: each datagram goes out as a raw
/// IP packet with its original source address and port (`IPPROTO_RAW`, which lets the
/// restorer, holding `CAP_NET_RAW`, write the header itself) to the socket's own address, over
/// loopback, in order. A socket bound to the wildcard address gets them at loopback (so a
/// process asking for `IP_PKTINFO` sees 127.0.0.1 or ::1 as their destination).
fn requeue_datagrams(id: u32, fd: RawFd, s: &SocketRecord, queue: &[Datagram]) -> Result<(), RestoreError> {
    if queue.is_empty() {
        return Ok(());
    }
    let local = net::local_addr(fd).map_err(|e| fail(id, "getsockname", e))?;
    let mut to = Addr::from_raw(&local).unwrap_or_default();
    match &mut to {
        Addr::V4 { ip, .. } if *ip == [0; 4] => *ip = [127, 0, 0, 1],
        Addr::V6 { ip, .. } if *ip == [0; 16] => *ip = std::net::Ipv6Addr::LOCALHOST.octets(),
        _ => {}
    }
    let need: usize = queue.iter().map(|d| d.data.len() + 1024).sum();
    fit_buffers(id, fd, s, 0, need)?;
    let (mut v4, mut v6) = (None, None);
    for (n, d) in queue.iter().enumerate() {
        // A dual-stack socket's IPv4 datagrams (source ::ffff:a.b.c.d) arrive over IPv4.
        let dest = match (&d.from, &to) {
            (Addr::V6 { ip, .. }, Addr::V6 { port, .. }) if unmapped(ip).is_some() => Addr::V6 {
                ip: std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets(),
                port: *port,
                flowinfo: 0,
                scope_id: 0,
            },
            _ => to.clone(),
        };
        let what = format!("queueing datagram {n} of {} again ({} bytes from {})", queue.len(), d.data.len(), d.from);
        let packet = udp_packet(&d.from, &dest, &d.data).ok_or_else(|| RestoreError::File {
            id,
            what: what.clone(),
            source: std::io::ErrorKind::InvalidInput.into(),
        })?;
        let (family, slot) = if packet[0] >> 4 == 4 { (libc::AF_INET, &mut v4) } else { (libc::AF_INET6, &mut v6) };
        if slot.is_none() {
            *slot =
                Some(net::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(|e| fail(id, "raw socket", e))?);
        }
        let raw = slot.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
        // Raw sockets take the destination from the header; the address only routes it.
        let route = if family == libc::AF_INET {
            let Addr::V4 { ip, .. } = (match &dest {
                Addr::V6 { ip, port, .. } => Addr::V4 { ip: unmapped(ip).unwrap_or([127, 0, 0, 1]), port: *port },
                other => other.clone(),
            }) else {
                unreachable!("an IPv4 packet has an IPv4 destination")
            };
            Addr::V4 { ip, port: 0 }
        } else {
            match &dest {
                Addr::V6 { ip, scope_id, .. } => Addr::V6 { ip: *ip, port: 0, flowinfo: 0, scope_id: *scope_id },
                other => other.clone(),
            }
        };
        let before = rmem_alloc(fd).map_err(|e| fail(id, "SO_MEMINFO", e))?;
        net::send_to(raw, &packet, 0, &route.to_raw()).map_err(|e| fail(id, &what, e))?;
        // Loopback hands the packet to this CPU's backlog, not straight to the socket: wait
        // until it is queued before the next, or two could swap places (another CPU, the other
        // family's path).
        let t0 = std::time::Instant::now();
        while rmem_alloc(fd).map_err(|e| fail(id, "SO_MEMINFO", e))? == before {
            if t0.elapsed() > std::time::Duration::from_secs(2) {
                return Err(RestoreError::File {
                    id,
                    what: format!("{what}: it did not arrive"),
                    source: std::io::ErrorKind::TimedOut.into(),
                });
            }
            std::thread::yield_now();
        }
    }
    Ok(())
}

/// `SO_MEMINFO`'s `SK_MEMINFO_RMEM_ALLOC`: the receive queue's memory, which every queued
/// datagram raises.
fn rmem_alloc(fd: RawFd) -> Result<u32, SysError> {
    const SO_MEMINFO: i32 = 55;
    let mut info = [0u8; 9 * 4];
    net::get_bytes(fd, libc::SOL_SOCKET, SO_MEMINFO, &mut info)?;
    Ok(u32::from_ne_bytes([info[0], info[1], info[2], info[3]]))
}

fn send_rest(id: u32, raw: RawFd, unsent: &[u8]) -> Result<(), RestoreError> {
    let t0 = std::time::Instant::now();
    let mut done = 0;
    while done < unsent.len() {
        match net::send(raw, &unsent[done..], libc::MSG_DONTWAIT) {
            Ok(n) => done += n,
            // The buffer was sized for the queue; wait a little for room if it still fills.
            Err(e) if e.errno() == Some(libc::EAGAIN) && t0.elapsed().as_secs() < 5 => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(fail(id, &format!("sending the unsent bytes ({done} of {})", unsent.len()), e)),
        }
    }
    Ok(())
}
