//! TCP connections restored in a close state (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK,
//! CLOSING; record [`TcpCloseState`]). [`crate::sockets`] rebuilds the connection as an
//! established one in repair mode, with the sequence numbers the dump saved without the FINs;
//! this module then adds the FINs the way the kernel itself would have seen them, so every
//! state, timer and queue is the kernel's own:
//!
//! - **Our FIN** (the process shut down writing): `shutdown(SHUT_WR)` while the socket is in
//!   repair mode with the send queue selected. The kernel appends the FIN to the send queue
//!   and counts it as sent without transmitting it (its transmit path skips the wire in that
//!   mode), so the peer gets no second FIN, and the retransmission timer runs for it as for
//!   any unacknowledged segment: a FIN the peer never acknowledged goes out again after the
//!   timeout. A FIN that had not gone out yet (it waited behind unsent bytes or a closed
//!   window) is queued by an ordinary `shutdown` after those bytes, once repair mode is off.
//! - **An acknowledged FIN** (FIN_WAIT2): a segment from the peer acknowledging it, which
//!   moves the socket from FIN_WAIT1 to FIN_WAIT2 (no timer: a socket the process still holds
//!   waits there for the peer).
//! - **The peer's FIN** (CLOSE_WAIT, LAST_ACK, CLOSING): a FIN segment from the peer with the
//!   sequence number right after the receive queue's bytes, so the process reads those bytes
//!   and then end-of-file. LAST_ACK gets it before our FIN, CLOSING after (the kernel's
//!   transitions: ESTABLISHED → CLOSE_WAIT → LAST_ACK, and FIN_WAIT1 → CLOSING).
//!
//! The peer's segments are raw IP packets sent by the restorer to the socket's own address
//! over loopback (`IPPROTO_RAW`), with the peer's address and port as source and the mark
//! [`crate::netlock::INJECT_MARK`], which the network lock lets pass while it drops everything
//! else of the connection (the kernel's own acknowledgement of the injected FIN included). They
//! carry no TCP options: a segment without timestamps is not subject to the PAWS check and
//! leaves the peer's last timestamp as it was. After they are processed (the socket's state is
//! polled) the saved window (`TCP_REPAIR_WINDOW`) is set again.

use crate::sockets::{inet_checksum as checksum, unmapped};
use crate::RestoreError;
use seamless_image::records::tcp_states::{CLOSE_WAIT, CLOSING, FIN_WAIT1, FIN_WAIT2, LAST_ACK};
use seamless_image::records::{Addr, SocketRecord, TcpCloseState, TcpConn};
use seamless_sys::sockets as net;
use std::os::fd::{AsRawFd, RawFd};

/// `IPPROTO_TCP` as the byte of an IP header.
const IPPROTO_TCP: u8 = 6;
/// TCP header flags.
const FIN: u8 = 0x01;
const ACK: u8 = 0x10;

fn fail(id: u32, what: String, source: std::io::Error) -> RestoreError {
    RestoreError::File { id, what, source }
}

fn sys(id: u32, what: &str, e: seamless_sys::SysError) -> RestoreError {
    fail(id, format!("socket {what} ({}({}))", e.call, e.subject), e.source)
}

fn seq_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The window to set in repair mode before the peer's FIN is queued: the kernel refuses a
/// `rcv_wup` past the current `rcv_nxt`, which the saved one (counting the FIN) may be; the
/// right edge of the window stays where it was.
pub fn window_before_fin(c: &TcpConn, t: Option<&TcpCloseState>) -> [u32; 5] {
    let mut w = c.window;
    if t.is_some_and(TcpCloseState::fin_received) {
        let rcv_nxt = c.rcv_seq.wrapping_sub(1);
        // after(rcv_wup, rcv_nxt) in the kernel's wrapping sense.
        let ahead = w[4].wrapping_sub(rcv_nxt);
        if ahead != 0 && ahead < 1 << 31 {
            w[4] = rcv_nxt;
            w[3] = w[3].wrapping_add(ahead);
        }
    }
    w
}

/// Where the receive queue's sequence numbers start for a restored connection: the saved
/// `rcv_nxt` counts the peer's FIN, which [`in_repair`] adds again.
pub fn recv_queue_start(c: &TcpConn, t: Option<&TcpCloseState>) -> u32 {
    let fin = u32::from(t.is_some_and(TcpCloseState::fin_received));
    c.rcv_seq.wrapping_sub(fin).wrapping_sub(seq_len(c.recv_queue.len()))
}

