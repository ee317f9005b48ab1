//! End-to-end upgrades in a VM: process trees started on one Debian kernel keep running on
//! the other after `seamless upgrade`, restored by seamless-init before the real init. Run with
//! `cargo test -p seamless-tests --test upgrade -- --test-threads=1` (as root).

use anyhow::{ensure, Context, Result};
use seamless_tests::scenarios::{expect_pass, start_workloads};
use seamless_tests::vm::{GuestBuilder, KexecReport, Vm, Which};
use seamless_tests::workloads::crossing_kernels;
use std::time::Duration;

/// The restore lines seamless-init logged since `k`'s boot; fails on any unrestored process.
fn restored(vm: &Vm, k: &KexecReport) -> Result<String> {
    let lines: Vec<String> = vm.console_since(k.console_from).into_iter().map(|l| l.text).collect();
    let bad: Vec<&String> =
        lines.iter().filter(|l| l.contains("was not restored") || l.contains("nothing restored")).collect();
    ensure!(bad.is_empty(), "seamless-init did not restore everything: {bad:?}");
    let line = lines
        .iter()
        .find(|l| l.contains("seamless-init: restored"))
        .context("no 'restored' line from seamless-init")?;
    for l in lines.iter().filter(|l| l.contains("old kernel") || l.contains("new kernel") || l.contains("stopped for"))
    {
        println!("{l}");
    }
    Ok(line.clone())
}

fn upgrade_workloads(name: &str, from: Which, to: Which) -> Result<()> {
    upgrade_workloads_on(name, from, to, 512)
}

fn upgrade_workloads_on(name: &str, from: Which, to: Which, disk_mib: u64) -> Result<()> {
    // Every workload marked `crosses_kernels` (tests/src/workloads.rs, tests/workloads/README.md).
    let list = crossing_kernels();
    let names: Vec<&str> = list.iter().map(|(n, _)| *n).collect();
    let mut vm =
        GuestBuilder::new(name).boot_kernel(from).disk_mib(disk_mib).with_service().with_workloads(&names).start()?;
    let pids = start_workloads(&mut vm, &list)?;
    let targets: Vec<String> = pids.iter().map(|(_, p)| format!("--pid {p}")).collect();
    let k = vm.upgrade(to, &targets.join(" "))?;
    println!("{}", restored(&vm, &k)?);
    expect_pass(&mut vm, &pids)
}

/// (a) The workloads keep passing across 6.1 -> 6.12.
#[test]
fn a_workloads_survive_upgrade_a_to_b() -> Result<()> {
    upgrade_workloads("up-a-b", Which::A, Which::B)
}

/// (a) ... and across the downgrade 6.12 -> 6.1.
#[test]
fn a_workloads_survive_downgrade_b_to_a() -> Result<()> {
    upgrade_workloads("up-b-a", Which::B, Which::A)
}

fn upgrade_everything(name: &str, from: Which, to: Which) -> Result<()> {
    let c = seamless_tests::scenarios::upgrade_everything(name, from, to)?;
    println!("{name}: {c:?}");
    Ok(())
}

/// (i) The point release of the same series, the upgrade operators do most often (a security
/// update such as 6.12.115 -> 6.12.117): workloads and redis.
#[test]
fn i_point_release_p_to_b() -> Result<()> {
    upgrade_everything("up-p-b", Which::P, Which::B)
}

/// (j) Debian 12's 6.1 to Debian 13's newest 7.x kernel (split packages, other module
/// names): workloads and redis.
#[test]
fn j_upgrade_a_to_c() -> Result<()> {
    upgrade_everything("up-a-c", Which::A, Which::C)
}

/// (k) The way back: 7.x down to 6.12.
#[test]
fn k_downgrade_c_to_b() -> Result<()> {
    upgrade_everything("up-c-b", Which::C, Which::B)
}

/// (c) No reserved memory: the image travels in the new initramfs.
#[test]
fn c_upgrade_without_pmem_goes_through_the_initramfs() -> Result<()> {
    let list = &[("memory", ""), ("threads_fpu", "")];
    let names: Vec<&str> = list.iter().map(|(n, _)| *n).collect();
    let mut vm = GuestBuilder::new("up-initramfs").without_pmem().with_service().with_workloads(&names).start()?;
    ensure!(vm.sh("ls /dev/pmem0 2>/dev/null; true")?.trim().is_empty(), "/dev/pmem0 exists without memmap=");
    let pids = start_workloads(&mut vm, list)?;
    let targets: Vec<String> = pids.iter().map(|(_, p)| format!("--pid {p}")).collect();
    let k = vm.upgrade(Which::B, &targets.join(" "))?;
    vm.wait_console(k.console_from, "seamless-init: region /seamless/region.img valid", Duration::from_secs(5))?;
    println!("{}", restored(&vm, &k)?);
    expect_pass(&mut vm, &pids)
}

