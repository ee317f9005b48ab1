//! TCP connections past ESTABLISHED: which states are saved and what they add to an
//! established connection's record.
//!
//! A connection in FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK or CLOSING is read in repair mode
//! like an established one ([`super::sockets`]), and the FINs are taken out of what the queues
//! show: the kernel counts our FIN in `write_seq` and, until the peer acknowledges it, in
//! `SIOCOUTQ` (and in `SIOCOUTQNSD` while it has not gone out), the peer's FIN in `rcv_nxt`
//! (not in `SIOCINQ`). The record's sequence numbers stay the kernel's (FINs counted); its
//! queues hold only bytes; a [`TcpCloseState`] record says which FINs there are. The restore
//! side is `seamless_restore::tcp_states`.
//!
//! Refused: SYN_SENT (a `connect` in progress: the handshake's state is not readable in repair
//! mode) and SYN_RECV (a connection accepted before its handshake completed, with TCP Fast
//! Open): the process retries its `connect`, or the client its connection.

use seamless_image::records::tcp_states::{CLOSE_WAIT, CLOSING, FIN_WAIT1, FIN_WAIT2, LAST_ACK};
use seamless_image::records::TcpCloseState;

/// The descriptions of the plan's connections the pre-check saw in a close state (they need
/// record kind [`seamless_image::records::TCP_CLOSE`]).
pub fn closing_descs(plan: &super::files::FilePlan) -> Vec<u32> {
    let inos: std::collections::BTreeSet<u64> =
        plan.tcp_pending.iter().filter(|p| saved(p.state())).map(|p| p.ino()).collect();
    plan.descs
        .iter()
        .filter(|d| matches!(&d.kind, seamless_image::records::FileKind::Socket(s) if inos.contains(&s.ino)))
        .map(|d| d.id)
        .collect()
}

/// Whether the TCP socket `fd` in CLOSE is one whose connection ended (both directions shut
/// down: `poll` shows `POLLRDHUP`, which a socket never connected does not), read without
/// changing it. `Err` (inner) refuses: an error not reported to the process yet (a reset,
/// a refused connect: reading it would clear it) or bytes left to read (a socket in CLOSE
/// cannot be given a receive queue again).
pub fn ended(fd: std::os::fd::RawFd) -> Result<Result<bool, String>, seamless_sys::SysError> {
    let ev = seamless_sys::tty::poll_now(fd, libc::POLLIN | libc::POLLRDHUP)?;
    if ev & libc::POLLERR != 0 {
        return Ok(Err(
            "TCP connection that was reset or refused, its error not yet reported to the process: not checkpointed"
                .into(),
        ));
    }
    if ev & libc::POLLRDHUP == 0 {
        return Ok(Ok(false));
    }
    let inq = seamless_sys::sockets::ioctl_int(fd, seamless_sys::sockets::SIOCINQ)?;
    if inq > 0 {
        return Ok(Err(format!(
            "TCP connection that has ended with {inq} bytes not read yet: a socket in CLOSE cannot be given its receive queue again"
        )));
    }
    Ok(Ok(true))
}

/// Whether a connection in `state` is saved (besides ESTABLISHED, state 1).
pub fn saved(state: u8) -> bool {
    matches!(state, FIN_WAIT1 | FIN_WAIT2 | CLOSE_WAIT | LAST_ACK | CLOSING)
}

/// Why a connection in `state` (neither saved, LISTEN nor CLOSE) is refused.
pub fn refusal(state: u8, name: &str) -> String {
    match state {
        2 => format!("TCP connection in state {name} (a connect in progress): the handshake is not checkpointed; retry after it completes"),
        3 => format!("TCP connection in state {name} (accepted before its handshake completed, TCP Fast Open): not checkpointed"),
        _ => format!(
            "TCP connection in state {name}: only LISTEN, ESTABLISHED, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING and unconnected sockets are checkpointed"
        ),
    }
}

/// What the FINs of a connection in `state` take from the kernel's counts, read in repair
/// mode: `outq` (`SIOCOUTQ`), `unsent` (`SIOCOUTQNSD`). Returns the bytes of the send queue,
/// the never-sent ones among them and the close record (description id 0, filled in by the
/// caller), `None` for an established connection.
pub fn fins(state: u8, outq: usize, unsent: usize) -> (usize, usize, Option<TcpCloseState>) {
    if !saved(state) {
        return (outq, unsent, None);
    }
    let t = TcpCloseState { desc: 0, state, fin_sent: false };
    // Our FIN still counted in SIOCOUTQ: queued and not acknowledged.
    let fin_out = usize::from(t.fin_queued() && !t.fin_acked());
    let fin_unsent = usize::from(t.fin_queued() && unsent > 0);
    let fin_sent = t.fin_queued() && fin_unsent == 0;
    (outq.saturating_sub(fin_out), unsent - fin_unsent, Some(TcpCloseState { fin_sent, ..t }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fins_come_out_of_the_kernels_counts() {
        assert_eq!(fins(1, 10, 4), (10, 4, None));
        // FIN_WAIT1, FIN gone out and unacknowledged: 9 bytes + FIN in flight.
        let (q, u, t) = fins(FIN_WAIT1, 10, 0);
        assert_eq!((q, u, t.unwrap().fin_sent), (9, 0, true));
        // FIN_WAIT1, FIN behind 3 unsent bytes.
        let (q, u, t) = fins(FIN_WAIT1, 10, 4);
        assert_eq!((q, u, t.unwrap().fin_sent), (9, 3, false));
        // FIN_WAIT2: everything acknowledged, FIN included.
        let (q, u, t) = fins(FIN_WAIT2, 0, 0);
        assert_eq!((q, u, t.unwrap().fin_sent), (0, 0, true));
        // CLOSE_WAIT: our side has not closed.
        let (q, u, t) = fins(CLOSE_WAIT, 5, 2);
        assert_eq!((q, u, t.unwrap().fin_sent), (5, 2, false));
        let (q, _, t) = fins(LAST_ACK, 1, 0);
        assert_eq!((q, t.unwrap().fin_sent), (0, true));
        assert!(refusal(2, "SYN_SENT").contains("connect in progress"));
    }
}
