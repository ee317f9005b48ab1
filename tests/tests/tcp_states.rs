//! TCP connections in the close states to peers outside the dumped tree (the test itself, in a
//! network namespace of its own): `tcp_closer` holds one connection each in CLOSE_WAIT,
//! FIN_WAIT2, FIN_WAIT1, LAST_ACK and CLOSING with bytes queued, its FINs in the last three
//! sent and never acknowledged (the test drops what the service sends those peers until after
//! the restore). Dumped, 3 s without the service and restored, or dumped with
//! `--leave-running`: every socket is in the same state with the same queues (`ss`), the held
//! FINs are retransmitted by the restored kernel socket's own timer, each peer reads exactly its
//! bytes and one EOF, the service reads the peers' last bytes and EOF, and no reset is sent.
//! `cargo test -p seamless-tests --test tcp_states -- --test-threads=1 --nocapture` (needs root).

use anyhow::{bail, ensure, Context, Result};
use rustix::process::Signal;
use seamless_image::records::{Addr, LockedConn};
use seamless_tests::host::Harness;
use seamless_tests::netns::Netns;
use seamless_tests::stream::in_netns;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn harness() -> Result<Harness> {
    Harness::new(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host"))
}

const PORT: u16 = 7431;

/// Byte `i` of a stream with `seed`, as `tcp_closer.c` writes and checks it.
fn pat(seed: u8, i: usize) -> u8 {
    seed.wrapping_add((i as u8).wrapping_mul(13)).wrapping_add((i >> 8) as u8)
}

fn bytes(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| pat(seed, i)).collect()
}

/// Reads until EOF (at most `timeout`), failing on a reset.
fn read_to_eof(s: &mut TcpStream, what: &str, timeout: Duration) -> Result<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                if t0.elapsed() > timeout {
                    bail!("{what}: no EOF within {timeout:?} ({} bytes read)", out.len());
                }
            }
            Err(e) => return Err(e).with_context(|| format!("{what}: read after {} bytes", out.len())),
        }
    }
}

/// The service's sockets as `ss` shows them: peer port -> (state, Recv-Q, Send-Q).
fn server_sockets(ns: &Netns) -> Result<BTreeMap<u16, (String, u64, u64)>> {
    let out = ns.output("ss", &["-tanH"])?;
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || !f[3].ends_with(&format!(":{PORT}")) {
            continue;
        }
        let port: u16 = f[4].rsplit(':').next().unwrap_or("").parse().context("peer port in ss output")?;
        m.insert(port, (f[0].to_string(), f[1].parse()?, f[2].parse()?));
    }
    Ok(m)
}

fn v4(s: SocketAddr) -> Addr {
    match s {
        SocketAddr::V4(v) => Addr::V4 { ip: v.ip().octets(), port: v.port() },
        SocketAddr::V6(_) => Addr::None,
    }
}

/// Drops everything the service sends on `conns` (the peer's side first) when it arrives, so
/// the service's kernel counts it as sent: a table of its own with only the lock's input rules.
fn hold(ns: &Netns, table: &str, conns: Vec<LockedConn>) -> Result<()> {
    let table = table.to_string();
    in_netns(ns.name(), move || {
        let mut chains = seamless_restore::netlock::chains(&conns);
        chains.truncate(1);
        seamless_sys::nft::replace_table(seamless_sys::nft::NFPROTO_INET, &table, &chains)
            .context("installing the hold table")
    })
}

fn lift(ns: &Netns, table: &str) -> Result<()> {
    let table = table.to_string();
    in_netns(ns.name(), move || {
        seamless_sys::nft::delete_table(seamless_sys::nft::NFPROTO_INET, &table).context("lifting the hold table")?;
        Ok(())
    })
}

