//! The pre-check: every refusal of the dump, shared by `seamless dump` and `seamless check`.
//! It runs on frozen trees and only reads (`/proc`, duplicated descriptors inspected from
//! outside); nothing in any process is injected into or changed before it has passed for every
//! process of every tree. What it checks:
//!
//! - per process ([`process`]): system-call injection must be safe in every thread (no seccomp
//!   strict or filter mode), and the working directory, root directory and executable must be
//!   reachable again by their paths (not deleted, not replaced by another file);
//! - the memory map ([`super::mm::precheck`]);
//! - every descriptor ([`super::files::collect`], which also gathers what the dump writes).

use super::files::{self, FilePlan};
use super::{mm, DumpError, DumpOptions, Frozen};
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
/// `mmap`, `munmap`, `brk`, `rt_sigaction`, `getitimer`, `prctl`, `timer_gettime`,
/// `sigaltstack` and `get_robust_list`: in seccomp strict mode any of them kills the process;
/// in filter mode a filter may kill it, make a call fail or trap it (seamless does not
/// evaluate filters, so it refuses rather than risk the process).
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
            mode => {
                return Err(refuse(
                    pid,
                    format!("thread {tid}"),
                    format!(
                        "seccomp filter mode ({mode}): a filter may kill the process or fail the system calls the dump injects (mmap, rt_sigaction, prctl, ...), and seamless does not evaluate filters, so it refuses; run the service without a seccomp filter (e.g. no SystemCallFilter=) to checkpoint it"
                    ),
                ))
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
            format!("the path of the process's {} cannot be opened ({e}): restore reopens it by path", describe(what)),
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

/// The per-process refusals (see the module docs); reads only.
pub fn process(pid: i32, tids: &[i32]) -> Result<(), DumpError> {
    injectable(pid, tids)?;
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
        process(p.pid, &p.tids)?;
        mm::precheck(p.pid)?;
    }
    files::collect(frozen, opts)
}
