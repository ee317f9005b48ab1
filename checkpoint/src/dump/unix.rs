//! Unix socket queues: the messages waiting on `SOCK_DGRAM` and `SOCK_SEQPACKET` sockets with
//! their boundaries and senders' names, connections whose peer end was closed (the reader's
//! bytes, then end of file), and descriptors in flight (`SCM_RIGHTS`). Called from
//! [`super::sockets::classify`]; the records are [`UnixQueue`], [`UnixPeerGone`] and
//! [`UnixInFlight`].
//!
//! The queue is walked without consuming it: `recvmsg` with `MSG_PEEK` and `SO_PEEK_OFF`,
//! one message at a time (empty ones included, see [`peek_messages`]), the socket's peek
//! offset put back afterwards. Each message's sender name is what `recvfrom` reports. A peek
//! hands the dumper copies of the descriptors in flight; [`super::files`] turns them into
//! descriptions (shared with the processes' own where `kcmp` says so). A stream queue with
//! descriptors is saved in segments: a read stops after the buffer that carries them, whose
//! start is found by peeking single bytes (see [`peek_stream`]).
//!
//! Refused (with the pid, the descriptor and why): messages carrying a process's credentials
//! (`SCM_CREDENTIALS`: the restore would hand over its own), messages on a pair whose sender
//! was named (pairs come back unnamed), senders whose name is held by a socket outside the
//! dumped processes (restore could not send from that name), a datagram socket whose peer was
//! closed unless both ends were unnamed, a closed peer of a stream or seqpacket connection
//! unless one end is unnamed and the other the name of a listener in the image (or of
//! nobody), and in flight: unix sockets carrying descriptors in flight themselves, epoll,
//! pidfds, ttys, established TCP connections, files with locks or `O_ASYNC`.

use super::files::FilePlan;
use super::DumpError;
use seamless_image::records::{Addr, FileKind, SockState, UnixInFlight, UnixMessage, UnixPeerGone, UnixQueue};
use seamless_sys::sockets as net;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{OwnedFd, RawFd};

/// Most bytes of queued messages saved for one socket.
const MAX_BYTES: usize = 6 << 20;

/// What the dump keeps about unix queues while classifying, by socket inode.
#[derive(Debug, Default)]
pub struct Pending {
    /// Messages queued on unix sockets.
    pub queues: BTreeMap<u64, Vec<UnixMessage>>,
    /// Sockets whose peer was closed.
    pub gone: BTreeMap<u64, UnixPeerGone>,
    /// Descriptors in flight not yet resolved to descriptions: the receiving socket's inode,
    /// the message's index, the dumper's copies (see [`super::files`]).
    pub in_flight_new: Vec<(u64, u32, Vec<OwnedFd>)>,
    /// Descriptors in flight resolved to description ids, by receiving socket inode.
    pub in_flight: BTreeMap<u64, Vec<(u32, Vec<u32>)>>,
    /// `seamless check` left a datagram or packet queue unwalked (descriptors in flight
    /// there are not known: what depends on them is checked by the dump only).
    pub unwalked: bool,
}

/// Files the descriptors of each message (dumper's copies) for resolution.
fn file_fds(pending: &mut Pending, ino: u64, fds: Vec<Vec<OwnedFd>>) {
    for (i, f) in fds.into_iter().enumerate() {
        if !f.is_empty() {
            pending.in_flight_new.push((ino, i as u32, f));
        }
    }
}

/// Why a control message makes a queue impossible to save exactly, if it does.
/// `creds_kept`: a process's credentials are saved with the message (datagrams and packets)
/// rather than refused (stream bytes).
fn control_problem(r: &net::Received, what: &str, creds_kept: bool) -> Option<String> {
    if r.flags & libc::MSG_CTRUNC != 0 {
        return Some(format!("the control messages of a queued {what} do not fit (MSG_CTRUNC)"));
    }
    // A message sent without credentials reads as pid 0 (and the overflow uid and gid).
    if let Some((pid, uid, gid)) = r.creds {
        if pid != 0 && !creds_kept {
            return Some(format!(
                "a queued {what} carries the credentials of pid {pid} uid {uid} gid {gid} (SCM_CREDENTIALS, the receiver reads them with SO_PASSCRED): they are not restored with stream bytes"
            ));
        }
    }
    if r.other > 0 {
        return Some(format!("a queued {what} carries {} control message(s) of another kind", r.other));
    }
    None
}

