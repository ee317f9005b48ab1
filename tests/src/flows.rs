//! Clients of the `tcp_service` workload (`tests/workloads/tcp_service.c`) that keep TCP
//! traffic flowing while the service is dumped, jumps to another kernel and is restored:
//!
//! - [`Upload`]: sends byte `i` = [`pattern`]`(i)` in paced chunks; the service checks every
//!   byte and acknowledges (count, FNV-1a 64) records, the last one after the client's EOF, which
//!   must equal what was sent.
//! - [`Download`]: the service sends the pattern, paced; the client checks every byte, then
//!   stops the service with `S` and reads to the EOF.
//! - [`IdlePool`]: many idle connections with keep-alive on, each answering a one-byte echo.
//!
//! Each client measures its stall, the longest time without progress (echoed records for an
//! upload, received bytes for a download), in windows that [`Upload::take_stall`] /
//! [`Download::take_stall`] close, so every jump gets its own number.

pub use crate::stream::pattern;
use anyhow::{bail, ensure, Context, Result};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// FNV-1a 64 offset basis (the service's starting value).
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// One FNV-1a 64 step over `bytes`.
pub fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// How long one blocked read or write may take before the client gives up (a jump under TCG
/// with a busy host, plus the peers' retransmission backoff).
pub const IO_TIMEOUT: Duration = Duration::from_secs(300);

/// Progress, errors and the stall window shared by a client's threads (also those of
/// [`crate::stream::Stream`]).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) sent: AtomicU64,
    /// Upload: bytes the service acknowledged; download and echo: bytes received and checked.
    pub(crate) progress: AtomicU64,
    pub(crate) stop: AtomicBool,
    pub(crate) error: Mutex<Option<String>>,
    /// The reading side ended (Ok: clean EOF).
    pub(crate) end: Mutex<Option<Result<(), String>>>,
    /// Longest gap between two progress events in the current window, in microseconds.
    pub(crate) window_gap_us: AtomicU64,
    /// Longest gap over the whole run.
    pub(crate) max_gap_us: AtomicU64,
    /// The progress when the longest gap ended.
    pub(crate) gap_at: AtomicU64,
}

impl Shared {
    pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gap(&self, last: &mut Option<Instant>) {
        let now = Instant::now();
        if let Some(l) = *last {
            let gap = now.duration_since(l).as_micros() as u64;
            self.window_gap_us.fetch_max(gap, Ordering::SeqCst);
            if gap > self.max_gap_us.fetch_max(gap, Ordering::SeqCst) {
                self.gap_at.store(self.progress.load(Ordering::SeqCst), Ordering::SeqCst);
            }
        }
        *last = Some(now);
    }

    pub(crate) fn fail(&self, e: String) {
        let mut g = Self::lock(&self.error);
        if g.is_none() {
            *g = Some(e);
        }
    }

    fn ended(&self) -> Option<Result<(), String>> {
        Self::lock(&self.end).clone()
    }