/// Where the send queue's sequence numbers start: the saved `write_seq` counts our FIN,
/// which [`in_repair`] or [`after_repair`] queues again.
pub fn send_queue_start(c: &TcpConn, t: Option<&TcpCloseState>) -> u32 {
    let fin = u32::from(t.is_some_and(TcpCloseState::fin_queued));
    c.snd_seq.wrapping_sub(fin).wrapping_sub(seq_len(c.send_queue.len()))
}

/// The steps of a close state taken while the rebuilt connection is still in repair mode
/// (after its queues and window): our FIN if it had gone out, the peer's acknowledgement of
/// it, the peer's FIN, each in the order the kernel's transitions need.
pub fn in_repair(id: u32, fd: RawFd, s: &SocketRecord, c: &TcpConn, t: &TcpCloseState) -> Result<(), RestoreError> {
    let inj = Injector { id, fd, s, c, t };
    match (t.state, t.fin_sent) {
        (CLOSE_WAIT, _) => inj.peer_fin(CLOSE_WAIT)?,
        (FIN_WAIT1, true) => shutdown_sent(id, fd)?,
        (FIN_WAIT2, _) => {
            shutdown_sent(id, fd)?;
            inj.peer_ack_of_fin()?;
        }
        (LAST_ACK, sent) => {
            inj.peer_fin(CLOSE_WAIT)?;
            if sent {
                shutdown_sent(id, fd)?;
            }
        }
        (CLOSING, true) => {
            shutdown_sent(id, fd)?;
            inj.peer_fin(CLOSING)?;
        }
        _ => {}
    }
    // The injected segments moved the window's bookkeeping; put back the saved one (now
    // that `rcv_nxt` counts the peer's FIN again). A CLOSING socket whose FIN had not gone
    // out takes the peer's FIN only after repair mode (the kernel's acknowledgement of it
    // then sets the receive window as for any FIN).
    if t.state == CLOSING && !t.fin_sent {
        return check_state(id, fd, t, true);
    }
    if let Err(e) = net::set_tcp_repair_window(fd, c.window) {
        let _ = net::tcp_repair_queue(fd, net::TCP_RECV_QUEUE);
        let rcv_nxt = net::tcp_queue_seq(fd).unwrap_or(0);
        let _ = net::tcp_repair_queue(fd, 0);
        let now = net::tcp_repair_window(fd).unwrap_or_default();
        return Err(sys(
            id,
            &format!(
                "TCP_REPAIR_WINDOW {:?} after the {} steps (rcv_nxt {rcv_nxt}, saved {}, window now {now:?})",
                c.window,
                t.state_name(),
                c.rcv_seq
            ),
            e,
        ));
    }
    check_state(id, fd, t, true)
}

/// The steps of a close state whose FIN had not gone out, once repair mode is off and the
/// never-sent bytes are queued again: an ordinary `shutdown(SHUT_WR)` (the FIN follows the
/// bytes), and in CLOSING then the peer's FIN.
pub fn after_repair(id: u32, fd: RawFd, s: &SocketRecord, c: &TcpConn, t: &TcpCloseState) -> Result<(), RestoreError> {
    if t.fin_queued() && !t.fin_sent {
        net::shutdown(fd, libc::SHUT_WR).map_err(|e| sys(id, "shutdown(SHUT_WR)", e))?;
        if t.state == CLOSING {
            Injector { id, fd, s, c, t }.peer_fin(CLOSING)?;
        }
    }
    check_state(id, fd, t, false)
}

/// Makes the fresh TCP socket `fd` one whose connection has ended (record `TcpEnded`): both
/// directions shut down, so reads give EOF and writes `EPIPE`. `shutdown` on a socket that
/// never connected sets the bits and still answers `ENOTCONN`.
pub fn end(id: u32, fd: RawFd) -> Result<(), RestoreError> {
    match net::shutdown(fd, libc::SHUT_RDWR) {
        Err(e) if e.errno() != Some(libc::ENOTCONN) => return Err(sys(id, "shutdown(SHUT_RDWR)", e)),
        _ => {}
    }
    let ev = seamless_sys::tty::poll_now(fd, libc::POLLIN | libc::POLLRDHUP).map_err(|e| sys(id, "poll", e))?;
    if ev & libc::POLLRDHUP == 0 {
        return Err(fail(
            id,
            format!("ending the TCP socket: poll shows {ev:#x}, not POLLRDHUP"),
            std::io::ErrorKind::InvalidData.into(),
        ));
    }
    Ok(())
}

/// Our FIN, counted as sent without going out: `shutdown` in repair mode with the send queue
/// selected.
fn shutdown_sent(id: u32, fd: RawFd) -> Result<(), RestoreError> {
    net::tcp_repair_queue(fd, net::TCP_SEND_QUEUE).map_err(|e| sys(id, "TCP_REPAIR_QUEUE send", e))?;
    net::shutdown(fd, libc::SHUT_WR).map_err(|e| sys(id, "shutdown(SHUT_WR) in repair mode", e))?;
    net::tcp_repair_queue(fd, 0).map_err(|e| sys(id, "TCP_REPAIR_QUEUE none", e))
}

