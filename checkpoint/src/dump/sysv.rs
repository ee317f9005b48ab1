//! System V IPC: the shared memory segments, semaphore sets and message queues that belong
//! to the dumped trees, and each process's attachments of segments.
//!
//! Which objects belong to a dump (the kernel records no owner process, so the rule is
//! this): a **segment** that a dumped process has attached, or whose creator (`cpid`) or
//! last attaching/detaching process (`lpid`) is a dumped process; a **message queue** whose
//! last sender (`lspid`) or receiver (`lrpid`) is a dumped process; a **semaphore set** one
//! of whose semaphores was last operated on (`semop`, `SETVAL`, `SETALL`: `sempid`) by a
//! dumped process. Other objects are left alone and are not in the image (after an upgrade
//! they are gone, as after a reboot).
//!
//! Refused: a process that may have semaphore undo entries (`SEM_UNDO`: the kernel shows no
//! way to read the adjustments; see [`precheck`] for how far this can be told), an attachment that
//! is not the whole segment with one protection (partly unmapped or `mprotect`ed), segments
//! on hugetlbfs (`SHM_HUGETLB`), queues larger than a record can hold, a kernel without
//! `MSG_COPY` (reading a queue without consuming it) when a queue belongs to the dump.
//!
//! Saved: ids, keys, owner and creator ids, mode (with `SHM_DEST` and `SHM_LOCKED`), sizes,
//! the pages of each segment (holes stay holes), semaphore values, every message with its
//! type in order and the queue's byte limit. Not kept: the times and the last pids the
//! kernel records (`shm_atime`, `sem_otime`, `msg_lspid`, ...), which the restore's own
//! calls set anew. Reading a segment attaches it in the dumper for a moment (so its
//! `shm_lpid` and times change, also with `--leave-running`).

use super::{DumpError, Frozen};
use seamless_image::records::{self, IpcPerm, MsgRecord, SemRecord, ShmArea, ShmAttachments, ShmRecord};
use seamless_image::{Store, Writer, PAGE_SIZE};
use seamless_sys::sysv;
use seamless_trace::procfs::{self, MapLine};
use std::collections::{BTreeMap, BTreeSet};

/// Largest message queue saved (bytes of text): a record holds at most 16 MiB.
const MAX_QUEUE: u64 = 8 << 20;
/// `HUGETLBFS_MAGIC`.
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// A line of `/proc/sysvipc/shm`.
#[derive(Debug, Clone, Copy)]
struct ShmLine {
    key: i32,
    id: i32,
    size: u64,
    cpid: i32,
    lpid: i32,
    swap: u64,
}

fn table(name: &str) -> Result<Vec<Vec<i64>>, DumpError> {
    let text = match std::fs::read_to_string(format!("/proc/sysvipc/{name}")) {
        Ok(t) => t,
        // A kernel without System V IPC has no objects.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DumpError::io(0, format!("reading /proc/sysvipc/{name}"), e)),
    };
    Ok(text
        .lines()
        .skip(1)
        .map(|l| {
            l.split_whitespace().map(|w| w.parse::<i64>().unwrap_or(i64::from_str_radix(w, 8).unwrap_or(-1))).collect()
        })
        .collect())
}

fn shm_lines() -> Result<Vec<ShmLine>, DumpError> {
    // key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap
    Ok(table("shm")?
        .into_iter()
        .filter(|c| c.len() >= 6)
        .map(|c| ShmLine {
            key: c[0] as i32,
            id: c[1] as i32,
            size: c[3] as u64,
            cpid: c[4] as i32,
            lpid: c[5] as i32,
            swap: c.get(15).copied().unwrap_or(0).max(0) as u64,
        })
        .collect())
}

/// Whether map line `m` is an attachment of a System V segment: shared, named
/// `/SYSV<key in hex> (deleted)` with the inode number being the id of a segment of that key.
fn attachment<'a>(m: &MapLine, segments: &'a [ShmLine]) -> Option<&'a ShmLine> {
    if !m.shared || !m.name.starts_with("/SYSV") || !m.name.ends_with(" (deleted)") {
        return None;
    }
    segments
        .iter()
        .find(|s| u64::try_from(s.id).ok() == Some(m.ino) && m.name == format!("/SYSV{:08x} (deleted)", s.key))
}

/// The areas of `pid` that are attachments of System V segments (left out of its `mm`
/// record; [`ShmAttachments`] carries them).
pub fn attached_areas(pid: i32) -> Result<Vec<(u64, u64)>, DumpError> {
    let segments = shm_lines()?;
    if segments.is_empty() {
        return Ok(Vec::new());
    }
    let maps = procfs::read_maps(pid).map_err(|e| DumpError::io(pid, "reading maps", e))?;
    Ok(maps.iter().filter(|m| attachment(m, &segments).is_some()).map(|m| (m.start, m.end)).collect())
}

