//! Sockets: addresses, options, TCP connections in repair form, unix pairs. A socket is the
//! [`FileKind::Socket`](super::FileKind::Socket) variant of its open file description, stored
//! inside its [`FileDesc`](super::FileDesc) record (no record kind of its own).

use serde::{Deserialize, Serialize};

/// A socket address, decoded from / encoded to the kernel's `struct sockaddr_*` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Addr {
    /// No address (unbound, or `AF_UNSPEC`).
    #[default]
    None,
    /// IPv4.
    V4 {
        /// Address bytes.
        ip: [u8; 4],
        /// Port (host order).
        port: u16,
    },
    /// IPv6.
    V6 {
        /// Address bytes.
        ip: [u8; 16],
        /// Port (host order).
        port: u16,
        /// Flow info.
        flowinfo: u32,
        /// Scope id.
        scope_id: u32,
    },
    /// A unix socket name: a path, or an abstract name starting with NUL; empty when unnamed.
    Unix {
        /// Name bytes (no trailing NUL).
        path: Vec<u8>,
    },
}

fn u16be(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32ne(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

impl Addr {
    /// Decodes raw `sockaddr` bytes as returned by `getsockname`.
    pub fn from_raw(b: &[u8]) -> Option<Addr> {
        if b.len() < 2 {
            return Some(Addr::None);
        }
        let fam = u16::from_ne_bytes([b[0], b[1]]);
        Some(match fam {
            AF_INET if b.len() >= 8 => Addr::V4 { ip: [b[4], b[5], b[6], b[7]], port: u16be(b, 2) },
            AF_INET6 if b.len() >= 28 => {
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&b[8..24]);
                Addr::V6 { ip, port: u16be(b, 2), flowinfo: u32ne(b, 4), scope_id: u32ne(b, 24) }
            }
            AF_UNIX => {
                let mut path = b[2..].to_vec();
                // Paths are NUL-terminated; abstract names start with NUL and use the length.
                if path.first() != Some(&0) {
                    if let Some(z) = path.iter().position(|&c| c == 0) {
                        path.truncate(z);
                    }
                }
                Addr::Unix { path }
            }
            0 => Addr::None,
            _ => return None,
        })
    }

    /// Encodes as raw `sockaddr` bytes for `bind`/`connect` (empty for [`Addr::None`]).
    pub fn to_raw(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            Addr::None => {}
            Addr::V4 { ip, port } => {
                v.extend_from_slice(&AF_INET.to_ne_bytes());
                v.extend_from_slice(&port.to_be_bytes());
                v.extend_from_slice(ip);
                v.extend_from_slice(&[0; 8]);
            }
            Addr::V6 { ip, port, flowinfo, scope_id } => {
                v.extend_from_slice(&AF_INET6.to_ne_bytes());
                v.extend_from_slice(&port.to_be_bytes());
                v.extend_from_slice(&flowinfo.to_ne_bytes());
                v.extend_from_slice(ip);
                v.extend_from_slice(&scope_id.to_ne_bytes());
            }
            Addr::Unix { path } => {
                v.extend_from_slice(&AF_UNIX.to_ne_bytes());
                v.extend_from_slice(path);
                if path.first() != Some(&0) {
                    v.push(0);
                }
            }
        }
        v
    }

    /// The port of an IP address (0 otherwise).
    pub fn port(&self) -> u16 {
        match self {
            Addr::V4 { port, .. } | Addr::V6 { port, .. } => *port,
            _ => 0,
        }
    }

    /// Whether this is an unnamed address.
    pub fn is_none(&self) -> bool {
        match self {
            Addr::None => true,
            Addr::Unix { path } => path.is_empty(),
            _ => false,
        }
    }
}

impl core::fmt::Display for Addr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Addr::None => write!(f, "-"),
            Addr::V4 { ip, port } => write!(f, "{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3]),
            Addr::V6 { ip, port, .. } => {
                write!(f, "[")?;
                for (i, c) in ip.chunks(2).enumerate() {
                    if i > 0 {
                        write!(f, ":")?;
                    }
                    write!(f, "{:x}", u16::from_be_bytes([c[0], c[1]]))?;
                }
                write!(f, "]:{port}")
            }
            Addr::Unix { path } if path.is_empty() => write!(f, "unix:unnamed"),
            Addr::Unix { path } if path[0] == 0 => write!(f, "unix:@{}", String::from_utf8_lossy(&path[1..])),
            Addr::Unix { path } => write!(f, "unix:{}", String::from_utf8_lossy(path)),
        }
    }
}

