//! Validation of the System V IPC records (see [`crate::records::sysv`]): ids match the tags
//! and are unique per kind, modes have only known bits, segment runs are whole pages inside
//! the segment with exactly as many blob bytes, semaphore values and message types are what
//! the kernel accepts, attachments cover a whole known segment at a free, page-aligned place.

use super::{aligned, live_owner, Invalid, Res, USER_SPACE_END};
use crate::records::ProcessRecord;
use crate::records::{self, IpcPerm, ShmRecord, VmaKind};
use crate::validate::Decoded;
use crate::PAGE_SIZE;
use std::collections::{BTreeMap, BTreeSet};

/// Most semaphores in one set (the kernel's `SEMMSL` ceiling).
pub const MAX_SEMS: usize = 32000;
/// Largest semaphore value (`SEMVMX`).
pub const MAX_SEM_VALUE: u16 = 32767;
/// Largest segment accepted (64 TiB).
pub const MAX_SHM: u64 = 1 << 46;

fn bad(what: &str, id: i64, why: impl Into<String>) -> Invalid {
    Invalid::Ipc { what: what.into(), id, why: why.into() }
}

fn perm(what: &str, tag: u64, p: &IpcPerm, extra: u32, seen: &mut BTreeSet<i32>) -> Res {
    let id = i64::from(p.id);
    if p.id < 0 || u64::try_from(p.id).ok() != Some(tag) {
        return Err(bad(what, id, format!("entry tag {tag} differs from the id, or the id is negative")));
    }
    if !seen.insert(p.id) {
        return Err(Invalid::Duplicate { what: "sysv object", id: id.into() });
    }
    if p.mode & !(0o777 | extra) != 0 {
        return Err(bad(what, id, format!("mode {:o} has unknown bits", p.mode)));
    }
    Ok(())
}

fn page_up(v: u64) -> u64 {
    v.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64
}

/// `user`: 0 (none) or a live process of the image.
fn user(procs: &BTreeMap<i32, &ProcessRecord>, what: &'static str, pid: i32) -> Res {
    if pid != 0 {
        live_owner(procs, what, u32::try_from(pid).unwrap_or(u32::MAX))?;
    }
    Ok(())
}

