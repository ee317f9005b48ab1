//! Host round trips of every workload: `cargo test -p seamless-tests --test host -- --test-threads=1`
//! (needs root). Per workload: `self_test` (the workload alone, validates it), `round_trip` (dump,
//! kill, restore, check) and `leave_running` (dump with `--leave-running`, check the original).
//! `refuse_netlink::refused` checks that an unsupported socket makes the dump refuse cleanly.
//! See `tests/workloads/README.md`.

use std::path::PathBuf;

use anyhow::Result;
use seamless_tests::host::Harness;

fn harness() -> Result<Harness> {
    Harness::new(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host"))
}

macro_rules! workload_tests {
    ($($module:ident => $name:literal [$($arg:literal),*];)*) => {$(
        mod $module {
            use super::*;

            #[test]
            fn self_test() -> Result<()> {
                harness()?.self_test($name, &[$($arg),*])
            }

            #[test]
            fn round_trip() -> Result<()> {
                let rt = harness()?.round_trip($name, &[$($arg),*])?;
                eprintln!("{}: {rt:?}", $name);
                Ok(())
            }

            #[test]
            fn leave_running() -> Result<()> {
                harness()?.leave_running($name, &[$($arg),*])
            }
        }
    )*};
}

workload_tests! {
    threads_fpu => "threads_fpu" [];
    memory => "memory" [];
    big_mem => "big_mem" ["1024"];
    brk => "brk" [];
    pipes => "pipes" [];
    files => "files" [];
    signals => "signals" [];
    timers => "timers" [];
    sigev_thread => "sigev_thread" [];
    cow_fork => "cow_fork" ["64"];
    stopped => "stopped" [];
    seccomp_filter => "seccomp_filter" [];
    tree => "tree" [];
    blocking_nanosleep => "blocking" ["nanosleep"];
    blocking_read => "blocking" ["read"];
    blocking_futex => "blocking" ["futex"];
    blocking_poll => "blocking" ["poll"];
    blocking_epoll => "blocking" ["epoll"];
    blocking_accept => "blocking" ["accept"];
    vdso_glibc => "vdso_glibc" [];
    anonfds => "anonfds" [];
    creds => "creds" [];
    fanout => "fanout" ["16"];
    sysctl_ping => "sysctl_ping" [];
    tcp_loopback => "tcp_loopback" [];
    tcp_states => "tcp_states" [];
    // Carried by the tcp-close record (kind 68; refused before).
    tcp_half_closed => "refuse" ["tcp_half_closed"];
    sockopts => "sockopts" [];
    udp_queue => "udp_queue" [];
    // Carried by the unix queue records (no longer refused).
    unix_closed => "refuse" ["unix_closed"];
    unix_rights => "refuse" ["unix_rights"];
    // Carried by the settings record (restored exactly, no longer refused).
    settings_oom => "refuse" ["oom"];
    settings_thp => "refuse" ["thp"];
    // Carried by the file-lock and thread-scheduling records (no longer refused).
    file_locks => "file_locks" [];
    sched_attrs => "sched_attrs" [];
    // Restores that used to fail or come back different (issue 12).
    access_modes => "access_modes" [];
    cgroup_member => "cgroup_member" [];
    locks_flock => "refuse" ["flock"];
    // Carried by the VMA-flags record (kind 55).
    locks_mlock => "refuse" ["mlock"];
    sched_batch => "refuse" ["sched_batch"];
    sched_affinity => "refuse" ["affinity"];
    // Carried by the deleted-node and executable-object records (kinds 61 and 62).
    carried_cwd_deleted => "refuse" ["cwd"];
    carried_exe_deleted => "refuse" ["exe"];
    carried_fifo_deleted => "refuse" ["fifo_deleted"];
    carried_dir_deleted => "refuse" ["dir_deleted"];
}

mod refuse_netlink {
    use super::*;

    #[test]
    fn self_test() -> Result<()> {
        harness()?.self_test("refuse_netlink", &[])
    }

    /// The dump must refuse, name the netlink socket, and leave the process running.
    #[test]
    fn refused() -> Result<()> {
        let message = harness()?.expect_refused("refuse_netlink", &[], "netlink")?;
        eprintln!("refusal message: {message}");
        Ok(())
    }
}

/// Pre-copy (`seamless dump --pre-copy`): memory copied while the process runs, then only what
/// changed since while it is frozen.
mod pre_copy {
    use super::*;
    use anyhow::ensure;

    /// On a kernel without soft-dirty tracking (this CI host's) the dumps of these tests run
    /// the passes anyway, taking every page as written (`SEAMLESS_PRE_COPY_UNTRACKED`): the
    /// copies, their rewriting and the entries of the frozen pass are exercised, not the
    /// choice of pages (the VM scenarios' Debian kernels track, and `upgrade` pre-copies).
    fn harness() -> Result<Harness> {
        std::env::set_var("SEAMLESS_PRE_COPY_UNTRACKED", "1");
        super::harness()
    }

    /// Pages copied in each pass, from the dump's `pre-copy: N pass(es) while running, pages
    /// A, B, ...` line.
    fn passes(log: &str) -> Vec<u64> {
        log.lines()
            .find_map(|l| l.split_once("while running, pages ").map(|(_, rest)| rest))
            .map(|rest| {
                rest.split(';').next().unwrap_or("").split(", ").filter_map(|n| n.trim().parse().ok()).collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn writer_self_test() -> Result<()> {
        harness()?.self_test("precopy_writer", &["64"])
    }

    /// A thread keeps rewriting checksummed pages (and dropping, replacing and growing areas)
    /// during the passes; every byte is checked after the restore.
    #[test]
    fn writer_keeps_every_byte() -> Result<()> {
        let (rt, log) = harness()?.round_trip_dumped_with("precopy_writer", &["64"], &["--pre-copy"], &[])?;
        let passes = passes(&log);
        eprintln!("precopy_writer: {rt:?}; pages per pass {passes:?}");
        ensure!(passes.len() >= 2, "expected a second pass for the pages written meanwhile: {}", log);
        ensure!(passes[0] >= 16384, "the first pass copied {} pages of about 18,000", passes[0]);
        Ok(())
    }

    /// The same workload dumped frozen only (the baseline of the test above).
    #[test]
    fn writer_without_pre_copy() -> Result<()> {
        let rt = harness()?.round_trip("precopy_writer", &["64"])?;
        eprintln!("precopy_writer without pre-copy: {rt:?}");
        Ok(())
    }

    /// Every kind of memory area, pre-copied.
    #[test]
    fn memory_round_trip() -> Result<()> {
        let (rt, log) = harness()?.round_trip_dumped_with("memory", &[], &["--pre-copy"], &[])?;
        eprintln!("memory: {rt:?}; pages per pass {:?}", passes(&log));
        Ok(())
    }

    /// Copy-on-write sharing between a parent and its children, pre-copied.
    #[test]
    fn cow_fork_round_trip() -> Result<()> {
        let (rt, log) = harness()?.round_trip_dumped_with("cow_fork", &["64"], &["--pre-copy"], &[])?;
        eprintln!("cow_fork: {rt:?}; pages per pass {:?}", passes(&log));
        Ok(())
    }

    /// 1 GiB with busy threads, pre-copied.
    #[test]
    fn big_mem_round_trip() -> Result<()> {
        let (rt, log) = harness()?.round_trip_dumped_with("big_mem", &["1024", "2"], &["--pre-copy"], &[])?;
        eprintln!("big_mem: {rt:?}; pages per pass {:?}", passes(&log));
        Ok(())
    }

    /// The program break grown and shrunk, pre-copied.
    #[test]
    fn brk_round_trip() -> Result<()> {
        let (rt, log) = harness()?.round_trip_dumped_with("brk", &[], &["--pre-copy"], &[])?;
        eprintln!("brk: {rt:?}; pages per pass {:?}", passes(&log));
        Ok(())
    }
}

mod vdso_trampoline {
    use super::*;

    /// The cross-kernel vDSO path (old vDSO address patched to jump into the new vDSO),
    /// forced on the same kernel.
    #[test]
    fn vdso_glibc_round_trip() -> Result<()> {
        let rt = harness()?.round_trip_with("vdso_glibc", &[], &["--force-vdso-trampoline"])?;
        eprintln!("vdso_glibc with trampoline: {rt:?}");
        Ok(())
    }

    /// Threads sleeping in raw syscalls do not touch the vDSO, but glibc's startup pointers do.
    #[test]
    fn timers_round_trip() -> Result<()> {
        harness()?.round_trip_with("timers", &[], &["--force-vdso-trampoline"]).map(|_| ())
    }

    /// Children forked from their restored parent inherit its patched vDSO copy and place
    /// their own (the cross-kernel path of copy-on-write sharing).
    #[test]
    fn cow_fork_round_trip() -> Result<()> {
        harness()?.round_trip_with("cow_fork", &["64"], &["--force-vdso-trampoline"]).map(|_| ())
    }
}

/// Every workload compiles (gcc, warnings are errors).
#[test]
fn workloads_build() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host").join("bin");
    seamless_tests::workloads::build_all(&dir)?;
    Ok(())
}

// ---- Sockets, epoll, eventfd, signalfd, timerfd (helper "net") ----

workload_tests! {
    epoll_eventfd => "epoll_eventfd" [];
    timerfd_signalfd => "timerfd_signalfd" [];
    tcp_listen => "tcp_listen" [];
    unix_pair => "unix_pair" [];
    unix_dgram => "unix_dgram" [];
    unix_closed_peer => "unix_closed_peer" [];
    unix_scm => "unix_scm" [];
    pty_session => "pty_session" [];
    inotify => "inotify" [];
    pidfd => "pidfd" [];
    tmpfs_service => "tmpfs_service" [];
    cached_file => "cached_file" ["16"];
}

/// The peer of `tcp_established`, outside the dumped tree: echoes the first 65536 bytes of the
/// first connection, then neither reads nor writes until another connection sends `RESUME`,
/// then echoes everything up to EOF. Counts data connections (a reconnect would be a second).
mod echo {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const PAUSE_AT: u64 = 65536;

    #[derive(Debug, Default)]
    pub struct Stats {
        pub data_connections: AtomicUsize,
        pub echoed: AtomicU64,
        pub resumed: AtomicBool,
        pub end: Mutex<Option<String>>,
    }

    pub fn start() -> anyhow::Result<(u16, Arc<Stats>)> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                if st.data_connections.fetch_add(1, Ordering::SeqCst) == 0 {
                    let st = st.clone();
                    std::thread::spawn(move || serve(&mut c, &st));
                } else {
                    st.data_connections.fetch_sub(1, Ordering::SeqCst);
                    let mut line = [0u8; 7];
                    if c.read_exact(&mut line).is_ok() && &line == b"RESUME\n" {
                        st.resumed.store(true, Ordering::SeqCst);
                    } else {
                        st.data_connections.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        Ok((port, stats))
    }

    fn serve(c: &mut TcpStream, st: &Stats) {
        let mut total = 0u64;
        let mut buf = vec![0u8; 65536];
        let end = loop {
            while total >= PAUSE_AT && !st.resumed.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let want = if total >= PAUSE_AT { buf.len() } else { (PAUSE_AT - total) as usize };
            match c.read(&mut buf[..want]) {
                Ok(0) => break format!("EOF after {total} bytes"),
                Ok(n) => {
                    if let Err(e) = c.write_all(&buf[..n]) {
                        break format!("write error after {total} bytes: {e}");
                    }
                    total += n as u64;
                    st.echoed.store(total, Ordering::SeqCst);
                }
                Err(e) => break format!("read error after {total} bytes: {e}"),
            }
        };
        *st.end.lock().unwrap_or_else(|p| p.into_inner()) = Some(end);
    }

    /// The connection ended with a clean EOF, was the only data connection, and carried
    /// more than the pre-dump bytes.
    pub fn check(stats: &Stats) -> anyhow::Result<()> {
        for _ in 0..200 {
            if stats.end.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let end = stats.end.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let conns = stats.data_connections.load(Ordering::SeqCst);
        let echoed = stats.echoed.load(Ordering::SeqCst);
        anyhow::ensure!(conns == 1, "echo server saw {conns} data connections (reconnect?)");
        anyhow::ensure!(
            end.as_deref().is_some_and(|e| e.starts_with("EOF")),
            "echo server connection ended with {end:?}"
        );
        anyhow::ensure!(echoed > 1 << 20, "echo server echoed only {echoed} bytes");
        eprintln!("echo server: 1 connection, {echoed} bytes echoed, {}", end.unwrap_or_default());
        Ok(())
    }
}

mod tcp_established {
    use super::*;

    #[test]
    fn self_test() -> Result<()> {
        let (port, stats) = echo::start()?;
        harness()?.self_test("tcp_established", &[&port.to_string()])?;
        echo::check(&stats)
    }

    /// The connection to the echo server survives dump, kill and restore (TCP_REPAIR): same
    /// connection, every byte echoed in order, 4 MiB queued in the send queue at the dump.
    #[test]
    fn round_trip() -> Result<()> {
        let (port, stats) = echo::start()?;
        let rt = harness()?.round_trip("tcp_established", &[&port.to_string()])?;
        eprintln!("tcp_established: {rt:?}");
        echo::check(&stats)
    }

    /// Repair mode is switched off again when the process is left running.
    #[test]
    fn leave_running() -> Result<()> {
        let (port, stats) = echo::start()?;
        harness()?.leave_running("tcp_established", &[&port.to_string()])?;
        echo::check(&stats)
    }
}

/// redis-server from Debian under dump -> kill -> restore: data SET before is there after, and a
/// client connected before the dump keeps working on the same connection.
mod redis {
    use super::*;
    use seamless_tests::host::run_logged;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    const PORT: u16 = 6390;

    fn ensure_installed() -> Result<()> {
        if Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Ok(());
        }
        let st = Command::new("apt-get")
            .args(["install", "-y", "redis-server", "redis-tools"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        anyhow::ensure!(st.success(), "apt-get install redis-server failed: {st}");
        // The package starts its own instance on 6379; this test runs its own.
        let _ = Command::new("service").args(["redis-server", "stop"]).status();
        let _ = Command::new("update-rc.d").args(["redis-server", "disable"]).status();
        Ok(())
    }

    fn cmd(s: &mut TcpStream, args: &[&str]) -> Result<String> {
        let mut m = format!("*{}\r\n", args.len());
        for a in args {
            m.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(m.as_bytes())?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf)?;
        anyhow::ensure!(n > 0, "redis closed the connection");
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn cli(args: &[&str]) -> Result<String> {
        let o = Command::new("redis-cli").arg("-p").arg(PORT.to_string()).args(args).output()?;
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    fn wait_exit(pid: i32, timeout: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            let p = rustix::process::Pid::from_raw(pid).expect("pid");
            match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG) {
                Ok(Some(_)) | Err(_) => return true,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        false
    }

    #[test]
    fn round_trip_with_client() -> Result<()> {
        let h = harness()?;
        ensure_installed()?;
        anyhow::ensure!(TcpStream::connect(("127.0.0.1", PORT)).is_err(), "something already listens on port {PORT}");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host").join(format!("redis-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut server = Command::new("redis-server")
            .args(["--port", &PORT.to_string(), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("redis.log"))?)
            .stderr(Stdio::null())
            .spawn()?;
        let pid = server.id() as i32;
        let mut client = None;
        for _ in 0..100 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", PORT)) {
                client = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let res = (|| -> Result<()> {
            let mut client = client.ok_or_else(|| anyhow::anyhow!("redis-server did not come up on {PORT}"))?;
            client.set_read_timeout(Some(Duration::from_secs(10)))?;
            anyhow::ensure!(cmd(&mut client, &["SET", "held", "by-the-old-connection"])? == "+OK\r\n");
            anyhow::ensure!(cli(&["SET", "k1", "hello"])? == "OK");
            anyhow::ensure!(cli(&["RPUSH", "list", "a", "b", "c"])? == "3");
            // redis-cli's connections are closed, but redis may not have closed its ends yet:
            // a half-closed connection (CLOSE_WAIT) is refused by the dump, so wait for them.
            let close_wait = || {
                let t = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
                t.lines().skip(1).any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.get(1).is_some_and(|a| a.ends_with(&format!(":{PORT:04X}"))) && f.get(3) == Some(&"08")
                })
            };
            for _ in 0..200 {
                if !close_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let images = dir.join("images");
            let mut dump = Command::new(h.seamless()?);
            dump.arg("dump").arg("--tree").arg(pid.to_string()).arg("--images").arg(&images);
            let d = run_logged(dump, &dir, "dump", Duration::from_secs(120))?;
            anyhow::ensure!(d.status.success(), "dump failed: {}", d.failure());
            server.wait()?; // the original is gone (killed by the dump) and reaped
            let mut restore = Command::new(h.seamless()?);
            restore.arg("restore").arg("--images").arg(&images);
            let r = run_logged(restore, &dir, "restore", Duration::from_secs(120))?;
            anyhow::ensure!(r.status.success(), "restore failed: {}", r.failure());
            eprintln!(
                "redis: dump {:.1} ms, restore {:.1} ms",
                d.elapsed.as_secs_f64() * 1e3,
                r.elapsed.as_secs_f64() * 1e3
            );
            // The connection made before the dump.
            let got = cmd(&mut client, &["GET", "held"])?;
            anyhow::ensure!(got == "$21\r\nby-the-old-connection\r\n", "old connection GET returned {got:?}");
            let got = cmd(&mut client, &["INCR", "counter"])?;
            anyhow::ensure!(got == ":1\r\n", "old connection INCR returned {got:?}");
            // New connections see the data.
            anyhow::ensure!(cli(&["GET", "k1"])? == "hello", "k1 lost");
            let l = cli(&["LRANGE", "list", "0", "-1"])?;
            anyhow::ensure!(l == "a\nb\nc", "list is {l:?}");
            anyhow::ensure!(cli(&["GET", "counter"])? == "1");
            let _ = std::fs::remove_dir_all(&images);
            Ok(())
        })();
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).expect("pid"),
            rustix::process::Signal::TERM,
        );
        if !wait_exit(pid, Duration::from_secs(10)) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("pid"),
                rustix::process::Signal::KILL,
            );
            wait_exit(pid, Duration::from_secs(5));
        }
        let _ = server.try_wait();
        res
    }
}

/// The root filesystem identity recorded after `FIFREEZE` must match what a fresh kernel reads
/// from the disk, on an ext4 large enough to have `BLOCK_UNINIT` groups whose bitmaps the
/// running kernel builds in memory only (the false "metadata changed" refusal); a real write
/// after the freeze must still be refused. Uses a loop device on an image file; the image
/// file itself is "the disk" as the next kernel sees it.
mod root_identity {
    use anyhow::{ensure, Context, Result};
    use seamless_image::upgrade::read_identity;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn run(cmd: &mut Command) -> Result<String> {
        let o = cmd.output().with_context(|| format!("running {cmd:?}"))?;
        ensure!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    struct Loop {
        dev: String,
        mnt: PathBuf,
    }

    impl Drop for Loop {
        fn drop(&mut self) {
            let _ = Command::new("fsfreeze").arg("-u").arg(&self.mnt).output();
            let _ = Command::new("umount").arg(&self.mnt).output();
            let _ = Command::new("losetup").arg("-d").arg(&self.dev).output();
        }
    }

    fn freeze(mnt: &Path) -> Result<()> {
        run(&mut Command::new("sync")).map(|_| ())?;
        run(Command::new("fsfreeze").arg("-f").arg(mnt)).map(|_| ())
    }

    #[test]
    fn recorded_after_freeze_matches_the_disk() -> Result<()> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("rootid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("staged/etc"))?;
        std::fs::write(dir.join("staged/etc/hostname"), "guest\n")?;
        let img = dir.join("root.img");
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-d"]).arg(dir.join("staged")).arg(&img).arg("1024M"))?;
        let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&img))?;
        let lo = Loop { dev, mnt: dir.join("mnt") };
        std::fs::create_dir_all(&lo.mnt)?;
        run(Command::new("mount").arg(&lo.dev).arg(&lo.mnt))?;
        std::fs::write(lo.mnt.join("written-before"), "x")?;
        // Give the kernel's lazy-init thread time to prefetch (and build) the block bitmaps.
        std::thread::sleep(std::time::Duration::from_secs(2));
        for round in 0..3 {
            freeze(&lo.mnt)?;
            let recorded = read_identity(Path::new(&lo.dev), "ext4", "")?;
            // What the next kernel reads: the medium, with no cache of this kernel.
            let disk = read_identity(&img, "ext4", "")?;
            ensure!(recorded.verify(&disk).is_ok(), "round {round}: {:?}", recorded.verify(&disk));
            run(Command::new("fsfreeze").arg("-u").arg(&lo.mnt))?;
            // A real write after the freeze changes the metadata on disk and is refused.
            std::fs::write(lo.mnt.join(format!("written-after-{round}")), "y")?;
            freeze(&lo.mnt)?;
            let err = recorded.verify(&read_identity(&img, "ext4", "")?).unwrap_err();
            ensure!(err.to_string().contains("metadata changed"), "round {round}: {err}");
            run(Command::new("fsfreeze").arg("-u").arg(&lo.mnt))?;
        }
        drop(lo);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}

/// One tree that cannot be restored does not sink the others (same kernel): an ICMP datagram
/// socket is created where `net.ipv4.ping_group_range` admits root, dumped in one image with
/// two ordinary trees, and the range is closed again before the restore, so the restorer's
/// `socket()` is refused (EACCES), as on a new kernel that boots with the default range. The
/// refused tree must be named with the reason, leave no process behind, make `seamless
/// restore` exit non-zero; the others must be restored and PASS. Runs in its own network
/// namespace so the host's sysctl is left alone.
mod per_tree {
    use super::*;
    use anyhow::{ensure, Context};
    use seamless_tests::host::proc_stat;
    use std::io::Write;
    use std::process::Command;
    use std::time::Duration;

    struct Netns(String);

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
        }
    }

    fn ns_sh(ns: &str, script: &str) -> Result<()> {
        let st = Command::new("ip").args(["netns", "exec", ns, "sh", "-c", script]).status()?;
        ensure!(st.success(), "in netns {ns}: {script}: {st}");
        Ok(())
    }

    #[test]
    fn refused_tree_is_killed_and_the_others_restored() -> Result<()> {
        let ns = Netns(format!("seamless-pertree-{}", std::process::id()));
        ensure!(Command::new("ip").args(["netns", "add", &ns.0]).status()?.success(), "ip netns add {}", ns.0);
        ns_sh(&ns.0, "ip link set lo up && echo '0 0' > /proc/sys/net/ipv4/ping_group_range")?;
        let h = harness()?.in_netns(&ns.0);
        let ready = Duration::from_secs(30);
        let mut ping = h.start("ping_socket", &[])?;
        let mut pipes = h.start("pipes", &[])?;
        let mut tree = h.start("tree", &[])?;
        ping.wait_ready(ready)?;
        pipes.wait_ready(ready)?;
        tree.wait_ready(ready)?;
        let ping_pids = ping.snapshot_tree();
        let others: Vec<i32> = pipes.snapshot_tree().into_iter().chain(tree.snapshot_tree()).collect();
        let images = ping.dir.join("images");
        let dump = h.dump_trees(&[&ping, &pipes, &tree], &images)?;
        ensure!(dump.status.success(), "dump failed: {}", dump.failure());
        ping.expect_gone(&ping_pids, ready)?;
        pipes.expect_gone(&others, ready)?;
        // The system the image is restored on admits no group to ICMP datagram sockets.
        ns_sh(&ns.0, "echo '1 0' > /proc/sys/net/ipv4/ping_group_range")?;
        let r = h.restore(&ping, &images, &[])?;
        let err = r.stderr_text();
        eprintln!("restore stderr:\n{err}");
        ensure!(!r.status.success(), "restore exited 0 although the ping tree was refused");
        ensure!(
            err.contains(&format!("tree of pid [{}] not restored", ping.pid)) && err.contains("Permission denied"),
            "the refused tree (pid {}) is not named with the reason: {err}",
            ping.pid
        );
        ensure!(!err.contains(&format!("tree of pid [{}]", pipes.pid)), "pipes was not restored: {err}");
        // Nothing of the refused tree is left, every process of the others is back.
        ping.expect_gone(&ping_pids, Duration::from_secs(5))?;
        let missing: Vec<i32> = others.iter().copied().filter(|p| proc_stat(*p).is_none()).collect();
        ensure!(missing.is_empty(), "pids {missing:?} of the ordinary trees were not restored: {err}");
        for run in [&mut pipes, &mut tree] {
            run.terminate()?;
            run.wait_verdict(Duration::from_secs(60))?;
        }
        Ok(())
    }

    /// A tree that fails after its processes were forked and seized (a file it maps changed
    /// between dump and restore: `memory`, a parent and a child sharing memory): every
    /// process of it is killed, and the other tree is restored.
    #[test]
    fn tree_failing_midway_leaves_nothing_behind() -> Result<()> {
        let h = harness()?;
        let ready = Duration::from_secs(30);
        let mut memory = h.start("memory", &[])?;
        let mut pipes = h.start("pipes", &[])?;
        memory.wait_ready(ready)?;
        pipes.wait_ready(ready)?;
        let memory_pids = memory.snapshot_tree();
        ensure!(memory_pids.len() >= 2, "memory has no child: {memory_pids:?}");
        let pipes_pids = pipes.snapshot_tree();
        let images = memory.dir.join("images");
        let dump = h.dump_trees(&[&memory, &pipes], &images)?;
        ensure!(dump.status.success(), "dump failed: {}", dump.failure());
        memory.expect_gone(&memory_pids, ready)?;
        pipes.expect_gone(&pipes_pids, ready)?;
        // The file `memory` maps privately changes (one byte appended).
        let mapped = memory.outfile.with_extension("fpriv");
        std::fs::OpenOptions::new().append(true).open(&mapped)?.write_all(b"x")?;
        let r = h.restore(&memory, &images, &[])?;
        let err = r.stderr_text();
        eprintln!("restore stderr:\n{err}");
        ensure!(!r.status.success(), "restore exited 0 although the memory tree was refused");
        ensure!(
            err.contains(&format!("tree of pid [{}] not restored", memory.pid))
                && err.contains("changed since the dump"),
            "the refused tree (pid {}) is not named with the reason: {err}",
            memory.pid
        );
        memory.expect_gone(&memory_pids, Duration::from_secs(5))?;
        let missing: Vec<i32> = pipes_pids.iter().copied().filter(|p| proc_stat(*p).is_none()).collect();
        ensure!(missing.is_empty(), "pids {missing:?} of pipes were not restored: {err}");
        pipes.terminate()?;
        pipes.wait_verdict(Duration::from_secs(60))
    }

    /// `seamless check` predicts it: an ICMP datagram socket whose group the range carried to
    /// the new kernel no longer admits gets a warning naming the pid, the descriptor and the
    /// sysctl (a warning: the dump itself accepts it).
    #[test]
    fn check_warns_about_ping_sockets() -> Result<()> {
        let ns = Netns(format!("seamless-pingcheck-{}", std::process::id()));
        ensure!(Command::new("ip").args(["netns", "add", &ns.0]).status()?.success(), "ip netns add {}", ns.0);
        ns_sh(&ns.0, "ip link set lo up && echo '0 0' > /proc/sys/net/ipv4/ping_group_range")?;
        let h = harness()?.in_netns(&ns.0);
        let mut ping = h.start("ping_socket", &[])?;
        ping.wait_ready(Duration::from_secs(30))?;
        // The range carried to the new kernel is the one in force now: closed again.
        ns_sh(&ns.0, "echo '1 0' > /proc/sys/net/ipv4/ping_group_range")?;
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.0))
            .arg(h.seamless()?)
            .args(["check", "--json", "--pid", &ping.pid.to_string()])
            .output()?;
        let json = String::from_utf8_lossy(&out.stdout);
        let fd = std::fs::read_dir(format!("/proc/{}/fd", ping.pid))?
            .filter_map(|e| e.ok())
            .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .context("no socket descriptor in the ping workload")?;
        let report: serde_json::Value =
            serde_json::from_str(&json).with_context(|| format!("check printed: {json}"))?;
        let subject = format!("pid {} fd {fd}", ping.pid);
        let warned = report["verdicts"].as_array().into_iter().flatten().any(|v| {
            v["subject"] == subject.as_str()
                && v["status"] == "warn"
                && v["detail"].as_str().is_some_and(|d| d.contains("net.ipv4.ping_group_range"))
        });
        ensure!(warned, "no ping warning:\n{json}");
        ping.terminate()?;
        ping.wait_verdict(Duration::from_secs(30))
    }
}

