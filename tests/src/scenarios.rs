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
    /// The workloads upgraded with redis (name, pid), for [`expect_pass`].
    pub workloads: Vec<(String, i32)>,
    /// The VM, still running the new kernel.
    pub vm: Vm,
}

/// Boots `from`, loads `keys` keys into redis, upgrades to `to` with `seamless upgrade`
/// while the host pings redis, and checks that the same redis process (same pid) kept every
/// key and was not started again by the real init.
pub fn redis_upgrade(name: &str, from: Which, to: Which, keys: usize) -> Result<RedisUpgrade> {
    redis_upgrade_with(name, from, to, keys, &[])
}

/// [`redis_upgrade`] with the test workloads `list` (name, arguments) preserved by the same
/// `seamless upgrade`; their pids are in [`RedisUpgrade::workloads`] (check them with
/// [`expect_pass`]).
pub fn redis_upgrade_with(
    name: &str,
    from: Which,
    to: Which,
    keys: usize,
    list: &[(&str, &str)],
) -> Result<RedisUpgrade> {
    let names: Vec<&str> = list.iter().map(|(n, _)| *n).collect();
    let mut vm = redis_guest(name, from).with_kernel(to).with_workloads(&names).start()?;
    let port = vm.host_port(REDIS_PORT).context("no host port for redis")?;
    wait_redis(port, Duration::from_secs(60))?;
    redis::load(port, keys)?;
    let pid: i32 = vm.sh("cat /root/redis.pid")?.trim().parse().context("redis pid")?;
    let workloads = if list.is_empty() { Vec::new() } else { start_workloads(&mut vm, list)? };
    let mut targets = format!("--pid {pid}");
    for (_, p) in &workloads {
        targets.push_str(&format!(" --pid {p}"));
    }
    if !workloads.is_empty() {
        // The pre-check reads the target kernel's config beside its image and finds every
        // feature the trees need there.
        let r = crate::vm::env()?.kernel(to).release.clone();
        let check = vm.run_timeout(
            &format!(
                "seamless check --kernel /boot/vmlinuz-{r} --initrd /boot/initrd.img-{r} --reuse-cmdline {targets}"
            ),
            Duration::from_secs(300),
        )?;
        let config = check
            .output
            .lines()
            .find(|l| {
                l.starts_with("ok") && l.contains("new kernel config") && l.contains(&format!("/boot/config-{r}"))
            })
            .with_context(|| format!("seamless check did not find /boot/config-{r}: {}", check.output))?;
        println!("{config}");
        let lacking: Vec<&str> = check.output.lines().filter(|l| l.contains("new kernel CONFIG_")).collect();
        ensure!(lacking.is_empty(), "seamless check finds the target kernel lacking: {lacking:?}");
        ensure!(check.status == 0, "seamless check refused the upgrade: {}", check.output);
    }
    // A client that stays connected across the upgrade, with a timeout longer than the jump.
    let mut kept = redis::Client::connect(port, Duration::from_secs(90))?;
    ensure!(kept.cmd(&[b"SET", b"kept", b"before"])? == redis::Reply::Status("OK".into()), "SET kept");
    // redis numbers its connections: the same id afterwards means the same connection, not a
    // new one the client library made behind the test's back.
    let kept_id = match kept.cmd(&[b"CLIENT", b"ID"])? {
        redis::Reply::Int(id) => id,
        other => bail!("CLIENT ID answered {other:?}"),
    };
    // With many trees the freeze before the jump lasts seconds under emulation: then the
    // pinger keeps its one connection (carried across like the kept one) rather than leaving
    // new ones in redis' accept queue, which the dump refuses.
    let pinger = if list.is_empty() {
        Pinger::start(port, Duration::from_millis(20))
    } else {
        Pinger::start_with_timeout(port, Duration::from_millis(20), Duration::from_secs(120))
    };
    // Its connection must be accepted before the pre-check freezes redis: one still in the
    // accept queue then is refused (its client would be reset).
    let waiting = Instant::now();
    while !pinger.answered() && waiting.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let kexec = vm.upgrade(to, &targets);
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
    Ok(RedisUpgrade {
        kexec,
        blackout: blackout.unwrap_or_default(),
        connections,
        kept_connection,
        stage_lines,
        workloads,
        vm,
    })
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
    // Bounded by the guest's clock, well inside the host's deadline for the command: a busy
    // TCG guest spends seconds on each round of the loop.
    let wait = format!("end=$(( $(date +%s) + 240 )); while [ $(date +%s) -lt $end ]; do [ $(ls /root/wl/*.ready 2>/dev/null | wc -l) -ge {n} ] && exit 0; sleep 0.2; done; ls /root/wl; exit 1");
    let r = vm.run_timeout(&wait, Duration::from_secs(300))?;
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
    // Every verdict, or 240 s of the guest's clock (then the missing ones show as "no
    // verdict" below, each named), well inside the host's deadline for the command.
    let wait = format!("end=$(( $(date +%s) + 240 )); while [ $(date +%s) -lt $end ]; do [ $(ls /root/wl/*.out 2>/dev/null | wc -l) -ge {n} ] && exit 0; sleep 0.2; done; exit 1");
    let _ = vm.run_timeout(&wait, Duration::from_secs(300))?;
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

/// What [`upgrade_everything`] measured.
#[derive(Debug, Clone)]
pub struct Crossing {
    /// Release booted first.
    pub from: String,
    /// Release upgraded to.
    pub to: String,
    /// Longest time redis did not answer, seen from the host.
    pub blackout: Duration,
    /// From the jump to the new kernel's `/init`.
    pub jump_to_init: Duration,
    /// seamless-init's own time on the new kernel (restore included).
    pub init: Duration,
    /// How many workloads passed after the upgrade (all of them, on success).
    pub workloads: usize,
    /// The whole scenario: disk, cold boot, workloads, upgrade, checks.
    pub total: Duration,
}

/// Every workload that crosses kernels (`crosses_kernels`) and Debian's redis-server, in one
/// `seamless upgrade` from `from` to `to`: redis keeps its keys, its pid and a client
/// connection opened before the upgrade, and every workload passes its own checks after it.
pub fn upgrade_everything(name: &str, from: Which, to: Which) -> Result<Crossing> {
    let started = Instant::now();
    let env = crate::vm::env()?;
    let (a, b) = (env.kernel(from).release.clone(), env.kernel(to).release.clone());
    println!("{name}: {a} -> {b}");
    let list = crate::workloads::crossing_kernels();
    let mut r = redis_upgrade_with(name, from, to, 2000, &list)?;
    for l in &r.stage_lines {
        println!("{l}");
    }
    println!("redis blackout seen from the host: {:.3} s", r.blackout.as_secs_f64());
    r.kept_connection
        .clone()
        .map_err(|e| anyhow::anyhow!("the connection opened before the upgrade did not survive it: {e}"))?;
    let pids = std::mem::take(&mut r.workloads);
    expect_pass(&mut r.vm, &pids)?;
    Ok(Crossing {
        from: a,
        to: b,
        blackout: r.blackout,
        jump_to_init: r.kexec.jump_to_init,
        init: Duration::from_millis(r.kexec.init_ms),
        workloads: pids.len(),
        total: started.elapsed(),
    })
}