pub(super) fn check(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut shm: BTreeMap<i32, &ShmRecord> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (tag, r) in &d.sysv_shm {
        let what = "sysv shm";
        let id = i64::from(r.perm.id);
        perm(what, *tag, &r.perm, ShmRecord::DEST | ShmRecord::LOCKED, &mut seen)?;
        user(procs, "sysv shm user", r.user)?;
        if r.size == 0 || r.size > MAX_SHM {
            return Err(bad(what, id, format!("size {} is 0 or above {MAX_SHM}", r.size)));
        }
        let mut prev = 0u64;
        let mut total = 0u64;
        for &(off, len) in &r.runs {
            let end = off.saturating_add(len);
            if !aligned(off) || len == 0 || off < prev || end > page_up(r.size) || !(aligned(end) || end == r.size) {
                return Err(bad(
                    what,
                    id,
                    format!("run {off:#x}+{len:#x} is not whole pages, in order, inside the segment"),
                ));
            }
            prev = end;
            total += len;
        }
        let tag = records::sysv::SHM_BLOB_TAG + u64::try_from(r.perm.id).unwrap_or(0);
        let blobs: u64 = d.blobs.iter().filter(|b| b.owner == 0 && b.tag == tag).map(|b| b.len).sum();
        if blobs != total {
            return Err(bad(what, id, format!("runs hold {total} bytes, its blobs {blobs}")));
        }
        shm.insert(r.perm.id, r);
    }
    let mut seen = BTreeSet::new();
    for (tag, r) in &d.sysv_sem {
        let what = "sysv sem";
        let id = i64::from(r.perm.id);
        perm(what, *tag, &r.perm, 0, &mut seen)?;
        user(procs, "sysv sem user", r.user)?;
        if r.values.is_empty() || r.values.len() > MAX_SEMS {
            return Err(bad(what, id, format!("{} semaphores (1..={MAX_SEMS})", r.values.len())));
        }
        if let Some(v) = r.values.iter().find(|v| **v > MAX_SEM_VALUE) {
            return Err(bad(what, id, format!("value {v} above {MAX_SEM_VALUE}")));
        }
    }
    let mut seen = BTreeSet::new();
    for (tag, r) in &d.sysv_msg {
        let what = "sysv msg";
        let id = i64::from(r.perm.id);
        perm(what, *tag, &r.perm, 0, &mut seen)?;
        user(procs, "sysv msg user", r.user)?;
        if let Some((t, _)) = r.messages.iter().find(|(t, _)| *t <= 0) {
            return Err(bad(what, id, format!("message type {t} is not positive")));
        }
        let bytes: u64 = r.messages.iter().map(|(_, m)| m.len() as u64).sum();
        if bytes > r.qbytes || r.qbytes > i32::MAX as u64 {
            return Err(bad(what, id, format!("{bytes} bytes queued, limit {} (at most 2^31-1)", r.qbytes)));
        }
    }
    let mut owners = BTreeSet::new();
    for (owner, a) in &d.shm_attach {
        let pid = live_owner(procs, "shm attachments", *owner)?.pid;
        let what = format!("shm attachment of pid {pid}");
        if !owners.insert(pid) {
            return Err(Invalid::Duplicate { what: "shm attachments", id: pid.into() });
        }
        let vmas = d.mms.iter().find(|(o, _)| o == owner).map(|(_, m)| m.vmas.as_slice()).unwrap_or(&[]);
        let mut prev = 0u64;
        for x in &a.areas {
            let id = i64::from(x.shmid);
            let seg = shm.get(&x.shmid).ok_or_else(|| bad(&what, id, "no such segment in the image"))?;
            if !aligned(x.start)
                || x.start < prev
                || x.end > USER_SPACE_END
                || x.end.checked_sub(x.start) != Some(page_up(seg.size))
            {
                return Err(bad(
                    &what,
                    id,
                    format!(
                        "area {:#x}-{:#x} is not the whole segment at a page, in order, in user space",
                        x.start, x.end
                    ),
                ));
            }
            prev = x.end;
            if x.prot & !7 != 0 || x.prot & 1 == 0 {
                return Err(bad(&what, id, format!("protection {} (readable, no other bits than rwx)", x.prot)));
            }
            let overlaps = vmas.iter().any(|v| {
                !matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar | VmaKind::Vsyscall)
                    && v.start < x.end
                    && x.start < v.end
            });
            if overlaps {
                return Err(bad(
                    &what,
                    id,
                    format!("area {:#x}-{:#x} overlaps another area of the process", x.start, x.end),
                ));
            }
        }
    }
    check_file_objects(d)
}

/// `F_SEAL_SEAL`, `SHRINK`, `GROW`, `WRITE`, `FUTURE_WRITE`, `EXEC`.
pub const KNOWN_SEALS: u32 = 0x3f;
/// Most messages of a POSIX queue (`HARD_MSGMAX`).
pub const MQ_MAXMSG: u64 = 65536;
/// Largest POSIX message (`HARD_MSGSIZEMAX`).
pub const MQ_MSGSIZE: u64 = 16 << 20;

/// A queue's name: not empty, no `/`; a memfd's: anything without NUL; both limited in length.
fn check_name(what: &str, id: i64, name: &str, max: usize) -> Res {
    let queue = what == "posix mq";
    if queue && (name.is_empty() || name.contains('/')) || name.len() > max || name.contains('\0') {
        return Err(bad(what, id, format!("name {name:?}: too long, with NUL, or (a queue's) empty or with '/'")));
    }
    Ok(())
}