fn page_up(v: u64) -> u64 {
    v.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64
}

fn attachments_of(pid: i32, segments: &[ShmLine]) -> Result<ShmAttachments, DumpError> {
    let maps = procfs::read_maps(pid).map_err(|e| DumpError::io(pid, "reading maps", e))?;
    let mut out = ShmAttachments::default();
    for m in &maps {
        let Some(s) = attachment(m, segments) else { continue };
        if m.offset != 0 || m.len() != page_up(s.size) {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("System V shared memory {} attached at {:#x}-{:#x}", s.id, m.start, m.end),
                reason: "only part of the segment is mapped there, or with several protections (munmap or mprotect of part of an attachment): the restore attaches whole segments".into(),
            });
        }
        out.areas.push(ShmArea { start: m.start, end: m.end, shmid: s.id, prot: m.prot });
    }
    Ok(out)
}

/// The refusals (reads only; shared by `seamless check`): semaphore undo lists and partial
/// attachments.
///
/// The kernel shows undo adjustments nowhere; `KCMP_SYSVSEM` only tells whether a process
/// has an undo list, and every multi-threaded process has one (`pthread_create` passes
/// `CLONE_SYSVSEM`, which makes an empty list). Undo entries exist only for semaphore sets
/// that exist (removing a set removes them), so a process with a list is refused when some
/// set exists and either it is single-threaded (its list came from a `SEM_UNDO` operation, or
/// from threads that did one) or it is the last process that operated on some semaphore.
pub fn precheck(frozen: &Frozen) -> Result<(), DumpError> {
    let me = seamless_sys::proc::own_pid();
    let segments = shm_lines()?;
    let mut sets = Vec::new();
    let mut sempids = BTreeSet::new();
    for c in table("sem")?.into_iter().filter(|c| c.len() >= 4) {
        let (id, nsems) = (c[1] as i32, c[3].max(0) as u32);
        sets.push(id);
        for n in 0..nsems {
            if let Ok(p) = sysv::sem_getpid(id, n) {
                sempids.insert(p);
            }
        }
    }
    for p in frozen.procs().iter().filter(|p| p.zombie.is_none()) {
        if !sets.is_empty() && (p.tids.len() == 1 || sempids.contains(&p.pid)) {
            let same = seamless_sys::sysv::kcmp_sysvsem(me, p.pid)
                .map_err(|e| DumpError::sys(p.pid, "comparing semaphore undo lists", e))?;
            if !same {
                return Err(DumpError::Unsupported {
                    pid: p.pid,
                    resource: "System V semaphore undo list (SEM_UNDO)".into(),
                    reason: format!(
                        "the kernel offers no way to read the undo adjustments, so they cannot be restored ({} semaphore set(s) exist)",
                        sets.len()
                    ),
                });
            }
        }
        if !segments.is_empty() {
            attachments_of(p.pid, &segments)?;
        }
    }
    Ok(())
}

/// Everything of System V IPC the dump writes.
#[derive(Debug, Default)]
pub struct SysvPlan {
    /// Segments with their pages.
    pub shm: Vec<(ShmRecord, Vec<sysv::Run>)>,
    /// Semaphore sets.
    pub sem: Vec<SemRecord>,
    /// Message queues.
    pub msg: Vec<MsgRecord>,
    /// Attachments by pid.
    pub attach: BTreeMap<i32, ShmAttachments>,
}

/// The ids of the objects of a dump, to remove them when the dumped processes are killed
/// (so that a restore on the same kernel can recreate them with the same ids).
#[derive(Debug, Default, Clone)]
pub struct SysvIds {
    /// Segment ids.
    pub shm: Vec<i32>,
    /// Semaphore set ids.
    pub sem: Vec<i32>,
    /// Queue ids.
    pub msg: Vec<i32>,
    /// Names of the POSIX message queues (without the `/`) that are still linked.
    pub mq: Vec<String>,
}

impl SysvPlan {
    /// The ids of the objects.
    pub fn ids(&self) -> SysvIds {
        SysvIds {
            shm: self.shm.iter().map(|(r, _)| r.perm.id).collect(),
            sem: self.sem.iter().map(|r| r.perm.id).collect(),
            msg: self.msg.iter().map(|r| r.perm.id).collect(),
            mq: Vec::new(),
        }
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.shm.is_empty() && self.sem.is_empty() && self.msg.is_empty()
    }

    /// The record kinds this plan writes.
    pub fn kinds(&self) -> Vec<(seamless_image::RecordKind, &'static str)> {
        let mut k = Vec::new();
        if !self.shm.is_empty() {
            k.push((records::SYSV_SHM, "System V shared memory"));
            k.push((records::SHM_ATTACH, "System V shared memory attachments"));
        }
        if !self.sem.is_empty() {
            k.push((records::SYSV_SEM, "System V semaphores"));
        }
        if !self.msg.is_empty() {
            k.push((records::SYSV_MSG, "System V message queues"));
        }
        k
    }
}