// ---- Exact or refused (helper "refuse") ----

/// Resources seamless cannot restore exactly: `seamless check --pid` and `seamless dump` must
/// refuse them before touching the process (naming the pid and the resource), and the workload
/// (`refuse MODE`) must run on unharmed and PASS its own check of the resource afterwards.
mod refuse {
    use super::*;

    macro_rules! refusals {
        ($($mode:ident => $needle:literal;)*) => {$(
            mod $mode {
                use super::*;

                #[test]
                fn self_test() -> Result<()> {
                    harness()?.self_test("refuse", &[stringify!($mode)])
                }

                #[test]
                fn refused() -> Result<()> {
                    let message = harness()?.expect_refused("refuse", &[stringify!($mode)], $needle)?;
                    eprintln!("{}: refusal message: {message}", stringify!($mode));
                    Ok(())
                }
            }
        )*};
    }

    /// A message with the credentials of a process that exited: `seamless check` does not walk
    /// datagram queues, the dump refuses.
    mod unix_creds_gone {
        use super::*;

        #[test]
        fn self_test() -> Result<()> {
            harness()?.self_test("refuse", &["unix_creds_gone"])
        }

        #[test]
        fn refused() -> Result<()> {
            let message =
                harness()?.expect_refused_by("refuse", &["unix_creds_gone"], "not a process of the dump", false)?;
            eprintln!("unix_creds_gone: refusal message: {message}");
            Ok(())
        }
    }

