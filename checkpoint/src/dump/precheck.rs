//! The pre-check: every refusal of the dump, shared by `seamless dump` and `seamless check`.
//! It runs on frozen trees and only reads (`/proc`, duplicated descriptors inspected from
//! outside); nothing in any process is injected into or changed before it has passed for every
//! process of every tree. What it checks:
//!
//! - per process ([`process`]): system-call injection must be safe in every thread (no seccomp
//!   strict mode, no seccomp filter that blocks an injected call, no 32-bit code, no syscall user dispatch, no
//!   aarch64 SVE/SME register state), and the working
//!   directory, root directory and executable must be reachable again by their paths (not
//!   deleted, not replaced by another file); the namespaces must be the dumper's; no
//!   `SCHED_DEADLINE`, memory pin or lock of unknowable kind (the image does not carry them; it does carry the other
//!   scheduling attributes, `oom_score_adj` and the THP setting);
//! - no two processes share an address space without being threads of one process;
//! - the memory map ([`super::mm::precheck`]);
//! - every descriptor ([`super::files::collect`], which also gathers what the dump writes;
//!   it refuses among others file locks that cannot be taken again exactly:
//!   [`super::locks`]).

use super::files::{self, FilePlan};
use super::{mm, DumpError, DumpOptions, Frozen};
use seamless_sys::chain;
use std::os::unix::fs::MetadataExt;

fn refuse(pid: i32, resource: impl Into<String>, reason: impl Into<String>) -> DumpError {
    DumpError::Unsupported { pid, resource: resource.into(), reason: reason.into() }
}