/// Runs `walk` with the socket's peek offset at 0 and puts the old offset back afterwards.
fn with_peek_off<T>(fd: RawFd, walk: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let old = net::get_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF).map_err(|e| format!("SO_PEEK_OFF: {e}"))?;
    net::set_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF, 0)
        .map_err(|e| format!("the queue cannot be walked without SO_PEEK_OFF: {e}"))?;
    let r = walk();
    let _ = net::set_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF, old);
    r
}

/// A stretch of a stream queue and the descriptors passed with its last buffer (a read
/// stops after the buffer that carries descriptors, and hands them over as soon as it
/// touches that buffer).
#[derive(Debug, Default)]
pub struct Segment {
    /// Bytes.
    pub data: Vec<u8>,
    /// The dumper's copies of the descriptors in flight (empty: none).
    pub fds: Vec<OwnedFd>,
}

/// Peeks one byte at offset `at`: whether it belongs to a buffer carrying descriptors.
fn carries_fds(fd: RawFd, at: usize) -> Result<bool, String> {
    let at = i32::try_from(at).map_err(|_| "queue too long".to_string())?;
    net::set_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF, at).map_err(|e| format!("SO_PEEK_OFF: {e}"))?;
    let mut one = [0u8; 1];
    let r = net::recv_msg(fd, &mut one, libc::MSG_PEEK | libc::MSG_DONTWAIT)
        .map_err(|e| format!("peeking the queued bytes: {e}"))?;
    Ok(!r.fds.is_empty())
}

/// Reads `len` queued bytes of a unix stream socket without consuming them, in segments: the
/// bytes before a buffer carrying descriptors, that buffer with its descriptors (its start
/// found by peeking single bytes), and so on. Credentials among them are refused.
pub fn peek_stream(fd: RawFd, len: usize) -> Result<Vec<Segment>, String> {
    let mut out: Vec<Segment> = Vec::new();
    if len == 0 {
        return Ok(out);
    }
    let mut buf = vec![0u8; len];
    with_peek_off(fd, || {
        let mut got = 0;
        while got < len {
            match net::recv_msg(fd, &mut buf[got..], libc::MSG_PEEK | libc::MSG_DONTWAIT) {
                Ok(r) => {
                    if let Some(why) = control_problem(&r, "stream segment", false) {
                        return Err(why);
                    }
                    if r.len == 0 {
                        break;
                    }
                    let end = got + r.len;
                    let mut start = end;
                    if !r.fds.is_empty() {
                        // The buffer with the descriptors ends the chunk: find where it starts.
                        let (mut lo, mut hi) = (got, end - 1);
                        while lo < hi {
                            let mid = lo + (hi - lo) / 2;
                            if carries_fds(fd, mid)? {
                                hi = mid;
                            } else {
                                lo = mid + 1;
                            }
                        }
                        start = lo;
                        let at = i32::try_from(end).map_err(|_| "queue too long".to_string())?;
                        net::set_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF, at)
                            .map_err(|e| format!("SO_PEEK_OFF: {e}"))?;
                    }
                    if start > got {
                        match out.last_mut() {
                            Some(l) if l.fds.is_empty() => l.data.extend_from_slice(&buf[got..start]),
                            _ => out.push(Segment { data: buf[got..start].to_vec(), fds: Vec::new() }),
                        }
                    }
                    if start < end {
                        out.push(Segment { data: buf[start..end].to_vec(), fds: r.fds });
                    }
                    got = end;
                }
                Err(e) if e.errno() == Some(libc::EAGAIN) => break,
                Err(e) => return Err(format!("peeking the queued bytes: {e}")),
            }
        }
        Ok(())
    })?;
    Ok(out)
}

fn stream_len(s: &[Segment]) -> usize {
    s.iter().map(|x| x.data.len()).sum()
}

/// Whether a message (possibly empty) waits in the receive queue; reads nothing.
pub fn has_message(fd: RawFd) -> bool {
    net::recv(fd, &mut [], libc::MSG_PEEK | libc::MSG_DONTWAIT).is_ok()
}

