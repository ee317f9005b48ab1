//! Per-process verdicts: does the tree exist, and does every resource in it pass the dump
//! pre-check? The trees are frozen for the length of the check and resumed right after.

use super::Verdict;
use crate::dump::{self, DumpOptions};

/// Every pid of the tree rooted at `root` (root first), from `/proc/PID/task/*/children`.
pub fn tree_pids(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
            }
        }
        i += 1;
    }
    out
}

fn rss_bytes(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// A generous estimate of the image size for these trees: resident memory plus 1 MiB of
/// metadata per process plus 4 MiB.
pub fn estimate_image_bytes(roots: &[i32]) -> u64 {
    let pids: Vec<i32> = roots.iter().flat_map(|r| tree_pids(*r)).collect();
    pids.iter().map(|p| rss_bytes(*p) + (1 << 20)).sum::<u64>() + (4 << 20)
}

fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// How high the pids of a freshly booted kernel's own threads go, estimated from this
/// kernel: the highest pid of the threads kthreadd started during boot (up to 10 s after
/// init), doubled as a margin for a kernel that starts more. Threads started later
/// (kworkers come and go) do not count: the new kernel's early boot does not have them.
pub fn boot_thread_pid_limit() -> Option<i32> {
    let init_start = start_ticks(1)?;
    let text = std::fs::read_to_string("/proc/2/task/2/children").ok()?;
    let boot: Vec<i32> = text
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|p| start_ticks(*p).is_some_and(|t| t <= init_start + 1000))
        .collect();
    boot.into_iter().max().map(|m| m * 2)
}

/// Warns about pids the new kernel's own threads may already hold when seamless-init runs:
/// such a process cannot get its pid back and would not be restored.
fn pid_verdict(root: i32, limit: Option<i32>) -> Option<Verdict> {
    let limit = limit?;
    let low: Vec<i32> = tree_pids(root).into_iter().filter(|p| *p <= limit).collect();
    (!low.is_empty()).then(|| {
        Verdict::warn(
            format!("pids of {root}"),
            format!(
                "{low:?} at or below {limit}, twice the highest pid of the threads this kernel started while booting: the new kernel's own threads may take them, and those processes would not be restored; restart the service with higher pids (sysctl kernel.ns_last_pid) first"
            ),
        )
    })
}

/// One verdict per selected tree, plus a warning for trees with low pids.
pub fn check(roots: &[i32]) -> Vec<Verdict> {
    let limit = boot_thread_pid_limit();
    let mut v: Vec<Verdict> = roots.iter().filter_map(|&root| pid_verdict(root, limit)).collect();
    v.extend(trees(roots));
    v
}

fn trees(roots: &[i32]) -> Vec<Verdict> {
    roots
        .iter()
        .map(|&root| {
            let subject = format!("pid {root}");
            if std::fs::metadata(format!("/proc/{root}")).is_err() {
                return Verdict::fail(subject, "no such process");
            }
            let comm = std::fs::read_to_string(format!("/proc/{root}/comm")).unwrap_or_default().trim().to_string();
            let n = tree_pids(root).len();
            match precheck_tree(root) {
                Ok(()) => Verdict::ok(subject, format!("{comm}: {n} process(es), every resource supported")),
                Err(e) => Verdict::fail(subject, format!("{comm}: {e}")),
            }
        })
        .collect()
}

/// Freezes the tree, runs the dump's pre-check (the same refusals as `seamless dump`, see
/// [`dump::precheck`]), resumes it. Reads only: nothing in the processes changes.
pub fn precheck_tree(root: i32) -> Result<(), dump::DumpError> {
    let frozen = dump::freeze::freeze_trees(&[root])?;
    dump::precheck::run(&frozen, &DumpOptions::default())?;
    frozen.resume();
    Ok(())
}
