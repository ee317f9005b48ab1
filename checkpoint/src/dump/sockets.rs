//! Sockets: TCP and UDP over IPv4/IPv6 and unix sockets. The dumper takes a duplicate of each
//! socket with `pidfd_getfd` and reads it from outside: family, type, addresses, integer
//! options, listen backlog (`sock_diag`), unix peers and queues (`sock_diag`, `MSG_PEEK`).
//!
//! # Established TCP connections: `TCP_REPAIR`
//!
//! An established TCP socket is switched into repair mode, then its sequence numbers
//! (`TCP_QUEUE_SEQ` of both queues), the bytes in both queues (`MSG_PEEK` with
//! `TCP_REPAIR_QUEUE` selecting the queue), the negotiated options (MSS, window scale, SACK,
//! timestamps from `TCP_INFO`), the timestamp clock and the window (`TCP_REPAIR_WINDOW`) are
//! read. The restorer rebuilds the socket in repair mode, where `connect` sends nothing.
//!
//! Repair mode lasts only while a connection is read: the network lock
//! (`seamless_restore::netlock`) is installed before the first one, so from then on nothing the
//! kernel does for the socket reaches the wire (retransmissions, window probes) or changes it
//! (no segment of the peer is delivered), and the socket leaves repair mode again right after
//! its read, its `SO_REUSEADDR` put back: the live process never finds a socket in repair mode,
//! even if the dumper is killed (the kernel then releases the processes at once, before the
//! supervisor could act; a dumper killed during one socket's read leaves that socket to the
//! supervisor's undo journal). The duplicates are kept (in `REPAIRED`) until the dumper exits.
//! When the dumped processes are killed, [`repair_for_kill`] switches the duplicates into
//! repair mode again: closing a socket in repair mode sends neither FIN nor RST and leaves no
//! orphan holding the 4-tuple the restore will bind, and the lock keeps the peer's
//! retransmissions from being answered with RST until the restore has repaired the connection
//! and lifted it.
//!
//! Beyond the socket record: `SO_LINGER`, which buffer sizes the process set (`SO_BUF_LOCK`)
//! and an attached classic BPF filter go into a [`SocketExtra`] record; the datagrams queued on
//! a UDP socket, read with `MSG_PEEK` and `SO_PEEK_OFF`, into a `DatagramQueue` record.
//!
//! Unix queues (datagram and seqpacket messages, closed peers, descriptors in flight) are
//! read by [`super::unix`].
//!
//! Refused (checked before anything changes, see [`super::precheck`]): a listener with
//! connections not yet accepted (the accept queue is not saved), an eBPF socket filter, unix
//! pairs with only one end dumped (or in flight), what [`super::unix`] refuses, netlink,
//! packet and other families.

use super::files::FilePlan;
use super::DumpError;
use seamless_image::records::{Addr, Datagram, FileKind, SockOpt, SockState, SocketExtra, SocketRecord, TcpConn};
use seamless_sys::chain;
use seamless_sys::sockets as net;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Duplicates of the sockets this dumper read in repair mode, with the `SO_REUSEADDR` value
/// each had before (switching repair mode on or off overwrites it in the kernel) and whether
/// the socket is in repair mode now.
static REPAIRED: Mutex<Vec<(OwnedFd, i32, bool)>> = Mutex::new(Vec::new());

/// `TCP_REPAIR` value that leaves repair mode without sending a window probe.
const TCP_REPAIR_OFF_NO_WP: i32 = -1;

/// Switches every socket this dumper left in repair mode back to normal operation (before the
/// processes are resumed); see [`leave_repair_fd`]. The live process finds its sockets exactly
/// as they were.
pub fn leave_repair() {
    let mut g = REPAIRED.lock().unwrap_or_else(|p| p.into_inner());
    let mut any = false;
    for (fd, reuse, repairing) in g.iter_mut() {
        if *repairing {
            leave_repair_fd(fd.as_raw_fd(), *reuse);
            *repairing = false;
            any = true;
        }
    }
    if any {
        crate::supervisor::note(&crate::supervisor::Undo::TcpRepairLeft);
    }
}

/// Switches one socket out of repair mode (no window probe where the kernel allows) and puts
/// back its `SO_REUSEADDR`, which the kernel resets when repair mode ends.
pub fn leave_repair_fd(raw: RawFd, reuse: i32) {
    let off = net::set_int(raw, libc::IPPROTO_TCP, libc::TCP_REPAIR, TCP_REPAIR_OFF_NO_WP)
        .or_else(|_| net::tcp_repair(raw, false));
    if let Err(e) = off {
        log::warn!("leaving TCP repair mode: {}", chain(&e));
    }
    if let Err(e) = net::set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, reuse) {
        log::warn!("putting back SO_REUSEADDR={reuse} after TCP repair: {}", chain(&e));
    }
}