/// Reads every message queued on a unix datagram or seqpacket socket, oldest first, without
/// consuming any. A message longer than the buffer is read again from its start with a
/// buffer of its size (the peek offset set back to where it starts).
///
/// The kernel shows an empty message to such a walk only once (one that was peeked at before
/// is skipped), as for UDP; a queue where the walk finds nothing although a message waits is
/// refused. At the end of a queue whose peer has gone the kernel returns 0 as for an empty
/// message: `SO_PASSCRED` is on during the walk (and put back), so every message comes with
/// credentials and the end without.
pub fn peek_messages(fd: RawFd) -> Result<Vec<(UnixMessage, Vec<OwnedFd>)>, String> {
    let passcred = net::get_int(fd, libc::SOL_SOCKET, libc::SO_PASSCRED).map_err(|e| format!("SO_PASSCRED: {e}"))?;
    if passcred == 0 {
        net::set_int(fd, libc::SOL_SOCKET, libc::SO_PASSCRED, 1).map_err(|e| format!("SO_PASSCRED: {e}"))?;
    }
    let out = peek_all(fd);
    // A plain peek (no offset, when the process uses none) shows the head of the queue even
    // when it is an empty message that a walk skips because it was peeked at before: such a
    // head that the walk did not find is refused (one further down cannot be seen).
    let plain = net::get_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF).is_ok_and(|o| o < 0);
    let head = || {
        net::recv_msg(fd, &mut [], libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC)
            .ok()
            .filter(|r| r.creds.is_some())
            .map(|r| r.len)
    };
    let hidden = plain
        && out.as_ref().is_ok_and(|o| {
            let first = o.first().map(|(m, _)| m.data.len());
            head().is_some_and(|h| h == 0 && first != Some(0))
        });
    if passcred == 0 {
        let _ = net::set_int(fd, libc::SOL_SOCKET, libc::SO_PASSCRED, 0);
    }
    let out = out?;
    if hidden {
        return Err(
            "an empty message that was already peeked at is queued: the kernel no longer shows it to a walk of the queue"
                .into(),
        );
    }
    Ok(out)
}

fn peek_all(fd: RawFd) -> Result<Vec<(UnixMessage, Vec<OwnedFd>)>, String> {
    with_peek_off(fd, || {
        let mut out = Vec::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let r = match net::recv_msg(fd, &mut buf, libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC) {
                Ok(r) => r,
                Err(e) if e.errno() == Some(libc::EAGAIN) => break,
                Err(e) => return Err(format!("peeking the queued messages: {e}")),
            };
            if r.len == 0 && r.creds.is_none() {
                // The end of the queue of a socket that receives no more.
                break;
            }
            if let Some(why) = control_problem(&r, "message", true) {
                return Err(why);
            }
            if r.len > buf.len() {
                if r.len > seamless_image::records::unix::MAX_MESSAGE_BYTES {
                    return Err(format!("a queued message of {} bytes", r.len));
                }
                // Back to the start of this message, with room for all of it.
                buf = vec![0u8; r.len];
                let at = i32::try_from(total).map_err(|_| "queue too long".to_string())?;
                net::set_int(fd, libc::SOL_SOCKET, net::SO_PEEK_OFF, at).map_err(|e| format!("SO_PEEK_OFF: {e}"))?;
                continue;
            }
            total += r.len;
            if total > MAX_BYTES || out.len() >= seamless_image::records::unix::MAX_MESSAGES {
                return Err(format!(
                    "more than {MAX_BYTES} bytes or {} messages queued",
                    seamless_image::records::unix::MAX_MESSAGES
                ));
            }
            let from = Addr::from_raw(&r.addr).unwrap_or_default();
            let creds = r.creds.filter(|c| c.0 != 0);
            out.push((UnixMessage { from, data: buf[..r.len].to_vec(), creds }, r.fds));
        }
        Ok(out)
    })
}

/// Whether a name is unnamed.
fn unnamed(a: &Addr) -> bool {
    a.is_none()
}