/// One integer socket option (`setsockopt(level, name, value)` on restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockOpt {
    /// `SOL_SOCKET`, `IPPROTO_TCP`, `IPPROTO_IPV6`, ...
    pub level: i32,
    /// Option number.
    pub name: i32,
    /// Value.
    pub value: i32,
}

/// An established TCP connection captured in repair mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TcpConn {
    /// `write_seq` (sequence number after the last byte queued for sending).
    pub snd_seq: u32,
    /// `rcv_nxt` (next sequence number expected from the peer).
    pub rcv_seq: u32,
    /// Send queue: sent-but-unacknowledged bytes, then unsent bytes.
    pub send_queue: Vec<u8>,
    /// How many bytes at the end of `send_queue` were never sent.
    pub unsent: u32,
    /// Receive queue: bytes received and acknowledged but not read by the process.
    pub recv_queue: Vec<u8>,
    /// Maximum segment size (`mss_clamp`).
    pub mss: u32,
    /// Window scaling negotiated (with the two shifts).
    pub wscale: Option<(u8, u8)>,
    /// SACK negotiated.
    pub sack: bool,
    /// Timestamps negotiated.
    pub timestamps: bool,
    /// Current `TCP_TIMESTAMP` value (so the peer sees monotonic timestamps).
    pub tsval: u32,
    /// `TCP_REPAIR_WINDOW`: snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup.
    pub window: [u32; 5],
}

/// What state a socket is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SockState {
    /// Created, maybe bound, neither listening nor connected.
    Unconnected,
    /// Listening with this backlog (the accept queue is not saved: pending connections are lost).
    Listen {
        /// `listen()` backlog.
        backlog: i32,
    },
    /// A TCP connection restored with `TCP_REPAIR`.
    Tcp(TcpConn),
    /// A connected datagram socket (queued datagrams are not saved).
    Connected,
    /// One end of a connected unix stream socket whose peer is also in the image.
    UnixPair {
        /// Inode of the peer socket.
        peer: u64,
        /// Bytes waiting in this end's receive queue.
        queue: Vec<u8>,
        /// `shutdown` state of this end (bit 0: no more receives, bit 1: no more sends).
        shutdown: u8,
    },
}

/// A socket: stored as [`FileKind::Socket`](super::FileKind::Socket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketRecord {
    /// Inode (the socket's identity in the image).
    pub ino: u64,
    /// `AF_*`.
    pub family: i32,
    /// `SOCK_*`.
    pub ty: i32,
    /// Protocol.
    pub protocol: i32,
    /// Bound address.
    pub local: Addr,
    /// Peer address (connected sockets).
    pub peer: Addr,
    /// State.
    pub state: SockState,
    /// Integer options to set again.
    pub opts: Vec<SockOpt>,
    /// Mode bits of the socket file of a unix socket bound to a path.
    pub path_mode: u32,
}

/// One-line summary of a socket for `seamless inspect` (queues as sizes, not bytes).
pub fn describe_socket(s: &SocketRecord) -> String {
    let fam = match s.family {
        1 => "unix",
        2 => "inet",
        10 => "inet6",
        _ => "?",
    };
    let ty = match s.ty {
        1 => "stream",
        2 => "dgram",
        5 => "seqpacket",
        _ => "?",
    };
    let state = match &s.state {
        SockState::Unconnected => "unconnected".into(),
        SockState::Listen { backlog } => format!("listen backlog {backlog}"),
        SockState::Tcp(c) => format!(
            "tcp established snd_seq {} rcv_seq {} sendq {} B ({} unsent) recvq {} B mss {} wscale {:?} sack {} ts {}",
            c.snd_seq,
            c.rcv_seq,
            c.send_queue.len(),
            c.unsent,
            c.recv_queue.len(),
            c.mss,
            c.wscale,
            c.sack,
            c.timestamps
        ),
        SockState::Connected => "connected".into(),
        SockState::UnixPair { peer, queue, shutdown } => {
            format!("pair with ino {peer}, queue {} B, shutdown {shutdown}", queue.len())
        }
    };
    format!(
        "socket ino {} {fam}/{ty}/{} local {} peer {} {state}, {} options",
        s.ino,
        s.protocol,
        s.local,
        s.peer,
        s.opts.len()
    )
}