fn check_file_objects(d: &Decoded) -> Res {
    let descs: BTreeMap<u32, &records::FileDesc> = d.descs.iter().map(|(_, f)| (f.id, f)).collect();
    let mut tags = BTreeSet::new();
    let mut used = BTreeSet::new();
    for (tag, o) in &d.file_objects {
        let id = i64::try_from(*tag).unwrap_or(-1);
        if !tags.insert(*tag) {
            return Err(Invalid::Duplicate { what: "file object", id: (*tag).into() });
        }
        let (what, list) = match o {
            records::FileObject::PosixMq(q) => ("posix mq", &q.descs),
            records::FileObject::Memfd(m) => ("memfd", &m.descs),
            records::FileObject::Deleted(f) => ("deleted file", &f.descs),
        };
        for desc in list {
            match descs.get(desc) {
                Some(f) if matches!(f.kind, records::FileKind::Ghost { .. }) => {}
                _ => return Err(bad(what, id, format!("file #{desc} is not a deleted-file description of the image"))),
            }
            if !used.insert(*desc) {
                return Err(bad(what, id, format!("file #{desc} belongs to two objects")));
            }
        }
        match o {
            records::FileObject::PosixMq(q) => {
                check_name(what, id, &q.name, 255)?;
                if q.mode & !0o777 != 0 {
                    return Err(bad(what, id, format!("mode {:o} has other bits than 0o777", q.mode)));
                }
                if !(1..=MQ_MAXMSG).contains(&q.maxmsg) || !(1..=MQ_MSGSIZE).contains(&q.msgsize) {
                    return Err(bad(what, id, format!("maxmsg {} msgsize {} out of range", q.maxmsg, q.msgsize)));
                }
                if q.messages.len() as u64 > q.maxmsg {
                    return Err(bad(what, id, format!("{} messages, more than maxmsg {}", q.messages.len(), q.maxmsg)));
                }
                if let Some((p, m)) = q.messages.iter().find(|(p, m)| *p >= 32768 || m.len() as u64 > q.msgsize) {
                    return Err(bad(what, id, format!("message of priority {p} and {} bytes", m.len())));
                }
                if q.descs.is_empty() {
                    return Err(bad(what, id, "no description opens it"));
                }
            }
            records::FileObject::Memfd(m) => {
                check_name(what, id, &m.name, 249)?;
                if m.mode & !0o7777 != libc_s_ifreg() || m.seals & !KNOWN_SEALS != 0 {
                    return Err(bad(
                        what,
                        id,
                        format!("mode {:o} (a regular file) or seals {:#x} unknown", m.mode, m.seals),
                    ));
                }
                runs(what, id, *tag, &m.runs, m.size, d)?;
            }
            records::FileObject::Deleted(f) => {
                if !f.path.starts_with('/') || f.path.contains('\0') || f.mode & !0o7777 != libc_s_ifreg() {
                    return Err(bad(
                        what,
                        id,
                        format!("path {:?} not absolute, or mode {:o} not a regular file", f.path, f.mode),
                    ));
                }
                runs(what, id, *tag, &f.runs, f.size, d)?;
            }
        }
    }
    Ok(())
}

/// Runs of a memfd or deleted file: whole pages, in order, inside `size`, exactly as many
/// bytes as its blobs (tag below 2^32).
fn runs(what: &str, id: i64, tag: u64, runs: &[(u64, u64)], size: u64, d: &Decoded) -> Res {
    let mut prev = 0u64;
    let mut total = 0u64;
    for &(off, len) in runs {
        let end = off.saturating_add(len);
        if !aligned(off) || len == 0 || off < prev || end > size || !(aligned(end) || end == size) {
            return Err(bad(what, id, format!("run {off:#x}+{len:#x} is not whole pages, in order, inside the file")));
        }
        prev = end;
        total += len;
    }
    let btag = records::sysv::MEMFD_BLOB_TAG.saturating_add(tag);
    let blobs: u64 = d.blobs.iter().filter(|b| b.owner == 0 && b.tag == btag).map(|b| b.len).sum();
    if blobs != total || tag >= 1 << 32 {
        return Err(bad(what, id, format!("runs hold {total} bytes, its blobs {blobs} (or tag above 2^32)")));
    }
    Ok(())
}

