//! Validation of the file-lock and thread-scheduling records (see [`super::validate`]).

use super::{live_owner, Decoded, Invalid, Res};
use crate::records::{FileDesc, FileKind, LockKind, ProcessRecord, ThreadSched};
use std::collections::{BTreeMap, BTreeSet};

/// File-lock records: one per live process at most; every lock through a descriptor of that
/// process, ranges inside `off_t`, `flock` and leases whole-file, leases on regular files only,
/// a description-owned lock taken at most once per description and kind.
pub(super) fn check_file_locks(
    d: &Decoded,
    procs: &BTreeMap<i32, &ProcessRecord>,
    descs: &BTreeMap<u32, &FileDesc>,
) -> Res {
    let mut seen = BTreeSet::new();
    let mut by_desc = BTreeSet::new();
    for (owner, l) in &d.file_locks {
        let pid = live_owner(procs, "file locks", *owner)?.pid;
        if !seen.insert(pid) {
            return Err(Invalid::Duplicate { what: "file locks", id: pid.into() });
        }
        let table = d.fd_tables.iter().find(|(o, _)| o == owner).map(|(_, t)| t);
        for lock in &l.locks {
            let bad = |why: &str| Invalid::Fd { pid, fd: lock.fd.into(), why: format!("{}: {why}", lock.describe()) };
            let Some(fd) = table.and_then(|t| t.fds.iter().find(|f| f.fd == lock.fd)) else {
                return Err(bad("not a descriptor of the process"));
            };
            let end = lock.start.checked_add(lock.len);
            if lock.start > i64::MAX as u64 || lock.len > i64::MAX as u64 || end.is_none_or(|e| e > i64::MAX as u64) {
                return Err(bad("range outside off_t"));
            }
            let whole = lock.start == 0 && lock.len == 0;
            match lock.kind {
                LockKind::Flock | LockKind::Lease if !whole => {
                    return Err(bad("flock and leases cover the whole file"))
                }
                LockKind::Lease => {
                    let regular = descs.get(&fd.desc).is_some_and(|f| matches!(f.kind, FileKind::Regular { .. }));
                    if !regular {
                        return Err(bad("a lease on a description that is not a regular file"));
                    }
                }
                _ => {}
            }
            if matches!(lock.kind, LockKind::Flock | LockKind::Lease) && !by_desc.insert((fd.desc, lock.kind as u8)) {
                return Err(bad("a second lock of this kind on one open file description"));
            }
        }
    }
    Ok(())
}

