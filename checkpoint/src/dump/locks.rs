//! File locks (`flock`, POSIX record locks, OFD locks, leases): read from the `lock:` lines
//! of `/proc/PID/fdinfo/FD`, attributed to their owner, and given to the process that takes
//! them again at restore. A POSIX lock belongs to the process (its descriptor table), so the
//! owner's own fdinfo must show it with the owner's pid; `flock`, OFD locks and leases belong
//! to the open file description and are taken once, by one process holding it (the one named
//! in the line when it holds the description). Refused: blocked lock requests of a dumped
//! process (`->` lines of `/proc/locks`), lock kinds and states other than these (delegations,
//! breaking leases), a POSIX lock whose pid is not the process showing it (a descriptor table
//! shared between processes), a lease whose break signal would go elsewhere than to the
//! process that takes it again, or with a signal other than `SIGIO`, and for an upgrade a lease
//! on a tmpfs file (the upgrade copies those by opening them). The dump changes none of them:
//! the original keeps its locks with `--leave-running` (and the upgrade's page-cache record
//! never opens a leased file).

use super::files::FilePlan;
use super::{DumpError, Frozen};
use seamless_image::records::{FileLock, FileLocks, LockKind};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;

/// The `lock:` lines of one descriptor (whitespace-normalised), with its description id.
#[derive(Debug, Clone)]
pub struct Held {
    /// Process.
    pub pid: i32,
    /// Descriptor.
    pub fd: i32,
    /// Description id of the plan.
    pub desc: u32,
    /// Link text (for messages).
    pub link: String,
    /// The lines.
    pub lines: Vec<String>,
}

/// Whether one of these `lock:` lines is a lease.
pub fn has_lease(lines: &[String]) -> bool {
    lines.iter().any(|l| parse(l).is_ok_and(|l| l.kind == LockKind::Lease))
}

/// One parsed lock line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    kind: LockKind,
    write: bool,
    /// Pid field (-1 for OFD locks).
    pid: i32,
    start: u64,
    /// 0 = to the end of the file.
    len: u64,
}

/// Parses a line like `1: POSIX ADVISORY WRITE 1234 08:01:5678 0 EOF` (the leading number
/// optional); `Err` says why it cannot be restored exactly.
fn parse(line: &str) -> Result<Line, String> {
    let mut f: Vec<&str> = line.split_whitespace().collect();
    if f.first().is_some_and(|w| w.ends_with(':')) {
        f.remove(0);
    }
    if f.first() == Some(&"->") {
        return Err("a blocked lock request".into());
    }
    let [kind, sub, ty, pid, _dev_ino, start, end] = f[..] else { return Err("unparsable lock line".into()) };
    let kind = match (kind, sub) {
        ("POSIX", "ADVISORY") => LockKind::Posix,
        ("OFDLCK", "ADVISORY") => LockKind::Ofd,
        ("FLOCK", "ADVISORY") => LockKind::Flock,
        ("LEASE", "ACTIVE") => LockKind::Lease,
        ("LEASE", state) => {
            return Err(format!("a lease in state {state} (being broken): it cannot be taken again as it is"))
        }
        (other, sub) => {
            return Err(format!(
                "a {other} {sub} lock: only flock, POSIX, OFD locks and active leases are checkpointed"
            ))
        }
    };
    let write = match ty {
        "WRITE" => true,
        "READ" => false,
        other => return Err(format!("lock type {other}")),
    };
    let pid: i32 = pid.parse().map_err(|_| format!("pid field {pid:?}"))?;
    let start: u64 = start.parse().map_err(|_| format!("start {start:?}"))?;
    let len = match end {
        "EOF" => 0,
        e => {
            let e: u64 = e.parse().map_err(|_| format!("end {e:?}"))?;
            e.checked_sub(start).and_then(|l| l.checked_add(1)).ok_or_else(|| format!("range {start}-{e}"))?
        }
    };
    Ok(Line { kind, write, pid, start, len })
}

fn refuse(pid: i32, fd: i32, link: &str, reason: String) -> DumpError {
    DumpError::Unsupported { pid, resource: format!("fd {fd} ({link}): file lock"), reason }
}

/// Refuses a dumped process waiting for a lock (a `->` line of `/proc/locks` with its pid).
fn no_waiters(frozen: &Frozen) -> Result<(), DumpError> {
    let text = match std::fs::read_to_string("/proc/locks") {
        Ok(t) => t,
        Err(e) => return Err(DumpError::io(0, "reading /proc/locks", e)),
    };
    let pids: BTreeSet<i32> = frozen.procs().iter().map(|p| p.pid).collect();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&"->") {
            continue;
        }
        if let Some(pid) = f.get(5).and_then(|p| p.parse::<i32>().ok()).filter(|p| pids.contains(p)) {
            return Err(DumpError::Unsupported {
                pid,
                resource: "file lock request".into(),
                reason: format!(
                    "a thread is blocked waiting for a file lock ({}): the wait is not checkpointed",
                    f[2..].join(" ")
                ),
            });
        }
    }
    Ok(())
}

