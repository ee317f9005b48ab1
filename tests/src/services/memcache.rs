//! The memcached load of the thesis: 200,000 pairs of 100-byte keys and 400-byte values, a
//! Pareto-like access pattern (20 % of the keys take 80 % of the requests), and clients that,
//! on a miss, fetch the value from a backing "database" (a fixed pause: 0 ms or 12 ms) and
//! `set` it. Text protocol over TCP.

use super::series::Recorder;
use anyhow::{bail, ensure, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Pairs in the data set.
pub const PAIRS: usize = 200_000;
/// Key length in bytes.
pub const KEY_LEN: usize = 100;
/// Value length in bytes.
pub const VALUE_LEN: usize = 400;
/// The hot fifth of the keys, which takes 80 % of the requests.
const HOT: usize = PAIRS / 5;
/// How long a client waits for one reply: longer than any pause of the service under
/// emulation, so that a connection ends only when the server (or its kernel) ends it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(300);

/// Key `i`: `key:` and the number, padded to [`KEY_LEN`].
pub fn key(i: usize) -> String {
    let mut k = format!("key:{i:08}:");
    while k.len() < KEY_LEN {
        k.push('k');
    }
    k
}

/// Value `i`: [`VALUE_LEN`] bytes derived from `i` (checked on every hit).
pub fn value(i: usize) -> Vec<u8> {
    let mut v = format!("value:{i:08}:").into_bytes();
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while v.len() < VALUE_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b'a' + (x % 26) as u8);
    }
    v
}

/// xorshift64*: the access pattern's random numbers (no dependency, reproducible per seed).
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (non-zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A key index: with probability 0.8 one of the hot fifth, else one of the rest.
    pub fn pareto_key(&mut self) -> usize {
        let r = self.next_u64();
        if r % 10 < 8 {
            (self.next_u64() % HOT as u64) as usize
        } else {
            HOT + (self.next_u64() % (PAIRS - HOT) as u64) as usize
        }
    }
}

/// One connection to memcached.
#[derive(Debug)]
pub struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    /// Connects to `addr` (from the calling thread's namespace).
    pub fn connect(addr: SocketAddr) -> Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(Conn { r: BufReader::new(s.try_clone()?), w: s })
    }

    fn line(&mut self) -> Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            bail!("connection closed by the server");
        }
        Ok(l.trim_end().to_string())
    }

    /// `get key`: the value, or `None` on a miss.
    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        self.w.write_all(format!("get {key}\r\n").as_bytes())?;
        let l = self.line()?;
        if l == "END" {
            return Ok(None);
        }
        let n: usize = match l.strip_prefix("VALUE ").and_then(|r| r.split(' ').nth(2)) {
            Some(n) => n.parse().with_context(|| format!("bad VALUE line {l:?}"))?,
            None => bail!("unexpected reply to get: {l:?}"),
        };
        let mut data = vec![0; n + 2];
        self.r.read_exact(&mut data)?;
        data.truncate(n);
        let end = self.line()?;
        ensure!(end == "END", "no END after the value: {end:?}");
        Ok(Some(data))
    }

    /// `set key 0 0 len` with `value`; fails unless `STORED`.
    pub fn set(&mut self, key: &str, value: &[u8]) -> Result<()> {
        let mut req = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        self.w.write_all(&req)?;
        let l = self.line()?;
        ensure!(l == "STORED", "set answered {l:?}");
        Ok(())
    }

    /// Stores the whole data set, pipelined with `noreply` in batches, then checks a sample.
    pub fn fill(&mut self) -> Result<()> {
        for batch in (0..PAIRS).collect::<Vec<_>>().chunks(500) {
            let mut req = Vec::with_capacity(batch.len() * (KEY_LEN + VALUE_LEN + 40));
            for &i in batch {
                req.extend_from_slice(format!("set {} 0 0 {VALUE_LEN} noreply\r\n", key(i)).as_bytes());
                req.extend_from_slice(&value(i));
                req.extend_from_slice(b"\r\n");
            }
            self.w.write_all(&req)?;
        }
        // Answered only after every set before it.
        self.w.write_all(b"version\r\n")?;
        let v = self.line()?;
        ensure!(v.starts_with("VERSION"), "version answered {v:?}");
        for i in (0..PAIRS).step_by(PAIRS / 100) {
            ensure!(self.get(&key(i))?.as_deref() == Some(&value(i)[..]), "key {i} not stored by the fill");
        }
        Ok(())
    }

    /// `stats` as (name, value) pairs.
    pub fn stats(&mut self) -> Result<Vec<(String, String)>> {
        self.w.write_all(b"stats\r\n")?;
        let mut out = Vec::new();
        loop {
            let l = self.line()?;
            if l == "END" {
                return Ok(out);
            }
            let mut w = l.split(' ').skip(1);
            if let (Some(k), Some(v)) = (w.next(), w.next()) {
                out.push((k.to_string(), v.to_string()));
            }
        }
    }
}

/// One client thread until `stop`: Pareto-distributed `get`s; on a miss `penalty`, then `set`.
/// A broken connection is recorded and made again (every 200 ms while the server is away).
pub fn client(addr: SocketAddr, penalty: Duration, seed: u64, rec: Arc<Recorder>, stop: Arc<AtomicBool>) {
    let mut rng = Rng::new(seed);
    while !stop.load(Ordering::Relaxed) {
        let mut c = match Conn::connect(addr) {
            Ok(c) => c,
            Err(_) => {
                rec.connect_failed();
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let i = rng.pareto_key();
            let k = key(i);
            let r = c.get(&k).and_then(|got| match got {
                Some(v) => {
                    if v != value(i) {
                        rec.bad(format!("key {i}: wrong value"));
                    }
                    Ok(true)
                }
                None => {
                    if !penalty.is_zero() {
                        std::thread::sleep(penalty);
                    }
                    c.set(&k, &value(i)).map(|()| false)
                }
            });
            match r {
                Ok(hit) => rec.ok(Some(hit)),
                Err(e) => {
                    rec.dropped(format!("{e:#}"));
                    break;
                }
            }
        }
    }
}