    pub(crate) fn wait_progress(&self, what: &str, bytes: u64, timeout: Duration) -> Result<()> {
        let want = self.progress.load(Ordering::SeqCst) + bytes;
        let t0 = Instant::now();
        while self.progress.load(Ordering::SeqCst) < want {
            if let Some(e) = Self::lock(&self.error).clone() {
                bail!("{what}: {e}");
            }
            if let Some(end) = self.ended() {
                bail!("{what} ended early: {end:?}");
            }
            ensure!(
                t0.elapsed() < timeout,
                "{what}: {} bytes of progress, not {want}, within {} s",
                self.progress.load(Ordering::SeqCst),
                timeout.as_secs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// What a finished client saw.
#[derive(Debug, Clone)]
pub struct FlowReport {
    /// Bytes the client sent (upload) or the service sent, as far as the client knows it (download: received).
    pub bytes: u64,
    /// FNV-1a 64 of those bytes.
    pub fnv: u64,
    /// The first error, if any (a reset shows up as ECONNRESET/EPIPE).
    pub error: Option<String>,
    /// The longest stall over the whole run.
    pub max_stall: Duration,
    /// How long the flow ran.
    pub duration: Duration,
}

impl std::fmt::Display for FlowReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes (fnv {:016x}) in {:.1} s, longest stall {:.3} s{}",
            self.bytes,
            self.fnv,
            self.duration.as_secs_f64(),
            self.max_stall.as_secs_f64(),
            self.error.as_ref().map(|e| format!(", error: {e}")).unwrap_or_default()
        )
    }
}

/// Sends the pattern over `wr` in `chunk`s every `interval` until `s.stop`, then shuts the
/// sending side down; `s.sent` counts each chunk before its write (the peer may answer part of
/// it before `write_all` returns). Errors go to `s.fail` prefixed with `what`. Returns the
/// FNV-1a 64 of what was written.
pub(crate) fn send_pattern(mut wr: TcpStream, chunk: usize, interval: Duration, s: &Shared, what: &str) -> u64 {
    let mut buf = vec![0u8; chunk];
    let (mut sent, mut h) = (0u64, FNV_START);
    while !s.stop.load(Ordering::SeqCst) {
        for (k, b) in buf.iter_mut().enumerate() {
            *b = pattern(sent + k as u64);
        }
        s.sent.store(sent + chunk as u64, Ordering::SeqCst);
        if let Err(e) = wr.write_all(&buf) {
            s.fail(format!("{what}: sending: {e} after {sent} bytes"));
            return h;
        }
        h = fnv(h, &buf);
        sent += chunk as u64;
        std::thread::sleep(interval);
    }
    if let Err(e) = wr.shutdown(Shutdown::Write) {
        s.fail(format!("{what}: shutdown: {e}"));
    }
    h
}

/// Reads `rd` to its EOF, checking every byte against the pattern; `s.progress` counts the
/// bytes checked, `s.gap` the stalls. Returns how the reading ended and the FNV-1a 64 of the
/// bytes read.
pub(crate) fn check_pattern(mut rd: TcpStream, s: &Shared) -> (Result<(), String>, u64) {
    let mut buf = vec![0u8; 1 << 16];
    let (mut got, mut h) = (0u64, FNV_START);
    let mut last_at = None;
    let end = loop {
        match rd.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                s.gap(&mut last_at);
                if let Some(k) = (0..n).find(|&k| buf[k] != pattern(got + k as u64)) {
                    let at = got + k as u64;
                    break Err(format!(
                        "byte {at} is 0x{:02x}, expected 0x{:02x} (lost, repeated or reordered bytes)",
                        buf[k],
                        pattern(at)
                    ));
                }
                h = fnv(h, &buf[..n]);
                got += n as u64;
                s.progress.store(got, Ordering::SeqCst);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(format!("{e} after {got} bytes")),
        }
    };
    (end, h)
}

fn prepare(sock: &TcpStream) -> Result<()> {
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    sock.set_nodelay(true)?;
    Ok(())
}

/// An upload to `tcp_service`; see the module documentation.
#[derive(Debug)]
pub struct Upload {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<u64>>,
    reader: Option<JoinHandle<Option<(u64, u64)>>>,
    started: Instant,
}