/// The dumped processes were killed: their connections must end without a FIN or RST and
/// without an orphan socket, so the duplicates (the last references, closed when the dumper
/// exits) go into repair mode.
pub fn repair_for_kill() {
    let mut g = REPAIRED.lock().unwrap_or_else(|p| p.into_inner());
    for (fd, _, repairing) in g.iter_mut() {
        if !*repairing {
            if let Err(e) = net::tcp_repair(fd.as_raw_fd(), true) {
                log::warn!("repair mode for closing a killed process's connection silently: {}", chain(&e));
            }
            *repairing = true;
        }
    }
}

/// An established TCP connection found by the pre-check, read in repair mode by
/// [`repair_pending`] once nothing can be refused any more.
#[derive(Debug)]
pub struct PendingTcp {
    pid: i32,
    fd: i32,
    ino: u64,
    sock: OwnedFd,
    /// The TCP state the pre-check saw.
    state: u8,
}

impl PendingTcp {
    /// The socket's inode.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The TCP state the pre-check saw (ESTABLISHED or a close state).
    pub fn state(&self) -> u8 {
        self.state
    }
}

/// Largest queue saved for one socket (the whole socket must fit one image record).
const MAX_QUEUE: usize = 6 << 20;

const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;

fn tcp_state_name(s: u8) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "unknown",
    }
}

fn family_name(f: i32) -> String {
    match f {
        libc::AF_NETLINK => "netlink".into(),
        libc::AF_PACKET => "packet".into(),
        libc::AF_VSOCK => "vsock".into(),
        libc::AF_ALG => "alg".into(),
        libc::AF_BLUETOOTH => "bluetooth".into(),
        libc::AF_KEY => "pfkey".into(),
        libc::AF_XDP => "xdp".into(),
        other => format!("address family {other}"),
    }
}

/// What `sock_diag` says about a unix socket.
#[derive(Debug, Clone, Copy, Default)]
struct UnixDiag {
    peer: u64,
    /// The socket file a path-bound socket was bound to: inode and kernel-encoded device.
    vfs: Option<(u64, u32)>,
    /// For a listener: connections waiting in its accept queue.
    rqueue: u32,
    backlog: u32,
    shutdown: u8,
}

/// Per-dump socket context: `sock_diag` answers, fetched once.
#[derive(Debug, Default)]
pub struct Ctx {
    unix: Option<BTreeMap<u64, UnixDiag>>,
    listeners: BTreeMap<u8, BTreeMap<u64, (u32, u32)>>,
    /// Established connections, read later by [`repair_pending`].
    pub pending: Vec<PendingTcp>,
    /// State beyond the socket record, by inode: extras that are not all defaults (`desc` is
    /// filled in by the caller, which knows the description ids).
    pub extras: BTreeMap<u64, SocketExtra>,
    /// Datagrams queued on UDP sockets, by inode.
    pub datagrams: BTreeMap<u64, Vec<Datagram>>,
    /// TCP sockets whose connection ended, by inode ([`super::tcp_states::ended`]).
    pub ended: std::collections::BTreeSet<u64>,
    /// `seamless check`'s pre-flight: queued datagrams are not read (see
    /// [`super::DumpOptions::pre_flight`]).
    pub pre_flight: bool,
    /// Every bound unix socket's name and type, by inode (`sock_diag`).
    pub unix_names: BTreeMap<u64, (Vec<u8>, u8)>,
    /// Unix queues and closed peers, by inode ([`super::unix`]).
    pub unix_pending: super::unix::Pending,
}

fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut v = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]);
        if len < 4 || len > b.len() {
            break;
        }
        v.push((ty, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    v
}

impl Ctx {
    fn unix(&mut self) -> Result<&BTreeMap<u64, UnixDiag>, seamless_sys::SysError> {
        if self.unix.is_none() {
            // struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2].
            let mut req = vec![libc::AF_UNIX as u8, 0, 0, 0];
            req.extend_from_slice(&u32::MAX.to_ne_bytes());
            req.extend_from_slice(&0u32.to_ne_bytes());
            const SHOW_NAME: u32 = 1;
            const SHOW_VFS: u32 = 2;
            const SHOW_PEER: u32 = 4;
            const SHOW_RQLEN: u32 = 0x10;
            req.extend_from_slice(&(SHOW_NAME | SHOW_VFS | SHOW_PEER | SHOW_RQLEN).to_ne_bytes());
            req.extend_from_slice(&[0xff; 8]);
            let mut map = BTreeMap::new();
            for m in net::sock_diag(&req)? {
                if m.len() < 16 {
                    continue;
                }
                let ino = u64::from(u32::from_ne_bytes([m[4], m[5], m[6], m[7]]));
                let mut d = UnixDiag::default();
                for (ty, val) in attrs(&m[16..]) {
                    match ty {
                        0 if !val.is_empty() => {
                            self.unix_names.insert(ino, (val.to_vec(), m[1]));
                        }
                        1 if val.len() >= 8 => {
                            let ino = u32::from_ne_bytes([val[0], val[1], val[2], val[3]]);
                            let dev = u32::from_ne_bytes([val[4], val[5], val[6], val[7]]);
                            d.vfs = Some((u64::from(ino), dev));
                        }
                        2 if val.len() >= 4 => d.peer = u64::from(u32::from_ne_bytes([val[0], val[1], val[2], val[3]])),
                        4 if val.len() >= 8 => {
                            d.rqueue = u32::from_ne_bytes([val[0], val[1], val[2], val[3]]);
                            d.backlog = u32::from_ne_bytes([val[4], val[5], val[6], val[7]]);
                        }
                        6 if !val.is_empty() => d.shutdown = val[0],
                        _ => {}
                    }
                }
                map.insert(ino, d);
            }
            self.unix = Some(map);
        }
        Ok(self.unix.as_ref().expect("filled above"))
    }

    fn listen_backlog(&mut self, family: i32, ino: u64) -> Result<Option<(u32, u32)>, seamless_sys::SysError> {
        let fam = family as u8;
        if let std::collections::btree_map::Entry::Vacant(e) = self.listeners.entry(fam) {
            // struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 B).
            let mut req = vec![fam, libc::IPPROTO_TCP as u8, 0, 0];
            req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
            req.extend_from_slice(&[0; 40]);
            req.extend_from_slice(&[0xff; 8]);
            let mut map = BTreeMap::new();
            for m in net::sock_diag(&req)? {
                if m.len() < 72 {
                    continue;
                }
                let w = |at: usize| u32::from_ne_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
                // idiag_rqueue (accept queue length), idiag_wqueue (backlog), idiag_inode.
                map.insert(u64::from(w(68)), (w(60), w(56)));
            }
            e.insert(map);
        }
        Ok(self.listeners[&fam].get(&ino).copied())
    }
}

/// A TCP listener as `sock_diag` reports it.
#[derive(Debug, Clone)]
pub struct InetListener {
    /// Socket inode.
    pub ino: u64,
    /// Local address and port.
    pub local: Addr,
    /// Connections waiting in its accept queue.
    pub waiting: u32,
}

/// Every TCP listener of this network namespace, IPv4 and IPv6.
pub fn inet_listeners() -> Result<Vec<InetListener>, seamless_sys::SysError> {
    let mut out = Vec::new();
    for fam in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        // struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 B).
        let mut req = vec![fam, libc::IPPROTO_TCP as u8, 0, 0];
        req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        req.extend_from_slice(&[0; 40]);
        req.extend_from_slice(&[0xff; 8]);
        for m in net::sock_diag(&req)? {
            if m.len() < 72 {
                continue;
            }
            let w = |at: usize| u32::from_ne_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
            // inet_diag_msg: family, state, timer, retrans; id { sport, dport (big-endian),
            // src[16], dst[16], if, cookie }; expires, rqueue, wqueue, uid, inode.
            let port = u16::from_be_bytes([m[4], m[5]]);
            let local = if m[0] == libc::AF_INET as u8 {
                Addr::V4 { ip: [m[8], m[9], m[10], m[11]], port }
            } else {
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&m[8..24]);
                Addr::V6 { ip, port, flowinfo: 0, scope_id: 0 }
            };
            out.push(InetListener { ino: u64::from(w(68)), local, waiting: w(56) });
        }
    }
    Ok(out)
}

/// Reads `len` bytes from the head of a queue without consuming them; `peek_off` walks a unix
/// stream queue past its first buffer.
fn peek(fd: RawFd, len: usize, with_peek_off: bool) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    if len == 0 {
        return Ok(out);
    }
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    if !with_peek_off {
        let n = net::recv(fd, &mut out, flags).map_err(|e| e.source)?;
        out.truncate(n);
        return Ok(out);
    }
    let old = net::get_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF).map_err(|e| e.source)?;
    net::set_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF, 0).map_err(|e| e.source)?;
    let mut got = 0;
    let r = loop {
        if got == len {
            break Ok(());
        }
        match net::recv(fd, &mut out[got..], flags) {
            Ok(0) => break Ok(()),
            Ok(n) => got += n,
            Err(e) if e.errno() == Some(libc::EAGAIN) => break Ok(()),
            Err(e) => break Err(e.source),
        }
    };
    let _ = net::set_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF, old);
    r?;
    out.truncate(got);
    Ok(out)
}

