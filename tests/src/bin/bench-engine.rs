//! Engine benchmark: `cargo run -p seamless-tests --release --bin bench-engine [-- OPTIONS]` (root).
//!
//! Measures, in one run on this machine:
//! - the floor: `mmap(MAP_POPULATE)` + `memcpy` of the same amount of memory (MiB/s), the cost of
//!   merely materialising and copying the pages once;
//! - `seamless dump` and `seamless restore` of the `big_mem` workload (1 GiB, MiB/s);
//! - `seamless dump` and `seamless restore` of the `fanout` workload (100 small processes, ms per
//!   process).
//!
//! - the frozen part of `seamless dump` (freeze to last record) of the `precopy_writer`
//!   workload (`--mib` MiB that it keeps rewriting at `--dirty-pct` percent a second), dumped
//!   frozen only and with `--pre-copy` (on a kernel without soft-dirty tracking pre-copy is
//!   skipped, which the line says);
//! - restore of `big_mem` next to the populate + copy floor (their ratio).
//!
//! Each round trip is verified (the restored workload must report PASS). Every measurement is
//! repeated (`--repeat`, default 3; the first touch of fresh guest memory is much slower than
//! later ones on a VM) and the best run is shown with all runs listed. A failing part prints its
//! error and the benchmark goes on. Images go to `/dev/shm/seamless-bench` (RAM, like the
//! preserved region) unless `--dir DIR` is given.
//!
//! Options: `--mib N` (default 1024), `--procs N` (default 100), `--repeat N` (default 3),
//! `--dirty-pct P` (default 4), `--dir DIR`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use seamless_tests::host::{Harness, RoundTrip};

struct Options {
    mib: u64,
    dirty_pct: f64,
    procs: u64,
    repeat: u32,
    dir: PathBuf,
}

fn parse_args() -> Result<Options> {
    let mut opts =
        Options { mib: 1024, dirty_pct: 4.0, procs: 100, repeat: 3, dir: PathBuf::from("/dev/shm/seamless-bench") };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--mib" => opts.mib = value()?.parse().context("--mib")?,
            "--dirty-pct" => opts.dirty_pct = value()?.parse().context("--dirty-pct")?,
            "--procs" => opts.procs = value()?.parse().context("--procs")?,
            "--repeat" => opts.repeat = value()?.parse::<u32>().context("--repeat")?.max(1),
            "--dir" => opts.dir = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("usage: bench-engine [--mib N] [--procs N] [--repeat N] [--dirty-pct P] [--dir DIR]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(opts)
}

/// Runs the floor program; returns (MiB/s, populate seconds, memcpy seconds).
fn floor(harness: &Harness, mib: u64, repeat: u32) -> Result<(f64, f64, f64)> {
    let bin = harness.binary("memfloor")?;
    let out = Command::new(&bin)
        .arg(mib.to_string())
        .arg(repeat.to_string())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("memfloor failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let get = |key: &str| -> Result<f64> {
        let i =
            fields.iter().position(|f| *f == key).with_context(|| format!("memfloor output lacks {key}: {text}"))?;
        fields.get(i + 1).and_then(|v| v.parse().ok()).with_context(|| format!("memfloor value of {key}: {text}"))
    };
    Ok((get("populate_memcpy_mib_s")?, get("populate_s")?, get("memcpy_s")?))
}

/// Runs `repeat` verified round trips; the first failure ends the series.
fn repeated(harness: &Harness, name: &str, arg: &str, repeat: u32) -> Result<Vec<RoundTrip>> {
    (0..repeat)
        .map(|i| harness.round_trip(name, &[arg]).with_context(|| format!("run {} of {repeat}", i + 1)))
        .collect()
}

/// The frozen part of a dump (`total X ms` of its summary line) and the pages per pre-copy
/// pass (empty without pre-copy), from the last lines it printed.
fn frozen_of(log: &str) -> Result<(Duration, Vec<u64>)> {
    let line = log.lines().find(|l| l.contains("seamless: dumped")).with_context(|| format!("no summary in {log}"))?;
    let ms: f64 = line
        .rsplit_once("total ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no total in {line}"))?;
    let passes = log
        .lines()
        .find_map(|l| l.split_once("while running, pages ").map(|(_, r)| r.split(';').next().unwrap_or("").to_string()))
        .map(|r| r.split(", ").filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_default();
    Ok((Duration::from_secs_f64(ms / 1e3), passes))
}

/// min/median/max of some seconds, printed.
fn spread(v: &[f64]) -> String {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => "-".into(),
        n => format!("{:.3}/{:.3}/{:.3}", v[0], v[n / 2], v[n - 1]),
    }
}