fn perm_of(id: i32, p: sysv::Perm) -> IpcPerm {
    IpcPerm { id, key: p.key, uid: p.uid, gid: p.gid, cuid: p.cuid, cgid: p.cgid, mode: p.mode }
}

/// Reads every object that belongs to the dump (see the module docs) with its contents.
pub fn collect(frozen: &Frozen) -> Result<SysvPlan, DumpError> {
    let pids: BTreeSet<i32> = frozen.procs().iter().map(|p| p.pid).collect();
    let live: Vec<i32> = frozen.procs().iter().filter(|p| p.zombie.is_none()).map(|p| p.pid).collect();
    let first = live.first().copied().unwrap_or(0);
    // The process the restore makes the object's last user (a live one).
    let user = |p: i32| if live.contains(&p) { p } else { first };
    let mut plan = SysvPlan::default();
    let segments = shm_lines()?;
    let mut attached = BTreeSet::new();
    if !segments.is_empty() {
        for &pid in &live {
            let a = attachments_of(pid, &segments)?;
            attached.extend(a.areas.iter().map(|x| x.shmid));
            if !a.areas.is_empty() {
                plan.attach.insert(pid, a);
            }
        }
    }
    for s in segments.iter().filter(|s| attached.contains(&s.id) || pids.contains(&s.cpid) || pids.contains(&s.lpid)) {
        let owner = if pids.contains(&s.cpid) { s.cpid } else { first };
        let st =
            sysv::shm_stat(s.id).map_err(|e| DumpError::sys(owner, format!("System V shared memory {}", s.id), e))?;
        let (runs, magic) = sysv::shm_read(s.id, st.size, s.swap > 0)
            .map_err(|e| DumpError::sys(owner, format!("reading System V shared memory {}", s.id), e))?;
        if magic == HUGETLBFS_MAGIC {
            return Err(DumpError::Unsupported {
                pid: owner,
                resource: format!("System V shared memory {} (key {:#x})", s.id, s.key),
                reason: "huge-page segment (SHM_HUGETLB): not checkpointed".into(),
            });
        }
        let attacher = plan.attach.iter().find(|(_, a)| a.areas.iter().any(|x| x.shmid == s.id)).map(|(p, _)| *p);
        let rec = ShmRecord {
            perm: perm_of(s.id, st.perm),
            size: st.size,
            runs: runs.iter().map(|(o, d)| (*o, d.len() as u64)).collect(),
            user: attacher.unwrap_or(user(if live.contains(&s.lpid) { s.lpid } else { s.cpid })),
        };
        plan.shm.push((rec, runs));
    }
    // key semid perms nsems uid gid cuid cgid otime ctime
    for c in table("sem")?.into_iter().filter(|c| c.len() >= 4) {
        let (id, nsems) = (c[1] as i32, c[3].max(0) as u32);
        let mut mine = None;
        for n in 0..nsems {
            let p = sysv::sem_getpid(id, n)
                .map_err(|e| DumpError::sys(first, format!("System V semaphore set {id}"), e))?;
            if pids.contains(&p) {
                mine = Some(p);
                break;
            }
        }
        let Some(owner) = mine else { continue };
        let (perm, n) =
            sysv::sem_stat(id).map_err(|e| DumpError::sys(owner, format!("System V semaphore set {id}"), e))?;
        let values = sysv::sem_getall(id, n as usize)
            .map_err(|e| DumpError::sys(owner, format!("System V semaphore set {id}"), e))?;
        plan.sem.push(SemRecord { perm: perm_of(id, perm), values, user: user(owner) });
    }
    // key msqid perms cbytes qnum lspid lrpid uid gid cuid cgid stime rtime ctime
    for c in table("msg")?.into_iter().filter(|c| c.len() >= 7) {
        let id = c[1] as i32;
        let (lspid, lrpid) = (c[5] as i32, c[6] as i32);
        let owner = if pids.contains(&lspid) {
            lspid
        } else if pids.contains(&lrpid) {
            lrpid
        } else {
            continue;
        };
        let what = format!("System V message queue {id}");
        let st = sysv::msg_stat(id).map_err(|e| DumpError::sys(owner, what.clone(), e))?;
        if st.cbytes > MAX_QUEUE {
            return Err(DumpError::Unsupported {
                pid: owner,
                resource: what,
                reason: format!("{} bytes queued, more than the {MAX_QUEUE} bytes an image record holds", st.cbytes),
            });
        }
        let mut messages = Vec::new();
        for i in 0..st.qnum {
            let m = sysv::msg_copy(id, i, st.cbytes.max(1) as usize).map_err(|e| {
                if e.errno() == Some(libc::ENOSYS) {
                    DumpError::Unsupported {
                        pid: owner,
                        resource: what.clone(),
                        reason: "this kernel cannot copy queued messages without receiving them (MSG_COPY needs CONFIG_CHECKPOINT_RESTORE)".into(),
                    }
                } else {
                    DumpError::sys(owner, what.clone(), e)
                }
            })?;
            messages.push(m);
        }
        let bytes: u64 = messages.iter().map(|(_, d)| d.len() as u64).sum();
        if bytes != st.cbytes || messages.len() as u64 != st.qnum {
            return Err(DumpError::Unsupported {
                pid: owner,
                resource: what,
                reason: format!(
                    "read {} message(s) of {bytes} bytes, the queue holds {} of {} (changed by a process outside the dump?)",
                    messages.len(),
                    st.qnum,
                    st.cbytes
                ),
            });
        }
        plan.msg.push(MsgRecord { perm: perm_of(id, st.perm), qbytes: st.qbytes, messages, user: user(owner) });
    }
    Ok(plan)
}

