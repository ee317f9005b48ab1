//! The kernel matrix: every pair of the scenario kernels (A newest 6.1, P the 6.12 point
//! release before B, B newest 6.12, C newest Debian 13 7.x; see `seamless_tests::vm::kernels`)
//! upgraded in both directions with every workload that crosses kernels and Debian's
//! redis-server ([`seamless_tests::scenarios::upgrade_everything`]), then a table kernel A x
//! kernel B -> pass/fail with times. Not part of the default run (12 VM scenarios): `tests/run
//! vm matrix`, or `cargo test -p seamless-tests --test matrix_vm -- --ignored --nocapture`.
//! `SEAMLESS_MATRIX=A-C,C-B` runs only those pairs.

use seamless_tests::scenarios::{upgrade_everything, Crossing};
use seamless_tests::vm::{env, Which};

fn pairs() -> Vec<(Which, Which)> {
    let all: Vec<(Which, Which)> =
        Which::ALL.iter().flat_map(|&f| Which::ALL.iter().filter(move |&&t| t != f).map(move |&t| (f, t))).collect();
    match std::env::var("SEAMLESS_MATRIX") {
        Ok(only) => all
            .into_iter()
            .filter(|(f, t)| only.split(',').any(|p| p.trim() == format!("{}-{}", f.label(), t.label())))
            .collect(),
        Err(_) => all,
    }
}

fn cell(r: &Result<Crossing, String>) -> String {
    match r {
        Ok(c) => format!(
            "pass: redis blackout {:.1} s, jump to /init {:.1} s, seamless-init {:.1} s, {} workloads, {:.0} s in all",
            c.blackout.as_secs_f64(),
            c.jump_to_init.as_secs_f64(),
            c.init.as_secs_f64(),
            c.workloads,
            c.total.as_secs_f64()
        ),
        Err(e) => format!("FAIL: {}", e.lines().next().unwrap_or("").chars().take(160).collect::<String>()),
    }
}

#[test]
#[ignore = "12 VM scenarios: tests/run vm matrix"]
fn matrix() -> anyhow::Result<()> {
    let env = env()?;
    let mut results = Vec::new();
    for (from, to) in pairs() {
        let name = format!("mx-{}-{}", from.label(), to.label()).to_lowercase();
        let r = upgrade_everything(&name, from, to).map_err(|e| format!("{e:#}"));
        if let Err(e) = &r {
            eprintln!("matrix {} -> {}: {e}", from.label(), to.label());
        }
        results.push((from, to, r));
    }
    // The grid: one row per kernel booted first, one column per kernel upgraded to.
    let name = |w: Which| format!("{} {}", w.label(), env.kernel(w).release);
    let mut table = String::from("| from \\ to |");
    for t in Which::ALL {
        table.push_str(&format!(" {} |", name(t)));
    }
    table.push_str(&format!("\n|---|{}\n", "---|".repeat(Which::ALL.len())));
    for f in Which::ALL {
        table.push_str(&format!("| {} |", name(f)));
        for t in Which::ALL {
            let short = match results.iter().find(|(a, b, _)| *a == f && *b == t) {
                None if f == t => " |".to_string(),
                None => " not run |".to_string(),
                Some((_, _, Ok(c))) => {
                    format!(" pass: {:.1} s blackout, {:.0} s |", c.blackout.as_secs_f64(), c.total.as_secs_f64())
                }
                Some((_, _, Err(_))) => " **FAIL** |".to_string(),
            };
            table.push_str(&short);
        }
        table.push('\n');
    }
    let mut details = String::new();
    for (from, to, r) in &results {
        details.push_str(&format!("{} -> {}: {}\n", from.label(), to.label(), cell(r)));
    }
    println!("\nkernel matrix ({} pairs, accel {}):\n\n{table}\n{details}", results.len(), env.accel);
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, _, r)| r.is_err())
        .map(|(f, t, _)| format!("{} -> {}", f.label(), t.label()))
        .collect();
    anyhow::ensure!(failed.is_empty(), "{} of {} pairs failed: {}", failed.len(), results.len(), failed.join(", "));
    Ok(())
}
