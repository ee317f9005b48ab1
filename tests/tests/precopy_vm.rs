//! Pre-copy on a kernel that tracks soft-dirty pages (Debian's 6.1, kernel A; the CI host's
//! own kernel does not): `cargo test -p seamless-tests --test precopy_vm -- --nocapture`
//! (root, QEMU; `SEAMLESS_CACHE` as for the other VM tests). Numbers under TCG are many times
//! what real hardware takes; the ratios between lines of the same run are what it shows.
//!
//! 1. The frozen part of `seamless dump` (freeze to last record) of `precopy_writer`, 256 MiB
//!    (`SEAMLESS_PRECOPY_MIB`; above 256 the guest gets 4 GiB) that it keeps rewriting at 4 % a
//!    second, frozen only and with `--pre-copy`, next to
//!    the populate + copy floor of the same amount of memory (`memfloor`), each repeated.
//! 2. `seamless dump --pre-copy` of `precopy_writer` at its default rate (16,000 pages a
//!    second, dropping, replacing and moving areas), killed, restored, every page checked.

use anyhow::{ensure, Context, Result};
use seamless_tests::vm::{GuestBuilder, Vm};
use std::time::Duration;

const RUNS: usize = 3;

/// The frozen milliseconds (`total X ms`) and the pre-copy pages per pass of a dump's output.
fn frozen_of(out: &str) -> Result<(f64, String)> {
    let line = out.lines().find(|l| l.contains("seamless: dumped")).with_context(|| format!("no summary: {out}"))?;
    let ms = line
        .rsplit_once("total ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no total: {line}"))?;
    let passes = out
        .lines()
        .find_map(|l| l.split_once("while running, pages ").map(|(_, r)| r.split(';').next().unwrap_or("").to_string()))
        .unwrap_or_default();
    Ok((ms, passes))
}

fn spread(v: &[f64]) -> String {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    format!("{:.0}/{:.0}/{:.0} ms", v[0], v[v.len() / 2], v[v.len() - 1])
}

fn start_writer(vm: &mut Vm, name: &str, args: &str) -> Result<i32> {
    let pid = vm
        .sh(&format!(
            "mkdir -p /root/wl && cd /root/wl && rm -f {name}.out {name}.out.ready && setsid precopy_writer \
             /root/wl/{name}.out {args} </dev/null >/root/wl/{name}.log 2>&1 & echo $!"
        ))?
        .trim()
        .parse::<i32>()
        .context("pid of precopy_writer")?;
    let r = vm.run_timeout(
        &format!("for i in $(seq 600); do [ -e /root/wl/{name}.out.ready ] && exit 0; sleep 0.1; done; exit 1"),
        Duration::from_secs(120),
    )?;
    ensure!(r.status == 0, "precopy_writer not ready: {}", r.output);
    Ok(pid)
}

fn verdict(vm: &mut Vm, name: &str, pid: i32) -> Result<String> {
    vm.sh(&format!("kill -TERM {pid}"))?;
    let r = vm.run_timeout(
        &format!("for i in $(seq 600); do [ -e /root/wl/{name}.out ] && cat /root/wl/{name}.out && exit 0; sleep 0.1; done; exit 1"),
        Duration::from_secs(120),
    )?;
    Ok(r.output.trim().to_string())
}

#[test]
fn pre_copy_on_a_soft_dirty_kernel() -> Result<()> {
    let mib: u64 = std::env::var("SEAMLESS_PRECOPY_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let memory = if mib > 256 { "4G" } else { "2G" };
    let mut vm = GuestBuilder::new("precopy")
        .memory(memory)
        .with_service()
        .with_workloads(&["precopy_writer", "memfloor"])
        .start()?;
    vm.sh(&format!("mkdir -p /mnt/img && mount -t tmpfs -o size={}m,mode=0700 tmpfs /mnt/img", 2 * mib + 300))?;
    let floor = vm.sh(&format!("memfloor {mib} {RUNS}"))?;
    println!("floor (memfloor {mib} MiB): {}", floor.trim());

    // 1. Frozen time, 4 % a second.
    let rate = (mib << 20) / 4096 * 4 / 100;
    let pid = start_writer(&mut vm, "bench", &format!("{mib} {rate}"))?;
    let mut table = Vec::new();
    for (label, flag) in [("frozen only", ""), ("with --pre-copy", "--pre-copy")] {
        let mut times = Vec::new();
        let mut passes = Vec::new();
        for i in 0..RUNS {
            let out = vm.run_timeout(
                &format!(
                    "rm -rf /mnt/img/d{i}; seamless dump --tree {pid} --images /mnt/img/d{i} --leave-running {flag} 2>&1; \
                     rm -rf /mnt/img/d{i}"
                ),
                Duration::from_secs(600),
            )?;
            ensure!(out.status == 0, "dump {label}: {}", out.output);
            let (ms, p) = frozen_of(&out.output)?;
            times.push(ms);
            passes.push(format!("[{p}]"));
        }
        table.push(format!(
            "frozen dump {mib} MiB dirtying 4 %/s, {label}: min/median/max {} (pre-copy pages per pass {})",
            spread(&times),
            passes.join(" ")
        ));
    }
    let v = verdict(&mut vm, "bench", pid)?;
    for l in &table {
        println!("{l}");
    }
    println!("load average (guest): {}", vm.sh("cat /proc/loadavg")?.trim());
    ensure!(v == "PASS", "precopy_writer after the --leave-running dumps: {v}");

    // 2. Round trip at the default rate: every page checked after the restore.
    let pid = start_writer(&mut vm, "rt", "64")?;
    let out = vm.run_timeout(
        &format!("seamless dump --tree {pid} --images /mnt/img/rt --pre-copy 2>&1"),
        Duration::from_secs(600),
    )?;
    ensure!(out.status == 0, "dump --pre-copy: {}", out.output);
    println!("round trip dump: {}", out.output.lines().rev().take(2).collect::<Vec<_>>().join(" | "));
    let (_, passes) = frozen_of(&out.output)?;
    ensure!(passes.contains(", "), "expected a second pre-copy pass on a soft-dirty kernel: {}", out.output);
    vm.sh(&format!("for i in $(seq 100); do [ -e /proc/{pid} ] || break; sleep 0.1; done"))?;
    let out = vm.run_timeout("seamless restore --images /mnt/img/rt 2>&1", Duration::from_secs(600))?;
    ensure!(out.status == 0, "restore: {}", out.output);
    let v = verdict(&mut vm, "rt", pid)?;
    ensure!(v == "PASS", "precopy_writer after a pre-copied dump and restore: {v}");
    println!("round trip with --pre-copy at 16,000 page writes a second: PASS");
    Ok(())
}
