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

use crate::flows::{check_pattern, send_pattern, Shared};
use anyhow::{anyhow, bail, Context, Result};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
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
        let rd = sock.try_clone()?;
        let s = shared.clone();
        let writer = std::thread::spawn(move || {
            send_pattern(sock, chunk, interval, &s, "echo stream");
        });
        let s = shared.clone();
        let reader = std::thread::spawn(move || {
            let (end, _) = check_pattern(rd, &s);
            *Shared::lock(&s.end) = Some(end.map_err(|e| format!("echo: {e}")));
        });
        Ok(Stream { shared, writer: Some(writer), reader: Some(reader), started: Instant::now() })
    }

    /// (bytes sent, bytes echoed) so far.
    pub fn progress(&self) -> (u64, u64) {
        (self.shared.sent.load(Ordering::SeqCst), self.shared.progress.load(Ordering::SeqCst))
    }

    /// Waits until at least `bytes` more have been echoed than now (or `timeout`).
    pub fn wait_echoed(&self, bytes: u64, timeout: Duration) -> Result<()> {
        self.shared.wait_progress("the echo stream", bytes, timeout)
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
            received: s.progress.load(Ordering::SeqCst),
            send_error: Shared::lock(&s.error).clone(),
            recv_end: Shared::lock(&s.end).clone().unwrap_or_else(|| Err("the reader did not end".into())),
            max_stall: Duration::from_micros(s.max_gap_us.load(Ordering::SeqCst)),
            stall_at: s.gap_at.load(Ordering::SeqCst),
            duration: self.started.elapsed(),
        }
    }
}
