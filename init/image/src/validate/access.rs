//! Validation of the VMA-flags and ghost-owner records (see [`super::validate`]).

use super::{live_owner, once_per_mm, page_aligned, Decoded, Invalid, Res};
use crate::records::{cgroup_path_ok, CgroupLimit, FileDesc, FileKind, ProcessRecord, Vma, VmaFlags, VmaKind};
use std::collections::{BTreeMap, BTreeSet};

/// VMA-flags records: one per live process; known bits, not none, lock-on-fault only with
/// locked; whole pages inside one area the restore maps, ascending and disjoint; "may write"
/// only on a shared file area without `PROT_WRITE` (the only areas where it changes how the
/// restore opens the file).
pub(super) fn check_vma_flags(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut seen = BTreeSet::new();
    for (owner, f) in &d.vma_flags {
        let (pid, mm) = once_per_mm(d, procs, &mut seen, "vma flags", *owner)?;
        let mut prev_end = 0u64;
        for x in &f.areas {
            let range = |why| Invalid::Range { pid, field: "flagged area", start: x.start, end: x.end, why };
            page_aligned(pid, "flagged area start", x.start)?;
            page_aligned(pid, "flagged area end", x.end)?;
            if x.end <= x.start || x.start < prev_end {
                return Err(range("empty, reversed, overlapping or out of order"));
            }
            prev_end = x.end;
            let mapped = |v: &&Vma| matches!(v.kind, VmaKind::Anon | VmaKind::File { .. } | VmaKind::SharedAnon { .. });
            let Some(v) = mm.vmas.iter().filter(mapped).find(|v| v.start <= x.start && x.end <= v.end) else {
                return Err(range("not inside one area of the process that the restore maps"));
            };
            let value = |why| Invalid::Value { pid, field: "vma flags", value: x.flags.into(), why };
            if x.flags & !VmaFlags::KNOWN != 0 || x.flags == 0 {
                return Err(value("unknown bits or none"));
            }
            if x.flags & VmaFlags::LOCK_ONFAULT != 0 && x.flags & VmaFlags::LOCKED == 0 {
                return Err(value("locked on fault but not locked"));
            }
            let whole_shared_ro_file = v.shared
                && v.prot & 2 == 0
                && matches!(v.kind, VmaKind::File { .. })
                && (v.start, v.end) == (x.start, x.end);
            if x.flags & VmaFlags::MAY_WRITE != 0 && !whole_shared_ro_file {
                return Err(value("may write only on a whole shared file area without PROT_WRITE"));
            }
        }
    }
    Ok(())
}

/// VMA-account records: one per live process; each list ascending and made of whole private
/// areas of the process that the restore maps: without `PROT_WRITE` for the charged ones,
/// with it for the uncharged ones.
pub(super) fn check_vma_account(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut seen = BTreeSet::new();
    for (owner, a) in &d.vma_account {
        let (pid, mm) = once_per_mm(d, procs, &mut seen, "vma account", *owner)?;
        for (list, writable, field) in [(&a.charged, false, "charged area"), (&a.uncharged, true, "uncharged area")] {
            let mut prev_end = 0u64;
            for x in list {
                let range = |why| Invalid::Range { pid, field, start: x.start, end: x.end, why };
                if x.end <= x.start || x.start < prev_end {
                    return Err(range("empty, reversed, overlapping or out of order"));
                }
                prev_end = x.end;
                let whole = mm.vmas.iter().find(|v| {
                    (v.start, v.end) == (x.start, x.end)
                        && !v.shared
                        && matches!(v.kind, VmaKind::Anon | VmaKind::File { .. })
                });
                let Some(v) = whole else {
                    return Err(range("not a whole private area of the process that the restore maps"));
                };
                if (v.prot & 2 != 0) != writable {
                    return Err(range(if writable { "uncharged but not writable" } else { "charged but writable" }));
                }
            }
        }
    }
    Ok(())
}

/// Ghost-owner records: one per ghost description at most, tag = a description that is a
/// deleted file.
pub(super) fn check_ghost_owners(d: &Decoded, descs: &BTreeMap<u32, &FileDesc>) -> Res {
    let mut seen = BTreeSet::new();
    for (tag, _) in &d.ghost_owners {
        let bad = |why: &str| Invalid::File {
            id: u32::try_from(*tag).unwrap_or(u32::MAX),
            field: "ghost owner",
            why: why.into(),
        };
        let id = u32::try_from(*tag).map_err(|_| bad("tag is not a description id"))?;
        if !matches!(descs.get(&id).map(|f| &f.kind), Some(FileKind::Ghost { .. })) {
            return Err(bad("no deleted-file description of that id"));
        }
        if !seen.insert(id) {
            return Err(Invalid::Duplicate { what: "ghost owner", id: id.into() });
        }
    }
    Ok(())
}

/// cgroup records: one per live process; a safe path other than the root; each limit of a
/// known file, on the path or one of its ancestors (not the root), a short printable value.
pub(super) fn check_cgroups(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut seen = BTreeSet::new();
    for (owner, c) in &d.cgroups {
        let pid = live_owner(procs, "cgroup", *owner)?.pid;
        if !seen.insert(pid) {
            return Err(Invalid::Duplicate { what: "cgroup", id: pid.into() });
        }
        let bad = |field, why| Invalid::Value { pid, field, value: 0, why };
        if !cgroup_path_ok(&c.path) || c.path == "/" {
            return Err(bad("cgroup path", "not an absolute path below the root without . or .. components"));
        }
        for l in &c.limits {
            let below =
                c.path == l.cgroup || c.path.strip_prefix(l.cgroup.as_str()).is_some_and(|r| r.starts_with('/'));
            if !cgroup_path_ok(&l.cgroup) || l.cgroup == "/" || !below {
                return Err(bad("cgroup limit", "on a cgroup that is not the process's or one of its ancestors"));
            }
            if !CgroupLimit::FILES.iter().any(|(f, _)| *f == l.file) {
                return Err(bad("cgroup limit", "not a carried interface file"));
            }
            if l.value.is_empty() || l.value.len() > 64 || !l.value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                return Err(bad("cgroup limit", "value empty, longer than 64 bytes or not printable"));
            }
        }
    }
    Ok(())
}
