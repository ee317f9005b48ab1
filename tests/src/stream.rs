//! A counted, checked TCP byte stream through an echo server, kept flowing while the server is
//! dumped and restored: one thread sends byte `i` = [`pattern`]`(i)` in small paced chunks,
//! another reads the echo and checks every byte against the same pattern, so a lost, repeated
//! or reordered byte is found at its offset, and a reset (`ECONNRESET`, `EPIPE`) is reported
//! with the number of bytes that got through. The reader also measures the stall: the longest
//! time without a single echoed byte.
//!
//! Network namespaces: [`in_netns`] runs a closure on a thread that moved into a namespace made
//! with `ip netns add`, so the test's sockets can be created there while the test itself stays
//! in the host's namespace (a socket keeps the namespace it was made in).

use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Byte `i` of every stream.
pub fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8).wrapping_mul(131) ^ (i >> 16).wrapping_mul(7)) as u8
}

/// Runs `f` on a thread inside the network namespace `/run/netns/NAME` and returns its result.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let path = format!("/run/netns/{name}");
    let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .with_context(|| format!("setns({path})"))?;
        f()
    })
    .join()
    .map_err(|_| anyhow!("the thread in network namespace {name} panicked"))?
}

/// Connects to `addr`, retrying for up to `timeout` while nothing listens yet.
pub fn connect_retrying(addr: std::net::SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let t0 = Instant::now();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) if t0.elapsed() < timeout => {
                log::debug!("connecting to {addr}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to {addr}")),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    sent: AtomicU64,
    received: AtomicU64,
    stop: AtomicBool,
    send_error: Mutex<Option<String>>,
    recv_end: Mutex<Option<Result<(), String>>>,
    /// Longest gap between two reads, in microseconds, and the stream offset after it.
    max_gap_us: AtomicU64,
    gap_at: AtomicU64,
}

/// A running stream; [`Stream::finish`] ends it and says what happened.
#[derive(Debug)]
pub struct Stream {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
    started: Instant,
}

/// What a finished stream saw.
#[derive(Debug, Clone)]
pub struct StreamReport {
    /// Bytes written.
    pub sent: u64,
    /// Bytes echoed back and found correct, in order.
    pub received: u64,
    /// The sender's error (a reset shows up here as ECONNRESET or EPIPE).
    pub send_error: Option<String>,
    /// How the reading side ended: a clean EOF, or the error (reset, wrong byte, timeout).
    pub recv_end: Result<(), String>,
    /// The longest time without an echoed byte.
    pub max_stall: Duration,
    /// Stream offset where that stall ended.
    pub stall_at: u64,
    /// How long the stream ran.
    pub duration: Duration,
}

impl StreamReport {
    /// Bytes sent but never echoed.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    /// Ok when every byte came back exactly once, in order, with no reset and a clean EOF.
    pub fn check(&self) -> Result<()> {
        let mut problems = Vec::new();
        if let Some(e) = &self.send_error {
            problems.push(format!("sending failed: {e}"));
        }
        if let Err(e) = &self.recv_end {
            problems.push(format!("receiving failed: {e}"));
        }
        if self.received != self.sent {
            problems.push(format!("{} bytes sent, {} echoed back ({} lost)", self.sent, self.received, self.lost()));
        }
        if !problems.is_empty() {
            bail!("stream broken: {}", problems.join("; "));
        }
        Ok(())
    }
}

impl std::fmt::Display for StreamReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes sent, {} echoed ({} lost) in {:.1} s; longest stall {:.3} s (ended at offset {}); {}{}",
            self.sent,
            self.received,
            self.lost(),
            self.duration.as_secs_f64(),
            self.max_stall.as_secs_f64(),
            self.stall_at,
            match &self.recv_end {
                Ok(()) => "clean EOF".to_string(),
                Err(e) => format!("receive error: {e}"),
            },
            self.send_error.as_ref().map(|e| format!("; send error: {e}")).unwrap_or_default()
        )
    }
}

/// How long a blocked read or write may wait before the stream counts as dead.
const IO_TIMEOUT: Duration = Duration::from_secs(90);

impl Stream {
    /// Starts streaming over `sock`: `chunk` bytes every `interval`.
    pub fn start(sock: TcpStream, chunk: usize, interval: Duration) -> Result<Stream> {
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        let shared = Arc::new(Shared::default());
        let mut rd = sock.try_clone()?;
        let mut wr = sock;
        let s = shared.clone();
        let writer = std::thread::spawn(move || {
            let mut buf = vec![0u8; chunk];
            let mut sent = 0u64;
            while !s.stop.load(Ordering::SeqCst) {
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = pattern(sent + k as u64);
                }
                if let Err(e) = wr.write_all(&buf) {
                    *s.send_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{e} after {sent} bytes"));
                    return;
                }
                sent += chunk as u64;
                s.sent.store(sent, Ordering::SeqCst);
                std::thread::sleep(interval);
            }
            if let Err(e) = wr.shutdown(Shutdown::Write) {
                *s.send_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("shutdown: {e}"));
            }
        });
        let s = shared.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0u64;
            let mut last: Option<Instant> = None;
            let end = loop {
                match rd.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        let now = Instant::now();
                        if let Some(l) = last {
                            let gap = now.duration_since(l).as_micros() as u64;
                            if gap > s.max_gap_us.load(Ordering::SeqCst) {
                                s.max_gap_us.store(gap, Ordering::SeqCst);
                                s.gap_at.store(got, Ordering::SeqCst);
                            }
                        }
                        last = Some(now);
                        if let Some(k) = (0..n).find(|&k| buf[k] != pattern(got + k as u64)) {
                            let at = got + k as u64;
                            break Err(format!(
                                "echoed byte {at} is 0x{:02x}, expected 0x{:02x} (lost, repeated or reordered bytes)",
                                buf[k],
                                pattern(at)
                            ));
                        }
                        got += n as u64;
                        s.received.store(got, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(format!("{e} after {got} bytes")),
                }
            };
            *s.recv_end.lock().unwrap_or_else(|p| p.into_inner()) = Some(end);
        });
        Ok(Stream { shared, writer: Some(writer), reader: Some(reader), started: Instant::now() })
    }

    /// (bytes sent, bytes echoed) so far.
    pub fn progress(&self) -> (u64, u64) {
        (self.shared.sent.load(Ordering::SeqCst), self.shared.received.load(Ordering::SeqCst))
    }

    /// Waits until at least `bytes` more have been echoed than now (or `timeout`).
    pub fn wait_echoed(&self, bytes: u64, timeout: Duration) -> Result<()> {
        let want = self.progress().1 + bytes;
        let t0 = Instant::now();
        while self.progress().1 < want {
            if t0.elapsed() > timeout {
                bail!("the stream echoed {} bytes, not {want}, within {} s", self.progress().1, timeout.as_secs());
            }
            if self.shared.recv_end.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                bail!("the stream ended early: {:?}", self.shared.recv_end.lock().unwrap_or_else(|p| p.into_inner()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Stops sending, shuts the sending side down and waits for the echo's EOF.
    pub fn finish(mut self) -> StreamReport {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let s = &self.shared;
        StreamReport {
            sent: s.sent.load(Ordering::SeqCst),
            received: s.received.load(Ordering::SeqCst),
            send_error: s.send_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            recv_end: s
                .recv_end
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| Err("the reader did not end".into())),
            max_stall: Duration::from_micros(s.max_gap_us.load(Ordering::SeqCst)),
            stall_at: s.gap_at.load(Ordering::SeqCst),
            duration: self.started.elapsed(),
        }
    }
}
