//! The network lock of an image (record kind [`super::NET_LOCK`]): the nf_tables table that
//! holds the preserved TCP connections still, and the connections it holds.

use super::Addr;
use serde::{Deserialize, Serialize};

/// One TCP connection held still by the network lock: its local and peer address (both
/// [`Addr::V4`] or both [`Addr::V6`]; an IPv4-mapped IPv6 pair is locked as IPv4, which is what
/// travels on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedConn {
    /// This end (the dumped socket's address).
    pub local: Addr,
    /// The other end.
    pub peer: Addr,
}

/// The network lock of an image (record kind 24, owner 0, tag 0, at most one): the nf_tables
/// table that drops every segment of the preserved TCP connections from the moment their
/// queues were read until they are repaired again, and the connections it holds. The dump
/// installs it on the old kernel; seamless-init installs it again on the new kernel before any
/// link is up; the restore lifts it once every connection is repaired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetLockRecord {
    /// Name of the `inet` table (`seamless-lock-*`).
    pub table: String,
    /// The connections.
    pub conns: Vec<LockedConn>,
}

/// Prefix of every lock table's name (a restore only ever deletes tables named so).
pub const NET_LOCK_PREFIX: &str = "seamless-lock-";

impl NetLockRecord {
    /// Why this record cannot be right, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let t = &self.table;
        if !t.starts_with(NET_LOCK_PREFIX)
            || t.len() > 64
            || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Some(format!(
                "table name {t:?} is not a seamless lock table ({NET_LOCK_PREFIX}..., at most 64 of [A-Za-z0-9_-])"
            ));
        }
        for c in &self.conns {
            let ok = match (&c.local, &c.peer) {
                (Addr::V4 { port: a, .. }, Addr::V4 { port: b, .. }) => *a != 0 && *b != 0,
                (Addr::V6 { port: a, .. }, Addr::V6 { port: b, .. }) => *a != 0 && *b != 0,
                _ => false,
            };
            if !ok {
                return Some(format!("connection {} -> {} is not a pair of IP addresses with ports", c.local, c.peer));
            }
        }
        None
    }
}

/// The listeners the network lock holds new connections for (record kind 27,
/// [`super::HELD_LISTENERS`], owner 0, tag 0, at most one): from just before the dump until
/// the restore has recreated them, SYNs to these local addresses and ports are dropped, so
/// clients retransmit and connect to the restored listener instead of being refused. An
/// unspecified address (`0.0.0.0`, `::`) holds the port on every local address. Written
/// `IGNORABLE`: a restorer that predates it restores as before, refusing new connections until
/// the listeners exist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldListeners {
    /// The lock table (the same as the [`NetLockRecord`]'s when there is one).
    pub table: String,
    /// The listeners' local addresses.
    pub listeners: Vec<Addr>,
}

impl HeldListeners {
    /// Why this record cannot be right, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let as_lock = NetLockRecord { table: self.table.clone(), conns: Vec::new() };
        if let Some(p) = as_lock.problem() {
            return Some(p);
        }
        for a in &self.listeners {
            let ok = match a {
                Addr::V4 { port, .. } | Addr::V6 { port, .. } => *port != 0,
                _ => false,
            };
            if !ok {
                return Some(format!("listener {a} is not an IP address with a port"));
            }
        }
        None
    }
}
