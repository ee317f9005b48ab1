//! Engine benchmark: `cargo run -p seamless-tests --release --bin bench-engine [-- OPTIONS]` (root).
//!
//! Measures, in one run on this machine:
//! - the floor: `mmap(MAP_POPULATE)` + `memcpy` of the same amount of memory (MiB/s), the cost of
//!   merely materialising and copying the pages once;
//! - `seamless dump` and `seamless restore` of the `big_mem` workload (1 GiB, MiB/s);
//! - `seamless dump` and `seamless restore` of the `fanout` workload (100 small processes, ms per
//!   process).
//!
//! Each round trip is verified (the restored workload must report PASS). A failing part prints its
//! error and the benchmark goes on. Images go to `/dev/shm/seamless-bench` (RAM, like the
//! preserved region) unless `--dir DIR` is given.
//!
//! Options: `--mib N` (default 1024), `--procs N` (default 100), `--dir DIR`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use seamless_tests::host::{Harness, RoundTrip};

struct Options {
    mib: u64,
    procs: u64,
    dir: PathBuf,
}

fn parse_args() -> Result<Options> {
    let mut opts = Options { mib: 1024, procs: 100, dir: PathBuf::from("/dev/shm/seamless-bench") };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--mib" => opts.mib = value()?.parse().context("--mib")?,
            "--procs" => opts.procs = value()?.parse().context("--procs")?,
            "--dir" => opts.dir = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("usage: bench-engine [--mib N] [--procs N] [--dir DIR]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(opts)
}

/// Runs the floor program; returns (MiB/s, populate seconds, memcpy seconds).
fn floor(harness: &Harness, mib: u64) -> Result<(f64, f64, f64)> {
    let bin = harness.binary("memfloor")?;
    let out = Command::new(&bin).arg(mib.to_string()).output().with_context(|| format!("running {}", bin.display()))?;
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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn row(what: &str, time: &str, rate: &str) {
    println!("| {what:<44} | {time:>10} | {rate:>18} |");
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

    println!();
    row("measurement", "time", "rate");
    println!("|{:-<46}|{:-<12}|{:-<20}|", "", "", "");

    match floor(&harness, opts.mib) {
        Ok((rate, populate, copy)) => {
            row(
                &format!("floor: mmap(MAP_POPULATE) + memcpy {} MiB", opts.mib),
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
    match harness.round_trip("big_mem", &[&mib]) {
        Ok(RoundTrip { dump, restore, entries, .. }) => {
            row(
                &format!("dump {} MiB (big_mem, {entries} image entries)", opts.mib),
                &format!("{:.3} s", secs(dump)),
                &format!("{:.0} MiB/s", opts.mib as f64 / secs(dump)),
            );
            row(
                &format!("restore {} MiB (verified PASS)", opts.mib),
                &format!("{:.3} s", secs(restore)),
                &format!("{:.0} MiB/s", opts.mib as f64 / secs(restore)),
            );
        }
        Err(e) => {
            failures += 1;
            row(&format!("dump + restore {} MiB (big_mem)", opts.mib), "FAILED", "");
            errors.push(format!("big_mem: {e:#}"));
        }
    }

    let procs = opts.procs.to_string();
    match harness.round_trip("fanout", &[&procs]) {
        Ok(RoundTrip { dump, restore, processes, .. }) => {
            let n = processes as f64;
            row(
                &format!("dump {processes} small processes (fanout)"),
                &format!("{:.3} s", secs(dump)),
                &format!("{:.1} ms/process", secs(dump) * 1e3 / n),
            );
            row(
                &format!("restore {processes} small processes (verified PASS)"),
                &format!("{:.3} s", secs(restore)),
                &format!("{:.1} ms/process", secs(restore) * 1e3 / n),
            );
        }
        Err(e) => {
            failures += 1;
            row(&format!("dump + restore {} processes (fanout)", opts.procs), "FAILED", "");
            errors.push(format!("fanout: {e:#}"));
        }
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