fn close_states_through_dump(tag: &str, leave_running: bool) -> Result<()> {
    let ns = Netns::new(tag)?;
    let h = harness()?.in_netns(ns.name());
    let mut server = h.start("tcp_closer", &[&PORT.to_string()])?;
    let addr: SocketAddr = format!("127.0.0.1:{PORT}").parse()?;
    let mut peers: Vec<TcpStream> = in_netns(ns.name(), move || {
        let mut v = Vec::new();
        for i in 0..5u8 {
            let t0 = Instant::now();
            let mut s = loop {
                match TcpStream::connect(addr) {
                    Ok(s) => break s,
                    Err(_) if t0.elapsed() < Duration::from_secs(60) => std::thread::sleep(Duration::from_millis(50)),
                    Err(e) => return Err(e).context("connecting to tcp_closer"),
                }
            };
            s.write_all(&[i])?;
            v.push(s);
        }
        Ok(v)
    })?;
    // 0 and 3: the peer's bytes and FIN first.
    peers[0].write_all(&bytes(0x00, 3000))?;
    peers[0].shutdown(Shutdown::Write)?;
    peers[3].write_all(&bytes(0x77, 1000))?;
    peers[3].shutdown(Shutdown::Write)?;
    std::thread::sleep(Duration::from_millis(300));
    let table = format!("tcphold-{}", std::process::id());
    let held: Vec<LockedConn> = peers[2..]
        .iter()
        .map(|p| Ok(LockedConn { local: v4(p.local_addr()?), peer: v4(p.peer_addr()?) }))
        .collect::<Result<_>>()?;
    hold(&ns, &table, held)?;
    let result = (|| -> Result<i64> {
        std::fs::write(server.outfile.with_extension("go"), "go\n")?;
        let shut4 = server.outfile.with_extension("shut4");
        let t0 = Instant::now();
        while !shut4.exists() {
            ensure!(t0.elapsed() < Duration::from_secs(60), "tcp_closer did not shut down connection 4");
            std::thread::sleep(Duration::from_millis(10));
        }
        peers[4].shutdown(Shutdown::Write)?;
        server.wait_ready(Duration::from_secs(60))?;
        let before = server_sockets(&ns)?;
        let ports: Vec<u16> = peers.iter().map(|p| p.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?;
        let want = ["CLOSE-WAIT", "FIN-WAIT-2", "FIN-WAIT-1", "LAST-ACK", "CLOSING"];
        for (port, state) in ports.iter().zip(want) {
            let got = before.get(port).map(|s| s.0.as_str());
            ensure!(got == Some(state), "before the dump the service's socket to port {port} is {got:?}, not {state}");
        }
        // Resets from here on count (connecting before the service listened made some).
        let rsts = seamless_tests::netns::counter(&ns.tcp_counters()?, "OutRsts")?;
        let pids = server.snapshot_tree();
        let images = h.images_for(&server);
        let dump = h.dump(&server, &images, leave_running)?;
        ensure!(dump.status.success(), "dump of tcp_closer failed: {}", dump.failure());
        if leave_running {
            server.expect_running_untraced(&pids)?;
        } else {
            server.expect_gone(&pids, Duration::from_secs(20))?;
            std::thread::sleep(Duration::from_secs(3));
            let r = h.restore(&server, &images, &[])?;
            ensure!(r.status.success(), "restore of tcp_closer failed: {}", r.failure());
        }
        let after = server_sockets(&ns)?;
        ensure!(after == before, "the service's sockets changed:\n  before {before:?}\n  after  {after:?}");
        eprintln!("{tag}: dump {:.0} ms; sockets (state, Recv-Q, Send-Q) {after:?}", dump.elapsed.as_secs_f64() * 1e3);
        let _ = std::fs::remove_dir_all(&images);
        Ok(rsts)
    })();
    lift(&ns, &table)?;
    let rsts_before = result?;
    // The held bytes and FINs come with the restored sockets' retransmissions.
    let t = Duration::from_secs(30);
    let got = read_to_eof(&mut peers[1], "peer 1 (FIN_WAIT2)", t)?;
    ensure!(got == bytes(0x11, 2000), "peer 1 read {} bytes, not the 2000 written", got.len());
    let got = read_to_eof(&mut peers[2], "peer 2 (FIN_WAIT1)", t)?;
    ensure!(got == bytes(0x22, 2000), "peer 2 read {} bytes, not the 2000 written", got.len());
    let got = read_to_eof(&mut peers[3], "peer 3 (LAST_ACK)", t)?;
    ensure!(got == bytes(0x33, 1500), "peer 3 read {} bytes, not the 1500 written", got.len());
    let got = read_to_eof(&mut peers[4], "peer 4 (CLOSING)", t)?;
    ensure!(got.is_empty(), "peer 4 read {} bytes before EOF", got.len());
    for (i, seed) in [(1usize, 0x55u8), (2, 0x66)] {
        peers[i].write_all(&bytes(seed, 500))?;
        peers[i].shutdown(Shutdown::Write)?;
    }
    server.terminate()?;
    let got = read_to_eof(&mut peers[0], "peer 0 (CLOSE_WAIT)", t)?;
    ensure!(got == bytes(0x44, 1000), "peer 0 read {} bytes, not the 1000 answered", got.len());
    server.wait_verdict(Duration::from_secs(60))?;
    let counters = ns.tcp_counters()?;
    let rsts = seamless_tests::netns::counter(&counters, "OutRsts")? - rsts_before;
    ensure!(rsts == 0, "{rsts} resets sent in the namespace since the dump (OutRsts)");
    eprintln!("{tag}: retransmitted segments {}", seamless_tests::netns::counter(&counters, "RetransSegs")?);
    Ok(())
}

/// Dump (the service is killed), 3 s without it, restore.
#[test]
fn close_states_survive_dump_pause_restore() -> Result<()> {
    close_states_through_dump("tcpst", false)
}

/// The same through a `--leave-running` dump.
#[test]
fn close_states_survive_leave_running_dump() -> Result<()> {
    close_states_through_dump("tcpstl", true)
}

/// The loopback workload `tcp_states` (both ends in the tree) through a dump, 20 s without the
/// processes (window probes and retransmission timers back off meanwhile on nothing) and a
/// restore: every state, byte and EOF as in the plain round trip, within the verdict timeout.
#[test]
fn loopback_close_states_survive_a_long_pause() -> Result<()> {
    let ns = Netns::new("tcpstp")?;
    let h = harness()?.in_netns(ns.name());
    let mut run = h.start("tcp_states", &[])?;
    run.wait_ready(Duration::from_secs(60))?;
    let pids = run.snapshot_tree();
    let images = h.images_for(&run);
    let dump = h.dump(&run, &images, false)?;
    ensure!(dump.status.success(), "dump of tcp_states failed: {}", dump.failure());
    run.expect_gone(&pids, Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_secs(20));
    let r = h.restore(&run, &images, &[])?;
    ensure!(r.status.success(), "restore of tcp_states failed: {}", r.failure());
    let t0 = Instant::now();
    run.terminate()?;
    run.wait_verdict(Duration::from_secs(60))?;
    eprintln!("tcp_states after a 20 s pause: verdict {:.1} s after SIGTERM", t0.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&images);
    Ok(())
}

/// The loopback close states of `tcp_states` restored while the process stays stopped for
/// 40 s, as a process restored early in a long restore (a VM's many trees) is: its sockets are
/// back in the kernel, their peers (its own other ends) not read yet. When it resumes, each
/// stream must go on at once, as after a plain 40 s stop without any dump: a socket that held a
/// bigger window than its buffer while it was repaired made the sender's segments too large for
/// it, and the sender then waited on its backed-off retransmission timer (tens of seconds).
#[test]
fn loopback_close_states_go_on_after_a_late_resume() -> Result<()> {
    let ns = Netns::new("tcpstr")?;
    let h = harness()?.in_netns(ns.name());
    let mut run = h.start("tcp_states", &[])?;
    run.wait_ready(Duration::from_secs(60))?;
    // The workload's root, our child, not reaped yet.
    seamless_tests::host::signal(run.pid, Signal::STOP)?;
    let pids = run.snapshot_tree();
    let images = h.images_for(&run);
    let dump = h.dump(&run, &images, false)?;
    ensure!(dump.status.success(), "dump of tcp_states failed: {}", dump.failure());
    run.expect_gone(&pids, Duration::from_secs(20))?;
    let r = h.restore(&run, &images, &[])?;
    ensure!(r.status.success(), "restore of tcp_states failed: {}", r.failure());
    std::thread::sleep(Duration::from_secs(40));
    let t0 = Instant::now();
    seamless_tests::host::signal(run.pid, Signal::CONT)?;
    run.terminate()?;
    run.wait_verdict(Duration::from_secs(60))?;
    eprintln!("tcp_states resumed 40 s after its restore: verdict {:.1} s after SIGTERM", t0.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&images);
    Ok(())
}
