//! Per-process verdicts: does the tree exist, and does every resource in it pass the dump
//! pre-check? The trees are frozen for the length of the check and resumed right after.

use super::config::{tree_needs, Need, TreeFacts};
use super::Verdict;
use crate::dump::{self, DumpOptions};
use seamless_sys::chain;

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

/// The bytes of `pid`'s memory that a dump writes, from `/proc/PID/smaps_rollup`: dirty pages
/// (anonymous memory, written private file pages, shared memory) and swapped-out ones. Clean
/// file pages (program text, libraries) are not saved: the file has them.
fn saved_bytes(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let kb = |field: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kb("Private_Dirty:") + kb("Shared_Dirty:") + kb("Swap:")) * 1024
}

/// Records of one process beyond its pages (process, threads, areas, descriptors, ...): a
/// generous allowance.
const RECORDS_PER_PROCESS: u64 = 512 << 10;

/// A generous estimate of the image size for these trees: the memory a dump saves plus
/// 512 KiB of records per process plus 4 MiB.
pub fn estimate_image_bytes(roots: &[i32]) -> u64 {
    let pids: Vec<i32> = roots.iter().flat_map(|r| tree_pids(*r)).collect();
    pids.iter().map(|p| saved_bytes(*p) + RECORDS_PER_PROCESS).sum::<u64>() + (4 << 20)
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
    check_with_needs(roots).0
}

/// [`check`], and what the trees need from the new kernel (for [`super::config::check`]).
pub fn check_with_needs(roots: &[i32]) -> (Vec<Verdict>, Vec<Need>) {
    let limit = boot_thread_pid_limit();
    let mut v: Vec<Verdict> = roots.iter().filter_map(|&root| pid_verdict(root, limit)).collect();
    let (t, needs) = trees(roots);
    v.extend(t);
    (v, needs)
}

fn trees(roots: &[i32]) -> (Vec<Verdict>, Vec<Need>) {
    let mut needs = Vec::new();
    let mut out = Vec::new();
    for &root in roots {
        let subject = format!("pid {root}");
        if std::fs::metadata(format!("/proc/{root}")).is_err() {
            out.push(Verdict::fail(subject, "no such process"));
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{root}/comm")).unwrap_or_default().trim().to_string();
        let n = tree_pids(root).len();
        match precheck_tree_facts(root) {
            Ok((files, facts)) => {
                out.push(Verdict::ok(subject, format!("{comm}: {n} process(es), every resource supported")));
                out.extend(new_kernel_refusals(root, &files));
                needs.extend(tree_needs(&facts, &files.descs, !files.tcp_pending.is_empty()));
                let objects: Vec<_> = files.objects.list.iter().map(|(o, _)| o.clone()).collect();
                needs.extend(super::config::object_needs(root, &objects));
            }
            Err(e) => out.push(Verdict::fail(subject, format!("{comm}: {}", chain(&e)))),
        }
    }
    (out, needs)
}

/// The range of `net.ipv4.ping_group_range` a freshly booted kernel has: no group at all.
const PING_RANGE_DEFAULT: (u32, u32) = (1, 0);

fn ping_group_range() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

/// Resources the dump accepts but the new kernel is likely to refuse to recreate (the tree
/// holding one would not be restored there, the others would): ICMP datagram ("ping")
/// sockets, which the kernel creates only for a group inside `net.ipv4.ping_group_range`.
/// seamless-init recreates them as group 0, after it has set the old kernel's sysctls (see
/// `upgrade::sysctl`): the range in force now must include group 0.
pub fn new_kernel_refusals(root: i32, files: &dump::files::FilePlan) -> Vec<Verdict> {
    use seamless_image::records::FileKind;
    let ping = |d: &seamless_image::records::FileDesc| match &d.kind {
        FileKind::Socket(s) => {
            s.ty == libc::SOCK_DGRAM
                && ((s.family == libc::AF_INET && s.protocol == libc::IPPROTO_ICMP)
                    || (s.family == libc::AF_INET6 && s.protocol == libc::IPPROTO_ICMPV6))
        }
        _ => false,
    };
    let range = ping_group_range();
    if range.is_some_and(|(lo, hi)| lo == 0 && hi >= lo) {
        return Vec::new();
    }
    let here = match range {
        Some(r) if r == PING_RANGE_DEFAULT => "the default '1 0' (no group)".to_string(),
        Some((lo, hi)) => format!("'{lo} {hi}'"),
        None => "unknown".into(),
    };
    let mut out = Vec::new();
    for (pid, table) in &files.tables {
        for f in &table.fds {
            if files.descs.iter().any(|d| d.id == f.desc && ping(d)) {
                out.push(Verdict::warn(
                    format!("pid {pid} fd {}", f.fd),
                    format!(
                        "ICMP datagram (ping) socket in the tree of pid {root}: the new kernel recreates it as group 0 with the net.ipv4.ping_group_range carried from here, which is {here} and excludes group 0: this tree would not be restored (the others would); include group 0 in the range before the upgrade (e.g. sysctl net.ipv4.ping_group_range='0 2147483647')"
                    ),
                ));
            }
        }
    }
    out
}

/// Freezes the tree, runs the dump's pre-check (the same refusals as `seamless dump`, see
/// [`dump::precheck`]), resumes it and returns what the descriptors are. Reads only: nothing
/// in the processes changes.
pub fn precheck_tree(root: i32) -> Result<dump::files::FilePlan, dump::DumpError> {
    precheck_tree_facts(root).map(|(files, _)| files)
}

/// [`precheck_tree`], and what else the new kernel must support for this tree: rseq areas
/// (read from the frozen threads) and POSIX timers.
pub fn precheck_tree_facts(root: i32) -> Result<(dump::files::FilePlan, TreeFacts), dump::DumpError> {
    let frozen = dump::freeze::freeze_trees(&[root])?;
    // `check` is the upgrade's pre-flight: the upgrade carries a time namespace's clocks.
    let files =
        dump::precheck::run(&frozen, &DumpOptions { carry_clocks: true, pre_flight: true, ..Default::default() });
    let mut facts = TreeFacts { root, ..Default::default() };
    for p in frozen.procs() {
        facts.rseq |= p.tids.iter().any(|t| seamless_sys::ptrace::get_rseq(*t).is_ok_and(|r| r.pointer != 0));
        let timers = std::fs::read_to_string(format!("/proc/{}/timers", p.pid)).unwrap_or_default();
        facts.posix_timers |= timers.lines().any(|l| l.starts_with("ID:"));
    }
    frozen.resume();
    Ok((files?, facts))
}