/// `repeat` verified round trips of `precopy_writer` with these dump arguments; the frozen
/// times and the passes of each.
fn frozen_runs(
    harness: &Harness,
    mib: u64,
    dirty_pct: f64,
    dump_args: &[&str],
    repeat: u32,
) -> Result<Vec<(Duration, Vec<u64>)>> {
    let pages_per_s = ((mib << 20) as f64 / 4096.0 * dirty_pct / 100.0).max(1.0) as u64;
    let (mib, rate) = (mib.to_string(), pages_per_s.to_string());
    (0..repeat)
        .map(|i| {
            let (_, log) = harness
                .round_trip_dumped_with("precopy_writer", &[&mib, &rate], dump_args, &[])
                .with_context(|| format!("run {} of {repeat}", i + 1))?;
            frozen_of(&log)
        })
        .collect()
}

/// The best dump and the best restore time over the runs (taken separately).
fn best_of(runs: &[RoundTrip]) -> RoundTrip {
    let mut best = runs[0];
    for r in &runs[1..] {
        best.dump = best.dump.min(r.dump);
        best.restore = best.restore.min(r.restore);
    }
    best
}

fn list_runs(runs: &[RoundTrip]) -> String {
    runs.iter().map(|r| format!("{:.3}/{:.3}", secs(r.dump), secs(r.restore))).collect::<Vec<_>>().join(", ")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn row(what: &str, time: &str, rate: &str) {
    println!("| {what:<50} | {time:>10} | {rate:>18} |");
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-engine: {e:#}");
            return ExitCode::from(2);
        }
    };
    let harness = match Harness::new(&opts.dir) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("bench-engine: cannot set up in {}: {e:#}", opts.dir.display());
            return ExitCode::FAILURE;
        }
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "seamless engine benchmark: kernel {}, {} CPUs, run directory {}",
        kernel.trim(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        opts.dir.display()
    );
    match harness.seamless() {
        Ok(bin) => println!("seamless binary: {}", bin.display()),
        Err(e) => println!("seamless binary: unavailable: {e:#}"),
    }
    let mut failures = 0;
    let mut errors = Vec::new();
    let mut notes = Vec::new();

    println!();
    row("measurement", "time", "rate");
    println!("|{:-<52}|{:-<12}|{:-<20}|", "", "", "");

    let mut floor_s = None;
    match floor(&harness, opts.mib, opts.repeat) {
        Ok((rate, populate, copy)) => {
            floor_s = Some(populate + copy);
            row(
                &format!("floor: mmap(MAP_POPULATE)+memcpy {} MiB, best", opts.mib),
                &format!("{:.3} s", populate + copy),
                &format!("{rate:.0} MiB/s"),
            );
            row("  of which populate", &format!("{populate:.3} s"), "");
            row("  of which memcpy", &format!("{copy:.3} s"), &format!("{:.0} MiB/s", opts.mib as f64 / copy));
        }
        Err(e) => {
            failures += 1;
            row("floor: populate + memcpy", "FAILED", "");
            errors.push(format!("floor: {e:#}"));
        }
    }

    let mib = opts.mib.to_string();
    match repeated(&harness, "big_mem", &mib, opts.repeat) {
        Ok(runs) => {
            let best = best_of(&runs);
            if let Some(f) = floor_s {
                notes.push(format!(
                    "restore {} MiB / populate + memcpy floor: {:.2}x (best of each; target at most 1.2x)",
                    opts.mib,
                    secs(best.restore) / f
                ));
            }
            row(
                &format!("dump {} MiB (big_mem, {} image entries), best", opts.mib, best.entries),
                &format!("{:.3} s", secs(best.dump)),
                &format!("{:.0} MiB/s", opts.mib as f64 / secs(best.dump)),
            );
            row(
                &format!("restore {} MiB (verified PASS), best", opts.mib),
                &format!("{:.3} s", secs(best.restore)),
                &format!("{:.0} MiB/s", opts.mib as f64 / secs(best.restore)),
            );
            notes.push(format!("big_mem runs (dump/restore s): {}", list_runs(&runs)));
        }
        Err(e) => {
            failures += 1;
            row(&format!("dump + restore {} MiB (big_mem)", opts.mib), "FAILED", "");
            errors.push(format!("big_mem: {e:#}"));
        }
    }

    let mut tracked = true;
    for (label, args) in [("frozen only", &[][..]), ("with --pre-copy", &["--pre-copy"][..])] {
        match frozen_runs(&harness, opts.mib, opts.dirty_pct, args, opts.repeat) {
            Ok(runs) => {
                let times: Vec<f64> = runs.iter().map(|(t, _)| secs(*t)).collect();
                let best = times.iter().copied().fold(f64::MAX, f64::min);
                // A kernel without soft-dirty tracking: no pass ran.
                let skipped = !args.is_empty() && runs.iter().all(|(_, p)| p.is_empty());
                tracked &= !skipped;
                row(
                    &format!(
                        "frozen dump {} MiB dirtying {}%/s, {label}{}, best",
                        opts.mib,
                        opts.dirty_pct,
                        if skipped { " (skipped: no soft-dirty)" } else { "" }
                    ),
                    &format!("{best:.3} s"),
                    "",
                );
                let passes: Vec<String> = runs.iter().map(|(_, p)| format!("{p:?}")).collect();
                notes.push(format!(
                    "precopy_writer {label}: frozen s min/median/max {}; pages per pre-copy pass {}",
                    spread(&times),
                    passes.join(" ")
                ));
            }
            Err(e) => {
                failures += 1;
                row(&format!("frozen dump {} MiB, {label}", opts.mib), "FAILED", "");
                errors.push(format!("precopy_writer {label}: {e:#}"));
            }
        }
    }
    if !tracked {
        notes.push(
            "this kernel does not track soft-dirty pages (CONFIG_MEM_SOFT_DIRTY): `--pre-copy` copies everything frozen"
                .into(),
        );
    }

    let procs = opts.procs.to_string();
    match repeated(&harness, "fanout", &procs, opts.repeat) {
        Ok(runs) => {
            let best = best_of(&runs);
            let n = best.processes as f64;
            row(
                &format!("dump {} small processes (fanout), best", best.processes),
                &format!("{:.3} s", secs(best.dump)),
                &format!("{:.1} ms/process", secs(best.dump) * 1e3 / n),
            );
            row(
                &format!("restore {} small processes (verified PASS), best", best.processes),
                &format!("{:.3} s", secs(best.restore)),
                &format!("{:.1} ms/process", secs(best.restore) * 1e3 / n),
            );
            notes.push(format!("fanout runs (dump/restore s): {}", list_runs(&runs)));
        }
        Err(e) => {
            failures += 1;
            row(&format!("dump + restore {} processes (fanout)", opts.procs), "FAILED", "");
            errors.push(format!("fanout: {e:#}"));
        }
    }

    println!();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    for n in &notes {
        println!("{n}");
    }
    for e in &errors {
        println!("\nerror: {e}");
    }
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