/// The lease's break signal must go to the process that takes the lease again (F_SETLEASE
/// makes it the description's owner) and be the default `SIGIO`; for an upgrade
/// (`upgrade`), the file must be on a disk: tmpfs files are copied to the new kernel by
/// opening them, which would break the lease.
fn lease_checks(pid: i32, fd: i32, link: &str, taker: i32, upgrade: bool) -> Result<(), DumpError> {
    let subject = format!("pid {pid} fd {fd}");
    let pidfd = seamless_sys::proc::pidfd_open(pid).map_err(|e| DumpError::sys(pid, "pidfd_open", e))?;
    let dup =
        seamless_sys::proc::pidfd_getfd(&pidfd, fd, pid).map_err(|e| DumpError::sys(pid, format!("fd {fd}"), e))?;
    let (ty, owner) = seamless_sys::flock::owner_of(dup.as_fd(), &subject)
        .map_err(|e| DumpError::sys(pid, format!("owner of fd {fd}"), e))?;
    let sig = seamless_sys::flock::signal_of(dup.as_fd(), &subject)
        .map_err(|e| DumpError::sys(pid, format!("signal of fd {fd}"), e))?;
    if upgrade {
        let file = std::fs::File::from(dup.try_clone().map_err(|e| DumpError::io(pid, format!("fd {fd}"), e))?);
        let disk = seamless_sys::pagecache::on_disk(&file).map_err(|e| DumpError::sys(pid, format!("fd {fd}"), e))?;
        if !disk {
            return Err(refuse(
                pid,
                fd,
                link,
                "a lease on a file in RAM (tmpfs): the upgrade carries such files by opening them, which would break the lease".into(),
            ));
        }
    }
    // F_OWNER_PID is 1.
    if ty != 1 || owner != taker || sig != 0 {
        return Err(refuse(
            pid,
            fd,
            link,
            format!(
                "a lease whose break is signalled to owner {owner} (type {ty}) with signal {sig}: restore takes it again in pid {taker}, which then gets SIGIO, so it would not be the same"
            ),
        ));
    }
    Ok(())
}

/// Attributes every lock of `held` (gathered by [`super::files::collect`]) to the process that
/// takes it again, refusing what cannot be restored exactly (see the module docs).
/// `upgrade`: the image goes to a new kernel (`DumpOptions::carry_clocks`).
pub fn resolve(
    frozen: &Frozen,
    plan: &FilePlan,
    held: &[Held],
    upgrade: bool,
) -> Result<BTreeMap<i32, FileLocks>, DumpError> {
    no_waiters(frozen)?;
    let mut out: BTreeMap<i32, FileLocks> = BTreeMap::new();
    // Description-owned locks already given to a process: (desc, line).
    let mut given: BTreeSet<(u32, String)> = BTreeSet::new();
    for h in held {
        for raw in &h.lines {
            let l = parse(raw).map_err(|why| refuse(h.pid, h.fd, &h.link, format!("{why} [{raw}]")))?;
            let taker = match l.kind {
                LockKind::Posix => {
                    if l.pid != h.pid {
                        return Err(refuse(
                            h.pid,
                            h.fd,
                            &h.link,
                            format!("a POSIX lock of pid {} shown in pid {}'s descriptor table (shared between processes): its owner cannot be restored exactly [{raw}]", l.pid, h.pid),
                        ));
                    }
                    h.pid
                }
                _ => {
                    let key = raw.split_once(' ').map_or(raw.as_str(), |(_, r)| r).to_string();
                    if !given.insert((h.desc, key)) {
                        continue;
                    }
                    // The process named in the line when it holds the description, else this one.
                    let named = held.iter().any(|o| o.pid == l.pid && o.desc == h.desc);
                    if named {
                        l.pid
                    } else {
                        h.pid
                    }
                }
            };
            let fd =
                plan.tables.get(&taker).and_then(|t| t.fds.iter().find(|f| f.desc == h.desc)).map_or(h.fd, |f| f.fd);
            if l.kind == LockKind::Lease {
                lease_checks(taker, fd, &h.link, taker, upgrade)?;
            }
            let lock = FileLock { fd, kind: l.kind, write: l.write, start: l.start, len: l.len };
            let locks = &mut out.entry(taker).or_default().locks;
            if !locks.contains(&lock) {
                locks.push(lock);
            }
        }
    }
    for (pid, l) in &out {
        log::debug!("pid {pid}: file locks {:?}", l.locks.iter().map(FileLock::describe).collect::<Vec<_>>());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_of_line() {
        let l = parse("1: POSIX ADVISORY WRITE 1234 08:01:5678 100 149").unwrap();
        assert_eq!(l, Line { kind: LockKind::Posix, write: true, pid: 1234, start: 100, len: 50 });
        let l = parse("2: OFDLCK ADVISORY READ -1 00:2a:1384 7 EOF").unwrap();
        assert_eq!(l, Line { kind: LockKind::Ofd, write: false, pid: -1, start: 7, len: 0 });
        let l = parse("FLOCK ADVISORY WRITE 99 00:2a:1 0 EOF").unwrap();
        assert_eq!(l, Line { kind: LockKind::Flock, write: true, pid: 99, start: 0, len: 0 });
        let l = parse("3: LEASE ACTIVE READ 5 00:2a:1 0 EOF").unwrap();
        assert_eq!(l.kind, LockKind::Lease);
    }

    #[test]
    fn refuses_what_cannot_come_back() {
        assert!(parse("1: -> POSIX ADVISORY WRITE 1 00:2a:1 0 EOF").unwrap_err().contains("blocked"));
        assert!(parse("1: LEASE BREAKING READ 5 00:2a:1 0 EOF").unwrap_err().contains("BREAKING"));
        assert!(parse("1: DELEG ACTIVE READ 5 00:2a:1 0 EOF").unwrap_err().contains("DELEG"));
        assert!(parse("1: LEASE ACTIVE UNLCK 5 00:2a:1 0 EOF").is_err());
        assert!(parse("1: POSIX ADVISORY WRITE 5 00:2a:1 10 5").is_err());
        assert!(parse("1: POSIX ADVISORY").is_err());
    }
}
