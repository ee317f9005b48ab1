//! Service benchmark (issue 16): memcached and redis as their Debian systemd units in the
//! Debian 12 guest, loaded from the host side of the guest's tap NIC, across `seamless
//! upgrade` 6.1 -> 6.12, a plain kexec and a normal reboot into 6.12 (one guest each, one after
//! the other). Draws a PNG and an SVG per load (throughput over time, the three on one chart)
//! and writes the table, into `docs/bench-services/` unless `--out DIR`.
//!
//! Run as root: `cargo run -p seamless-tests --release --bin bench-services`
//! (`-- --modes seamless,kexec,reboot --before 20 --after 60`).

use anyhow::{bail, Context, Result};
use seamless_tests::services::chart::{self, Chart, Line, Panel};
use seamless_tests::services::series::{self, Trace};
use seamless_tests::services::{self, Durations, Mode, Run};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

struct Args {
    replot: bool,
    modes: Vec<Mode>,
    durations: Durations,
    out: PathBuf,
}

fn args() -> Result<Args> {
    let mut a = Args {
        replot: false,
        modes: Mode::ALL.to_vec(),
        durations: Durations { before: Duration::from_secs(20), after: Duration::from_secs(60) },
        out: seamless_tests::paths::repo_root().join("docs/bench-services"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--modes" => {
                let v = value()?;
                a.modes = v
                    .split(',')
                    .map(|m| Mode::ALL.into_iter().find(|x| x.name() == m).with_context(|| format!("no mode {m}")))
                    .collect::<Result<_>>()?;
            }
            "--before" => a.durations.before = Duration::from_secs(value()?.parse()?),
            "--after" => a.durations.after = Duration::from_secs(value()?.parse()?),
            "--out" => a.out = value()?.into(),
            "--replot" => a.replot = true,
            other => bail!("unknown argument {other} (--modes, --before, --after, --out, --replot)"),
        }
    }
    Ok(a)
}

fn ms(report: &serde_json::Value, list: &str, names: &[&str]) -> Option<f64> {
    let stages = report.get(list)?.as_array()?;
    let mut sum = 0.0;
    let mut found = false;
    for s in stages {
        // Stages are [name, µs] pairs or {"name", "micros"} objects.
        let (n, us) = match s {
            serde_json::Value::Array(v) => (v.first()?.as_str()?, v.get(1)?.as_f64()?),
            serde_json::Value::Object(o) => (o.get("name")?.as_str()?, o.get("micros")?.as_f64()?),
            _ => continue,
        };
        if names.contains(&n) {
            sum += us / 1000.0;
            found = true;
        }
    }
    found.then_some(sum)
}

fn opt(v: Option<f64>, unit: &str, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$} {unit}")).unwrap_or_else(|| "–".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let accel = seamless_tests::vm::env().map(|e| e.accel.clone()).unwrap_or_default();
    format!("{cpu}, {cores} host cores, QEMU {accel}, guest 2 vCPUs / 2 GiB")
}

fn table(runs: &[Run]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| load | kernel change | quiescence | save | restore | image | client-observed blackout | back to 90 % | connections dropped | hit rate before → after |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    let names: Vec<String> = runs.first().map(|r| r.loads.iter().map(|l| l.name.clone()).collect()).unwrap_or_default();
    for name in &names {
        for r in runs {
            let Some(l) = r.loads.iter().find(|l| &l.name == name) else { continue };
            let t = &l.trace;
            let (q, save, restore) = match &r.report {
                Some(rep) => (
                    ms(rep, "checkpoint_stages", &["dump", "tmpfs", "sync+freeze", "root-identity", "complete"]),
                    ms(rep, "checkpoint_stages", &["dump"]),
                    ms(rep, "restore_stages", &["restore"]),
                ),
                None => (None, None, None),
            };
            let image = r
                .dumped
                .as_deref()
                .and_then(|d| d.split(", ").find(|p| p.ends_with("MiB of pages")))
                .map(|p| p.trim_end_matches(" of pages").to_string())
                .unwrap_or_else(|| "–".into());
            let hit = match (series::hit_rate(t, r.event_s, 10.0, false), series::hit_rate(t, r.event_s, 10.0, true)) {
                (Some(a), Some(b)) => format!("{a:.1} % → {b:.1} %"),
                (Some(a), None) => format!("{a:.1} % → –"),
                _ => "–".into(),
            };
            let drops =
                if t.drops.is_empty() { "0".to_string() } else { format!("{} ({})", t.drops.len(), t.drops[0].1) };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {image} | {:.1} s | {} | {drops} | {hit} |",
                r.mode.name(),
                opt(q, "ms", 0),
                opt(save, "ms", 0),
                opt(restore, "ms", 0),
                t.gap_s,
                opt(series::back_to(t, r.event_s, 0.9), "s", 1),
            );
        }
    }
    s
}

fn csv(r: &Run, t: &Trace) -> String {
    let mut s = String::from("seconds_from_change,requests_per_s,hit_rate_percent\n");
    for (x, ops, hit) in series::rates(t, r.event_s) {
        let _ = writeln!(s, "{x:.1},{ops:.1},{}", hit.map(|h| format!("{h:.1}")).unwrap_or_default());
    }
    s
}

