//! Whole scenarios shared by the VM tests, `tests/demo` and the upgrade benchmark.

use crate::redis::{self, Pinger};
use crate::vm::{GuestBuilder, KexecReport, Vm, Which};
use anyhow::{bail, ensure, Context, Result};
use std::time::{Duration, Instant};

/// Boot hook of the redis guest. The real init starts redis at boot, unless seamless has
/// just restored it: a restored service must not be started a second time.
pub const REDIS_RC: &str = r#"pidf=/root/redis.pid
pid=$(cat $pidf 2>/dev/null)
if [ -n "$pid" ] && [ "$(cat /proc/$pid/comm 2>/dev/null)" = "redis-server" ]; then
    echo "redis-server (pid $pid) was restored by seamless: not starting it again" > /dev/kmsg
else
    # Keep the service's pid well above the kernel threads of any kernel it may move to.
    echo 30000 > /proc/sys/kernel/ns_last_pid
    setsid redis-server --port 6379 --bind 0.0.0.0 --protected-mode no --save '' --appendonly no \
        </dev/null >/root/redis.log 2>&1 &
    echo $! > $pidf
    echo "redis-server started (pid $!)" > /dev/kmsg
fi
"#;

/// The redis port in the guest.
pub const REDIS_PORT: u16 = 6379;

/// A guest running Debian's redis-server, started by its init at boot.
pub fn redis_guest(name: &str, boot: Which) -> GuestBuilder {
    GuestBuilder::new(name).boot_kernel(boot).with_service().forward(REDIS_PORT).rc_script("redis", REDIS_RC)
}

