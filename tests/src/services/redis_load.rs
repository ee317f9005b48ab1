//! The redis load: clients doing `SET` and `GET` of random keys out of a loaded set, each on
//! one connection that is made again only when it breaks.

use super::memcache::{Rng, IO_TIMEOUT};
use super::series::Recorder;
use crate::redis::{Client, Reply};
use anyhow::{ensure, Result};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Keys loaded before the run (`bench:<i>`, 100-byte values).
pub const KEYS: usize = 10_000;

fn val(i: usize) -> Vec<u8> {
    let mut v = format!("v{i}:").into_bytes();
    v.resize(100, b'r');
    v
}

/// Loads [`KEYS`] keys with `MSET` batches.
pub fn fill(addr: SocketAddr) -> Result<()> {
    let mut c = Client::connect_addr(addr, Duration::from_secs(60))?;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let keys: Vec<Vec<u8>> = chunk.iter().map(|i| format!("bench:{i}").into_bytes()).collect();
        let vals: Vec<Vec<u8>> = chunk.iter().map(|&i| val(i)).collect();
        let mut args: Vec<&[u8]> = vec![b"MSET"];
        for (k, v) in keys.iter().zip(&vals) {
            args.push(k);
            args.push(v);
        }
        let r = c.cmd(&args)?;
        ensure!(r == Reply::Status("OK".into()), "MSET answered {r:?}");
    }
    Ok(())
}

/// One client thread until `stop`: alternately `GET` and `SET` of random loaded keys.
pub fn client(addr: SocketAddr, seed: u64, rec: Arc<Recorder>, stop: Arc<AtomicBool>) {
    let mut rng = Rng::new(seed);
    while !stop.load(Ordering::Relaxed) {
        let mut c = match Client::connect_addr(addr, IO_TIMEOUT) {
            Ok(c) => c,
            Err(_) => {
                rec.connect_failed();
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let i = (rng.next_u64() % KEYS as u64) as usize;
            let k = format!("bench:{i}").into_bytes();
            let r = if rng.next_u64().is_multiple_of(2) { c.cmd(&[b"GET", &k]) } else { c.cmd(&[b"SET", &k, &val(i)]) };
            match r {
                Ok(Reply::Error(e)) => {
                    rec.bad(e);
                    rec.ok(None);
                }
                Ok(_) => rec.ok(None),
                Err(e) => {
                    rec.dropped(format!("{e:#}"));
                    break;
                }
            }
        }
    }
}