/// Largest classic BPF program a socket filter can hold (`BPF_MAXINSNS`).
pub const MAX_FILTER_INSNS: usize = 4096;

/// Socket state beyond what [`SocketRecord`] holds (record kind 25, [`super::SOCKET_EXTRA`],
/// owner 0, tag = the socket's description id, at most one per description, written only
/// when some field is not its default). A new record kind rather than new fields of the
/// socket record (see `FORMAT.md`, "Compatibility"); not ignorable: a restorer that skipped it
/// would bring back a socket that lingers, filters or sizes its buffers differently.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketExtra {
    /// The socket's description id (the entry's tag).
    pub desc: u32,
    /// `SO_LINGER` when it is on: the linger time in seconds.
    pub linger: Option<i32>,
    /// `SO_BUF_LOCK`: bit 0 the send buffer, bit 1 the receive buffer was sized by the process
    /// (`SO_SNDBUF`/`SO_RCVBUF`). A locked size is restored from the socket record's option of
    /// that name and stays fixed; an unlocked one is left to the kernel (autotuning).
    pub buf_lock: u8,
    /// The attached classic BPF program (`SO_ATTACH_FILTER`), one `(code, jt, jf, k)` per
    /// instruction; empty when there is none.
    pub filter: Vec<(u16, u8, u8, u32)>,
    /// `SO_LOCK_FILTER`: the filter cannot be detached or replaced.
    pub filter_locked: bool,
}

impl SocketExtra {
    /// Whether every field is the default (such a record is never written).
    pub fn is_default(&self) -> bool {
        self.linger.is_none() && self.buf_lock == 0 && self.filter.is_empty() && !self.filter_locked
    }

    /// Why this record cannot be right for socket `s`, if it cannot.
    pub fn problem(&self, s: &SocketRecord) -> Option<String> {
        if self.buf_lock & !3 != 0 {
            return Some(format!("buffer lock bits {:#x} (only 1 and 2 exist)", self.buf_lock));
        }
        if self.filter.len() > MAX_FILTER_INSNS {
            return Some(format!("a filter of {} instructions (at most {MAX_FILTER_INSNS})", self.filter.len()));
        }
        if self.filter_locked && self.filter.is_empty() {
            return Some("a locked filter without a program".into());
        }
        if self.linger.is_some_and(|l| l < 0) {
            return Some(format!("linger time {:?}", self.linger));
        }
        let _ = s;
        None
    }
}

/// One datagram waiting in a receive queue: who sent it and its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datagram {
    /// The source address (`recvfrom`).
    pub from: Addr,
    /// The payload (possibly empty).
    pub data: Vec<u8>,
}

/// The datagrams waiting in a UDP socket's receive queue, oldest first (record kind 26,
/// [`super::DATAGRAMS`], owner 0, tag = the socket's description id, at most one per
/// description). Not ignorable: skipping it would lose the datagrams. The restorer queues them
/// again from their source addresses, in order, before the process runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatagramQueue {
    /// The socket's description id (the entry's tag).
    pub desc: u32,
    /// The datagrams.
    pub datagrams: Vec<Datagram>,
}

/// Most datagrams one queue record may hold (a UDP receive buffer holds far fewer).
pub const MAX_DATAGRAMS: usize = 1 << 16;

impl DatagramQueue {
    /// Why this record cannot be right for socket `s`, if it cannot.
    pub fn problem(&self, s: &SocketRecord) -> Option<String> {
        if !(s.family == 2 || s.family == 10) || s.ty != 2 {
            return Some(format!("queued datagrams on a socket of family {} type {}", s.family, s.ty));
        }
        if self.datagrams.len() > MAX_DATAGRAMS {
            return Some(format!("{} datagrams (at most {MAX_DATAGRAMS})", self.datagrams.len()));
        }
        for (i, d) in self.datagrams.iter().enumerate() {
            let ok = match (&d.from, s.family) {
                (Addr::V4 { port, .. }, 2) | (Addr::V6 { port, .. }, 10) => *port != 0,
                _ => false,
            };
            if !ok || d.data.len() > 65535 {
                return Some(format!("datagram {i}: {} bytes from {}", d.data.len(), d.from));
            }
        }
        None
    }
}
