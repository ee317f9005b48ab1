//! Talking to the guest's redis from the host, through QEMU's port forward: a minimal RESP
//! client, a bulk load and check of keys, and a pinger that measures the service's blackout
//! (last answered request before an upgrade to the first one after).

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A connection to a redis server.
#[derive(Debug)]
pub struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$n` bulk string, `None` for nil.
    Bulk(Option<Vec<u8>>),
}

impl Client {
    /// Connects to 127.0.0.1:`port` with a timeout on every operation.
    pub fn connect(port: u16, timeout: Duration) -> Result<Self> {
        Self::connect_addr(std::net::SocketAddr::from(([127, 0, 0, 1], port)), timeout)
    }

    /// Connects to `addr` (from the calling thread's network namespace) with a timeout on
    /// every operation.
    pub fn connect_addr(addr: std::net::SocketAddr, timeout: Duration) -> Result<Self> {
        let s = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(Self { r: BufReader::new(s.try_clone()?), w: s })
    }

    /// Sends one command and reads its reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Result<Reply> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&req)?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> Result<Reply> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            bail!("connection closed by the server");
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1.min(line.len()));
        Ok(match kind {
            "+" => Reply::Status(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Int(rest.parse()?),
            "$" => {
                let n: i64 = rest.parse()?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut buf = vec![0u8; n as usize + 2];
                    std::io::Read::read_exact(&mut self.r, &mut buf)?;
                    buf.truncate(n as usize);
                    Reply::Bulk(Some(buf))
                }
            }
            _ => bail!("unexpected reply {line:?}"),
        })
    }
}

fn value(i: usize) -> String {
    format!("value-{i}-{}", "x".repeat(i % 97))
}

/// Stores `n` keys `key:<i>` with values derived from `i`.
pub fn load(port: u16, n: usize) -> Result<()> {
    let mut c = Client::connect(port, Duration::from_secs(10))?;
    for i in 0..n {
        let r = c.cmd(&[b"SET", format!("key:{i}").as_bytes(), value(i).as_bytes()])?;
        if r != Reply::Status("OK".into()) {
            bail!("SET key:{i} answered {r:?}");
        }
    }
    Ok(())
}

/// Checks that the `n` keys of [`load`] are all there with their values.
pub fn check(port: u16, n: usize) -> Result<()> {
    let mut c = Client::connect(port, Duration::from_secs(10))?;
    for i in 0..n {
        let r = c.cmd(&[b"GET", format!("key:{i}").as_bytes()])?;
        if r != Reply::Bulk(Some(value(i).into_bytes())) {
            bail!("GET key:{i} answered {r:?}, expected {:?}", value(i));
        }
    }
    match c.cmd(&[b"DBSIZE"])? {
        Reply::Int(k) if k as usize == n => Ok(()),
        r => bail!("DBSIZE answered {r:?}, expected {n}"),
    }
}

/// Pings the server every `period` from a thread, reconnecting as needed, and remembers when
/// answers stopped and came back.
#[derive(Debug)]
pub struct Pinger {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Instant, bool)>>>,
    connects: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pinger {
    /// Starts pinging 127.0.0.1:`port`; a ping unanswered for 500 ms drops the connection
    /// and the next one opens a new connection.
    pub fn start(port: u16, period: Duration) -> Self {
        Self::start_with_timeout(port, period, Duration::from_millis(500))
    }

    /// [`Pinger::start`] with another deadline per ping: with a long one, the pinger keeps its
    /// connection through a long freeze instead of connecting again while the server cannot
    /// accept (a connection left in the accept queue makes the dump refuse the listener).
    pub fn start_with_timeout(port: u16, period: Duration, timeout: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let connects = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, l, n) = (stop.clone(), log.clone(), connects.clone());
        let thread = std::thread::spawn(move || {
            let mut conn: Option<Client> = None;
            while !s.load(Ordering::Relaxed) {
                let ok = (|| -> Result<bool> {
                    if conn.is_none() {
                        conn = Some(Client::connect(port, timeout)?);
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    let c = conn.as_mut().context("no connection")?;
                    Ok(c.cmd(&[b"PING"])? == Reply::Status("PONG".into()))
                })()
                .unwrap_or(false);
                if !ok {
                    conn = None;
                }
                if let Ok(mut g) = l.lock() {
                    g.push((Instant::now(), ok));
                }
                std::thread::sleep(period);
            }
        });
        Self { stop, log, connects, thread: Some(thread) }
    }

    /// Whether some ping was answered yet (its connection is accepted).
    pub fn answered(&self) -> bool {
        self.log.lock().is_ok_and(|g| g.iter().any(|(_, ok)| *ok))
    }

    /// How many connections the pinger has opened so far (1 means the first one never broke).
    pub fn connections(&self) -> usize {
        self.connects.load(Ordering::Relaxed)
    }

    /// Stops and returns the longest run without an answer between two answered pings:
    /// from the last answer before it to the first answer after it.
    pub fn finish(mut self) -> Option<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let log = self.log.lock().ok()?;
        let mut last_ok: Option<Instant> = None;
        let mut worst: Option<Duration> = None;
        for &(at, ok) in log.iter() {
            if ok {
                if let Some(prev) = last_ok {
                    let gap = at - prev;
                    if worst.is_none_or(|w| gap > w) {
                        worst = Some(gap);
                    }
                }
                last_ok = Some(at);
            }
        }
        worst
    }
}