/// Whether a datagram (possibly empty) waits in the receive queue; reads nothing.
fn has_datagram(fd: RawFd) -> bool {
    net::recv(fd, &mut [], libc::MSG_PEEK | libc::MSG_DONTWAIT).is_ok()
}

/// `SO_LOCK_FILTER`.
const SO_LOCK_FILTER: i32 = 44;
/// `SO_BUF_LOCK` (Linux 5.14): which buffer sizes the process set itself.
pub const SO_BUF_LOCK: i32 = 72;

/// Reads the state kept in a [`SocketExtra`]: `SO_LINGER`, `SO_BUF_LOCK`, the classic BPF
/// filter and `SO_LOCK_FILTER`. An eBPF filter (`SO_ATTACH_BPF`) has no form to save and is
/// refused.
fn extra(raw: RawFd, refuse: &dyn Fn(String) -> DumpError) -> Result<SocketExtra, DumpError> {
    let mut x = SocketExtra::default();
    let mut l = [0u8; 8];
    if net::get_bytes(raw, libc::SOL_SOCKET, libc::SO_LINGER, &mut l).is_ok_and(|n| n == 8) {
        let on = i32::from_ne_bytes([l[0], l[1], l[2], l[3]]);
        if on != 0 {
            x.linger = Some(i32::from_ne_bytes([l[4], l[5], l[6], l[7]]));
        }
    }
    // Kernels before 5.14 do not say; their sizes are treated as autotuned (as before).
    x.buf_lock = net::get_int(raw, libc::SOL_SOCKET, SO_BUF_LOCK).map_or(0, |v| (v & 3) as u8);
    match net::get_filter(raw) {
        Ok(f) => x.filter = f,
        Err(e) if e.errno() == Some(libc::EACCES) => {
            return Err(refuse(
                "an eBPF socket filter (SO_ATTACH_BPF) is attached: only classic BPF filters are checkpointed".into(),
            ))
        }
        Err(e) => return Err(refuse(format!("reading the socket filter: {e}"))),
    }
    x.filter_locked = net::get_int(raw, libc::SOL_SOCKET, SO_LOCK_FILTER).is_ok_and(|v| v != 0);
    Ok(x)
}

/// Most bytes of queued datagrams saved for one socket (the record must stay small).
const MAX_DATAGRAM_BYTES: usize = 4 << 20;

/// Reads every datagram waiting on an IP datagram socket, oldest first, without consuming any:
/// `MSG_PEEK` with `SO_PEEK_OFF` walks the queue one datagram at a time (empty ones included),
/// and the socket's peek offset is put back afterwards.
///
/// The kernel returns an empty datagram to such a walk only once: one that was peeked at
/// before (by the process, or by an earlier walk) is skipped. The walk itself is therefore
/// done once per dump (not by `seamless check`), with no plain peek before it, and a queue
/// where the walk finds nothing although a datagram waits is refused.
fn peek_datagrams(fd: RawFd, refuse: &dyn Fn(String) -> DumpError) -> Result<Vec<Datagram>, DumpError> {
    let sys = |what: &str, e: seamless_sys::SysError| refuse(format!("{what}: {e}"));
    let old = net::get_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF).map_err(|e| sys("SO_PEEK_OFF", e))?;
    net::set_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF, 0)
        .map_err(|e| sys("the queued datagrams cannot be walked without SO_PEEK_OFF", e))?;
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut buf = vec![0u8; 65536];
    let r = loop {
        match net::recv_from(fd, &mut buf, libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC) {
            Ok((n, from)) => {
                if n > buf.len() {
                    break Err(refuse(format!("a queued datagram of {n} bytes (at most {})", buf.len())));
                }
                total += n;
                if total > MAX_DATAGRAM_BYTES || out.len() >= seamless_image::records::sockets::MAX_DATAGRAMS {
                    break Err(refuse(format!(
                        "more than {MAX_DATAGRAM_BYTES} bytes or {} datagrams queued",
                        seamless_image::records::sockets::MAX_DATAGRAMS
                    )));
                }
                let from = Addr::from_raw(&from).unwrap_or_default();
                if from.is_none() {
                    break Err(refuse("a queued datagram without a source address".into()));
                }
                out.push(Datagram { from, data: buf[..n].to_vec() });
            }
            Err(e) if e.errno() == Some(libc::EAGAIN) => break Ok(()),
            Err(e) => break Err(sys("peeking the queued datagrams", e)),
        }
    };
    let _ = net::set_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF, old);
    r?;
    if out.is_empty() && has_datagram(fd) {
        return Err(refuse(
            "empty datagrams that were already peeked at are queued: the kernel no longer shows them to a walk of the queue"
                .into(),
        ));
    }
    Ok(out)
}

