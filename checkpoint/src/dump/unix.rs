//! Unix socket queues: the messages waiting on `SOCK_DGRAM` and `SOCK_SEQPACKET` sockets with
//! their boundaries and senders' names, and connections whose peer end was closed (the
//! reader's bytes, then end of file). Called from [`super::sockets::classify`]; the records
//! are [`UnixQueue`] and [`UnixPeerGone`].
//!
//! The queue is walked without consuming it: `recvmsg` with `MSG_PEEK` and `SO_PEEK_OFF`,
//! one message at a time (empty ones included, see [`peek_messages`]), the socket's peek
//! offset put back afterwards. Each message's sender name is what `recvfrom` reports.
//!
//! Refused (with the pid, the descriptor and why): descriptors in flight (`SCM_RIGHTS` in a
//! queued message or stream segment: they would be lost), messages carrying a process's
//! credentials (`SCM_CREDENTIALS`, shown when the receiver has `SO_PASSCRED`: the restore
//! would hand over its own), messages on a pair whose sender was named (pairs come back
//! unnamed), senders whose name is held by a socket outside the dumped processes (restore
//! could not send from that name), a datagram socket whose peer was closed unless both ends
//! were unnamed, and a closed peer of a stream or seqpacket connection unless one end is
//! unnamed and the other the name of a listener in the image (or of nobody).

use super::files::FilePlan;
use super::DumpError;
use seamless_image::records::{Addr, FileKind, SockState, UnixMessage, UnixPeerGone, UnixQueue};
use seamless_sys::sockets as net;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::RawFd;

/// Most bytes of queued messages saved for one socket.
const MAX_BYTES: usize = 6 << 20;

/// What the dump keeps about unix queues while classifying, by socket inode.
#[derive(Debug, Default)]
pub struct Pending {
    /// Messages queued on unix sockets.
    pub queues: BTreeMap<u64, Vec<UnixMessage>>,
    /// Sockets whose peer was closed.
    pub gone: BTreeMap<u64, UnixPeerGone>,
}

/// Why a control message makes a queue impossible to save exactly, if it does.
fn control_problem(r: &net::Received, what: &str) -> Option<String> {
    if !r.fds.is_empty() {
        return Some(format!(
            "{} descriptor(s) in flight (SCM_RIGHTS) in a queued {what}: descriptors passed through unix sockets are not checkpointed",
            r.fds.len()
        ));
    }
    // A message sent without credentials reads as pid 0 (and the overflow uid and gid).
    if let Some((pid, uid, gid)) = r.creds {
        if pid != 0 {
            return Some(format!(
                "a queued {what} carries the credentials of pid {pid} uid {uid} gid {gid} (SCM_CREDENTIALS, the socket has SO_PASSCRED): the restore cannot hand them over again"
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

/// Reads `len` queued bytes of a unix stream socket without consuming them, refusing
/// descriptors in flight and credentials among them.
pub fn peek_stream(fd: RawFd, len: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; len];
    if len == 0 {
        return Ok(out);
    }
    with_peek_off(fd, || {
        let mut got = 0;
        while got < len {
            match net::recv_msg(fd, &mut out[got..], libc::MSG_PEEK | libc::MSG_DONTWAIT) {
                Ok(r) => {
                    if let Some(why) = control_problem(&r, "stream segment") {
                        return Err(why);
                    }
                    if r.len == 0 {
                        break;
                    }
                    got += r.len;
                }
                Err(e) if e.errno() == Some(libc::EAGAIN) => break,
                Err(e) => return Err(format!("peeking the queued bytes: {e}")),
            }
        }
        out.truncate(got);
        Ok(())
    })?;
    Ok(out)
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
pub fn peek_messages(fd: RawFd) -> Result<Vec<UnixMessage>, String> {
    let passcred = net::get_int(fd, libc::SOL_SOCKET, libc::SO_PASSCRED).map_err(|e| format!("SO_PASSCRED: {e}"))?;
    if passcred == 0 {
        net::set_int(fd, libc::SOL_SOCKET, libc::SO_PASSCRED, 1).map_err(|e| format!("SO_PASSCRED: {e}"))?;
    }
    let out = peek_all(fd);
    // A plain peek (no offset) shows an empty message that a walk skips.
    let waiting = || net::recv_msg(fd, &mut [], libc::MSG_PEEK | libc::MSG_DONTWAIT).is_ok_and(|r| r.creds.is_some());
    let hidden = out.as_ref().is_ok_and(|o| o.is_empty()) && waiting();
    if passcred == 0 {
        let _ = net::set_int(fd, libc::SOL_SOCKET, libc::SO_PASSCRED, 0);
    }
    let out = out?;
    if hidden {
        return Err(
            "empty messages that were already peeked at are queued: the kernel no longer shows them to a walk of the queue"
                .into(),
        );
    }
    Ok(out)
}

fn peek_all(fd: RawFd) -> Result<Vec<UnixMessage>, String> {
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
            if let Some(why) = control_problem(&r, "message") {
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
            out.push(UnixMessage { from, data: buf[..r.len].to_vec() });
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
        if pre_flight || !has_message(raw) {
            return Ok(Vec::new());
        }
        let m = peek_messages(raw).map_err(refuse)?;
        if !m.is_empty() {
            pending.queues.insert(ino, m.clone());
        }
        Ok(m)
    };
    if peer_ino != 0 {
        if ty == libc::SOCK_STREAM {
            let n = inq();
            if n > MAX_BYTES {
                return Err(refuse(format!("{n} queued bytes exceed the {MAX_BYTES}-byte limit")));
            }
            let queue = peek_stream(raw, n).map_err(refuse)?;
            if queue.len() != n {
                return Err(refuse(format!("peeked {} of {n} queued bytes", queue.len())));
            }
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
            let n = inq();
            if n > MAX_BYTES {
                return Err(refuse(format!("{n} queued bytes exceed the {MAX_BYTES}-byte limit")));
            }
            let queue = peek_stream(raw, n).map_err(refuse)?;
            if queue.len() != n {
                return Err(refuse(format!("peeked {} of {n} queued bytes", queue.len())));
            }
            let m = vec![UnixMessage { from: rec.peer.clone(), data: queue }];
            if n > 0 {
                pending.queues.insert(ino, m.clone());
            }
            m
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
) -> Result<(Vec<UnixQueue>, Vec<UnixPeerGone>), DumpError> {
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
    for d in &plan.descs {
        let FileKind::Socket(s) = &d.kind else { continue };
        if s.family != libc::AF_UNIX {
            continue;
        }
        let (pid, fd) = where_is(plan, d.id);
        let refuse =
            |reason: String| DumpError::Unsupported { pid, resource: format!("fd {fd} (socket:[{}])", s.ino), reason };
        if s.ty == libc::SOCK_DGRAM && matches!(s.state, SockState::Connected) {
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
        if let Some(messages) = pending.queues.remove(&s.ino) {
            if s.ty == libc::SOCK_DGRAM && !matches!(s.state, SockState::UnixPair { .. }) {
                for m in &messages {
                    outside_holder(names, &inos, &m.from, s.ty, &refuse)?;
                }
            }
            queues.push(UnixQueue { desc: d.id, messages });
        }
    }
    Ok((queues, gone))
}

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
