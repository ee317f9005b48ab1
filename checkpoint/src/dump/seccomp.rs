//! Seccomp filters (mode 2): each thread's chain read with `PTRACE_SECCOMP_GET_FILTER` and
//! `PTRACE_SECCOMP_GET_METADATA`, filters shared by threads recognised (the same programs from
//! the oldest one down to that depth), and the pre-check that the dump can inject into the
//! process at all: every system call the dump and the restore inject after the filters exist
//! is run through each thread's chain by a classic BPF evaluator
//! ([`seamless_image::records::seccomp::evaluate_chain`]); a chain that would kill, trap or
//! fail one of them, or whose verdict depends on arguments we cannot predict, is refused.

use super::DumpError;
use seamless_image::records::seccomp::{
    allows, evaluate_chain, may_notify, SeccompData, SeccompFilter, SeccompRecord, AUDIT_ARCH_X86_64,
};
use std::collections::BTreeMap;

/// The system calls the dump injects (`checkpoint/src/dump/`, `seamless_trace`), and the
/// restore's last one after the filters are in (`munmap` of its trampoline).
pub const INJECTED: [(&str, i64); 9] = [
    ("mmap", libc::SYS_mmap),
    ("munmap", libc::SYS_munmap),
    ("brk", libc::SYS_brk),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("getitimer", libc::SYS_getitimer),
    ("prctl", libc::SYS_prctl),
    ("timer_gettime", libc::SYS_timer_gettime),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("get_robust_list", libc::SYS_get_robust_list),
];

fn refuse(pid: i32, tid: i32, reason: String) -> DumpError {
    DumpError::Unsupported { pid, resource: format!("thread {tid}"), reason }
}

/// A `status` field of a thread.
fn status_field(pid: i32, tid: i32, key: &str) -> Result<Option<String>, DumpError> {
    let path = format!("/proc/{pid}/task/{tid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| DumpError::io(pid, format!("reading {path}"), e))?;
    Ok(text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.strip_prefix(':')).map(|v| v.trim().to_string()))
}

/// The chain of `tid`, oldest first (filter index 0 is the oldest, `kernel/seccomp.c`
/// `get_nth_filter`).
fn chain_of(pid: i32, tid: i32) -> Result<Vec<SeccompFilter>, DumpError> {
    let mut out = Vec::new();
    for index in 0u64.. {
        match seamless_sys::ptrace::seccomp_get_filter(tid, index) {
            Ok(prog) => {
                let flags = seamless_sys::ptrace::seccomp_get_metadata(tid, index)
                    .map_err(|e| DumpError::sys(pid, format!("seccomp filter {index} of thread {tid}"), e))?;
                let flags = u32::try_from(flags & u64::from(seamless_image::records::seccomp::FLAG_LOG)).unwrap_or(0);
                out.push(SeccompFilter { prog, flags });
            }
            Err(e) if e.errno() == Some(libc::ENOENT) => break,
            Err(e) => return Err(DumpError::sys(pid, format!("seccomp filters of thread {tid}"), e)),
        }
        if index > 4096 {
            break;
        }
    }
    if let Some(n) = status_field(pid, tid, "Seccomp_filters")?.and_then(|v| v.parse::<usize>().ok()) {
        if n != out.len() {
            return Err(refuse(
                pid,
                tid,
                format!("seccomp: the kernel counts {n} filters, {} could be read", out.len()),
            ));
        }
    }
    Ok(out)
}

/// Reads the filters of the threads of `pid` in filter mode; `None` when none has any.
pub fn read(pid: i32, tids: &[i32]) -> Result<Option<SeccompRecord>, DumpError> {
    let mut rec = SeccompRecord::default();
    // A filter is identified by the chain up to and including it: threads that got it from
    // one installation (TSYNC, or inherited at clone) have the same programs below it.
    let mut ids: BTreeMap<Vec<SeccompFilter>, u32> = BTreeMap::new();
    for &tid in tids {
        if status_field(pid, tid, "Seccomp")?.as_deref() != Some("2") {
            continue;
        }
        let chain = chain_of(pid, tid)?;
        let mut idx = Vec::new();
        for depth in 1..=chain.len() {
            let key = chain[..depth].to_vec();
            let next = u32::try_from(rec.filters.len()).unwrap_or(u32::MAX);
            let id = *ids.entry(key).or_insert_with(|| {
                rec.filters.push(chain[depth - 1].clone());
                next
            });
            idx.push(id);
        }
        rec.threads.push((tid, idx));
    }
    Ok((!rec.threads.is_empty()).then_some(rec))
}

/// Refuses a process in filter mode whose filters the dump cannot inject through or the
/// restore cannot install again (see the module documentation).
pub fn precheck(pid: i32, tids: &[i32]) -> Result<(), DumpError> {
    let Some(rec) = read(pid, tids)? else { return Ok(()) };
    let nnp = status_field(pid, pid, "NoNewPrivs")?.as_deref() == Some("1");
    let cap_sys_admin = status_field(pid, pid, "CapEff")?
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|c| c & (1 << 21) != 0); // bit 21: CAP_SYS_ADMIN
    for (tid, chain) in &rec.threads {
        let progs: Vec<&[u64]> = chain
            .iter()
            .filter_map(|&i| usize::try_from(i).ok().and_then(|i| rec.filters.get(i)))
            .map(|f| f.prog.as_slice())
            .collect();
        if progs.iter().any(|p| may_notify(p)) {
            return Err(refuse(
                pid,
                *tid,
                "seccomp filter mode: a filter can return SECCOMP_RET_USER_NOTIF, whose listener (another process's descriptor) is not recreated".into(),
            ));
        }
        if !nnp && !cap_sys_admin {
            return Err(refuse(
                pid,
                *tid,
                "seccomp filter mode: the process has neither no_new_privs nor CAP_SYS_ADMIN, so its filters could not be installed again".into(),
            ));
        }
        // The restore installs each filter below the last with seccomp(2), under the ones
        // installed before it; then every call the dump injects (and the restore's munmap)
        // runs under the whole chain.
        let mut calls: Vec<(String, i64, usize)> =
            (1..progs.len()).map(|d| (format!("seccomp (installing filter {d})"), libc::SYS_seccomp, d)).collect();
        calls.extend(INJECTED.iter().map(|(n, nr)| ((*n).to_string(), *nr, progs.len())));
        for (name, nr, depth) in calls {
            let data =
                SeccompData { nr: i32::try_from(nr).unwrap_or(-1), arch: AUDIT_ARCH_X86_64, ..Default::default() };
            let v = evaluate_chain(&progs[..depth], &data)
                .map_err(|e| refuse(pid, *tid, format!("seccomp filter mode: a filter cannot be evaluated: {e}")))?;
            if v.read_args {
                return Err(refuse(
                    pid,
                    *tid,
                    format!(
                        "seccomp filter mode: a filter looks at the arguments (or the address) of {name}, a system call seamless injects, so whether it passes cannot be known; run the service without such a filter (e.g. no MemoryDenyWriteExecute=) to checkpoint it"
                    ),
                ));
            }
            if !allows(v.ret) {
                return Err(refuse(
                    pid,
                    *tid,
                    format!(
                        "seccomp filter mode: a filter answers {name}, a system call seamless injects, with {:#010x} (not allow): the dump would kill the process or fail; allow {name} in the filter (SystemCallFilter=) to checkpoint it",
                        v.ret
                    ),
                ));
            }
        }
    }
    Ok(())
}
