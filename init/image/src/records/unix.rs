//! Unix socket state beyond the socket record: the messages waiting in a receive queue with
//! their boundaries and senders ([`UnixQueue`], kind 58) and a connection whose peer end was
//! closed ([`UnixPeerGone`], kind 59), and the descriptors passed with queued messages
//! ([`UnixInFlight`], kind 60). New record kinds rather than new fields of the socket
//! record (see `FORMAT.md`, "Compatibility"); neither is ignorable (a restorer that skipped them
//! would lose the messages, or give back a socket still connected).

use super::sockets::{Addr, SocketRecord};
use serde::{Deserialize, Serialize};

/// Longest unix socket name (`sun_path`).
pub const MAX_NAME: usize = 108;
/// Most messages one queue record may hold.
pub const MAX_MESSAGES: usize = 1 << 16;
/// Most bytes of one message (a unix datagram is bounded by the sender's buffer; stream bytes
/// are at most the socket record's queue limit).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// One message of a unix socket's receive queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixMessage {
    /// The sender's name as `recvfrom` reports it: a path, an abstract name (leading NUL) or
    /// unnamed (empty path, or [`Addr::None`]).
    pub from: Addr,
    /// The payload (possibly empty for datagrams).
    pub data: Vec<u8>,
    /// The credentials the message carries (`SCM_CREDENTIALS`: pid, uid, gid), when it
    /// carries a process's (pid not 0): the pid is a process of the image, and the restorer
    /// sends the message with exactly these.
    pub creds: Option<(i32, u32, u32)>,
}

/// The messages waiting in a unix socket's receive queue, oldest first (record kind 58,
/// [`super::UNIX_QUEUE`], owner 0, tag = the socket's description id, at most one per
/// description). For `SOCK_DGRAM` and `SOCK_SEQPACKET` each message is one datagram or
/// packet; for a `SOCK_STREAM` socket whose peer is gone ([`UnixPeerGone`]) one message holds
/// the unread bytes. The restorer sends them again, in order, each from a socket of the
/// recorded name, before the processes run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixQueue {
    /// The socket's description id (the entry's tag).
    pub desc: u32,
    /// The messages.
    pub messages: Vec<UnixMessage>,
}

fn name_problem(a: &Addr) -> Option<String> {
    match a {
        Addr::None => None,
        Addr::Unix { path } if path.len() > MAX_NAME => Some(format!("a name of {} bytes", path.len())),
        Addr::Unix { path } if path.first().is_some_and(|&c| c != 0) && path.contains(&0) => {
            Some("a path name with a NUL byte".into())
        }
        Addr::Unix { .. } => None,
        other => Some(format!("the address {other} is not a unix name")),
    }
}

impl UnixQueue {
    /// Why this record cannot be right for socket `s` (whose peer is gone when `gone`), if it
    /// cannot.
    pub fn problem(&self, s: &SocketRecord, gone: bool) -> Option<String> {
        if s.family != 1 {
            return Some(format!("a unix queue on a socket of family {}", s.family));
        }
        match s.ty {
            2 | 5 => {}
            // Stream segments: of a socket whose peer is gone, or of a pair whose queue is
            // in segments because descriptors ride along.
            1 if gone || matches!(&s.state, super::SockState::UnixPair { queue, .. } if queue.is_empty()) => {}
            ty => return Some(format!("a unix queue on a socket of type {ty}")),
        }
        if self.messages.len() > MAX_MESSAGES {
            return Some(format!("{} messages (at most {MAX_MESSAGES})", self.messages.len()));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if m.data.len() > MAX_MESSAGE_BYTES {
                return Some(format!("message {i}: {} bytes (at most {MAX_MESSAGE_BYTES})", m.data.len()));
            }
            if let Some(why) = name_problem(&m.from) {
                return Some(format!("message {i}: sender {why}"));
            }
            if m.creds.is_some_and(|(pid, _, _)| pid <= 0) || (m.creds.is_some() && s.ty == 1) {
                return Some(format!("message {i}: credentials {:?} on a socket of type {}", m.creds, s.ty));
            }
        }
        None
    }
}

/// A unix socket that was connected and whose peer end has been closed (record kind 59,
/// [`super::UNIX_PEER_GONE`], owner 0, tag = the socket's description id, at most one per
/// description). The socket record's state is `Unconnected`; its queued bytes or messages are
/// in a [`UnixQueue`]. The restorer connects a fresh socket to a peer of the recorded name
/// (a socket pair when both are unnamed, or through the listener of the name), queues the
/// messages through that peer and closes it: the process reads them, then end of file, and
/// sending fails as before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixPeerGone {
    /// The socket's description id (the entry's tag).
    pub desc: u32,
    /// The closed peer's name (`getpeername`).
    pub peer: Addr,
    /// Whether the socket was an accepted connection of the listener bound to its own name
    /// (the socket record's `local`): it is rebuilt by connecting to that listener.
    pub accepted: bool,
}

