//! Network lock on the host: a client outside the dumped tree streams counted bytes through an
//! echo server (`tcp_echo`) while the server is dumped and, three seconds later, restored; or
//! dumped with `--leave-running`. Every byte must come back exactly once, in order, with no
//! reset. Each test runs in a network namespace of its own (loopback inside it), so nothing
//! of the host's network is touched and parallel runs cannot meet.
//! `cargo test -p seamless-tests --test net -- --test-threads=1 --nocapture` (needs root).

use anyhow::{ensure, Context, Result};
use seamless_tests::host::Harness;
use seamless_tests::stream::{connect_retrying, in_netns, Stream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn harness() -> Result<Harness> {
    Harness::new(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host"))
}

/// A network namespace made for one test (loopback up), deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Result<Netns> {
        let ns = Netns(format!("seamless-{tag}-{}", std::process::id()));
        let _ = Command::new("ip").args(["netns", "delete", &ns.0]).output();
        ensure!(Command::new("ip").args(["netns", "add", &ns.0]).status()?.success(), "ip netns add {}", ns.0);
        let up = Command::new("ip").args(["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"]).status()?;
        ensure!(up.success(), "ip link set lo up in {}", ns.0);
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

const PORT: u16 = 7411;
/// 4 KiB every 2 ms: about 2 MB/s each way, well inside what loopback takes under load.
const CHUNK: usize = 4096;
const INTERVAL: Duration = Duration::from_millis(2);

/// Streams through `tcp_echo` while it is dumped (and restored after `pause`, unless
/// `leave_running`); returns the stream's report after checking it.
fn stream_through_dump(tag: &str, v6: bool, leave_running: bool, pause: Duration) -> Result<()> {
    let ns = Netns::new(tag)?;
    let h = harness()?.in_netns(&ns.0);
    let args: Vec<&str> = if v6 { vec!["7411", "v6"] } else { vec!["7411"] };
    let mut server = h.start("tcp_echo", &args)?;
    let addr: std::net::SocketAddr =
        if v6 { format!("[::1]:{PORT}").parse()? } else { format!("127.0.0.1:{PORT}").parse()? };
    let sock = in_netns(&ns.0, move || connect_retrying(addr, Duration::from_secs(60)))?;
    server.wait_ready(Duration::from_secs(60))?;
    let pids = server.snapshot_tree();
    let stream = Stream::start(sock, CHUNK, INTERVAL)?;
    stream.wait_echoed(256 << 10, Duration::from_secs(60)).context("before the dump")?;
    let images = h.images_for(&server);
    let dump = h.dump(&server, &images, leave_running)?;
    ensure!(dump.status.success(), "dump of the echo server failed: {}", dump.failure());
    let restore = if leave_running {
        server.expect_running_untraced(&pids)?;
        None
    } else {
        server.expect_gone(&pids, Duration::from_secs(20))?;
        std::thread::sleep(pause);
        let r = h.restore(&server, &images, &[])?;
        ensure!(r.status.success(), "restore of the echo server failed: {}", r.failure());
        Some(r)
    };
    // The stream must flow again after the dump (and restore).
    let flowed = stream.wait_echoed(512 << 10, Duration::from_secs(120));
    let report = stream.finish();
    eprintln!(
        "{tag}: dump {:.0} ms{}; stream: {report}",
        dump.elapsed.as_secs_f64() * 1e3,
        restore.as_ref().map(|r| format!(", restore {:.0} ms", r.elapsed.as_secs_f64() * 1e3)).unwrap_or_default()
    );
    report.check()?;
    flowed.context("after the dump")?;
    server.terminate()?;
    server.wait_verdict(Duration::from_secs(60))?;
    let _ = std::fs::remove_dir_all(&images);
    Ok(())
}

/// Dump (the server is killed), 3 s with no server at all, restore: 0 bytes lost, no reset.
#[test]
fn stream_survives_dump_pause_restore_v4() -> Result<()> {
    stream_through_dump("lock4", false, false, Duration::from_secs(3))
}

/// The same over IPv6.
#[test]
fn stream_survives_dump_pause_restore_v6() -> Result<()> {
    stream_through_dump("lock6", true, false, Duration::from_secs(3))
}

/// `--leave-running`: the lock is lifted after the dump and the stream goes on.
#[test]
fn stream_survives_leave_running_dump() -> Result<()> {
    stream_through_dump("lockl", false, true, Duration::ZERO)
}

/// The lock itself on the running kernel: of two connections to one listener, the locked one
/// carries nothing in either direction while the other flows; after the lift the locked one
/// delivers what was held back (retransmitted), and installing twice or lifting twice is
/// harmless.
#[test]
fn lock_holds_exactly_the_locked_connection() -> Result<()> {
    use seamless_image::records::{Addr, LockedConn, NetLockRecord};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let ns = Netns::new("lockunit")?;
    in_netns(&ns.0, || {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let (a, b) = (TcpStream::connect(l.local_addr()?)?, TcpStream::connect(l.local_addr()?)?);
        let (mut a_srv, mut b_srv) = (l.accept()?.0, l.accept()?.0);
        let v4 = |s: std::net::SocketAddr| match s {
            std::net::SocketAddr::V4(v) => Addr::V4 { ip: v.ip().octets(), port: v.port() },
            std::net::SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
        };
        let lock = NetLockRecord {
            table: seamless_restore::netlock::table_name(std::process::id()),
            conns: vec![LockedConn { local: v4(a.local_addr()?), peer: v4(a.peer_addr()?) }],
        };
        seamless_restore::netlock::install(&lock)?;
        seamless_restore::netlock::install(&lock).context("installing the same lock again")?;
        let (mut a, mut b) = (a, b);
        a.write_all(b"held")?;
        b.write_all(b"free")?;
        a_srv.write_all(b"back")?;
        let mut buf = [0u8; 4];
        b_srv.set_read_timeout(Some(Duration::from_secs(30)))?;
        b_srv.read_exact(&mut buf)?;
        ensure!(&buf == b"free", "the unlocked connection carried {buf:?}");
        a_srv.set_read_timeout(Some(Duration::from_millis(1500)))?;
        a.set_read_timeout(Some(Duration::from_millis(100)))?;
        ensure!(a_srv.read(&mut buf).is_err(), "a segment of the locked connection got through to the server");
        ensure!(a.read(&mut buf).is_err(), "a segment of the locked connection got through to the client");
        ensure!(seamless_restore::netlock::lift(&lock.table)?, "the lock table was not there to lift");
        ensure!(!seamless_restore::netlock::lift(&lock.table)?, "lifting twice found a table");
        a_srv.set_read_timeout(Some(Duration::from_secs(30)))?;
        a_srv.read_exact(&mut buf)?;
        ensure!(&buf == b"held", "after the lift the server read {buf:?}");
        a.set_read_timeout(Some(Duration::from_secs(30)))?;
        a.read_exact(&mut buf)?;
        ensure!(&buf == b"back", "after the lift the client read {buf:?}");
        Ok(())
    })
}

/// Pids of live `seamless` processes whose parent is `parent`.
fn seamless_children(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            comm.trim() == "seamless"
                && seamless_tests::host::proc_stat(p).is_some_and(|(state, ppid, _)| ppid == parent && state != 'Z')
        })
        .collect()
}