/// Refuses the plan when the reader (knowing record kinds `kinds`) would not know one of its
/// record kinds.
pub fn readable_by(plan: &SysvPlan, frozen: &Frozen, kinds: &[u16]) -> Result<(), DumpError> {
    let pid = frozen.procs().first().map(|p| p.pid).unwrap_or(0);
    for (kind, what) in plan.kinds() {
        if !kinds.contains(&kind.0) {
            return Err(DumpError::Unsupported {
                pid,
                resource: what.into(),
                reason: format!("needs record kind {kind}, which the target's seamless-init does not read: update it"),
            });
        }
    }
    Ok(())
}

/// Writes the objects (segment pages as blobs) and the attachments.
pub fn write<S: Store>(plan: &SysvPlan, w: &mut Writer<S>) -> Result<(), DumpError> {
    for (rec, runs) in &plan.shm {
        let id = u64::try_from(rec.perm.id).unwrap_or(0);
        w.put_record(records::SYSV_SHM, 0, id, rec)?;
        for (_, data) in runs {
            for chunk in data.chunks(16 << 20) {
                w.put_blob(0, records::sysv::SHM_BLOB_TAG + id, chunk)?;
            }
        }
    }
    for r in &plan.sem {
        w.put_record(records::SYSV_SEM, 0, u64::try_from(r.perm.id).unwrap_or(0), r)?;
    }
    for r in &plan.msg {
        w.put_record(records::SYSV_MSG, 0, u64::try_from(r.perm.id).unwrap_or(0), r)?;
    }
    for (pid, a) in &plan.attach {
        w.put_record(records::SHM_ATTACH, *pid as u32, 0, a)?;
    }
    Ok(())
}

/// Removes the objects of a dump whose processes were killed (`seamless dump` without
/// `--leave-running`): they moved into the image, and a restore on this kernel recreates
/// them with the same ids (and names, for POSIX message queues, which are unlinked). A
/// segment still attached elsewhere is only marked for removal.
pub fn remove(ids: &SysvIds) {
    for &id in &ids.shm {
        if let Err(e) = sysv::shm_rmid(id) {
            log::debug!("removing System V shared memory {id}: {}", seamless_sys::chain(&e));
        }
    }
    for &id in &ids.sem {
        if let Err(e) = sysv::sem_rmid(id) {
            log::warn!("removing System V semaphore set {id}: {}", seamless_sys::chain(&e));
        }
    }
    for &id in &ids.msg {
        if let Err(e) = sysv::msg_rmid(id) {
            log::warn!("removing System V message queue {id}: {}", seamless_sys::chain(&e));
        }
    }
    for name in &ids.mq {
        if let Err(e) = seamless_sys::mqueue::mq_unlink(name) {
            log::warn!("unlinking POSIX message queue /{name}: {}", seamless_sys::chain(&e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_are_told_by_name_and_id() {
        let segs = [ShmLine { key: 0x1234, id: 98310, size: 5000, cpid: 1, lpid: 1, swap: 0 }];
        let m = |name: &str, ino, shared| MapLine {
            start: 0x7000_0000,
            end: 0x7000_2000,
            prot: 3,
            shared,
            offset: 0,
            dev: 1,
            ino,
            name: name.into(),
        };
        assert!(attachment(&m("/SYSV00001234 (deleted)", 98310, true), &segs).is_some());
        assert!(attachment(&m("/SYSV00001234 (deleted)", 98311, true), &segs).is_none());
        assert!(attachment(&m("/SYSV00001234 (deleted)", 98310, false), &segs).is_none());
        assert!(attachment(&m("/SYSV00001235 (deleted)", 98310, true), &segs).is_none());
        assert!(attachment(&m("/tmp/SYSV00001234 (deleted)", 98310, true), &segs).is_none());
    }
}