/// (d) A failure injected before the jump leaves everything running, thawed and unloaded.
#[test]
fn d_failure_before_jump_leaves_everything_running() -> Result<()> {
    let list = &[("memory", ""), ("pipes", "")];
    let names: Vec<&str> = list.iter().map(|(n, _)| *n).collect();
    let mut vm = GuestBuilder::new("up-fail").with_service().with_workloads(&names).start()?;
    let pids = start_workloads(&mut vm, list)?;
    let b = seamless_tests::vm::env()?.kernel(Which::B).release.clone();
    let targets: Vec<String> = pids.iter().map(|(_, p)| format!("--pid {p}")).collect();
    for stage in ["dump", "freeze", "jump"] {
        let r = vm.run(&format!(
            "seamless upgrade --kernel /boot/vmlinuz-{b} --initrd /boot/initrd.img-{b} --reuse-cmdline {} --inject-failure {stage}",
            targets.join(" ")
        ))?;
        ensure!(r.status != 0, "upgrade with a failure at {stage} exited 0: {}", r.output);
        ensure!(r.output.contains(&format!("failure injected at stage {stage}")), "{}", r.output);
        // The root filesystem is writable again, nothing is loaded, no image is left to restore.
        vm.sh("echo ok > /root/after-failure && sync")?;
        ensure!(vm.sh("cat /sys/kernel/kexec_loaded")?.trim() == "0", "kernel left loaded after failure at {stage}");
        let inspect = vm.run("seamless inspect /dev/pmem0")?;
        ensure!(inspect.status != 0, "a restorable image was left after a failure at {stage}: {}", inspect.output);
        for (w, pid) in &pids {
            let state = vm.sh(&format!("grep -E '^(State|TracerPid)' /proc/{pid}/status | tr -s '\\t ' ' '"))?;
            ensure!(
                state.contains("TracerPid: 0") && !state.contains("(stopped)") && !state.contains("t (tracing"),
                "{w} (pid {pid}) not running untraced after failure at {stage}: {state}"
            );
        }
        println!("failure at {stage}: {}", r.output.lines().last().unwrap_or(""));
    }
    // Killed with the filesystems frozen, the image complete and the kernel loaded: SIGKILL of
    // the process the operator started (its worker rolls back), then SIGKILL of the worker
    // (the supervisor thaws, unloads and invalidates what the worker's journal left).
    for victim in ["supervisor", "worker"] {
        vm.sh(&format!(
            "seamless upgrade --kernel /boot/vmlinuz-{b} --initrd /boot/initrd.img-{b} --reuse-cmdline {} \
             --inject-failure pause-before-jump=300 >/run/up-{victim}.log 2>&1 & echo $! >/run/up-{victim}.pid",
            targets.join(" ")
        ))?;
        let paused = vm.run_timeout(
            &format!("for i in $(seq 1200); do grep -q 'testing: paused' /run/up-{victim}.log && exit 0; sleep 0.1; done; cat /run/up-{victim}.log; exit 1"),
            Duration::from_secs(150),
        )?;
        ensure!(paused.status == 0, "the upgrade never reached the pause: {}", paused.output);
        let pid = match victim {
            "supervisor" => vm.sh(&format!("cat /run/up-{victim}.pid"))?,
            _ => vm.sh(&format!("sed -n 's/.*testing: paused.*(pid \\([0-9]*\\)).*/\\1/p' /run/up-{victim}.log"))?,
        };
        let pid: i32 = pid.trim().parse().with_context(|| format!("pid of the {victim}: {pid:?}"))?;
        vm.sh(&format!("kill -KILL {pid}"))?;
        let gone = vm.run_timeout(
            "for i in $(seq 600); do pidof seamless >/dev/null || exit 0; sleep 0.1; done; ps; exit 1",
            Duration::from_secs(90),
        )?;
        ensure!(gone.status == 0, "seamless still running after SIGKILL of the {victim}: {}", gone.output);
        let log = vm.sh(&format!("cat /run/up-{victim}.log"))?;
        vm.run_timeout("echo ok > /root/after-kill && sync", Duration::from_secs(20))
            .and_then(|r| if r.status == 0 { Ok(()) } else { anyhow::bail!("{}", r.output) })
            .with_context(|| format!("root not writable after SIGKILL of the {victim}; upgrade log:\n{log}"))?;
        ensure!(
            vm.sh("cat /sys/kernel/kexec_loaded")?.trim() == "0",
            "kernel left loaded after SIGKILL of the {victim}; upgrade log:\n{log}"
        );
        let inspect = vm.run("seamless inspect /dev/pmem0")?;
        ensure!(inspect.status != 0, "a restorable image was left after SIGKILL of the {victim}:\n{log}");
        for (w, pid) in &pids {
            let state = vm.sh(&format!("grep -E '^(State|TracerPid)' /proc/{pid}/status | tr -s '\\t ' ' '"))?;
            ensure!(
                state.contains("TracerPid: 0") && !state.contains("(stopped)") && !state.contains("t (tracing"),
                "{w} (pid {pid}) not running untraced after SIGKILL of the {victim}: {state}\n{log}"
            );
        }
        println!("SIGKILL of the {victim} before the jump:\n{}", log.trim());
    }
    expect_pass(&mut vm, &pids)
}