impl Upload {
    /// Starts uploading over `sock` (connected to the service): `chunk` bytes every `interval`.
    pub fn start(sock: TcpStream, chunk: usize, interval: Duration) -> Result<Upload> {
        prepare(&sock)?;
        let shared = Arc::new(Shared::default());
        let mut rd = sock.try_clone()?;
        let mut wr = sock;
        wr.write_all(b"U")?;
        let s = shared.clone();
        let writer = std::thread::spawn(move || send_pattern(wr, chunk, interval, &s, "upload"));
        let s = shared.clone();
        let reader = std::thread::spawn(move || {
            let mut last_at = None;
            let mut last = None;
            let mut rec = [0u8; 16];
            let end = loop {
                match rd.read_exact(&mut rec) {
                    Ok(()) => {
                        let count = u64::from_le_bytes(rec[..8].try_into().unwrap_or_default());
                        let h = u64::from_le_bytes(rec[8..].try_into().unwrap_or_default());
                        if last.is_some_and(|(c, _)| count < c) || count > s.sent.load(Ordering::SeqCst) {
                            break Err(format!(
                                "the service acknowledged {count} bytes after {last:?}, with {} sent",
                                s.sent.load(Ordering::SeqCst)
                            ));
                        }
                        s.gap(&mut last_at);
                        last = Some((count, h));
                        s.progress.store(count, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(format!("{e} after {} bytes acknowledged", s.progress.load(Ordering::SeqCst))),
                }
            };
            if let Err(e) = &end {
                s.fail(format!("upload: receiving: {e}"));
            }
            *Shared::lock(&s.end) = Some(end);
            last
        });
        Ok(Upload { shared, writer: Some(writer), reader: Some(reader), started: Instant::now() })
    }

    /// Waits until the service acknowledged `bytes` more than now.
    pub fn wait_progress(&self, bytes: u64, timeout: Duration) -> Result<()> {
        self.shared.wait_progress("upload", bytes, timeout)
    }

    /// The longest stall since the last call (or the start), and starts a new window.
    pub fn take_stall(&self) -> Duration {
        Duration::from_micros(self.shared.window_gap_us.swap(0, Ordering::SeqCst))
    }

    /// (bytes sent, bytes acknowledged).
    pub fn progress(&self) -> (u64, u64) {
        (self.shared.sent.load(Ordering::SeqCst), self.shared.progress.load(Ordering::SeqCst))
    }

    /// Stops sending, shuts the sending side down and checks the service's last record: every
    /// byte sent was received and verified, with the same checksum.
    pub fn finish(mut self) -> Result<FlowReport> {
        self.shared.stop.store(true, Ordering::SeqCst);
        let h = self.writer.take().map(|w| w.join().unwrap_or(0)).unwrap_or(0);
        let last = self.reader.take().and_then(|r| r.join().ok()).flatten();
        let sent = self.shared.sent.load(Ordering::SeqCst);
        let mut error = Shared::lock(&self.shared.error).clone();
        if error.is_none() {
            match last {
                Some((count, fnv)) if count == sent && fnv == h => {}
                Some((count, fnv)) => {
                    error = Some(format!(
                        "sent {sent} bytes (fnv {h:016x}), the service verified {count} (fnv {fnv:016x}): {} lost",
                        sent.saturating_sub(count)
                    ))
                }
                None => error = Some(format!("sent {sent} bytes, the service acknowledged none")),
            }
        }
        Ok(FlowReport {
            bytes: sent,
            fnv: h,
            error,
            max_stall: Duration::from_micros(self.shared.max_gap_us.load(Ordering::SeqCst)),
            duration: self.started.elapsed(),
        })
    }
}

/// A download from `tcp_service`; see the module documentation.
#[derive(Debug)]
pub struct Download {
    shared: Arc<Shared>,
    sock: TcpStream,
    reader: Option<JoinHandle<u64>>,
    started: Instant,
}

impl Download {
    /// Asks the service for the paced pattern over `sock` and checks what arrives.
    pub fn start(sock: TcpStream) -> Result<Download> {
        prepare(&sock)?;
        let shared = Arc::new(Shared::default());
        let rd = sock.try_clone()?;
        let mut wr = sock;
        wr.write_all(b"D")?;
        let s = shared.clone();
        let reader = std::thread::spawn(move || {
            let (end, h) = check_pattern(rd, &s);
            if let Err(e) = &end {
                s.fail(format!("download: {e}"));
            }
            *Shared::lock(&s.end) = Some(end);
            h
        });
        Ok(Download { shared, sock: wr, reader: Some(reader), started: Instant::now() })
    }

    /// Waits until `bytes` more than now have arrived.
    pub fn wait_progress(&self, bytes: u64, timeout: Duration) -> Result<()> {
        self.shared.wait_progress("download", bytes, timeout)
    }

    /// The longest stall since the last call (or the start), and starts a new window.
    pub fn take_stall(&self) -> Duration {
        Duration::from_micros(self.shared.window_gap_us.swap(0, Ordering::SeqCst))
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.shared.progress.load(Ordering::SeqCst)
    }

    /// Sends `S`, reads to the service's EOF and reports what arrived (compare with what the
    /// service says it sent).
    pub fn finish(mut self) -> Result<FlowReport> {
        let stop = (&self.sock).write_all(b"S");
        let h = self.reader.take().map(|r| r.join().unwrap_or(0)).unwrap_or(0);
        let _ = self.sock.shutdown(Shutdown::Both);
        let mut error = Shared::lock(&self.shared.error).clone();
        if let Err(e) = stop {
            error.get_or_insert(format!("sending S: {e}"));
        }
        Ok(FlowReport {
            bytes: self.shared.progress.load(Ordering::SeqCst),
            fnv: h,
            error,
            max_stall: Duration::from_micros(self.shared.max_gap_us.load(Ordering::SeqCst)),
            duration: self.started.elapsed(),
        })
    }
}

/// Keep-alive settings of the idle clients: the first probe after 5 s idle, then every 3 s,
/// 40 unanswered probes before the kernel gives up: 125 s, far more than a jump takes, but a
/// connection that the other side reset or forgot is found (and reported) long before the test ends.
const KEEPIDLE: Duration = Duration::from_secs(5);
const KEEPINTVL: Duration = Duration::from_secs(3);
const KEEPCNT: u32 = 40;

/// Idle connections to `tcp_service` with keep-alive on.
#[derive(Debug)]
pub struct IdlePool {
    socks: Vec<TcpStream>,
}

impl IdlePool {
    /// Opens `n` idle connections to `addr` (call it where the sockets must live, e.g. inside
    /// [`crate::stream::in_netns`]); each one is asked for one echo before this returns.
    pub fn connect(addr: std::net::SocketAddr, n: usize) -> Result<IdlePool> {
        let mut socks = Vec::with_capacity(n);
        for k in 0..n {
            // Long enough for a SYN held through a jump (retransmitted after 1, 3, 7, 15, 31, 63 s).
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(130))
                .with_context(|| format!("idle connection {k} to {addr}"))?;
            prepare(&s)?;
            rustix::net::sockopt::set_socket_keepalive(&s, true)?;
            rustix::net::sockopt::set_tcp_keepidle(&s, KEEPIDLE)?;
            rustix::net::sockopt::set_tcp_keepintvl(&s, KEEPINTVL)?;
            rustix::net::sockopt::set_tcp_keepcnt(&s, KEEPCNT)?;
            (&s).write_all(b"I")?;
            socks.push(s);
        }
        let pool = IdlePool { socks };
        pool.ping_all()?;
        Ok(pool)
    }

    /// How many connections.
    pub fn len(&self) -> usize {
        self.socks.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// Each connection sends one byte and must get it back; returns the slowest round trip.
    pub fn ping_all(&self) -> Result<Duration> {
        let mut slowest = Duration::ZERO;
        for (k, s) in self.socks.iter().enumerate() {
            let t0 = Instant::now();
            let b = b"p";
            let mut s = s;
            s.write_all(b).with_context(|| format!("idle connection {k}: sending"))?;
            let mut got = [0u8; 1];
            s.read_exact(&mut got).with_context(|| format!("idle connection {k}: reading the echo"))?;
            ensure!(&got == b, "idle connection {k} echoed {got:?}");
            slowest = slowest.max(t0.elapsed());
        }
        Ok(slowest)
    }

    /// Closes every connection with a FIN (the service must see a clean EOF on each).
    pub fn close(self) -> Result<()> {
        for (k, s) in self.socks.iter().enumerate() {
            s.shutdown(Shutdown::Write).with_context(|| format!("idle connection {k}: shutdown"))?;
        }
        for (k, mut s) in self.socks.into_iter().enumerate() {
            let mut b = [0u8; 1];
            let n = s.read(&mut b).with_context(|| format!("idle connection {k}: waiting for the service's close"))?;
            ensure!(n == 0, "idle connection {k}: data after the close");
        }
        Ok(())
    }
}

/// The service's own account of download `#n` ("download #N: sent B bytes fnv H" in its log):
/// every `(bytes, fnv)` it logged, in order.
pub fn service_downloads(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split("download #").nth(1)?;
            let bytes = rest.split("sent ").nth(1)?.split_whitespace().next()?.parse().ok()?;
            let fnv = u64::from_str_radix(rest.split("fnv ").nth(1)?.trim(), 16).ok()?;
            Some((bytes, fnv))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_values() {
        assert_eq!(fnv(FNV_START, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(FNV_START, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(FNV_START, b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(
            service_downloads("x\ntcp_service: download #3: sent 4096 bytes fnv 00000000000000ff\n"),
            vec![(4096, 255)]
        );
    }
}

/// The usual set of clients of one `tcp_service`: an upload, a download and `idle` idle
/// connections, made inside network namespace `netns`.
#[derive(Debug)]
pub struct Clients {
    /// The upload.
    pub upload: Upload,
    /// The download.
    pub download: Download,
    /// The idle connections.
    pub idle: IdlePool,
}

/// What [`Clients::after`] measured for one dump or jump.
#[derive(Debug, Clone)]
pub struct Stalls {
    /// The upload's longest stall in the window.
    pub upload: Duration,
    /// The download's longest stall in the window.
    pub download: Duration,
    /// The slowest echo of an idle connection afterwards.
    pub idle_echo: Duration,
}

impl std::fmt::Display for Stalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "upload stalled {:.3} s, download stalled {:.3} s, slowest idle echo afterwards {:.3} s",
            self.upload.as_secs_f64(),
            self.download.as_secs_f64(),
            self.idle_echo.as_secs_f64()
        )
    }
}

/// Upload pacing of [`Clients`]: 4 KiB every 4 ms, about 1 MB/s (the service's download
/// default is the same).
pub const CHUNK: usize = 4096;
/// See [`CHUNK`].
pub const INTERVAL: Duration = Duration::from_millis(4);

impl Clients {
    /// Connects the idle connections, then the upload and the download, to `addr` from inside
    /// `netns`, and waits until both streams flow.
    pub fn open(netns: &str, addr: std::net::SocketAddr, idle: usize) -> Result<Clients> {
        let (pool, up, down) = crate::stream::in_netns(netns, move || {
            let pool = IdlePool::connect(addr, idle)?;
            let up = TcpStream::connect_timeout(&addr, Duration::from_secs(30)).context("upload connection")?;
            let down = TcpStream::connect_timeout(&addr, Duration::from_secs(30)).context("download connection")?;
            Ok((pool, up, down))
        })?;
        let c = Clients { upload: Upload::start(up, CHUNK, INTERVAL)?, download: Download::start(down)?, idle: pool };
        c.upload.wait_progress(256 << 10, Duration::from_secs(120)).context("before the dump")?;
        c.download.wait_progress(256 << 10, Duration::from_secs(120)).context("before the dump")?;
        let _ = (c.upload.take_stall(), c.download.take_stall());
        Ok(c)
    }

    /// After a dump, restore or jump: waits until both streams moved on by 256 KiB, checks
    /// every idle connection with an echo, and returns the stalls of the window since the last
    /// call.
    pub fn after(&self, timeout: Duration) -> Result<Stalls> {
        self.upload.wait_progress(256 << 10, timeout).context("after the jump")?;
        self.download.wait_progress(256 << 10, timeout).context("after the jump")?;
        let idle_echo = self.idle.ping_all().context("idle connections after the jump")?;
        Ok(Stalls { upload: self.upload.take_stall(), download: self.download.take_stall(), idle_echo })
    }

    /// Ends every client: the upload's last record must match what was sent, the download
    /// must have ended cleanly, every idle connection closes cleanly. Returns (upload, download).
    pub fn finish(self) -> Result<(FlowReport, FlowReport)> {
        let up = self.upload.finish()?;
        let down = self.download.finish()?;
        let idle = self.idle.close();
        if let Some(e) = &up.error {
            bail!("upload: {e} ({up})");
        }
        if let Some(e) = &down.error {
            bail!("download: {e} ({down})");
        }
        idle?;
        Ok((up, down))
    }
}

/// Checks the download against the service's own log: it logged exactly one download, of the
/// same length and checksum as what arrived.
pub fn check_download(down: &FlowReport, service_log: &str) -> Result<()> {
    let logged = service_downloads(service_log);
    ensure!(logged.len() == 1, "the service logged {} downloads: {logged:?}\n{service_log}", logged.len());
    let (bytes, h) = logged[0];
    ensure!(
        bytes == down.bytes && h == down.fnv,
        "the service sent {bytes} bytes (fnv {h:016x}), the client received {} (fnv {:016x}): {} lost",
        down.bytes,
        down.fnv,
        bytes.saturating_sub(down.bytes)
    );
    Ok(())
}

/// What a [`Storm`] made: its connections and the slowest connect.
pub type StormResult = Result<(Vec<IdlePool>, Duration)>;

/// New clients while a service is dumped, jumps and is restored: one more idle connection
/// every `interval`, each connecting on its own thread (a held one waits for its SYN's
/// retransmission after the lock is lifted).
#[derive(Debug)]
pub struct Storm {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<StormResult>>,
}

impl Storm {
    /// Starts connecting to `addr` from inside `netns`.
    pub fn start(netns: &str, addr: std::net::SocketAddr, interval: Duration) -> Storm {
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, stop2) = (netns.to_string(), stop.clone());
        let thread = std::thread::spawn(move || -> StormResult {
            let mut clients = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                let ns = ns.clone();
                clients.push(std::thread::spawn(move || -> Result<(IdlePool, Duration)> {
                    let t0 = Instant::now();
                    let pool = crate::stream::in_netns(&ns, move || IdlePool::connect(addr, 1))?;
                    Ok((pool, t0.elapsed()))
                }));
                std::thread::sleep(interval);
            }
            let mut pools = Vec::new();
            let mut slowest = Duration::ZERO;
            for (k, c) in clients.into_iter().enumerate() {
                let (pool, took) = c
                    .join()
                    .map_err(|_| anyhow::anyhow!("connecting thread {k} panicked"))?
                    .with_context(|| format!("new client {k}"))?;
                pools.push(pool);
                slowest = slowest.max(took);
            }
            Ok((pools, slowest))
        });
        Storm { stop, thread: Some(thread) }
    }

    /// Stops making clients and waits for every one to connect (or fail): the connections and
    /// the slowest connect.
    pub fn finish(mut self) -> StormResult {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .context("finished twice")?
            .join()
            .map_err(|_| anyhow::anyhow!("the connecting thread panicked"))?
    }
}
