//! TCP connections past ESTABLISHED: one side or both have closed their direction (FIN sent,
//! FIN received). The connection itself is saved as an established one ([`super::TcpConn`],
//! sequence numbers and queues without the FINs); this record says which FINs come on top.

use super::{SockState, SocketRecord};
use serde::{Deserialize, Serialize};

/// `TCP_FIN_WAIT1`: this side shut down writing, its FIN is not acknowledged.
pub const FIN_WAIT1: u8 = 4;
/// `TCP_FIN_WAIT2`: this side's FIN is acknowledged, the peer still sends.
pub const FIN_WAIT2: u8 = 5;
/// `TCP_CLOSE_WAIT`: the peer's FIN was received, this side still sends.
pub const CLOSE_WAIT: u8 = 8;
/// `TCP_LAST_ACK`: the peer's FIN was received, then this side's FIN, not acknowledged.
pub const LAST_ACK: u8 = 9;
/// `TCP_CLOSING`: both FINs crossed, this side's is not acknowledged.
pub const CLOSING: u8 = 11;

/// The close state of a TCP connection: stored under [`super::TCP_CLOSE`], owner 0, tag =
/// description id, at most one per socket description whose state is
/// [`SockState::Tcp`]. Not `IGNORABLE`: a restorer that skips it brings the connection back
/// established (the peer's EOF lost, the shut-down write side open again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCloseState {
    /// Description id of the socket.
    pub desc: u32,
    /// The kernel's TCP state: [`FIN_WAIT1`], [`FIN_WAIT2`], [`CLOSE_WAIT`], [`LAST_ACK`] or
    /// [`CLOSING`].
    pub state: u8,
    /// Whether this side's FIN has gone out (`false`: it waits behind unsent bytes or a closed
    /// window, after `TcpConn::unsent`). Always `true` in FIN_WAIT2, `false` in CLOSE_WAIT.
    pub fin_sent: bool,
}

impl TcpCloseState {
    /// Whether this side has queued its FIN (shut down writing).
    pub fn fin_queued(&self) -> bool {
        matches!(self.state, FIN_WAIT1 | FIN_WAIT2 | LAST_ACK | CLOSING)
    }

    /// Whether the peer's FIN was received (after the receive queue's bytes).
    pub fn fin_received(&self) -> bool {
        matches!(self.state, CLOSE_WAIT | LAST_ACK | CLOSING)
    }

    /// Whether this side's FIN is acknowledged by the peer.
    pub fn fin_acked(&self) -> bool {
        self.state == FIN_WAIT2
    }

    /// The state's name as the kernel's headers spell it.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            FIN_WAIT1 => "FIN_WAIT1",
            FIN_WAIT2 => "FIN_WAIT2",
            CLOSE_WAIT => "CLOSE_WAIT",
            LAST_ACK => "LAST_ACK",
            CLOSING => "CLOSING",
            _ => "?",
        }
    }

    /// What is wrong with this record for socket `s`, if anything.
    pub fn problem(&self, s: &SocketRecord) -> Option<String> {
        let SockState::Tcp(c) = &s.state else {
            return Some("not a TCP connection".into());
        };
        if !matches!(self.state, FIN_WAIT1 | FIN_WAIT2 | CLOSE_WAIT | LAST_ACK | CLOSING) {
            return Some(format!("TCP state {} is not a close state", self.state));
        }
        if !self.fin_queued() && self.fin_sent {
            return Some("FIN sent in CLOSE_WAIT".into());
        }
        if self.fin_acked() && !(self.fin_sent && c.send_queue.is_empty()) {
            return Some("FIN_WAIT2 with bytes or the FIN still unacknowledged".into());
        }
        if self.fin_queued() && self.fin_sent && c.unsent != 0 {
            return Some("FIN sent before unsent bytes".into());
        }
        None
    }
}

/// A TCP socket whose connection has ended while the process still holds it (both FINs
/// exchanged, then TIME_WAIT or the last acknowledgement; a reset whose error was already
/// reported) and nothing left to read: the kernel shows it in CLOSE with both directions
/// shut, reads give EOF, writes `EPIPE`, `poll` reports `POLLHUP | POLLIN | POLLRDHUP`. Stored
/// under [`super::TCP_ENDED`], owner 0, tag = description id, at most one per TCP socket
/// description whose state is [`SockState::Unconnected`]. Not `IGNORABLE`: a restorer that
/// skips it brings back a fresh unconnected socket (reads fail with `ENOTCONN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpEnded {
    /// Description id of the socket.
    pub desc: u32,
}

impl TcpEnded {
    /// What is wrong with this record for socket `s`, if anything.
    pub fn problem(&self, s: &SocketRecord) -> Option<String> {
        if !matches!(s.state, SockState::Unconnected) || s.ty != 1 || !matches!(s.family, 2 | 10) {
            return Some("not an unconnected TCP socket".into());
        }
        None
    }
}