/// The state must be the saved one (in repair mode: the states whose FIN had not gone out
/// are still one step short of it).
fn check_state(id: u32, fd: RawFd, t: &TcpCloseState, repairing: bool) -> Result<(), RestoreError> {
    let want = match (repairing && t.fin_queued() && !t.fin_sent, t.state) {
        (true, LAST_ACK) => CLOSE_WAIT,
        (true, _) => 1,
        (false, s) => s,
    };
    let got = net::tcp_info(fd).map_err(|e| sys(id, "TCP_INFO", e))?.state;
    if got != want {
        return Err(fail(
            id,
            format!("restoring TCP state {}: the socket is in state {got}, not {want}", t.state_name()),
            std::io::ErrorKind::InvalidData.into(),
        ));
    }
    Ok(())
}

/// Sends segments "from the peer" to a connection being restored.
struct Injector<'a> {
    id: u32,
    fd: RawFd,
    s: &'a SocketRecord,
    c: &'a TcpConn,
    t: &'a TcpCloseState,
}

impl Injector<'_> {
    /// The peer's FIN, right after the receive queue; then waits for state `want`.
    /// It acknowledges what the peer had acknowledged (`snd_una`: the saved `write_seq` less
    /// the unacknowledged bytes and our unacknowledged FIN).
    fn peer_fin(&self, want: u8) -> Result<(), RestoreError> {
        let seq = self.c.rcv_seq.wrapping_sub(1);
        let fin = u32::from(self.t.fin_queued() && !self.t.fin_acked());
        let una = self.c.snd_seq.wrapping_sub(seq_len(self.c.send_queue.len())).wrapping_sub(fin);
        self.send(seq, una, FIN | ACK, "the peer's FIN")?;
        self.wait(want, "the peer's FIN")
    }

    /// The peer's acknowledgement of our FIN (FIN_WAIT1 → FIN_WAIT2).
    fn peer_ack_of_fin(&self) -> Result<(), RestoreError> {
        self.send(self.c.rcv_seq, self.c.snd_seq, ACK, "the acknowledgement of our FIN")?;
        self.wait(FIN_WAIT2, "the acknowledgement of our FIN")
    }

    fn wait(&self, want: u8, what: &str) -> Result<(), RestoreError> {
        let t0 = std::time::Instant::now();
        loop {
            let got = net::tcp_info(self.fd).map_err(|e| sys(self.id, "TCP_INFO", e))?.state;
            if got == want {
                return Ok(());
            }
            if t0.elapsed() > std::time::Duration::from_secs(2) {
                return Err(fail(
                    self.id,
                    format!("{what} was not taken: the socket stays in TCP state {got}, not {want}"),
                    std::io::ErrorKind::TimedOut.into(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// One segment from the peer to the socket, `seq`/`ack`/`flags`, the peer's window as it
    /// last announced it.
    fn send(&self, seq: u32, ack: u32, flags: u8, what: &str) -> Result<(), RestoreError> {
        let shift = self.c.wscale.map_or(0, |(snd, _)| snd.min(14));
        let window = u16::try_from(self.c.window[1] >> shift).unwrap_or(u16::MAX);
        let Some((packet, route, family)) = segment(&self.s.peer, &self.s.local, seq, ack, flags, window) else {
            return Err(fail(
                self.id,
                format!("{what}: no packet from {} to {}", self.s.peer, self.s.local),
                std::io::ErrorKind::InvalidInput.into(),
            ));
        };
        let raw = net::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(|e| sys(self.id, "raw socket", e))?;
        let mark = i32::from_ne_bytes(crate::netlock::INJECT_MARK.to_ne_bytes());
        net::set_int(raw.as_raw_fd(), libc::SOL_SOCKET, libc::SO_MARK, mark)
            .map_err(|e| sys(self.id, "SO_MARK of the raw socket", e))?;
        net::send_to(raw.as_raw_fd(), &packet, 0, &route.to_raw()).map_err(|e| sys(self.id, what, e))?;
        Ok(())
    }
}

/// A TCP segment without payload or options as a whole IP packet from `from` to `to`, the
/// address that routes it (the destination, port 0) and the raw socket's family.
fn segment(from: &Addr, to: &Addr, seq: u32, ack: u32, flags: u8, window: u16) -> Option<(Vec<u8>, Addr, i32)> {
    let tcp = |fport: u16, tport: u16| {
        let mut t = Vec::with_capacity(20);
        t.extend_from_slice(&fport.to_be_bytes());
        t.extend_from_slice(&tport.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&ack.to_be_bytes());
        t.extend_from_slice(&[5 << 4, flags]);
        t.extend_from_slice(&window.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t
    };
    let v4 = |f: [u8; 4], fport: u16, t: [u8; 4], tport: u16| {
        let mut seg = tcp(fport, tport);
        let sum = checksum(&[&f, &t, &[0, IPPROTO_TCP, 0, 20], &seg]);
        seg[16..18].copy_from_slice(&sum.to_be_bytes());
        let mut p = Vec::with_capacity(40);
        p.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, IPPROTO_TCP, 0, 0]);
        p.extend_from_slice(&f);
        p.extend_from_slice(&t);
        p.extend_from_slice(&seg);
        (p, Addr::V4 { ip: t, port: 0 }, libc::AF_INET)
    };
    match (from, to) {
        (Addr::V4 { ip: f, port: fp }, Addr::V4 { ip: t, port: tp }) => Some(v4(*f, *fp, *t, *tp)),
        (Addr::V6 { ip: f, port: fp, .. }, Addr::V6 { ip: t, port: tp, scope_id, .. }) => {
            if let (Some(f4), Some(t4)) = (unmapped(f), unmapped(t)) {
                return Some(v4(f4, *fp, t4, *tp));
            }
            let mut seg = tcp(*fp, *tp);
            let sum = checksum(&[f, t, &[0, 0, 0, 20], &[0, 0, 0, IPPROTO_TCP], &seg]);
            seg[16..18].copy_from_slice(&sum.to_be_bytes());
            let mut p = Vec::with_capacity(60);
            p.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, IPPROTO_TCP, 64]);
            p.extend_from_slice(f);
            p.extend_from_slice(t);
            p.extend_from_slice(&seg);
            Some((p, Addr::V6 { ip: *t, port: 0, flowinfo: 0, scope_id: *scope_id }, libc::AF_INET6))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_carry_valid_checksums_and_the_fields_asked_for() {
        let (p, route, family) = segment(
            &Addr::V4 { ip: [10, 0, 0, 1], port: 80 },
            &Addr::V4 { ip: [10, 0, 0, 2], port: 4000 },
            7,
            9,
            FIN | ACK,
            512,
        )
        .unwrap();
        assert_eq!((family, route), (libc::AF_INET, Addr::V4 { ip: [10, 0, 0, 2], port: 0 }));
        assert_eq!(p.len(), 40);
        // The TCP checksum over pseudo-header and segment sums to zero when right.
        assert_eq!(checksum(&[&p[12..16], &p[16..20], &[0, IPPROTO_TCP, 0, 20], &p[20..]]), 0);
        assert_eq!(&p[24..28], &7u32.to_be_bytes());
        assert_eq!(&p[28..32], &9u32.to_be_bytes());
        assert_eq!(p[33], FIN | ACK);
        let mapped = |last: u8, port| Addr::V6 {
            ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, last],
            port,
            flowinfo: 0,
            scope_id: 0,
        };
        let (p, _, family) = segment(&mapped(1, 80), &mapped(2, 90), 1, 2, ACK, 1).unwrap();
        assert_eq!((family, p[0]), (libc::AF_INET, 0x45), "v4-mapped peers get IPv4 packets");
        let v6 = |last: u8| Addr::V6 {
            ip: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last],
            port: 5,
            flowinfo: 0,
            scope_id: 0,
        };
        let (p, _, family) = segment(&v6(1), &v6(2), 1, 2, ACK, 1).unwrap();
        assert_eq!((family, p.len()), (libc::AF_INET6, 60));
        assert_eq!(checksum(&[&p[8..24], &p[24..40], &[0, 0, 0, 20], &[0, 0, 0, IPPROTO_TCP], &p[40..]]), 0);
    }

    #[test]
    fn fins_are_taken_out_of_the_sequence_numbers_and_the_window() {
        let c = TcpConn {
            snd_seq: 1001,
            rcv_seq: 5001,
            send_queue: vec![0; 100],
            recv_queue: vec![0; 50],
            window: [4990, 65536, 65536, 1000, 5001],
            ..TcpConn::default()
        };
        let t = TcpCloseState { desc: 1, state: LAST_ACK, fin_sent: true };
        assert_eq!(send_queue_start(&c, Some(&t)), 900);
        assert_eq!(recv_queue_start(&c, Some(&t)), 4950);
        assert_eq!(window_before_fin(&c, Some(&t)), [4990, 65536, 65536, 1001, 5000]);
        assert_eq!(send_queue_start(&c, None), 901);
        assert_eq!(window_before_fin(&c, None), c.window);
    }
}