impl UnixPeerGone {
    /// Why this record cannot be right for socket `s`, if it cannot.
    pub fn problem(&self, s: &SocketRecord) -> Option<String> {
        if s.family != 1 || ![1, 2, 5].contains(&s.ty) {
            return Some(format!("a closed unix peer on a socket of family {} type {}", s.family, s.ty));
        }
        if !matches!(s.state, super::SockState::Unconnected) {
            return Some(format!("a closed unix peer on a socket in state {:?}", s.state));
        }
        if let Some(why) = name_problem(&self.peer) {
            return Some(format!("peer {why}"));
        }
        if self.accepted && (s.local.is_none() || !self.peer.is_none() || s.ty == 2) {
            return Some(
                "an accepted connection needs a named local end, an unnamed peer and a connection type".into(),
            );
        }
        None
    }
}

/// Most descriptors one message may carry (`SCM_MAX_FD`).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Descriptors in flight: the open file descriptions passed (`SCM_RIGHTS`) with messages of a
/// unix socket's receive queue (record kind 60, [`super::UNIX_IN_FLIGHT`], owner 0, tag = the
/// receiving socket's description id, at most one per description, next to its
/// [`UnixQueue`]). Each entry is a message's index in that queue and the description ids it
/// carries, in order; a description held only in flight is in the image like any other (no
/// descriptor of a process refers to it). Not ignorable: skipping it would lose the
/// descriptors. The restorer opens them with the rest and sends them again with their
/// messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixInFlight {
    /// The receiving socket's description id (the entry's tag).
    pub desc: u32,
    /// (message index, description ids), ascending by index.
    pub messages: Vec<(u32, Vec<u32>)>,
}

impl UnixInFlight {
    /// Why this record cannot be right next to queue `q`, with `known` telling which
    /// description ids exist, if it cannot.
    pub fn problem(&self, q: Option<&UnixQueue>, known: &dyn Fn(u32) -> bool) -> Option<String> {
        let Some(q) = q else { return Some("descriptors in flight without a queue".into()) };
        let mut last = None;
        for (i, ids) in &self.messages {
            if last.is_some_and(|l| l >= *i) {
                return Some(format!("message {i} out of order"));
            }
            last = Some(*i);
            if *i as usize >= q.messages.len() {
                return Some(format!("message {i} of a queue of {}", q.messages.len()));
            }
            if ids.is_empty() || ids.len() > MAX_FDS_PER_MESSAGE {
                return Some(format!("message {i} carries {} descriptors (1 to {MAX_FDS_PER_MESSAGE})", ids.len()));
            }
            if let Some(bad) = ids.iter().find(|&&d| !known(d) || d == self.desc) {
                return Some(format!(
                    "message {i} carries file #{bad}, which is not a description of the image or the socket itself"
                ));
            }
        }
        None
    }
}

/// Longest header line journald reads from a stream connection (`LINE_MAX`), so the longest
/// identifier or unit name a [`JournalStream`] may carry.
pub const JOURNAL_MAX_LINE: usize = 2048;

/// A unix stream socket connected to systemd-journald's stdout stream listener
/// (`/run/systemd/journal/stdout`), the end a service logs through (record kind 73,
/// [`super::JOURNAL_STREAM`], owner 0, tag = the socket's description id, at most one per
/// description). The fields are the stream's parameters as journald keeps them for the
/// connection (its state file under `/run/systemd/journal/streams/`), which are also the
/// header lines a new connection sends. The restorer gives the processes one end of a fresh
/// stream socket pair and a forwarder the other; the forwarder connects to journald once it
/// listens, sends this header and copies the bytes. Not ignorable: a reader that skipped it
/// would restore a socket that is connected to nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalStream {
    /// The socket's description id (the entry's tag).
    pub desc: u32,
    /// `SYSLOG_IDENTIFIER` of the lines (may be empty).
    pub identifier: String,
    /// The unit the stream was opened for (may be empty).
    pub unit: String,
    /// Default syslog priority of a line, 0..=7.
    pub priority: u8,
    /// Whether a line's `<N>` prefix sets its priority.
    pub level_prefix: bool,
    /// Whether journald forwards the lines to syslog.
    pub forward_to_syslog: bool,
    /// Whether journald forwards the lines to the kernel log.
    pub forward_to_kmsg: bool,
    /// Whether journald forwards the lines to the console.
    pub forward_to_console: bool,
}

impl JournalStream {
    /// The stream header a new connection to journald sends for these parameters: seven
    /// lines (identifier, unit, priority, level prefix, syslog, kmsg, console), the flags as
    /// `0` or `1`.
    pub fn header(&self) -> Vec<u8> {
        let flag = |b: bool| if b { '1' } else { '0' };
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.identifier,
            self.unit,
            self.priority,
            flag(self.level_prefix),
            flag(self.forward_to_syslog),
            flag(self.forward_to_kmsg),
            flag(self.forward_to_console)
        )
        .into_bytes()
    }

    /// Why this record cannot be right for socket `s`, if it cannot.
    pub fn problem(&self, s: &SocketRecord) -> Option<String> {
        if s.family != 1 || s.ty != 1 {
            return Some(format!("a journal stream on a socket of family {} type {}", s.family, s.ty));
        }
        if self.priority > 7 {
            return Some(format!("journal stream priority {} is not a syslog priority (0..=7)", self.priority));
        }
        for (what, v) in [("identifier", &self.identifier), ("unit", &self.unit)] {
            if v.len() >= JOURNAL_MAX_LINE {
                return Some(format!("journal stream {what} of {} bytes is longer than a header line", v.len()));
            }
            if v.contains(['\n', '\0']) {
                return Some(format!("journal stream {what} contains a newline or NUL byte"));
            }
        }
        None
    }
}
