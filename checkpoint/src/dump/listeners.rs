//! New connections to the preserved TCP listeners are held, not refused: just before the
//! trees are frozen, the network lock table gets a rule per listener that drops SYNs to it
//! (`seamless_restore::netlock`), and the dump waits (at most [`ACCEPT_WAIT`]) until the
//! service has accepted the connections already waiting in its accept queues, which the image
//! cannot hold. From then on no new connection can complete its handshake; clients retransmit
//! their SYN (after 1, 3, 7 s...) and connect to the restored listener once the restore lifts
//! the lock, where without it they would be refused while no listener exists. A listener that
//! still has waiting connections at the freeze is refused as before
//! (`super::sockets::classify`).
//!
//! The hold is best effort: without nf_tables the dump goes on as before (listeners alone do
//! not need the lock), with a warning.

use super::freeze::Frozen;
use seamless_image::records::{Addr, NetLockRecord};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long the dump waits for the service to accept the connections already waiting.
pub const ACCEPT_WAIT: Duration = Duration::from_secs(2);

/// The hold installed before the freeze; lifted when dropped unless handed to the frozen
/// processes.
#[derive(Debug)]
pub struct Hold {
    table: String,
    /// The held listeners' local addresses.
    pub listeners: Vec<Addr>,
    armed: bool,
}

impl Hold {
    /// Hands the lock table to `frozen`, which lifts it when the processes are resumed and
    /// keeps it when they are killed (for the restore to lift).
    pub fn hand_to(mut self, frozen: &mut Frozen) -> Vec<Addr> {
        frozen.hold_net_lock(self.table.clone());
        self.armed = false;
        std::mem::take(&mut self.listeners)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.armed {
            seamless_restore::netlock::lift_logged(&self.table, "abandoning the dump");
            crate::supervisor::note(&crate::supervisor::Undo::NetReleased(self.table.clone()));
        }
    }
}

/// Socket inodes held open by the processes of the trees rooted at `roots` (as they are
/// now; the trees are still running).
fn tree_sockets(roots: &[i32]) -> BTreeSet<u64> {
    let mut inos = BTreeSet::new();
    let mut queue: Vec<i32> = roots.to_vec();
    let mut seen = BTreeSet::new();
    while let Some(pid) = queue.pop() {
        if !seen.insert(pid) {
            continue;
        }
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for e in dir.flatten() {
                let link = std::fs::read_link(e.path()).unwrap_or_default();
                let link = link.to_string_lossy();
                if let Some(ino) = link.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inos.extend(ino.parse::<u64>().ok());
                }
            }
        }
        queue.extend(seamless_trace::procfs::children(pid).unwrap_or_default());
    }
    inos
}

/// Holds new connections to the TCP listeners of the trees rooted at `roots` and waits for
/// their accept queues to drain (see the module docs). `None` when they have no listener or
/// the lock cannot be installed.
pub fn hold(roots: &[i32]) -> Option<Hold> {
    let inos = tree_sockets(roots);
    let ours = |all: Vec<super::sockets::InetListener>| -> Vec<super::sockets::InetListener> {
        all.into_iter().filter(|l| inos.contains(&l.ino)).collect()
    };
    let listeners = match super::sockets::inet_listeners() {
        Ok(all) => ours(all),
        Err(e) => {
            log::warn!("listing TCP listeners (sock_diag): {e}; new connections are not held");
            return None;
        }
    };
    if listeners.is_empty() {
        return None;
    }
    let table = seamless_restore::netlock::table_name(std::process::id());
    let addrs: Vec<Addr> = listeners.iter().map(|l| l.local.clone()).collect();
    let lock = NetLockRecord { table: table.clone(), conns: Vec::new() };
    crate::supervisor::note(&crate::supervisor::Undo::NetLocked(table.clone()));
    let hold = Hold { table, listeners: addrs, armed: true };
    if let Err(e) = seamless_restore::netlock::install_with(&lock, &hold.listeners) {
        log::warn!("{e}: new connections to the {} listener(s) are refused until the restore", listeners.len());
        return None;
    }
    let t0 = Instant::now();
    loop {
        let waiting: u32 =
            super::sockets::inet_listeners().map(ours).unwrap_or_default().iter().map(|l| l.waiting).sum();
        if waiting == 0 {
            break;
        }
        if t0.elapsed() >= ACCEPT_WAIT {
            log::warn!(
                "{waiting} connection(s) still wait to be accepted after {} s with new ones held",
                ACCEPT_WAIT.as_secs()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    log::info!(
        "holding new connections to {} listener(s); the accept queues drained in {} ms",
        hold.listeners.len(),
        t0.elapsed().as_millis()
    );
    Some(hold)
}