    /// An empty message at the head of a unix queue that the process peeked at: hidden from
    /// the walk of the queue, the dump refuses (`seamless check` does not walk).
    mod unix_peeked_empty {
        use super::*;

        #[test]
        fn self_test() -> Result<()> {
            harness()?.self_test("refuse", &["unix_peeked_empty"])
        }

        #[test]
        fn refused() -> Result<()> {
            let message = harness()?.expect_refused_by("refuse", &["unix_peeked_empty"], "already peeked at", false)?;
            eprintln!("unix_peeked_empty: refusal message: {message}");
            Ok(())
        }
    }

    /// A listener whose service never accepts: `seamless check` only looks (the dump holds new
    /// connections and waits for the service to accept), the dump refuses after the wait.
    mod accept_queue {
        use super::*;

        #[test]
        fn self_test() -> Result<()> {
            harness()?.self_test("refuse", &["accept_queue"])
        }

        #[test]
        fn refused() -> Result<()> {
            let message = harness()?.expect_refused_by("refuse", &["accept_queue"], "not yet accepted", false)?;
            eprintln!("accept_queue: refusal message: {message}");
            Ok(())
        }
    }

    refusals! {
        root_deleted => "root (";
        memfd_huge => "huge-page memfd";
        unix_nested => "carries descriptors in flight itself";
        seccomp_strict => "seccomp strict mode";
        seccomp_filter => "seccomp filter mode";
        seccomp_args => "looks at the arguments";
        relinked => "cannot be opened";
        ebpf_filter => "eBPF socket filter";
        tcp_syn_sent => "state SYN_SENT (a connect in progress)";
        clone_vm => "shares its memory";
        clone_files => "shares its descriptor table";
        compat32 => "32-bit code";
        sud => "syscall user dispatch";
        netns => "namespace net";
        mlockall => "every area locked";
        async_io => "O_ASYNC";
        unix_unlinked => "was deleted";
        unix_rebound => "now names another file";
        ctty_outside => "its master is held by no dumped process";
        pidfd_outside => "which is not in the dump";
        pty_slave_outside => "outside the dump, holds /dev/pts/";
        inotify_queued => "inotify events not read yet";
        sched_deadline => "scheduling policy 6";
        thread_creds => "CapEff";
        lease_signal => "a lease whose break";
        traced => "is traced (ptrace) by pid";
        sem_undo => "semaphore undo list";
        shm_partial => "only part of the segment";
        mq_notify_pending => "already pending in the process";
        fanotify => "fanotify groups are not checkpointed (fanotify_init flags";
        aio => "an aio context (io_setup)";
    }
}

// SO_REUSEADDR and the other options of TCP sockets survive a dump (TCP repair mode resets
// SO_REUSEADDR in the kernel), both with --leave-running and through a restore.
workload_tests! {
    reuseaddr => "reuseaddr" [];
}

// ---- System V IPC, POSIX message queues, memfd, deleted files ----

workload_tests! {
    sysv_ipc => "sysv_ipc" [];
    posix_mq => "posix_mq" [];
    mq_notify => "mq_notify" [];
    memfd => "memfd" [];
    deleted_files => "deleted_files" [];
}

// ---- FIFOs and directories removed while held, executables no path reaches ----

workload_tests! {
    deleted_fifo => "deleted_fifo" [];
    memfd_exec => "memfd_exec" [];
    timerfd_flags => "timerfd_flags" [];
}
