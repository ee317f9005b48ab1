//! Page cache benchmark (prints numbers; not a timed test), in VMs, one run: the time to read a
//! service's hot 256 MiB data file (the `cached_file` workload)
//!
//! 1. warm, before anything (the workload's own reads, slowest of three);
//! 2. right after `seamless upgrade` A -> B, which re-warms it (the workload's first read);
//! 3. cold, the same file dropped from the cache (`POSIX_FADV_DONTNEED`, what a cold boot or a
//!    restart finds);
//! 4. right after a plain `seamless kexec` A -> B without seamless's re-warm (first read in
//!    the new kernel).
//!
//! `ROUNDS` (environment, default 1) repeats it; min/median/max are printed. Run as root:
//! `cargo run -p seamless-tests --release --bin bench-page-cache`.

use anyhow::{bail, Context, Result};
use seamless_tests::scenarios::start_workloads;
use seamless_tests::vm::{env, GuestBuilder, Which};
use std::time::Duration;

/// The numbers the workload prints: resident %, warm min, warm max, first read, cold read.
fn parse(line: &str) -> Option<[f64; 5]> {
    let nums: Vec<f64> = line
        .replace("..", " ")
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|t| !t.is_empty() && t.contains('.'))
        .filter_map(|t| t.parse().ok())
        .collect();
    nums.get(..5)?.try_into().ok()
}

fn seamless_round(i: usize) -> Result<[f64; 5]> {
    let mut vm = GuestBuilder::new(&format!("bench-cache-{i}"))
        .disk_mib(1024)
        .with_service()
        .with_workloads(&["cached_file"])
        .start()?;
    let pids = start_workloads(&mut vm, &[("cached_file", "256")])?;
    vm.upgrade(Which::B, &format!("--pid {} --rewarm-budget 300", pids[0].1))?;
    vm.sh(&format!("kill -TERM {}", pids[0].1))?;
    let done = vm.run_timeout(
        "for i in $(seq 1200); do [ -f /root/wl/cached_file.out ] && exit 0; sleep 0.1; done; exit 1",
        Duration::from_secs(180),
    )?;
    if done.status != 0 {
        bail!("cached_file gave no verdict");
    }
    let line = vm.sh("grep 'cached_file:' /root/wl/cached_file.log")?;
    parse(&line).with_context(|| format!("cannot read the workload's numbers: {line}"))
}

/// A plain kexec (no processes kept, no re-warm): the first read of the same file afterwards.
fn kexec_round(i: usize) -> Result<f64> {
    let mut vm = GuestBuilder::new(&format!("bench-cache-kexec-{i}")).disk_mib(1024).start()?;
    vm.run_timeout(
        "dd if=/dev/urandom of=/root/hot.bin bs=1M count=256 2>/dev/null && sync",
        Duration::from_secs(300),
    )?;
    vm.sh("cat /root/hot.bin > /dev/null")?;
    vm.kexec(Which::B)?;
    let t = vm.sh(
        "a=$(cut -d' ' -f1 /proc/uptime); cat /root/hot.bin > /dev/null; b=$(cut -d' ' -f1 /proc/uptime); echo $a $b",
    )?;
    let v: Vec<f64> = t.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    match v[..] {
        [a, b] => Ok(b - a),
        _ => bail!("uptime readings: {t}"),
    }
}

#[cfg(test)]
#[test]
fn the_workload_line_parses() {
    let l = "cached_file: resident 100.0 %, warm 1.737..2.504 s, first read 2.103 s, cold read 7.019 s";
    assert_eq!(parse(l), Some([100.0, 1.737, 2.504, 2.103, 7.019]));
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:>8.3} {:>8.3} {:>8.3}", v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() -> Result<()> {
    seamless_tests::host::become_subreaper()?;
    let env = env()?;
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1).max(1);
    println!(
        "page cache benchmark: 256 MiB data file, {} -> {}, QEMU accel {}, {rounds} round(s)",
        env.kernel(Which::A).release,
        env.kernel(Which::B).release,
        env.accel
    );
    let (mut warm, mut after, mut cold, mut resident, mut kexec) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..rounds {
        let [r, _, wmax, first, c] = seamless_round(i)?;
        resident.push(r);
        warm.push(wmax);
        after.push(first);
        cold.push(c);
        kexec.push(kexec_round(i)?);
    }
    println!("\n{:<52} {:>8} {:>8} {:>8}", "read of the 256 MiB file (seconds)", "min", "median", "max");
    println!("{:<52} {}", "warm, before the upgrade (slowest of 3)", stats(warm));
    println!("{:<52} {}", "first read after seamless upgrade (re-warmed)", stats(after));
    println!("{:<52} {}", "cold (dropped from the cache)", stats(cold));
    println!("{:<52} {}", "first read after a plain kexec (no re-warm)", stats(kexec));
    println!("{:<52} {}", "resident after seamless upgrade (%)", stats(resident));
    Ok(())
}