/// The unix part of [`super::sockets::classify`] for a socket that is not listening:
/// `peer_ino` is the peer `sock_diag` reports (0 when there is none or it is closed),
/// `peers_peer` that peer's own peer. Sets the record's state and files queues and closed
/// peers in `pending`.
#[allow(clippy::too_many_arguments)]
pub fn classify(
    pending: &mut Pending,
    raw: RawFd,
    rec: &mut seamless_image::records::SocketRecord,
    peer_ino: u64,
    peers_peer: u64,
    shutdown: u8,
    pre_flight: bool,
    refuse: &dyn Fn(String) -> DumpError,
) -> Result<(), DumpError> {
    let ty = rec.ty;
    let ino = rec.ino;
    let inq = || net::ioctl_int(raw, net::SIOCINQ).unwrap_or(0).max(0) as usize;
    let messages = |pending: &mut Pending| -> Result<Vec<UnixMessage>, DumpError> {
        if !has_message(raw) {
            return Ok(Vec::new());
        }
        if pre_flight {
            pending.unwalked = true;
            return Ok(Vec::new());
        }
        let (m, fds): (Vec<UnixMessage>, Vec<Vec<OwnedFd>>) = peek_messages(raw).map_err(refuse)?.into_iter().unzip();
        file_fds(pending, ino, fds);
        if !m.is_empty() {
            pending.queues.insert(ino, m.clone());
        }
        Ok(m)
    };
    // Stream segments as messages (their descriptors filed), when some carry descriptors or
    // `always`; otherwise the bytes.
    let segments = |pending: &mut Pending, n: usize, always: bool| -> Result<Option<Vec<u8>>, DumpError> {
        if n > MAX_BYTES {
            return Err(refuse(format!("{n} queued bytes exceed the {MAX_BYTES}-byte limit")));
        }
        let segs = peek_stream(raw, n).map_err(refuse)?;
        if stream_len(&segs) != n {
            return Err(refuse(format!("peeked {} of {n} queued bytes", stream_len(&segs))));
        }
        if !always && segs.iter().all(|s| s.fds.is_empty()) {
            return Ok(Some(segs.into_iter().flat_map(|s| s.data).collect()));
        }
        let (m, fds): (Vec<UnixMessage>, Vec<Vec<OwnedFd>>) =
            segs.into_iter().map(|s| (UnixMessage { from: Addr::None, data: s.data, creds: None }, s.fds)).unzip();
        file_fds(pending, ino, fds);
        if !m.is_empty() {
            pending.queues.insert(ino, m);
        }
        Ok(None)
    };
    if peer_ino != 0 {
        if ty == libc::SOCK_STREAM {
            // With descriptors in flight the queue goes into segments (a `UnixQueue`).
            let queue = segments(pending, inq(), false)?.unwrap_or_default();
            rec.state = SockState::UnixPair { peer: peer_ino, queue, shutdown };
            return Ok(());
        }
        let pair = peers_peer == ino && (ty == libc::SOCK_SEQPACKET || (unnamed(&rec.local) && unnamed(&rec.peer)));
        let msgs = messages(pending)?;
        if pair {
            if let Some(m) = msgs.iter().find(|m| !unnamed(&m.from)) {
                return Err(refuse(format!(
                    "a queued message from {} on a connected pair: restored pairs are unnamed, the receiver would see another sender",
                    m.from
                )));
            }
            rec.state = SockState::UnixPair { peer: peer_ino, queue: Vec::new(), shutdown };
        } else {
            // A datagram socket connected to a named one: connected again by name after the
            // queues are refilled (the peer must be in the image, see `check`).
            rec.state = SockState::Connected;
        }
        return Ok(());
    }
    let connected_once = net::peer_addr(raw).is_ok();
    if connected_once {
        // The peer end was closed (its socket is gone, or only referenced by what it sent).
        let accepted = !unnamed(&rec.local) && unnamed(&rec.peer);
        let ok = match ty {
            libc::SOCK_DGRAM => unnamed(&rec.local) && unnamed(&rec.peer),
            _ => unnamed(&rec.local) || unnamed(&rec.peer),
        };
        if !ok {
            return Err(refuse(format!(
                "unix socket {} whose peer {} was closed: only a closed peer of an unnamed end (a socket pair, a client of a listener, an accepted connection) is checkpointed",
                rec.local, rec.peer
            )));
        }
        let msgs = if ty == libc::SOCK_STREAM {
            segments(pending, inq(), true)?;
            Vec::new()
        } else {
            messages(pending)?
        };
        if let Some(m) = msgs.iter().find(|m| m.from != rec.peer && !(unnamed(&m.from) && unnamed(&rec.peer))) {
            return Err(refuse(format!(
                "a queued message from {} on a connection whose closed peer was {}",
                m.from, rec.peer
            )));
        }
        pending.gone.insert(ino, UnixPeerGone { desc: 0, peer: rec.peer.clone(), accepted });
        rec.state = SockState::Unconnected;
        return Ok(());
    }
    if !rec.peer.is_none() {
        return Err(refuse("connected to a unix socket that is gone".into()));
    }
    if ty == libc::SOCK_DGRAM && has_message(raw) {
        if unnamed(&rec.local) {
            return Err(refuse(format!(
                "messages queued on an unnamed, unconnected unix datagram socket (next one {} bytes): nothing could send them to it again",
                inq()
            )));
        }
        messages(pending)?;
    }
    Ok(())
}