/// SIGKILL of the dump's worker while it copies memory, with the lock on and the connection in
/// repair mode: the supervisor takes the socket out of repair mode and lifts the lock, so the
/// server, released by the kernel, goes on echoing the same stream, nothing lost.
#[test]
fn killed_worker_leaves_no_lock_and_no_repair_mode() -> Result<()> {
    use rustix::process::{kill_process, Pid, Signal};
    use std::process::Stdio;
    use std::time::Instant;
    let ns = Netns::new("lockkill")?;
    let h = harness()?.in_netns(&ns.0);
    let mut server = h.start("tcp_echo", &["7411", "v4", "768"])?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{PORT}").parse()?;
    let sock = in_netns(&ns.0, move || connect_retrying(addr, Duration::from_secs(120)))?;
    server.wait_ready(Duration::from_secs(120))?;
    let pids = server.snapshot_tree();
    let stream = Stream::start(sock, CHUNK, INTERVAL)?;
    stream.wait_echoed(256 << 10, Duration::from_secs(60))?;
    let images = h.images_for(&server);
    let stderr = server.dir.join("dump-killed.stderr");
    let mut dump = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.0))
        .arg(h.seamless()?)
        .args(["dump", "--tree", &server.pid.to_string(), "--images"])
        .arg(&images)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr)?)
        .spawn()?;
    let started = dump.id() as i32;
    // The lock is on and the socket in repair mode before the first page is written.
    let img = images.join("region.img");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(&img).map(|m| m.len()).unwrap_or(0) < 64 << 20 {
        ensure!(Instant::now() < deadline, "the dump never reached the memory copy");
        ensure!(dump.try_wait()?.is_none(), "the dump ended before the memory copy");
        std::thread::sleep(Duration::from_millis(5));
    }
    let workers = seamless_children(started);
    ensure!(!workers.is_empty(), "no worker process under the dump (pid {started})");
    for w in workers {
        let _ = kill_process(Pid::from_raw(w).context("pid")?, Signal::KILL);
    }
    let status = dump.wait()?;
    let said = seamless_tests::host::tail(&stderr, 15);
    eprintln!("dump after SIGKILL of its worker: {status}; it said:\n{said}");
    ensure!(!status.success(), "the dump succeeded although its worker was killed");
    ensure!(said.contains("lifted the network lock"), "the supervisor did not say it lifted the lock:\n{said}");
    server.expect_running_untraced(&pids)?;
    let flowed = stream.wait_echoed(512 << 10, Duration::from_secs(60));
    let report = stream.finish();
    eprintln!("lockkill: stream: {report}");
    report.check()?;
    flowed.context("after the worker was killed")?;
    server.terminate()?;
    server.wait_verdict(Duration::from_secs(60))?;
    let _ = std::fs::remove_dir_all(&images);
    Ok(())
}