/// (b) Debian's redis-server keeps its data across 6.1 -> 6.12, checked from the host; the
/// same process (same pid) serves again and the guest's init does not start a second one.
#[test]
fn b_redis_keeps_its_data_across_the_upgrade() -> Result<()> {
    let r = seamless_tests::scenarios::redis_upgrade("up-redis", Which::A, Which::B, 2000)?;
    for l in &r.stage_lines {
        println!("{l}");
    }
    println!("redis blackout seen from the host: {:.3} s", r.blackout.as_secs_f64());
    r.kept_connection
        .map_err(|e| anyhow::anyhow!("the connection opened before the upgrade did not survive it: {e}"))?;
    println!("connection opened before the upgrade: same connection (CLIENT ID) answers after it");
    Ok(())
}

/// (e) A distribution-style initramfs with the seamless hook, as the dracut module and the
/// mkinitcpio hook build it: the root filesystem is verified before that initramfs mounts it,
/// and seamless-init, as `init=` on the real root after the switch, restores the processes and
/// then executes the real init. `seamless upgrade` sets `init=`/`seamless.init=` itself.
#[test]
fn e_hook_initramfs_restores_after_switch_root() -> Result<()> {
    let list = &[("memory", ""), ("pipes", ""), ("vdso_glibc", "")];
    let names: Vec<&str> = list.iter().map(|(n, _)| *n).collect();
    let mut vm = GuestBuilder::new("up-hooks").with_service().with_workloads(&names).start()?;
    let pids = start_workloads(&mut vm, list)?;
    let b = seamless_tests::vm::env()?.kernel(Which::B).release.clone();
    let targets: Vec<String> = pids.iter().map(|(_, p)| format!("--pid {p}")).collect();
    let k = vm.jump(
        Which::B,
        &format!(
            "seamless upgrade --kernel /boot/vmlinuz-{b} --initrd /boot/initrd-hooks.img-{b} --reuse-cmdline {}",
            targets.join(" ")
        ),
    )?;
    let lines: Vec<String> = vm.console_since(k.console_from).into_iter().map(|l| l.text).collect();
    for needle in [
        "seamless-init: verify-root /dev/vda: ok",
        "hook-initramfs: switching root, init /usr/lib/seamless/seamless-init",
    ] {
        ensure!(lines.iter().any(|l| l.contains(needle)), "no {needle:?} in the new kernel's log");
    }
    println!("{}", restored(&vm, &k)?);
    ensure!(vm.sh("cat /proc/1/comm")?.trim() == "init", "PID 1 is not the real init after the hand-over");
    expect_pass(&mut vm, &pids)
}

/// (f) A larger root filesystem (1 GiB: more block groups whose bitmaps the kernel builds in
/// memory) passes the root identity check on the new kernel, 6.1 -> 6.12 ...
#[test]
fn f_large_root_upgrade_a_to_b() -> Result<()> {
    upgrade_workloads_on("up-big-a-b", Which::A, Which::B, 1024)
}

/// (f) ... and 6.12 -> 6.1.
#[test]
fn f_large_root_downgrade_b_to_a() -> Result<()> {
    upgrade_workloads_on("up-big-b-a", Which::B, Which::A, 1024)
}