/// Waits until redis answers PING from the host; returns when it did.
pub fn wait_redis(port: u16, timeout: Duration) -> Result<Instant> {
    let start = Instant::now();
    loop {
        let answered = redis::Client::connect(port, Duration::from_millis(500))
            .and_then(|mut c| c.cmd(&[b"PING"]))
            .is_ok_and(|r| r == redis::Reply::Status("PONG".into()));
        if answered {
            return Ok(Instant::now());
        }
        if start.elapsed() > timeout {
            bail!("redis did not answer on port {port} within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a redis upgrade measured.
#[derive(Debug)]
pub struct RedisUpgrade {
    /// The jump.
    pub kexec: KexecReport,
    /// Longest time without an answer, seen from the host.
    pub blackout: Duration,
    /// Connections the host's pinger opened (it re-opens after a 500 ms timeout).
    pub connections: usize,
    /// Whether a client connection opened before the upgrade (with a long timeout) still
    /// worked after it, or why not.
    pub kept_connection: Result<(), String>,
    /// seamless-init's report lines (stage table) from the new kernel's log.
    pub stage_lines: Vec<String>,
    /// The VM, still running the new kernel.
    pub vm: Vm,
}

/// Boots `from`, loads `keys` keys into redis, upgrades to `to` with `seamless upgrade`
/// while the host pings redis, and checks that the same redis process (same pid) kept every
/// key and was not started again by the real init.
pub fn redis_upgrade(name: &str, from: Which, to: Which, keys: usize) -> Result<RedisUpgrade> {
    let mut vm = redis_guest(name, from).start()?;
    let port = vm.host_port(REDIS_PORT).context("no host port for redis")?;
    wait_redis(port, Duration::from_secs(60))?;
    redis::load(port, keys)?;
    let pid: i32 = vm.sh("cat /root/redis.pid")?.trim().parse().context("redis pid")?;
    // A client that stays connected across the upgrade, with a timeout longer than the jump.
    let mut kept = redis::Client::connect(port, Duration::from_secs(90))?;
    ensure!(kept.cmd(&[b"SET", b"kept", b"before"])? == redis::Reply::Status("OK".into()), "SET kept");
    // redis numbers its connections: the same id afterwards means the same connection, not a
    // new one the client library made behind the test's back.
    let kept_id = match kept.cmd(&[b"CLIENT", b"ID"])? {
        redis::Reply::Int(id) => id,
        other => bail!("CLIENT ID answered {other:?}"),
    };
    let pinger = Pinger::start(port, Duration::from_millis(20));
    let kexec = vm.upgrade(to, &format!("--pid {pid}"));
    let kexec = match kexec {
        Ok(k) => k,
        Err(e) => {
            pinger.finish();
            return Err(e);
        }
    };
    let answered = wait_redis(port, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(200));
    let connections = pinger.connections();
    let blackout = pinger.finish();
    answered?;
    let lines: Vec<String> = vm.console_since(kexec.console_from).into_iter().map(|l| l.text).collect();
    let bad: Vec<&String> =
        lines.iter().filter(|l| l.contains("was not restored") || l.contains("nothing restored")).collect();
    ensure!(bad.is_empty(), "seamless-init did not restore redis: {bad:?}");
    ensure!(
        lines
            .iter()
            .any(|l| l.contains(&format!("redis-server (pid {pid}) was restored by seamless: not starting it again"))),
        "the boot hook did not see the restored redis (pid {pid})"
    );
    let running = vm.sh("pidof redis-server")?;
    ensure!(
        running.trim() == pid.to_string(),
        "redis-server processes after the upgrade: {running:?}, expected only {pid}"
    );
    let kept_connection = match (kept.cmd(&[b"GET", b"kept"]), kept.cmd(&[b"CLIENT", b"ID"])) {
        (Ok(redis::Reply::Bulk(Some(v))), Ok(redis::Reply::Int(id))) if v == b"before" && id == kept_id => Ok(()),
        (Ok(get), Ok(id)) => Err(format!("GET answered {get:?}, CLIENT ID {id:?} (was {kept_id})")),
        (Err(e), _) | (_, Err(e)) => Err(format!("{e:#}")),
    };
    redis::Client::connect(port, Duration::from_secs(10))?.cmd(&[b"DEL", b"kept"])?;
    redis::check(port, keys)?;
    let stage_lines = lines
        .iter()
        .filter(|l| {
            l.contains("seamless-init:")
                && (l.contains("kernel ") || l.contains("stopped for") || l.contains("upgrade "))
        })
        .cloned()
        .collect();
    Ok(RedisUpgrade { kexec, blackout: blackout.unwrap_or_default(), connections, kept_connection, stage_lines, vm })
}

/// Starts each workload (name, arguments) of `list` in the guest, in its own session with its
/// files on the root filesystem, above the pids a new kernel's own threads take; returns the pids.
pub fn start_workloads(vm: &mut Vm, list: &[(&str, &str)]) -> Result<Vec<(String, i32)>> {
    // The new kernel's own threads take the low pids: keep the workloads' well above them.
    vm.sh("mkdir -p /root/wl && echo 30000 > /proc/sys/kernel/ns_last_pid")?;
    let mut pids = Vec::new();
    for (w, args) in list {
        let cmd =
            format!("cd /root/wl && setsid {w} /root/wl/{w}.out {args} </dev/null >/root/wl/{w}.log 2>&1 & echo $!");
        let pid = vm.sh(&cmd)?.trim().parse::<i32>().with_context(|| format!("pid of {w}"))?;
        pids.push((w.to_string(), pid));
    }
    let n = list.len();
    let wait = format!("for i in $(seq 600); do [ $(ls /root/wl/*.ready 2>/dev/null | wc -l) -ge {n} ] && exit 0; sleep 0.1; done; ls /root/wl; exit 1");
    let r = vm.run_timeout(&wait, Duration::from_secs(90))?;
    ensure!(r.status == 0, "workloads not ready: {}", r.output);
    Ok(pids)
}

/// SIGTERMs every workload and expects PASS from each (with the kernel's fault lines if not).
pub fn expect_pass(vm: &mut Vm, pids: &[(String, i32)]) -> Result<()> {
    for (_, pid) in pids {
        // A process that died after the restore is reported below with its log.
        vm.sh(&format!("kill -TERM {pid} 2>/dev/null; true"))?;
    }
    let n = pids.len();
    let wait = format!("for i in $(seq 300); do [ $(ls /root/wl/*.out 2>/dev/null | wc -l) -ge {n} ] && exit 0; sleep 0.1; done; exit 1");
    let _ = vm.run_timeout(&wait, Duration::from_secs(60))?;
    let mut failures = Vec::new();
    for (w, pid) in pids {
        let verdict = vm.sh(&format!("cat /root/wl/{w}.out 2>/dev/null || echo 'no verdict'; true"))?;
        println!("{w} (pid {pid}): {}", verdict.trim());
        if verdict.trim() != "PASS" {
            let log = vm.sh(&format!("tail -n 5 /root/wl/{w}.log; true"))?;
            failures.push(format!("{w} (pid {pid}): {} {}", verdict.trim(), log.trim()));
        }
    }
    if !failures.is_empty() {
        let faults = vm.sh("dmesg | grep -iE 'segfault|traps:|general protection|killed' | tail -n 20; true")?;
        anyhow::bail!("workloads failed after the upgrade:\n{}\nkernel log:\n{faults}", failures.join("\n"));
    }
    Ok(())
}