/// (seconds from the change, requests/s, hit rate %).
type Point = (f64, f64, Option<f64>);

/// Draws one chart per load: `loads` are (name, file stem), `curves` per mode the points of
/// each load in that order.
fn charts(a: &Args, loads: &[(String, String)], curves: &[(Mode, Vec<Vec<Point>>)]) -> Result<()> {
    for (i, (name, stem)) in loads.iter().enumerate() {
        let lines = |hit: bool| -> Vec<Line> {
            curves
                .iter()
                .map(|(mode, pts)| Line {
                    label: mode.label().into(),
                    color: mode.color(),
                    points: pts[i]
                        .iter()
                        .filter_map(|&(x, ops, h)| if hit { h.map(|h| (x, h)) } else { Some((x, ops)) })
                        .collect(),
                })
                .collect()
        };
        let mut panels = vec![Panel { y_desc: "requests / s".into(), lines: lines(false), y_max: None }];
        if stem.starts_with("memcached") {
            panels.push(Panel { y_desc: "hit rate (%)".into(), lines: lines(true), y_max: Some(105.0) });
        }
        let c = Chart { title: format!("{name}: 6.1 → 6.12"), panels };
        chart::write(&c, &a.out.join(stem))?;
        println!("wrote {}.png and .svg", a.out.join(stem).display());
    }
    Ok(())
}

/// `--replot`: the charts again from the CSV files of an earlier run in `--out`.
fn replot(a: &Args) -> Result<()> {
    let loads: Vec<(String, String)> = [
        ("memcached, 0 ms miss penalty", "memcached-0ms"),
        ("memcached, 12 ms miss penalty", "memcached-12ms"),
        ("redis", "redis"),
    ]
    .iter()
    .map(|(n, s)| (n.to_string(), s.to_string()))
    .collect();
    let mut curves = Vec::new();
    for &m in &a.modes {
        let mut per_load = Vec::new();
        for (_, stem) in &loads {
            let path = a.out.join(format!("{stem}-{}.csv", m.name()));
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut pts = Vec::new();
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split(',').collect();
                if f.len() == 3 {
                    pts.push((f[0].parse()?, f[1].parse()?, f[2].parse().ok()));
                }
            }
            per_load.push(pts);
        }
        curves.push((m, per_load));
    }
    charts(a, &loads, &curves)
}

fn main() -> Result<()> {
    seamless_tests::host::become_subreaper()?;
    let a = args()?;
    chart::register_font()?;
    if a.replot {
        return replot(&a);
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let env = seamless_tests::vm::env()?;
    println!(
        "service benchmark: {} -> {}, modes {:?}, load {} s before and {} s after",
        env.kernel(seamless_tests::vm::Which::A).release,
        env.kernel(seamless_tests::vm::Which::B).release,
        a.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
        a.durations.before.as_secs(),
        a.durations.after.as_secs()
    );
    let mut runs = Vec::new();
    for &m in &a.modes {
        match services::run(m, a.durations) {
            Ok(r) => {
                for l in &r.loads {
                    std::fs::write(a.out.join(format!("{}-{}.csv", l.stem, m.name())), csv(&r, &l.trace))?;
                    println!(
                        "{}: {}: {} requests, longest pause {:.1} s at {:.1} s, {} dropped, {} failed connects, {} bad replies (first: {:?})",
                        m.name(),
                        l.name,
                        l.trace.buckets.iter().map(|b| b.ops).sum::<u64>(),
                        l.trace.gap_s,
                        l.trace.gap_start_s - r.event_s,
                        l.trace.drops.len(),
                        l.trace.connect_failures,
                        l.trace.bad_count,
                        l.trace.bad_replies.iter().map(|(t, w)| (t - r.event_s, w)).collect::<Vec<_>>()
                    );
                }
                println!(
                    "{}: change took {:.1} s; memcached items {:?} -> {:?}; units before: {}; after: {}",
                    m.name(),
                    r.change.as_secs_f64(),
                    r.items.0,
                    r.items.1,
                    r.pids.0,
                    r.pids.1
                );
                println!("{}: in the guest at the end:\n{}", m.name(), r.diag.trim_end());
                if let Some(rep) = &r.report {
                    println!("{}: report.json: {rep}", m.name());
                }
                runs.push(r);
            }
            Err(e) => eprintln!("{}: failed: {e:#}", m.name()),
        }
    }
    if runs.is_empty() {
        bail!("no run succeeded");
    }
    let loads: Vec<(String, String)> = runs[0].loads.iter().map(|l| (l.name.clone(), l.stem.clone())).collect();
    let curves: Vec<(Mode, Vec<Vec<Point>>)> =
        runs.iter().map(|r| (r.mode, r.loads.iter().map(|l| series::rates(&l.trace, r.event_s)).collect())).collect();
    charts(&a, &loads, &curves)?;
    let date = std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output()?;
    let mut md = format!("Measured {} on {}.\n\n", String::from_utf8_lossy(&date.stdout).trim(), machine());
    md.push_str(&table(&runs));
    std::fs::write(a.out.join("table.md"), &md)?;
    println!("\n{md}");
    Ok(())
}