/// `S_IFREG`.
const fn libc_s_ifreg() -> u32 {
    0o100000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{MsgRecord, SemRecord, ShmArea, ShmAttachments};
    use crate::validate::{validate, BlobRef};

    fn with_ipc() -> Decoded {
        let mut d = Decoded::sample(40);
        let perm = |id| IpcPerm { id, key: 0x1234, uid: 1000, gid: 1000, cuid: 1000, cgid: 1000, mode: 0o600 };
        d.sysv_shm.push((
            5,
            ShmRecord { perm: perm(5), size: 3 * 4096 + 100, runs: vec![(4096, 4096), (3 * 4096, 100)], user: 40 },
        ));
        d.blobs.push(BlobRef { index: 0, owner: 0, tag: records::sysv::SHM_BLOB_TAG + 5, len: 4196 });
        d.sysv_sem.push((6, SemRecord { perm: perm(6), values: vec![1, 2], user: 40 }));
        d.sysv_msg.push((7, MsgRecord { perm: perm(7), qbytes: 16384, messages: vec![(1, b"x".to_vec())], user: 0 }));
        d.shm_attach.push((
            40,
            ShmAttachments { areas: vec![ShmArea { start: 0x7000_0000, end: 0x7000_4000, shmid: 5, prot: 3 }] },
        ));
        d
    }

    #[test]
    fn ipc_records_are_checked() {
        validate(&with_ipc()).unwrap();
        let fails = |f: fn(&mut Decoded)| {
            let mut d = with_ipc();
            f(&mut d);
            validate(&d).unwrap_err()
        };
        assert!(matches!(fails(|d| d.sysv_shm[0].0 = 9), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.blobs.last_mut().unwrap().len = 4096), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.sysv_shm[0].1.runs[0].0 = 100), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.sysv_shm[0].1.perm.mode = 0o4600), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.sysv_sem[0].1.values[1] = 40000), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.sysv_sem[0].1.values.clear()), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.sysv_msg[0].1.messages[0].0 = 0), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.sysv_msg[0].1.qbytes = 0), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.shm_attach[0].1.areas[0].shmid = 6), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.shm_attach[0].1.areas[0].end += 4096), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.shm_attach[0].1.areas[0].start = 0x10_0000), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.shm_attach[0].0 = 41), Invalid::Owner { .. }));
        assert!(matches!(fails(|d| d.sysv_sem[0].1.user = 41), Invalid::Owner { .. }));
    }

    fn with_objects() -> Decoded {
        use crate::records::{FileDesc, FileKind, FileObject, Memfd, PosixMq};
        let mut d = Decoded::sample(40);
        let ghost = |id| FileDesc {
            id,
            flags: 2,
            pos: 0,
            kind: FileKind::Ghost { path: "/q".into(), size: 0, mode: 0o100600 },
        };
        d.descs.push((3, ghost(3)));
        d.descs.push((4, ghost(4)));
        d.file_objects.push((
            0,
            FileObject::PosixMq(PosixMq {
                name: "q".into(),
                unlinked: false,
                mode: 0o600,
                uid: 0,
                gid: 0,
                maxmsg: 4,
                msgsize: 16,
                messages: vec![(3, b"x".to_vec())],
                descs: vec![3],
            }),
        ));
        d.file_objects.push((
            1,
            FileObject::Memfd(Memfd {
                name: "m".into(),
                dev: 1,
                ino: 2,
                mode: 0o100777,
                uid: 0,
                gid: 0,
                size: 5000,
                runs: vec![(4096, 904)],
                seals: 0xf,
                descs: vec![4],
            }),
        ));
        d.blobs.push(BlobRef { index: 0, owner: 0, tag: records::sysv::MEMFD_BLOB_TAG + 1, len: 904 });
        d
    }

    #[test]
    fn file_objects_are_checked() {
        use crate::records::FileObject;
        validate(&with_objects()).unwrap();
        let fails = |f: fn(&mut Decoded)| {
            let mut d = with_objects();
            f(&mut d);
            validate(&d).unwrap_err()
        };
        fn mq(d: &mut Decoded) -> &mut crate::records::PosixMq {
            match &mut d.file_objects[0].1 {
                FileObject::PosixMq(q) => q,
                _ => unreachable!(),
            }
        }
        fn memfd(d: &mut Decoded) -> &mut crate::records::Memfd {
            match &mut d.file_objects[1].1 {
                FileObject::Memfd(m) => m,
                _ => unreachable!(),
            }
        }
        assert!(matches!(fails(|d| mq(d).name = "a/b".into()), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| mq(d).messages[0].1 = vec![0; 17]), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| mq(d).maxmsg = 0), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| mq(d).descs = vec![1]), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| mq(d).descs = vec![4]), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| memfd(d).seals = 0x40), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| memfd(d).runs[0].1 = 1000), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| memfd(d).mode = 0o40755), Invalid::Ipc { .. }));
        assert!(matches!(fails(|d| d.file_objects[1].0 = 0), Invalid::Duplicate { .. }));
        let deleted = |path: &str| {
            let mut d = with_objects();
            d.file_objects.push((
                2,
                FileObject::Deleted(crate::records::DeletedFile {
                    path: path.into(),
                    dev: 1,
                    ino: 3,
                    mode: 0o100600,
                    uid: 0,
                    gid: 0,
                    size: 10,
                    atime_ns: 0,
                    mtime_ns: 0,
                    runs: vec![],
                    descs: vec![],
                }),
            ));
            validate(&d)
        };
        deleted("/tmp/x").unwrap();
        assert!(matches!(deleted("tmp/x").unwrap_err(), Invalid::Ipc { .. }));
    }
}