/// Integer options worth carrying over, by family and type.
fn option_list(family: i32, ty: i32) -> Vec<(i32, i32)> {
    let mut v = vec![
        (libc::SOL_SOCKET, libc::SO_REUSEADDR),
        (libc::SOL_SOCKET, libc::SO_REUSEPORT),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        (libc::SOL_SOCKET, libc::SO_BROADCAST),
        (libc::SOL_SOCKET, libc::SO_OOBINLINE),
        (libc::SOL_SOCKET, libc::SO_PASSCRED),
        (libc::SOL_SOCKET, libc::SO_RCVLOWAT),
        (libc::SOL_SOCKET, libc::SO_PRIORITY),
        (libc::SOL_SOCKET, libc::SO_SNDBUF),
        (libc::SOL_SOCKET, libc::SO_RCVBUF),
    ];
    if family == libc::AF_INET || family == libc::AF_INET6 {
        // The packet mark policy routing and netfilter see (setting it again needs
        // CAP_NET_ADMIN, which the restorer has).
        v.push((libc::SOL_SOCKET, libc::SO_MARK));
    }
    if family == libc::AF_INET6 {
        v.push((libc::IPPROTO_IPV6, libc::IPV6_V6ONLY));
    }
    if family != libc::AF_UNIX && ty == libc::SOCK_STREAM {
        v.extend([
            (libc::IPPROTO_TCP, libc::TCP_NODELAY),
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
            (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
            (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
            (libc::IPPROTO_TCP, libc::TCP_CORK),
            (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
        ]);
    }
    v
}

/// Classifies the socket `fd` of `pid` (link `socket:[ino]`).
pub fn classify(ctx: &mut Ctx, pid: i32, fd: i32, ino: u64) -> Result<FileKind, DumpError> {
    let link = format!("socket:[{ino}]");
    let refuse = |reason: String| DumpError::Unsupported { pid, resource: format!("fd {fd} ({link})"), reason };
    let sys = |what: &str, e: seamless_sys::SysError| DumpError::sys(pid, format!("fd {fd} ({link}): {what}"), e);
    let pfd = seamless_sys::proc::pidfd_open(pid).map_err(|e| sys("pidfd_open", e))?;
    let s = seamless_sys::proc::pidfd_getfd(&pfd, fd, pid).map_err(|e| sys("pidfd_getfd", e))?;
    let raw = s.as_raw_fd();
    let family = net::get_int(raw, libc::SOL_SOCKET, libc::SO_DOMAIN).map_err(|e| sys("SO_DOMAIN", e))?;
    if ![libc::AF_UNIX, libc::AF_INET, libc::AF_INET6].contains(&family) {
        return Err(refuse(format!("{} sockets are not checkpointed", family_name(family))));
    }
    let ty = net::get_int(raw, libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| sys("SO_TYPE", e))?;
    let protocol = net::get_int(raw, libc::SOL_SOCKET, libc::SO_PROTOCOL).map_err(|e| sys("SO_PROTOCOL", e))?;
    let raw_local = net::local_addr(raw).map_err(|e| sys("getsockname", e))?;
    let local = Addr::from_raw(&raw_local).ok_or_else(|| refuse("unknown local address family".into()))?;
    let peer = match net::peer_addr(raw) {
        Ok(b) => Addr::from_raw(&b).unwrap_or_default(),
        Err(_) => Addr::None,
    };
    let mut opts = Vec::new();
    for (level, name) in option_list(family, ty) {
        if let Ok(value) = net::get_int(raw, level, name) {
            opts.push(SockOpt { level, name, value });
        }
    }
    let x = extra(raw, &refuse)?;
    if !x.is_default() {
        ctx.extras.insert(ino, x);
    }
    let mut rec =
        SocketRecord { ino, family, ty, protocol, local, peer, state: SockState::Unconnected, opts, path_mode: 0 };
    match (family, ty) {
        (libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_SEQPACKET | libc::SOCK_DGRAM) => {
            let diag = ctx.unix().map_err(|e| sys("sock_diag(unix)", e))?.get(&ino).copied().unwrap_or_default();
            let listening = net::get_int(raw, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).unwrap_or(0) == 1;
            if let Addr::Unix { path } = &mut rec.local {
                if !path.is_empty() && path[0] != 0 {
                    // A relative name was bound relative to the process's cwd at the time.
                    if path[0] != b'/' {
                        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
                            .map_err(|e| DumpError::io(pid, "reading cwd", e))?;
                        let mut abs = cwd.into_os_string().into_encoded_bytes();
                        abs.push(b'/');
                        abs.extend_from_slice(path);
                        *path = abs;
                    }
                    let p = std::path::Path::new(std::str::from_utf8(path).unwrap_or(""));
                    let md = std::fs::symlink_metadata(p);
                    if let Ok(md) = &md {
                        use std::os::unix::fs::PermissionsExt;
                        rec.path_mode = md.permissions().mode() & 0o7777;
                    }
                    // Restore binds the path again (replacing a socket file there): it must still
                    // be this socket's own file.
                    if let Some((vino, vdev)) = diag.vfs {
                        use std::os::unix::fs::MetadataExt;
                        // Kernel dev_t: major in the top 12 bits, minor in the low 20.
                        let (vmaj, vmin) = (u64::from(vdev >> 20), u64::from(vdev & 0xf_ffff));
                        let same = md.as_ref().is_ok_and(|m| {
                            m.ino() == vino
                                && libc::major(m.dev()) as u64 == vmaj
                                && libc::minor(m.dev()) as u64 == vmin
                        });
                        if !same {
                            let what = if md.is_err() { "was deleted" } else { "now names another file" };
                            return Err(refuse(format!(
                                "the socket file {} {what} (or the name was bound relative to an earlier working directory): restore would bind the path again",
                                p.display()
                            )));
                        }
                    }
                }
            }
            if listening {
                if diag.rqueue > 0 {
                    return Err(refuse(format!(
                        "unix listener with {} connection(s) not yet accepted: the accept queue is not saved, those clients would lose their connection",
                        diag.rqueue
                    )));
                }
                rec.state = SockState::Listen { backlog: diag.backlog as i32 };
            } else {
                // Queues, connected datagram sockets and closed peers: `super::unix`.
                let peers_peer = ctx.unix.as_ref().and_then(|m| m.get(&diag.peer)).map_or(0, |p| p.peer);
                let pre_flight = ctx.pre_flight;
                super::unix::classify(
                    &mut ctx.unix_pending,
                    raw,
                    &mut rec,
                    diag.peer,
                    peers_peer,
                    diag.shutdown,
                    pre_flight,
                    &refuse,
                )?;
            }
        }
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) => {
            let info = net::tcp_info(raw).map_err(|e| sys("TCP_INFO", e))?;
            match info.state {
                TCP_LISTEN => {
                    let (backlog, waiting) = ctx
                        .listen_backlog(family, ino)
                        .map_err(|e| sys("sock_diag(inet)", e))?
                        .ok_or_else(|| refuse("listener not found by sock_diag".into()))?;
                    // `seamless check` only looks: the dump first holds new connections and gives
                    // the service time to accept those waiting (`super::listeners`).
                    if waiting > 0 && !ctx.pre_flight {
                        return Err(refuse(format!(
                            "TCP listener with {waiting} connection(s) not yet accepted although new connections were held for {} s before the freeze: the accept queue is not saved, those clients would be reset",
                            super::listeners::ACCEPT_WAIT.as_secs()
                        )));
                    }
                    rec.state = SockState::Listen { backlog: backlog as i32 };
                }
                TCP_CLOSE => {
                    if super::tcp_states::ended(raw).map_err(|e| sys("poll", e))?.map_err(refuse)? {
                        ctx.ended.insert(ino);
                    }
                }
                state if state == TCP_ESTABLISHED || super::tcp_states::saved(state) => {
                    // The queue limits are checked here, without repair mode; the connection
                    // itself is read later (repair mode is a change to the live socket).
                    let outq = net::ioctl_int(raw, net::SIOCOUTQ).map_err(|e| sys("SIOCOUTQ", e))?.max(0) as usize;
                    let inq = net::ioctl_int(raw, net::SIOCINQ).map_err(|e| sys("SIOCINQ", e))?.max(0) as usize;
                    if outq > MAX_QUEUE {
                        return Err(refuse(format!(
                            "{outq} bytes in the send queue exceed the {MAX_QUEUE}-byte limit"
                        )));
                    }
                    if inq > MAX_QUEUE {
                        return Err(refuse(format!(
                            "{inq} bytes in the receive queue exceed the {MAX_QUEUE}-byte limit"
                        )));
                    }
                    ctx.pending.push(PendingTcp { pid, fd, ino, sock: s, state });
                }
                other => return Err(refuse(super::tcp_states::refusal(other, tcp_state_name(other)))),
            }
        }
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => {
            if protocol != libc::IPPROTO_UDP && protocol != 0 {
                if has_datagram(raw) {
                    return Err(refuse(format!("datagrams queued on a socket of protocol {protocol} are not saved")));
                }
            } else if !ctx.pre_flight {
                let queued = peek_datagrams(raw, &refuse)?;
                if !queued.is_empty() {
                    ctx.datagrams.insert(ino, queued);
                }
            }
            if !rec.peer.is_none() {
                rec.state = SockState::Connected;
            }
        }
        _ => return Err(refuse(format!("socket type {ty} of family {family} is not checkpointed"))),
    }
    Ok(FileKind::Socket(rec))
}

/// The connections the network lock must hold: every established TCP connection of the plan,
/// by its local and peer address as the pre-check recorded them.
pub fn lock_targets(plan: &FilePlan) -> Vec<seamless_image::records::LockedConn> {
    let inos: std::collections::BTreeSet<u64> = plan.tcp_pending.iter().map(|p| p.ino).collect();
    plan.descs
        .iter()
        .filter_map(|d| match &d.kind {
            FileKind::Socket(rec) if inos.contains(&rec.ino) => {
                Some(seamless_image::records::LockedConn { local: rec.local.clone(), peer: rec.peer.clone() })
            }
            _ => None,
        })
        .collect()
}

/// The local addresses of the plan's TCP listeners (whose new connections the lock holds).
pub fn held_listeners(plan: &FilePlan) -> Vec<Addr> {
    plan.descs
        .iter()
        .filter_map(|d| match &d.kind {
            FileKind::Socket(rec)
                if matches!(rec.state, SockState::Listen { .. })
                    && rec.ty == libc::SOCK_STREAM
                    && matches!(rec.local, Addr::V4 { .. } | Addr::V6 { .. }) =>
            {
                Some(rec.local.clone())
            }
            _ => None,
        })
        .collect()
}

/// Reads every established connection of the plan in repair mode and fills in its record.
/// Called by the dump after the pre-check has passed (never by `seamless check`).
pub fn repair_pending(plan: &mut FilePlan) -> Result<(), DumpError> {
    for p in std::mem::take(&mut plan.tcp_pending) {
        let (pid, fd, ino) = (p.pid, p.fd, p.ino);
        let link = format!("socket:[{ino}]");
        let refuse = |reason: String| DumpError::Unsupported { pid, resource: format!("fd {fd} ({link})"), reason };
        let sys = |what: &str, e: seamless_sys::SysError| DumpError::sys(pid, format!("fd {fd} ({link}): {what}"), e);
        let (conn, close) = repair_dump(p.sock, (pid, fd, ino), &refuse, &sys)?;
        for d in plan.descs.iter_mut() {
            if let FileKind::Socket(rec) = &mut d.kind {
                if rec.ino == ino {
                    rec.state = SockState::Tcp(conn.clone());
                    if let Some(t) = &close {
                        plan.tcp_closes.push(seamless_image::records::TcpCloseState { desc: d.id, ..t.clone() });
                    }
                }
            }
        }
    }
    Ok(())
}

/// Reads an established connection in repair mode; the socket stays in repair mode (see the
/// module docs) and its duplicate is kept in [`REPAIRED`].
fn repair_dump(
    s: OwnedFd,
    (pid, fd, ino): (i32, i32, u64),
    refuse: &dyn Fn(String) -> DumpError,
    sys: &dyn Fn(&str, seamless_sys::SysError) -> DumpError,
) -> Result<(TcpConn, Option<seamless_image::records::TcpCloseState>), DumpError> {
    let raw = s.as_raw_fd();
    let reuse = net::get_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR).map_err(|e| sys("SO_REUSEADDR", e))?;
    crate::supervisor::note(&crate::supervisor::Undo::TcpRepair { pid, fd, ino, reuse });
    net::tcp_repair(raw, true).map_err(|e| sys("TCP_REPAIR on", e))?;
    REPAIRED.lock().unwrap_or_else(|p| p.into_inner()).push((s, reuse, true));
    let c = read_repaired(raw, refuse, sys);
    leave_repair();
    c
}

/// The reads of [`repair_dump`], on a socket in repair mode; a connection past ESTABLISHED
/// also gives its close state ([`super::tcp_states`]).
fn read_repaired(
    raw: RawFd,
    refuse: &dyn Fn(String) -> DumpError,
    sys: &dyn Fn(&str, seamless_sys::SysError) -> DumpError,
) -> Result<(TcpConn, Option<seamless_image::records::TcpCloseState>), DumpError> {
    let tcp = libc::IPPROTO_TCP;
    let mut c = TcpConn::default();
    // The lock holds the connection: its state no longer changes.
    let state = net::tcp_info(raw).map_err(|e| sys("TCP_INFO", e))?.state;
    if state != TCP_ESTABLISHED && !super::tcp_states::saved(state) {
        return Err(refuse(super::tcp_states::refusal(state, tcp_state_name(state))));
    }
    net::tcp_repair_queue(raw, net::TCP_SEND_QUEUE).map_err(|e| sys("TCP_REPAIR_QUEUE send", e))?;
    c.snd_seq = net::tcp_queue_seq(raw).map_err(|e| sys("TCP_QUEUE_SEQ send", e))?;
    let outq = net::ioctl_int(raw, net::SIOCOUTQ).map_err(|e| sys("SIOCOUTQ", e))?.max(0) as usize;
    let unsent = net::ioctl_int(raw, net::SIOCOUTQNSD).map_err(|e| sys("SIOCOUTQNSD", e))?.max(0) as usize;
    let (outq, unsent, close) = super::tcp_states::fins(state, outq, unsent.min(outq));
    if outq > MAX_QUEUE {
        return Err(refuse(format!("{outq} bytes in the send queue exceed the {MAX_QUEUE}-byte limit")));
    }
    c.send_queue =
        peek(raw, outq, false).map_err(|e| sys("peek send queue", seamless_sys::SysError::new("recv", "", e)))?;
    if c.send_queue.len() != outq {
        return Err(refuse(format!("peeked {} of {outq} bytes of the send queue", c.send_queue.len())));
    }
    c.unsent = unsent.min(outq) as u32;
    net::tcp_repair_queue(raw, net::TCP_RECV_QUEUE).map_err(|e| sys("TCP_REPAIR_QUEUE recv", e))?;
    c.rcv_seq = net::tcp_queue_seq(raw).map_err(|e| sys("TCP_QUEUE_SEQ recv", e))?;
    let inq = net::ioctl_int(raw, net::SIOCINQ).map_err(|e| sys("SIOCINQ", e))?.max(0) as usize;
    if inq > MAX_QUEUE {
        return Err(refuse(format!("{inq} bytes in the receive queue exceed the {MAX_QUEUE}-byte limit")));
    }
    c.recv_queue =
        peek(raw, inq, false).map_err(|e| sys("peek receive queue", seamless_sys::SysError::new("recv", "", e)))?;
    if c.recv_queue.len() != inq {
        return Err(refuse(format!("peeked {} of {inq} bytes of the receive queue", c.recv_queue.len())));
    }
    net::tcp_repair_queue(raw, 0).map_err(|e| sys("TCP_REPAIR_QUEUE none", e))?;
    c.mss = net::get_int(raw, tcp, libc::TCP_MAXSEG).map_err(|e| sys("TCP_MAXSEG", e))? as u32;
    let info = net::tcp_info(raw).map_err(|e| sys("TCP_INFO", e))?;
    const OPT_TS: u8 = 1;
    const OPT_SACK: u8 = 2;
    const OPT_WSCALE: u8 = 4;
    c.timestamps = info.options & OPT_TS != 0;
    c.sack = info.options & OPT_SACK != 0;
    c.wscale = (info.options & OPT_WSCALE != 0).then_some((info.snd_wscale, info.rcv_wscale));
    c.tsval = net::get_int(raw, tcp, libc::TCP_TIMESTAMP).map_err(|e| sys("TCP_TIMESTAMP", e))? as u32;
    c.window = net::tcp_repair_window(raw).map_err(|e| sys("TCP_REPAIR_WINDOW", e))?;
    Ok((c, close))
}

/// Checks what can only be checked once every socket is known: both ends of every unix pair
/// must be in the image.
pub fn check_pairs(plan: &FilePlan) -> Result<(), DumpError> {
    let inos: std::collections::BTreeSet<u64> = plan
        .descs
        .iter()
        .filter_map(|d| match &d.kind {
            FileKind::Socket(s) => Some(s.ino),
            _ => None,
        })
        .collect();
    for d in &plan.descs {
        if let FileKind::Socket(SocketRecord { ino, state: SockState::UnixPair { peer, .. }, .. }) = &d.kind {
            if !inos.contains(peer) {
                let (pid, fd) = plan
                    .tables
                    .iter()
                    .find_map(|(pid, t)| t.fds.iter().find(|f| f.desc == d.id).map(|f| (*pid, f.fd)))
                    .unwrap_or((0, -1));
                return Err(DumpError::Unsupported {
                    pid,
                    resource: format!("fd {fd} (socket:[{ino}])"),
                    reason: format!(
                        "unix socket connected to socket:[{peer}] outside the dumped processes (only pairs with both ends dumped are supported)"
                    ),
                });
            }
        }
    }
    Ok(())
}