/// The `Seccomp:` field of a thread's status (0 disabled, 1 strict, 2 filter).
fn seccomp_mode(pid: i32, tid: i32) -> Result<u32, DumpError> {
    let path = format!("/proc/{pid}/task/{tid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| DumpError::io(pid, format!("reading {path}"), e))?;
    Ok(text.lines().find_map(|l| l.strip_prefix("Seccomp:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0))
}

/// Refuses a process whose threads cannot take injected system calls safely. The dump injects
/// among others `mmap`, `munmap`, `brk`, `rt_sigaction`, `getitimer`, `prctl`,
/// `timer_gettime`, `sigaltstack` and `get_robust_list`: in seccomp strict mode any of them
/// kills the process; in filter mode the filters are evaluated for each of them
/// ([`super::seccomp::precheck`]) and carried when all pass.
fn injectable(pid: i32, tids: &[i32]) -> Result<(), DumpError> {
    for &tid in tids {
        match seccomp_mode(pid, tid)? {
            0 => {}
            1 => {
                return Err(refuse(
                    pid,
                    format!("thread {tid}"),
                    "seccomp strict mode: any system call the dump would inject (mmap, prctl, ...) kills the process; it cannot be checkpointed",
                ))
            }
            2 => {}
            mode => {
                return Err(refuse(pid, format!("thread {tid}"), format!("unknown seccomp mode {mode}")));
            }
        }
    }
    // Filter mode: carried (record kind 47) when every call the dump injects passes.
    super::seccomp::precheck(pid, tids)
}

/// Refuses POSIX timers restore could not create again exactly: a kernel-level `SIGEV_THREAD`
/// notification (only raw `timer_create` calls make one; glibc turns `SIGEV_THREAD` into
/// `SIGEV_THREAD_ID` aimed at its helper thread, which is restored) and a `SIGEV_THREAD_ID`
/// timer whose thread has exited (its expiries go nowhere; a new timer needs a live thread).
fn timers(pid: i32, tids: &[i32]) -> Result<(), DumpError> {
    for t in super::process::parse_timers(pid)? {
        if t.notify == libc::SIGEV_THREAD {
            return Err(refuse(
                pid,
                format!("POSIX timer {}", t.id),
                "notification SIGEV_THREAD at the system-call level (raw timer_create): the image carries SIGEV_SIGNAL, SIGEV_NONE and SIGEV_THREAD_ID timers only",
            ));
        }
        if t.notify == libc::SIGEV_THREAD_ID && !tids.contains(&t.tid) {
            return Err(refuse(
                pid,
                format!("POSIX timer {}", t.id),
                format!(
                    "SIGEV_THREAD_ID timer aimed at thread {}, which is not a live thread of the process: restore cannot aim a timer at it",
                    t.tid
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses threads the injection would run wrong code in: a thread executing 32-bit code
/// (the injected `syscall` instruction and 64-bit system call numbers are wrong there), a
/// thread with register state the image does not carry (aarch64: live SVE registers, SME
/// streaming mode or ZA: [`seamless_sys::arch::uncarried_state`]), and
/// syscall user dispatch (injected calls may be turned into SIGSYS, and restore does not set
/// it up again). Reads the stopped threads' registers only.
fn native(pid: i32, tids: &[i32]) -> Result<(), DumpError> {
    for &tid in tids {
        let is_64 = seamless_sys::arch::native_mode(tid)
            .map_err(|e| DumpError::sys(pid, format!("registers of thread {tid}"), e))?;
        if !is_64 {
            return Err(refuse(
                pid,
                format!("thread {tid}"),
                "runs 32-bit code: the dump injects 64-bit system calls, which would crash it; 32-bit code is not checkpointed",
            ));
        }
        if let Some(why) = seamless_sys::arch::uncarried_state(tid)
            .map_err(|e| DumpError::sys(pid, format!("vector registers of thread {tid}"), e))?
        {
            return Err(refuse(pid, format!("thread {tid}"), format!("{why}; it cannot be checkpointed")));
        }
        match seamless_sys::ptrace::get_syscall_user_dispatch(tid) {
            Ok(c) if c.mode != 0 => {
                return Err(refuse(
                    pid,
                    format!("thread {tid}"),
                    format!(
                        "syscall user dispatch is on (mode {}, allowed code {:#x}+{:#x}): injected system calls may raise SIGSYS, and restore does not set it up again",
                        c.mode, c.offset, c.len
                    ),
                ))
            }
            Ok(_) => {}
            // Before Linux 6.4 the setting cannot be read.
            Err(e) => log::debug!("pid {pid} thread {tid}: syscall user dispatch unknown: {}", chain(&e)),
        }
    }
    Ok(())
}

/// Refuses processes of the trees that share one address space without being threads of one
/// process (`clone(CLONE_VM)`, a `vfork` child before its `exec`): each would be restored
/// with its own copy, and the dump's injections into one would change the other. Only
/// processes with the same virtual size (`/proc/PID/stat` field 23) are compared (`kcmp`).
fn separate_mms(frozen: &Frozen) -> Result<(), DumpError> {
    let mut by_size: std::collections::BTreeMap<u64, Vec<i32>> = std::collections::BTreeMap::new();
    for p in frozen.procs().iter().filter(|p| p.zombie.is_none()) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.pid))
            .map_err(|e| DumpError::io(p.pid, "reading /proc/PID/stat", e))?;
        let vsize = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(20)?.parse().ok()).unwrap_or(0);
        by_size.entry(vsize).or_default().push(p.pid);
    }
    for pids in by_size.values().filter(|v| v.len() > 1) {
        for (i, &a) in pids.iter().enumerate() {
            for &b in &pids[i + 1..] {
                if seamless_sys::proc::kcmp_vm(a, b)
                    .map_err(|e| DumpError::sys(a, format!("comparing with pid {b}"), e))?
                {
                    return Err(refuse(
                        a,
                        format!("address space (shared with pid {b})"),
                        "shares its memory with another process (clone with CLONE_VM, or vfork before exec): restore would give each its own copy",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Refuses a cwd, root or exe (`what`, a `/proc/PID/` link) that restore could not open again
/// by its path: deleted (link count 0), or the path now names another file.
fn reachable(pid: i32, what: &str) -> Result<(), DumpError> {
    let link_path = format!("/proc/{pid}/{what}");
    let link = std::fs::read_link(&link_path)
        .map_err(|e| DumpError::io(pid, format!("readlink {link_path}"), e))?
        .to_string_lossy()
        .into_owned();
    let md = std::fs::metadata(&link_path).map_err(|e| DumpError::io(pid, format!("stat {link_path}"), e))?;
    let resource = format!("{what} ({link})");
    if super::nodes::saved_instead(what, &link, &md) {
        return Ok(());
    }
    if md.nlink() == 0 {
        return Err(refuse(
            pid,
            resource,
            format!("the {} was deleted: restore reopens it by path, so it cannot be restored", describe(what)),
        ));
    }
    match std::fs::metadata(&link) {
        Ok(now) if now.dev() == md.dev() && now.ino() == md.ino() => Ok(()),
        Ok(_) => Err(refuse(
            pid,
            resource,
            format!(
                "the path now names another file than the process's {} (replaced or renamed): restore reopens it by path, so it would get the wrong one",
                describe(what)
            ),
        )),
        Err(e) => Err(refuse(
            pid,
            resource,
            format!("the path of the process's {} cannot be opened ({}): restore reopens it by path", describe(what), chain(&e)),
        )),
    }
}

fn describe(what: &str) -> &'static str {
    match what {
        "cwd" => "working directory",
        "root" => "root directory",
        _ => "executable",
    }
}

/// Refuses a process in other namespaces than the dumper's (`/proc/PID/ns/*`, including
/// `pid_for_children` and `time_for_children`): restore creates processes in its own. With
/// `carry_clocks` (an upgrade) a time namespace of the process's own is accepted when its
/// children share it (`time` = `time_for_children`): its offsets are carried
/// ([`clock_offsets`]).
fn namespaces(pid: i32, carry_clocks: bool) -> Result<(), DumpError> {
    let dir = format!("/proc/{pid}/ns");
    let entries = std::fs::read_dir(&dir).map_err(|e| DumpError::io(pid, format!("listing {dir}"), e))?;
    let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let link = |name: &str| {
        std::fs::read_link(format!("{dir}/{name}")).map_err(|e| DumpError::io(pid, format!("readlink {dir}/{name}"), e))
    };
    for name in names {
        let theirs = link(&name)?;
        let Ok(ours) = std::fs::read_link(format!("/proc/self/ns/{name}")) else { continue };
        if theirs == ours {
            continue;
        }
        if carry_clocks
            && (name == "time" || name == "time_for_children")
            && link("time")? == link("time_for_children")?
        {
            continue;
        }
        return Err(refuse(
            pid,
            format!("namespace {name} ({})", theirs.display()),
            format!(
                "differs from the dumper's ({}): processes are restored in the restorer's namespaces, so containers and unshared processes are not checkpointed{}",
                ours.display(),
                if name.starts_with("time") && !carry_clocks {
                    " (a time namespace is carried by `seamless upgrade`, not by a same-kernel dump)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(())
}

/// `/proc/PID/timens_offsets` (the offsets of the time namespace PID's children get; the
/// pre-check made sure that is its own): (monotonic, boottime) in nanoseconds.
fn timens_offsets(pid: &str) -> Result<(i64, i64), String> {
    let path = format!("/proc/{pid}/timens_offsets");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    parse_timens_offsets(&text).ok_or_else(|| format!("{path}: cannot parse {text:?}"))
}

fn parse_timens_offsets(text: &str) -> Option<(i64, i64)> {
    let (mut mono, mut boot) = (None, None);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [clock, secs, nanos] = f[..] else { return None };
        let ns = secs.parse::<i64>().ok()?.checked_mul(1_000_000_000)?.checked_add(nanos.parse::<i64>().ok()?)?;
        match clock {
            "monotonic" | "1" => mono = Some(ns),
            "boottime" | "7" => boot = Some(ns),
            _ => {}
        }
    }
    Some((mono?, boot?))
}

/// How far the dumped processes' clocks are ahead of the dumper's (see
/// [`super::DumpSummary::clock_offsets`]). They must all share one time namespace: the image
/// has one set of clock offsets.
pub fn clock_offsets(frozen: &Frozen) -> Result<(i64, i64), DumpError> {
    let ours = std::fs::read_link("/proc/self/ns/time").ok();
    let mut seen: Option<(i32, std::path::PathBuf)> = None;
    for p in frozen.procs().iter().filter(|p| p.zombie.is_none()) {
        let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/time", p.pid)) else { continue };
        match &seen {
            Some((first, other)) if *other != ns => {
                return Err(refuse(
                    p.pid,
                    format!("namespace time ({})", ns.display()),
                    format!(
                        "differs from that of pid {first} ({}): the dumped processes must share one time namespace (the image carries one set of clock offsets)",
                        other.display()
                    ),
                ))
            }
            Some(_) => {}
            None => seen = Some((p.pid, ns)),
        }
    }
    let Some((pid, ns)) = seen else { return Ok((0, 0)) };
    if Some(&ns) == ours.as_ref() {
        return Ok((0, 0));
    }
    let theirs = timens_offsets(&pid.to_string()).map_err(|e| refuse(pid, "time namespace offsets".to_string(), e))?;
    let own = timens_offsets("self").map_err(|e| refuse(pid, "the dumper's time namespace offsets".to_string(), e))?;
    Ok((theirs.0.saturating_sub(own.0), theirs.1.saturating_sub(own.1)))
}

fn status_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(|v| v.trim().to_string())
}

/// Refuses scheduling and memory-management settings the image does not carry (restore would
/// silently reset them): what [`super::sched::precheck`] refuses (`SCHED_DEADLINE`, I/O
/// priority hints), pinned memory (`VmPin`), locked memory whose kind cannot be known
/// ([`super::access::precheck`]; other locks are carried). (Policies, priorities,
/// affinity and I/O priority are carried by [`super::sched`]; `oom_score_adj` and
/// `PR_SET_THP_DISABLE` by [`process_settings`].)
fn settings(pid: i32, tids: &[i32]) -> Result<(), DumpError> {
    super::sched::precheck(pid, tids)?;
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| DumpError::io(pid, format!("reading {path}"), e))?;
    if status_value(&status, "VmLck").is_some_and(|v| v.trim_end_matches("kB").trim() != "0") {
        // Locked areas are carried (record kind 55) unless the lock's kind cannot be known.
        super::access::precheck(pid)?;
    }
    for (key, what) in [("VmPin", "pinned")] {
        if let Some(v) = status_value(&status, key).filter(|v| v.trim_end_matches("kB").trim() != "0") {
            return Err(refuse(
                pid,
                format!("{key} {v}"),
                format!(
                    "{v} of {what} memory: memory pins are not checkpointed (restore would leave the memory unpinned)"
                ),
            ));
        }
    }
    Ok(())
}

/// The memory-management settings the image carries in its settings record (restored
/// exactly): `oom_score_adj` and `PR_SET_THP_DISABLE`.
pub fn process_settings(pid: i32) -> Result<seamless_image::records::ProcessSettings, DumpError> {
    let read = |what: &str| {
        let path = format!("/proc/{pid}/{what}");
        std::fs::read_to_string(&path).map_err(|e| DumpError::io(pid, format!("reading {path}"), e))
    };
    let adj = read("oom_score_adj")?;
    let oom_score_adj =
        adj.trim().parse().map_err(|_| refuse(pid, "oom_score_adj", format!("unreadable value {adj:?}")))?;
    let thp_disabled = status_value(&read("status")?, "THP_enabled").as_deref() == Some("0");
    Ok(seamless_image::records::ProcessSettings { oom_score_adj, thp_disabled })
}

/// Refuses membership in a cgroup v1 hierarchy (a `/proc/PID/cgroup` line whose hierarchy id
/// is not 0) other than the dumper's own: restore puts processes into the restorer's cgroups
/// and recreates no v1 hierarchy (the new kernel may not even have the v1 controller; 6.12
/// has no v1 memory controller).
fn cgroup_v1(pid: i32) -> Result<(), DumpError> {
    let read = |p: &str| {
        std::fs::read_to_string(format!("/proc/{p}/cgroup"))
            .map_err(|e| DumpError::io(pid, "reading /proc/PID/cgroup", e))
    };
    let (theirs, ours) = (read(&pid.to_string())?, read("self")?);
    if let Some(line) = foreign_cgroup_v1(&theirs, &ours) {
        return Err(refuse(
            pid,
            format!("cgroup v1 membership ({line})"),
            "differs from the dumper's: cgroup v1 hierarchies are not recreated (only the unified cgroup v2 hierarchy is carried): move the process to cgroup v2 or to the dumper's v1 cgroups, or leave it out",
        ));
    }
    Ok(())
}

/// The first v1 line of `theirs` (a `/proc/PID/cgroup` text) that `ours` does not have.
fn foreign_cgroup_v1<'a>(theirs: &'a str, ours: &str) -> Option<&'a str> {
    theirs
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|id| !id.is_empty() && id != "0"))
        .find(|l| !ours.lines().any(|o| o == *l))
}

/// Refuses threads whose credentials differ from the leader's (`/proc/PID/task/TID/status`
/// ids, groups, capability sets, no_new_privs): the image carries one set, given to every
/// thread.
fn thread_creds(pid: i32, tids: &[i32]) -> Result<(), DumpError> {
    const KEYS: [&str; 9] = ["Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"];
    let read = |tid: i32| {
        let path = format!("/proc/{pid}/task/{tid}/status");
        std::fs::read_to_string(&path).map_err(|e| DumpError::io(pid, format!("reading {path}"), e))
    };
    let leader = read(pid)?;
    for &tid in tids.iter().filter(|t| **t != pid) {
        let theirs = read(tid)?;
        if let Some(key) = KEYS.iter().find(|k| status_value(&leader, k) != status_value(&theirs, k)) {
            return Err(refuse(
                pid,
                format!("thread {tid} credentials"),
                format!(
                    "{key} {} differs from the leader's {}: the image carries one set of credentials for all threads",
                    status_value(&theirs, key).unwrap_or_default(),
                    status_value(&leader, key).unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

/// The per-process refusals (see the module docs); reads only.
pub fn process(pid: i32, tids: &[i32], opts: &DumpOptions) -> Result<(), DumpError> {
    injectable(pid, tids)?;
    native(pid, tids)?;
    timers(pid, tids)?;
    namespaces(pid, opts.carry_clocks)?;
    cgroup_v1(pid)?;
    settings(pid, tids)?;
    thread_creds(pid, tids)?;
    for what in ["cwd", "root", "exe"] {
        reachable(pid, what)?;
    }
    Ok(())
}

/// Runs every refusal over the frozen trees and gathers the descriptor plan. Changes nothing
/// in any process: established TCP connections are only listed in the plan; the dump reads
/// them (in repair mode) with [`super::sockets::repair_pending`] after this has passed.
pub fn run(frozen: &Frozen, opts: &DumpOptions) -> Result<FilePlan, DumpError> {
    for p in frozen.procs() {
        if p.zombie.is_some() {
            continue;
        }
        process(p.pid, &p.tids, opts)?;
        mm::precheck(p.pid)?;
        super::cgroup::precheck(p.pid, &p.tids)?;
    }
    separate_mms(frozen)?;
    super::sysv::precheck(frozen)?;
    let live: Vec<i32> = frozen.procs().iter().filter(|p| p.zombie.is_none()).map(|p| p.pid).collect();
    super::access::separate_fd_tables(&live)?;
    let mut plan = files::collect(frozen, opts)?;
    super::objects::mapped_memfds(frozen, &mut plan)?;
    super::nodes::finish(frozen, &mut plan)?;
    super::mq_notify::precheck(frozen, &mut plan)?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    #[test]
    fn foreign_cgroup_v1_lines_are_found() {
        let unified = "0::/system.slice/redis-server.service\n";
        assert_eq!(super::foreign_cgroup_v1(unified, "0::/user.slice\n"), None);
        let hybrid = "12:memory:/app\n1:name=systemd:/user.slice\n0::/user.slice\n";
        let ours = "12:memory:/\n1:name=systemd:/user.slice\n0::/user.slice\n";
        assert_eq!(super::foreign_cgroup_v1(hybrid, ours), Some("12:memory:/app"));
        assert_eq!(super::foreign_cgroup_v1(ours, ours), None);
    }

    #[test]
    fn reads_status_fields() {
        let text = "Name:\tx\nSeccomp:\t2\nVmLck:\t       0 kB\nCpus_allowed_list:\t0-3\n";
        assert_eq!(super::status_value(text, "Seccomp").as_deref(), Some("2"));
        assert_eq!(super::status_value(text, "VmLck").as_deref(), Some("0 kB"));
        assert_eq!(super::status_value(text, "Cpus_allowed_list").as_deref(), Some("0-3"));
        assert_eq!(super::status_value(text, "Cpus"), None);
        assert_eq!(super::status_value(text, "THP_enabled"), None);
    }

    #[test]
    fn own_process_passes_the_path_and_namespace_checks() {
        let pid = seamless_sys::proc::own_pid();
        assert_eq!(super::seccomp_mode(pid, pid).unwrap(), 0);
        for what in ["cwd", "root", "exe"] {
            super::reachable(pid, what).unwrap();
        }
        super::namespaces(pid, false).unwrap();
    }

    #[test]
    fn parses_time_namespace_offsets() {
        assert_eq!(super::parse_timens_offsets("monotonic 0 0\nboottime 0 0\n"), Some((0, 0)));
        assert_eq!(
            super::parse_timens_offsets("monotonic     16 931000000\nboottime -2 500\n"),
            Some((16_931_000_000, -1_999_999_500))
        );
        assert_eq!(super::parse_timens_offsets("monotonic 1 0\n"), None);
    }
}