/// Checks what needs every socket of the plan, and files the records under description ids:
/// the peer of a connected datagram socket is in the image, the listener an accepted
/// connection with a closed peer came from is, and no sender's name is held by a socket
/// outside the dump (`names`: every bound unix socket's name and type by inode).
pub fn finish(
    plan: &mut FilePlan,
    pending: &mut Pending,
    names: &BTreeMap<u64, (Vec<u8>, u8)>,
) -> Result<Queues, DumpError> {
    let where_is = |plan: &FilePlan, desc: u32| {
        plan.tables
            .iter()
            .find_map(|(pid, t)| t.fds.iter().find(|f| f.desc == desc).map(|f| (*pid, f.fd)))
            .unwrap_or((0, -1))
    };
    let inos: BTreeSet<u64> = plan
        .descs
        .iter()
        .filter_map(|d| match &d.kind {
            FileKind::Socket(s) => Some(s.ino),
            _ => None,
        })
        .collect();
    let mut queues = Vec::new();
    let mut gone = Vec::new();
    let mut in_flight = Vec::new();
    for d in &plan.descs {
        let FileKind::Socket(s) = &d.kind else { continue };
        if s.family != libc::AF_UNIX {
            continue;
        }
        let (pid, fd) = where_is(plan, d.id);
        let refuse =
            |reason: String| DumpError::Unsupported { pid, resource: format!("fd {fd} (socket:[{}])", s.ino), reason };
        if s.ty == libc::SOCK_DGRAM && matches!(s.state, SockState::Connected) && !pending.unwalked {
            let held = names
                .iter()
                .find(|(_, (n, t))| i32::from(*t) == s.ty && matches!(&s.peer, Addr::Unix { path } if path == n));
            if !held.is_some_and(|(ino, _)| inos.contains(ino)) {
                return Err(refuse(format!(
                    "unix datagram socket connected to {}, which is not a socket of the dumped processes",
                    s.peer
                )));
            }
        }
        if let Some(mut g) = pending.gone.remove(&s.ino) {
            if g.accepted {
                let listener = plan.descs.iter().any(|o| {
                    matches!(&o.kind, FileKind::Socket(l) if l.family == libc::AF_UNIX && l.ty == s.ty
                        && matches!(l.state, SockState::Listen { .. }) && l.local == s.local)
                });
                if !listener {
                    return Err(refuse(format!(
                        "accepted unix connection on {} whose peer was closed: its listener is not in the dumped processes",
                        s.local
                    )));
                }
            } else if !g.peer.is_none() {
                outside_holder(names, &inos, &g.peer, s.ty, &refuse)?;
            }
            g.desc = d.id;
            gone.push(g);
        }
        if let Some(f) = pending.in_flight.remove(&s.ino) {
            in_flight.push(UnixInFlight { desc: d.id, messages: f });
        }
        if let Some(messages) = pending.queues.remove(&s.ino) {
            let stranger = messages.iter().find_map(|m| m.creds.filter(|c| !plan.tables.contains_key(&c.0)));
            if let Some((cpid, _, _)) = stranger {
                return Err(refuse(format!(
                    "a queued message carries the credentials of pid {cpid} (SCM_CREDENTIALS), which is not a process of the dump (it exited, or runs outside): the restore can only hand over those of a restored process"
                )));
            }
            if s.ty == libc::SOCK_DGRAM && !matches!(s.state, SockState::UnixPair { .. }) {
                for m in &messages {
                    outside_holder(names, &inos, &m.from, s.ty, &refuse)?;
                }
            }
            queues.push(UnixQueue { desc: d.id, messages });
        }
    }
    Ok((queues, gone, in_flight))
}

/// The records [`finish`] files: queues, closed peers, descriptors in flight.
pub type Queues = (Vec<UnixQueue>, Vec<UnixPeerGone>, Vec<UnixInFlight>);

/// Refuses a name that a live socket outside the dump holds (the restore must bind it to send
/// from it), and a path name whose directory is gone.
fn outside_holder(
    names: &BTreeMap<u64, (Vec<u8>, u8)>,
    inos: &BTreeSet<u64>,
    name: &Addr,
    ty: i32,
    refuse: &dyn Fn(String) -> DumpError,
) -> Result<(), DumpError> {
    let Addr::Unix { path } = name else { return Ok(()) };
    if path.is_empty() {
        return Ok(());
    }
    if let Some((ino, _)) = names.iter().find(|(_, (n, t))| n == path && i32::from(*t) == ty) {
        if !inos.contains(ino) {
            return Err(refuse(format!(
                "a queued message or peer named {name} is held by socket:[{ino}] outside the dumped processes: the restore could not send from that name"
            )));
        }
        return Ok(());
    }
    if path[0] != 0 {
        let p = std::path::Path::new(std::str::from_utf8(path).unwrap_or(""));
        if !p.parent().is_some_and(|d| d.is_dir()) {
            return Err(refuse(format!(
                "the directory of the sender name {name} is gone: the restore binds that name"
            )));
        }
    }
    Ok(())
}