/// (g) One tree the new kernel refuses does not sink the others: `ping_socket` holds an ICMP
/// datagram socket, allowed on the old kernel by setting `net.ipv4.ping_group_range`, which the
/// new kernel boots without. `seamless check` predicts it; seamless-init names that tree with
/// the reason (log and report.json), leaves none of it running, and restores every other tree.
#[test]
fn g_refused_tree_does_not_sink_the_others() -> Result<()> {
    let ordinary = &[("memory", ""), ("pipes", ""), ("files", ""), ("signals", "")];
    let names: Vec<&str> = ordinary.iter().map(|(n, _)| *n).chain(["ping_socket"]).collect();
    let mut vm = GuestBuilder::new("up-pertree").with_service().with_workloads(&names).start()?;
    // The socket is created while the range admits group 0, then the range goes back to the
    // kernel's default: the old kernel keeps the socket, the new one (which gets the range
    // carried over) cannot recreate it.
    vm.sh("echo '0 0' > /proc/sys/net/ipv4/ping_group_range")?;
    let all: Vec<(&str, &str)> = ordinary.iter().copied().chain([("ping_socket", "")]).collect();
    let pids = start_workloads(&mut vm, &all)?;
    vm.sh("echo '1 0' > /proc/sys/net/ipv4/ping_group_range")?;
    let ping = pids.iter().find(|(w, _)| w == "ping_socket").map(|(_, p)| *p).context("ping pid")?;
    let check = vm.run(&format!("seamless check --pid {ping}"))?;
    ensure!(
        check.output.contains(&format!("pid {ping} fd")) && check.output.contains("net.ipv4.ping_group_range"),
        "seamless check did not warn about the ICMP socket: {}",
        check.output
    );
    let targets: Vec<String> = pids.iter().map(|(_, p)| format!("--pid {p}")).collect();
    let k = vm.upgrade(Which::B, &targets.join(" "))?;
    let lines: Vec<String> = vm.console_since(k.console_from).into_iter().map(|l| l.text).collect();
    ensure!(!lines.iter().any(|l| l.contains("nothing restored")), "nothing was restored: {lines:?}");
    let named = lines
        .iter()
        .find(|l| l.contains(&format!("tree of pid [{ping}] was not restored")))
        .with_context(|| format!("seamless-init did not name the refused tree of pid {ping}"))?;
    println!("{named}");
    ensure!(named.contains("Permission denied"), "no reason in {named:?}");
    for (w, pid) in pids.iter().filter(|(_, p)| *p != ping) {
        ensure!(
            !lines.iter().any(|l| l.contains(&format!("tree of pid [{pid}]"))),
            "{w} (pid {pid}) was not restored: {lines:?}"
        );
    }
    let report = vm.sh("cat /run/seamless/report.json")?;
    ensure!(
        report.contains(&format!("\"failed_trees\":[{{\"roots\":[{ping}],\"pids\":[{ping}],\"reason\":")),
        "report.json does not name the refused tree: {report}"
    );
    ensure!(vm.sh(&format!("cat /proc/{ping}/comm 2>/dev/null; true"))?.trim().is_empty(), "pid {ping} still exists");
    let rest: Vec<(String, i32)> = pids.into_iter().filter(|(_, p)| *p != ping).collect();
    expect_pass(&mut vm, &rest)
}

/// (h) The page cache is hot again after the upgrade: a process that keeps a 256 MiB data file
/// cached finds it resident (mincore) on the new kernel and reads it about as fast as before
/// (at most 1.2 x its slowest warm read), while a cold read of it is many times slower; the
/// new kernel's stage table shows the re-warm and how much of it overlapped the restore.
#[test]
fn h_page_cache_is_warm_after_the_upgrade() -> Result<()> {
    let list = &[("cached_file", "256")];
    let mut vm =
        GuestBuilder::new("up-cache").disk_mib(1024).with_service().with_workloads(&["cached_file"]).start()?;
    let pids = start_workloads(&mut vm, list)?;
    let k = vm.upgrade(Which::B, &format!("--pid {} --rewarm-budget 300", pids[0].1))?;
    println!("{}", restored(&vm, &k)?);
    let lines: Vec<String> = vm.console_since(k.console_from).into_iter().map(|l| l.text).collect();
    let rewarm =
        lines.iter().find(|l| l.contains("page cache re-warmed")).context("no re-warm line in the stage table")?;
    println!("{rewarm}");
    ensure!(rewarm.contains("MiB in") && rewarm.contains("during restore"), "{rewarm}");
    let report = vm.sh("cat /run/seamless/report.json")?;
    let report: serde_json::Value = serde_json::from_str(report.trim()).context("report.json")?;
    let bytes = report["rewarm"]["bytes"].as_u64().context("report.json has no rewarm.bytes")?;
    ensure!(bytes >= 256 << 20, "only {bytes} bytes re-warmed: {}", report["rewarm"]);
    ensure!(report["rewarm"]["out_of_time"] == false, "the re-warm ran out of time: {}", report["rewarm"]);
    let (w, pid) = &pids[0];
    vm.sh(&format!("kill -TERM {pid}"))?;
    let done = vm.run_timeout(
        &format!("for i in $(seq 1200); do [ -f /root/wl/{w}.out ] && exit 0; sleep 0.1; done; exit 1"),
        Duration::from_secs(180),
    )?;
    ensure!(done.status == 0, "{w} gave no verdict after SIGTERM");
    let verdict = vm.sh(&format!("cat /root/wl/{w}.out"))?;
    let log = vm.sh(&format!("grep 'cached_file:' /root/wl/{w}.log; true"))?;
    println!("{}", log.trim());
    ensure!(verdict.trim() == "PASS", "{w} (pid {pid}): {} {}", verdict.trim(), log.trim());
    Ok(())
}
