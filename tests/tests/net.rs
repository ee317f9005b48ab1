//! Network lock on the host: a client outside the dumped tree streams counted bytes through an
//! echo server (`tcp_echo`) while the server is dumped and, three seconds later, restored; or
//! dumped with `--leave-running`. Every byte must come back exactly once, in order, with no
//! reset. Each test runs in a network namespace of its own (loopback inside it), so nothing
//! of the host's network is touched and parallel runs cannot meet.
//! `cargo test -p seamless-tests --test net -- --test-threads=1 --nocapture` (needs root).

use anyhow::{ensure, Context, Result};
use seamless_tests::host::Harness;
use seamless_tests::netns::Netns;
use seamless_tests::stream::{connect_retrying, in_netns, Stream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn harness() -> Result<Harness> {
    Harness::new(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host"))
}

const PORT: u16 = 7411;
/// 4 KiB every 2 ms: about 2 MB/s each way, well inside what loopback takes under load.
const CHUNK: usize = 4096;
const INTERVAL: Duration = Duration::from_millis(2);

/// Streams through `tcp_echo` while it is dumped (and restored after `pause`, unless
/// `leave_running`); returns the stream's report after checking it.
fn stream_through_dump(tag: &str, v6: bool, leave_running: bool, pause: Duration) -> Result<()> {
    let ns = Netns::new(tag)?;
    let h = harness()?.in_netns(ns.name());
    let args: Vec<&str> = if v6 { vec!["7411", "v6"] } else { vec!["7411"] };
    let mut server = h.start("tcp_echo", &args)?;
    let addr: std::net::SocketAddr =
        if v6 { format!("[::1]:{PORT}").parse()? } else { format!("127.0.0.1:{PORT}").parse()? };
    let sock = in_netns(ns.name(), move || connect_retrying(addr, Duration::from_secs(60)))?;
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
    in_netns(ns.name(), || {
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
    let h = harness()?.in_netns(ns.name());
    let mut server = h.start("tcp_echo", &["7411", "v4", "768"])?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{PORT}").parse()?;
    let sock = in_netns(ns.name(), move || connect_retrying(addr, Duration::from_secs(120)))?;
    server.wait_ready(Duration::from_secs(120))?;
    let pids = server.snapshot_tree();
    let stream = Stream::start(sock, CHUNK, INTERVAL)?;
    stream.wait_echoed(256 << 10, Duration::from_secs(60))?;
    let images = h.images_for(&server);
    let stderr = server.dir.join("dump-killed.stderr");
    let mut dump = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
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

/// `tcp_service` with 200 idle keep-alive connections, an upload and a download, all from
/// clients outside the tree, through a dump, `pause` without the service and a restore (or a
/// `--leave-running` dump): every byte verified at the other end, no reset, the same 202
/// connections (the service counts what it accepted), and no reset counted by the clients'
/// kernel.
fn service_through_dump(tag: &str, leave_running: bool, pause: Duration) -> Result<()> {
    use seamless_tests::flows::{check_download, Clients};
    const IDLE: usize = 200;
    let ns = Netns::new(tag)?;
    let h = harness()?.in_netns(ns.name());
    let expected = (IDLE + 2).to_string();
    let mut server = h.start("tcp_service", &["7412", &expected])?;
    server.wait_ready(Duration::from_secs(60))?;
    let pids = server.snapshot_tree();
    let clients = Clients::open(ns.name(), "127.0.0.1:7412".parse()?, IDLE)?;
    let images = h.images_for(&server);
    let dump = h.dump(&server, &images, leave_running)?;
    ensure!(dump.status.success(), "dump of the service failed: {}", dump.failure());
    if leave_running {
        server.expect_running_untraced(&pids)?;
    } else {
        server.expect_gone(&pids, Duration::from_secs(20))?;
        std::thread::sleep(pause);
        let r = h.restore(&server, &images, &[])?;
        ensure!(r.status.success(), "restore of the service failed: {}", r.failure());
    }
    let stalls = clients.after(Duration::from_secs(120))?;
    let counters = ns.tcp_counters()?;
    let (up, down) = clients.finish()?;
    eprintln!("{tag}: dump {:.0} ms; {stalls}\n  upload: {up}\n  download: {down}", dump.elapsed.as_secs_f64() * 1e3);
    server.terminate()?;
    server.wait_verdict(Duration::from_secs(60))?;
    check_download(&down, &std::fs::read_to_string(server.dir.join("workload.stderr"))?)?;
    // Both ends live in this namespace: no reset was sent by either. (EstabResets would count
    // the killed originals, closed silently in repair mode, too.)
    let rsts = seamless_tests::netns::counter(&counters, "OutRsts")?;
    ensure!(rsts == 0, "OutRsts = {rsts} in the namespace: a connection was reset");
    eprintln!("{tag}: retransmitted segments {}", seamless_tests::netns::counter(&counters, "RetransSegs")?);
    let _ = std::fs::remove_dir_all(&images);
    Ok(())
}

/// Dump (the service is killed), 3 s without it, restore: 200 idle connections and two
/// streams go on, 0 bytes lost, no reset, no reconnect.
#[test]
fn service_with_many_connections_survives_dump_pause_restore() -> Result<()> {
    service_through_dump("svc", false, Duration::from_secs(3))
}

/// The same through a `--leave-running` dump.
#[test]
fn service_with_many_connections_survives_leave_running_dump() -> Result<()> {
    service_through_dump("svcl", true, Duration::ZERO)
}

/// A lock for a service with thousands of connections: 3000 connections make one transaction of
/// 6000 rules (each asking for an acknowledgement, all queued before the first is read), which
/// must install and lift as a whole.
#[test]
fn lock_with_thousands_of_connections_installs_and_lifts() -> Result<()> {
    use seamless_image::records::{Addr, LockedConn, NetLockRecord};
    let ns = Netns::new("lockmany")?;
    in_netns(ns.name(), || {
        let conns = (0..3000u16)
            .map(|k| LockedConn {
                local: Addr::V4 { ip: [127, 0, 0, 1], port: 80 },
                peer: Addr::V4 { ip: [127, 1, (k >> 8) as u8, k as u8], port: 10000 + k },
            })
            .collect();
        let lock = NetLockRecord { table: seamless_restore::netlock::table_name(std::process::id()), conns };
        seamless_restore::netlock::install(&lock).context("installing a lock of 6000 rules")?;
        ensure!(seamless_restore::netlock::lift(&lock.table)?, "the lock table was not there to lift");
        Ok(())
    })
}

/// The lock holds new connections to a listener: a connect during the lock times out (its SYN
/// is dropped, nothing answers with a reset) while an established connection to the same
/// listener still flows; after the lift the same connect attempt, retransmitting its SYN,
/// completes. With the unspecified address the port is held on every local address.
#[test]
fn lock_holds_new_connections_to_a_listener() -> Result<()> {
    use seamless_image::records::{Addr, NetLockRecord};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let ns = Netns::new("lockhold")?;
    in_netns(ns.name(), || {
        for wildcard in [false, true] {
            let l = TcpListener::bind(if wildcard { "0.0.0.0:0" } else { "127.0.0.1:0" })?;
            let port = l.local_addr()?.port();
            let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
            let mut old = TcpStream::connect(to)?;
            let (mut old_srv, _) = l.accept()?;
            let ip = if wildcard { [0; 4] } else { [127, 0, 0, 1] };
            let lock =
                NetLockRecord { table: seamless_restore::netlock::table_name(std::process::id()), conns: Vec::new() };
            seamless_restore::netlock::install_with(&lock, &[Addr::V4 { ip, port }])?;
            let e = TcpStream::connect_timeout(&to, Duration::from_millis(1500))
                .err()
                .context("a new connection got through the held listener")?;
            ensure!(e.kind() == std::io::ErrorKind::TimedOut, "the held connect failed with {e}, not a timeout");
            old.write_all(b"ping")?;
            let mut buf = [0u8; 4];
            old_srv.set_read_timeout(Some(Duration::from_secs(10)))?;
            old_srv.read_exact(&mut buf)?;
            ensure!(&buf == b"ping", "the established connection carried {buf:?}");
            // A connect that starts held and completes once the lock is lifted.
            let waiting = std::thread::spawn(move || TcpStream::connect_timeout(&to, Duration::from_secs(30)));
            std::thread::sleep(Duration::from_millis(500));
            ensure!(seamless_restore::netlock::lift(&lock.table)?, "the lock table was not there to lift");
            let c = waiting.join().map_err(|_| anyhow::anyhow!("connect thread panicked"))?;
            c.context("the held connect after the lift")?;
            l.set_nonblocking(false)?;
            l.accept().context("accepting the held connection")?;
        }
        Ok(())
    })
}

/// Connections waiting in a listener's accept queue when the dump starts (the service accepts
/// only every 300 ms) are accepted before the freeze, and connections opened while the
/// service is dumped, absent for 3 s and restored wait instead of being refused: every one
/// connects, is served and closes cleanly, and the service accepted exactly those.
#[test]
fn new_and_waiting_connections_survive_dump_pause_restore() -> Result<()> {
    let ns = Netns::new("svcnew")?;
    let h = harness()?.in_netns(ns.name());
    let mut server = h.start("tcp_service", &["7413", "0", "4096", "4", "300"])?;
    server.wait_ready(Duration::from_secs(60))?;
    let pids = server.snapshot_tree();
    let addr: std::net::SocketAddr = "127.0.0.1:7413".parse()?;
    // Five connections the service has not accepted yet when the dump starts.
    let waiting = in_netns(ns.name(), move || {
        (0..5)
            .map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(anyhow::Error::from))
            .collect::<Result<Vec<_>>>()
    })?;
    // New connections all along the dump, the pause and the restore: a new client every 50 ms.
    let storm = seamless_tests::flows::Storm::start(ns.name(), addr, Duration::from_millis(50));
    let images = h.images_for(&server);
    let dump = h.dump(&server, &images, false)?;
    ensure!(dump.status.success(), "dump of the service failed: {}", dump.failure());
    server.expect_gone(&pids, Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_secs(3));
    let r = h.restore(&server, &images, &[])?;
    ensure!(r.status.success(), "restore of the service failed: {}", r.failure());
    std::thread::sleep(Duration::from_secs(1));
    let (pools, slowest) = storm.finish()?;
    ensure!(pools.len() > 10, "only {} connections were made during the dump", pools.len());
    // The waiting ones: served now (they were accepted before the freeze, restored with it).
    let waiting = {
        use std::io::{Read, Write};
        for (k, mut s) in waiting.iter().enumerate() {
            s.write_all(b"Ip").with_context(|| format!("waiting connection {k}"))?;
            let mut b = [0u8; 1];
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.read_exact(&mut b).with_context(|| format!("waiting connection {k}: echo"))?;
            ensure!(&b == b"p", "waiting connection {k} echoed {b:?}");
        }
        waiting
    };
    let made = pools.len() + waiting.len();
    for p in pools {
        p.ping_all()?;
        p.close()?;
    }
    for s in &waiting {
        s.shutdown(std::net::Shutdown::Both)?;
    }
    drop(waiting);
    eprintln!(
        "svcnew: {made} connections (5 waiting at the dump), slowest connect {:.3} s; dump {:.0} ms, restore {:.0} ms",
        slowest.as_secs_f64(),
        dump.elapsed.as_secs_f64() * 1e3,
        r.elapsed.as_secs_f64() * 1e3
    );
    ensure!(slowest > Duration::from_secs(2), "no connect waited through the pause ({slowest:?}): was anything held?");
    server.terminate()?;
    server.wait_verdict(Duration::from_secs(60))?;
    let log = std::fs::read_to_string(server.dir.join("workload.stderr"))?;
    ensure!(log.contains(&format!("{made} connections accepted")), "the service did not accept exactly {made}:\n{log}");
    let _ = std::fs::remove_dir_all(&images);
    Ok(())
}