/// Scheduling records: one per thread of a live process, stored under its tid; known
/// policies, priorities in range for the policy, nice in -20..=19, an affinity mask that is
/// not empty and names no CPU past [`ThreadSched::MAX_CPUS`], a known I/O priority class.
pub(super) fn check_sched(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut seen = BTreeSet::new();
    for (owner, tag, t) in &d.sched {
        let p = live_owner(procs, "thread sched", *owner)?;
        let pid = p.pid;
        if *tag != u64::from(t.tid.unsigned_abs()) || t.tid <= 0 {
            return Err(Invalid::Mislabelled {
                pid,
                what: "thread sched",
                stored: (*tag).into(),
                inside: t.tid.into(),
            });
        }
        if !p.tids.contains(&t.tid) {
            return Err(Invalid::Thread {
                pid,
                tid: t.tid,
                why: "scheduling record of a thread the process does not have",
            });
        }
        if !seen.insert(t.tid) {
            return Err(Invalid::Duplicate { what: "thread sched", id: t.tid.into() });
        }
        let value = |field, value: i128, why| Invalid::Value { pid, field, value, why };
        let realtime = matches!(t.policy, 1 | 2);
        if !matches!(t.policy, 0 | 1 | 2 | 3 | 5) {
            return Err(value("scheduling policy", t.policy.into(), "not OTHER, FIFO, RR, BATCH or IDLE"));
        }
        if (realtime && !(1..=99).contains(&t.priority)) || (!realtime && t.priority != 0) {
            return Err(value(
                "real-time priority",
                t.priority.into(),
                "outside 1..=99 for FIFO/RR, or not 0 for others",
            ));
        }
        if !(-20..=19).contains(&t.nice) {
            return Err(value("nice", t.nice.into(), "outside -20..=19"));
        }
        if !t.affinity.is_empty() && t.affinity.iter().all(|w| *w == 0) {
            return Err(value("CPU affinity", 0, "no CPU at all"));
        }
        if t.affinity.len() * 64 > ThreadSched::MAX_CPUS {
            return Err(value("CPU affinity words", t.affinity.len() as i128, "more CPUs than the kernel allows"));
        }
        let (class, data) = (t.ioprio >> 13, t.ioprio & 0x1fff);
        if t.ioprio >> 16 != 0 || class > 3 || (class != 3 && data > 7) || (class == 3 && data != 0) {
            return Err(value("I/O priority", t.ioprio.into(), "not a class 0-3 with a level 0-7 (idle: 0)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::records::{FileLock, FileLocks, LockKind, ThreadSched};
    use crate::validate::{validate, Decoded, Invalid};

    fn with_lock(l: FileLock) -> Result<(), Invalid> {
        let mut d = Decoded::sample(100);
        d.file_locks.push((100, FileLocks { locks: vec![l] }));
        validate(&d)
    }

    fn lock(fd: i32, kind: LockKind, start: u64, len: u64) -> FileLock {
        FileLock { fd, kind, write: true, start, len }
    }

    #[test]
    fn file_locks_must_name_descriptors_and_sane_ranges() {
        with_lock(lock(0, LockKind::Posix, 100, 50)).unwrap();
        with_lock(lock(1, LockKind::Flock, 0, 0)).unwrap();
        let e = with_lock(lock(7, LockKind::Posix, 0, 0)).unwrap_err();
        assert!(e.to_string().contains("not a descriptor"), "{e}");
        let e = with_lock(lock(0, LockKind::Ofd, i64::MAX as u64, 2)).unwrap_err();
        assert!(e.to_string().contains("off_t"), "{e}");
        let e = with_lock(lock(0, LockKind::Flock, 5, 0)).unwrap_err();
        assert!(e.to_string().contains("whole file"), "{e}");
        // The sample's descriptors are pipes: no lease there.
        let e = with_lock(lock(0, LockKind::Lease, 0, 0)).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let mut d = Decoded::sample(100);
        d.file_locks.push((100, FileLocks { locks: vec![lock(0, LockKind::Flock, 0, 0); 2] }));
        assert!(validate(&d).unwrap_err().to_string().contains("second lock"));
        let mut d = Decoded::sample(100);
        d.file_locks.push((101, FileLocks::default()));
        assert!(matches!(validate(&d), Err(Invalid::Owner { .. })));
    }

    fn with_sched(tag: u64, t: ThreadSched) -> Result<(), Invalid> {
        let mut d = Decoded::sample(100);
        d.sched.push((100, tag, t));
        validate(&d)
    }

    #[test]
    fn scheduling_records_must_hold_values_the_kernel_takes() {
        let ok = ThreadSched {
            tid: 100,
            policy: 1,
            priority: 10,
            nice: -4,
            affinity: vec![1],
            ioprio: 0x4006,
            ..Default::default()
        };
        with_sched(100, ok.clone()).unwrap();
        assert!(matches!(with_sched(101, ok.clone()), Err(Invalid::Mislabelled { .. })));
        assert!(matches!(with_sched(101, ThreadSched { tid: 101, ..ok.clone() }), Err(Invalid::Thread { .. })));
        let bad = [
            ThreadSched { policy: 6, ..ok.clone() },
            ThreadSched { priority: 0, ..ok.clone() },
            ThreadSched { policy: 0, ..ok.clone() },
            ThreadSched { nice: 20, ..ok.clone() },
            ThreadSched { affinity: vec![0, 0], ..ok.clone() },
            ThreadSched { affinity: vec![1; 129], ..ok.clone() },
            ThreadSched { ioprio: 0x4008, ..ok.clone() },
            ThreadSched { ioprio: 0x6001, ..ok.clone() },
        ];
        for t in bad {
            assert!(matches!(with_sched(100, t.clone()), Err(Invalid::Value { .. })), "{t:?}");
        }
    }
}
