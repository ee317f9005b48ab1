//! System V IPC objects, recreated before the processes in the restorer's IPC namespace
//! (seamless-init's is the host's): each with its id (written to
//! `/proc/sys/kernel/{shm,sem,msg}_next_id` just before the `*get` call, which the kernel
//! then uses once), its key and mode, created by a thread running with the creator's
//! effective ids (so `cuid`/`cgid` are the dumped ones), then given its owner; a segment's
//! pages written where they were (holes stay holes) and `SHM_LOCK` applied, a set's values,
//! a queue's byte limit and every message in order. Each process attaches its segments at
//! their addresses (injected `shmat`) once its memory is rebuilt; a segment that had been
//! removed while attached (`SHM_DEST`) is removed again after every process attached it.

use crate::plan::Plan;
use crate::tracee::Tracee;
use crate::{Failures, RestoreError};
use seamless_image::records::{self, IpcPerm, ShmArea, ShmRecord, Vma, VmaKind};
use seamless_image::{Reader, Store};
use seamless_sys::{chain, sysv, SysError};

/// The segments to remove once every process attached them.
#[derive(Debug, Default)]
pub struct Created {
    /// Ids of `SHM_DEST` segments.
    pub dest: Vec<i32>,
}

fn ipc_err(what: String, source: Option<SysError>) -> RestoreError {
    RestoreError::Ipc { what, source }
}

fn next_id(kind: &str, id: i32) -> Result<(), RestoreError> {
    let path = format!("/proc/sys/kernel/{kind}_next_id");
    std::fs::write(&path, format!("{id}\n"))
        .map_err(|e| ipc_err(format!("writing {id} to {path}"), Some(SysError::new("write", path, e))))
}

/// Creates an object with `get` (run as its creator) after setting the next id to `perm.id`;
/// checks the id the kernel gave.
fn create(
    kind: &'static str,
    perm: &IpcPerm,
    get: impl FnOnce() -> seamless_sys::SysResult<i32> + Send,
) -> Result<(), RestoreError> {
    let what = |s: &str| format!("System V {kind} {} (key {:#x}): {s}", perm.id, perm.key);
    next_id(kind, perm.id)?;
    let got = sysv::as_creator(perm.cuid, perm.cgid, get);
    let got = match got {
        Ok(id) => id,
        Err(e) => {
            let _ = next_id(kind, -1);
            let why = if e.errno() == Some(libc::EEXIST) {
                "an object with this key exists already"
            } else {
                "cannot create it"
            };
            return Err(ipc_err(what(why), Some(e)));
        }
    };
    if got != perm.id {
        let _ = match kind {
            "shm" => sysv::shm_rmid(got),
            "sem" => sysv::sem_rmid(got),
            _ => sysv::msg_rmid(got),
        };
        return Err(ipc_err(what(&format!("the kernel gave id {got} (the id is taken)")), None));
    }
    Ok(())
}

/// The blob bytes of a segment, read in order as its runs consume them.
struct Blobs<'a> {
    list: &'a [u32],
    next: usize,
    buf: Vec<u8>,
    at: usize,
}

impl Blobs<'_> {
    fn take<S: Store>(&mut self, reader: &mut Reader<S>, mut n: usize, out: &mut Vec<u8>) -> Result<(), RestoreError> {
        out.clear();
        while n > 0 {
            if self.at == self.buf.len() {
                let Some(&b) = self.list.get(self.next) else {
                    return Err(RestoreError::Corrupt { pid: 0, what: "segment pages run past their blobs".into() });
                };
                self.next += 1;
                self.buf = reader.blob(b).map_err(RestoreError::Image)?;
                self.at = 0;
            }
            let k = n.min(self.buf.len() - self.at);
            out.extend_from_slice(&self.buf[self.at..self.at + k]);
            self.at += k;
            n -= k;
        }
        Ok(())
    }
}

fn create_shm<S: Store>(r: &ShmRecord, plan: &Plan, reader: &mut Reader<S>) -> Result<(), RestoreError> {
    let p = &r.perm;
    let flags = sysv::IPC_CREAT | sysv::IPC_EXCL | (p.mode & 0o777).cast_signed();
    let key = if p.mode & ShmRecord::DEST != 0 { 0 } else { p.key };
    create("shm", p, || sysv::shmget(key, r.size, flags))?;
    let what = |s: &str| format!("System V shm {}: {s}", p.id);
    let tag = records::sysv::SHM_BLOB_TAG + u64::try_from(p.id).unwrap_or(0);
    let mut blobs =
        Blobs { list: plan.blobs.get(&tag).map(Vec::as_slice).unwrap_or(&[]), next: 0, buf: Vec::new(), at: 0 };
    let mut data = Vec::new();
    for &(off, len) in &r.runs {
        // In pieces of at most 16 MiB.
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(16 << 20);
            blobs.take(reader, seamless_image::usize_of(n), &mut data)?;
            sysv::shm_write(p.id, r.size, off + done, &data)
                .map_err(|e| ipc_err(what("writing its pages"), Some(e)))?;
            done += n;
        }
    }
    sysv::shm_set(p.id, p.uid, p.gid, p.mode & 0o777).map_err(|e| ipc_err(what("setting owner and mode"), Some(e)))?;
    if p.mode & ShmRecord::LOCKED != 0 {
        sysv::shm_lock(p.id).map_err(|e| ipc_err(what("SHM_LOCK"), Some(e)))?;
    }
    Ok(())
}

/// Recreates every object of the image. An object that cannot be recreated gives up the
/// trees attaching it (a segment) or every tree (a semaphore set or queue, which any process
/// may use by id or key).
pub fn create_all<S: Store>(plan: &Plan, reader: &mut Reader<S>, fails: &mut Failures) -> Created {
    let mut out = Created::default();
    let all: Vec<i32> = plan.procs.keys().copied().collect();
    let users = |id: i32| -> Vec<i32> {
        let u: Vec<i32> =
            plan.procs.values().filter(|p| p.shm_attach.iter().any(|a| a.shmid == id)).map(|p| p.rec.pid).collect();
        if u.is_empty() {
            all.clone()
        } else {
            u
        }
    };
    let fail = |fails: &mut Failures, pids: &[i32], e: RestoreError| {
        let why = chain(&e).to_string();
        log::error!("{why}");
        for &pid in pids {
            fails.fail_pid(pid, why.clone());
        }
    };
    for r in plan.sysv_shm.values() {
        match create_shm(r, plan, reader) {
            Ok(()) if r.perm.mode & ShmRecord::DEST != 0 => out.dest.push(r.perm.id),
            Ok(()) => {}
            Err(e) => fail(fails, &users(r.perm.id), e),
        }
    }
    for r in &plan.sysv_sem {
        let p = &r.perm;
        let flags = sysv::IPC_CREAT | sysv::IPC_EXCL | (p.mode & 0o777).cast_signed();
        let n = u32::try_from(r.values.len()).unwrap_or(u32::MAX);
        let what = |s: &str| format!("System V sem {}: {s}", p.id);
        let res = create("sem", p, || sysv::semget(p.key, n, flags))
            .and_then(|()| sysv::sem_setall(p.id, &r.values).map_err(|e| ipc_err(what("setting the values"), Some(e))))
            .and_then(|()| {
                sysv::sem_set(p.id, p.uid, p.gid, p.mode & 0o777)
                    .map_err(|e| ipc_err(what("setting owner and mode"), Some(e)))
            });
        if let Err(e) = res {
            fail(fails, &all, e);
        }
    }
    for r in &plan.sysv_msg {
        let p = &r.perm;
        let flags = sysv::IPC_CREAT | sysv::IPC_EXCL | (p.mode & 0o777).cast_signed();
        let what = |s: &str| format!("System V msg {}: {s}", p.id);
        let res = create("msg", p, || sysv::msgget(p.key, flags))
            .and_then(|()| {
                sysv::msg_set(p.id, p.uid, p.gid, p.mode & 0o777, r.qbytes)
                    .map_err(|e| ipc_err(what("setting owner, mode and byte limit"), Some(e)))
            })
            .and_then(|()| {
                // The last message is sent by the queue's user (see [`claim`]) when it can.
                let n = r.messages.len() - usize::from(user_sends_last(r));
                r.messages[..n].iter().enumerate().try_for_each(|(i, (t, m))| {
                    sysv::msgsnd(p.id, *t, m).map_err(|e| ipc_err(what(&format!("queueing message {i}")), Some(e)))
                })
            });
        if let Err(e) = res {
            fail(fails, &all, e);
        }
    }
    out
}

/// The areas a process will have, its attachments included (where its trampoline must not go).
pub fn target_areas(vmas: &[Vma], attach: &[ShmArea]) -> Vec<Vma> {
    let mut v = vmas.to_vec();
    v.extend(attach.iter().map(|a| Vma {
        start: a.start,
        end: a.end,
        prot: a.prot,
        shared: true,
        growsdown: false,
        kind: VmaKind::Anon,
        name: String::new(),
        saved_pages: 0,
    }));
    v
}

/// Attaches the process's segments at their addresses, with their protection.
pub fn attach<T: Tracee + ?Sized>(c: &mut T, areas: &[ShmArea]) -> Result<(), RestoreError> {
    let pid = c.pid();
    for a in areas {
        let mut flags = 0;
        if a.prot & libc::PROT_WRITE as u32 == 0 {
            flags |= sysv::SHM_RDONLY;
        }
        if a.prot & libc::PROT_EXEC as u32 != 0 {
            flags |= sysv::SHM_EXEC;
        }
        let got = c.call_for(
            format!("attaching System V shm {} at {:#x}", a.shmid, a.start),
            "shmat",
            libc::SYS_shmat,
            [crate::abi::int(a.shmid), a.start, crate::abi::int(flags), 0, 0, 0],
        )?;
        if got != a.start {
            return Err(RestoreError::Failed {
                pid,
                what: format!("System V shm {} attached at {got:#x}, not {:#x}", a.shmid, a.start),
            });
        }
    }
    Ok(())
}

/// Most bytes of a message a process sends from its scratch memory in [`claim`].
const CLAIM_MAX: usize = 8192;

/// Whether the user of queue `r` sends its last message itself ([`claim`]).
fn user_sends_last(r: &records::MsgRecord) -> bool {
    r.user != 0 && r.messages.last().is_some_and(|(_, m)| m.len() <= CLAIM_MAX)
}

/// Makes process `pid` (rebuilt, not yet running) the last user of the objects it is the
/// recorded user of, as the kernel records it: `sempid` (an injected `SETALL` of the same
/// values), `msg_lspid` (it sends the queue's last message; an empty queue gets a message
/// sent and received again), `shm_lpid` (an attach and detach of a segment nobody attaches).
/// Then a later dump of the restored processes finds these objects theirs again (the rule
/// of the dump side goes by these pids).
pub fn claim<T: Tracee + ?Sized>(c: &mut T, plan: &Plan) -> Result<(), RestoreError> {
    let pid = c.pid();
    let attached: Vec<i32> = plan.procs.values().flat_map(|p| p.shm_attach.iter().map(|a| a.shmid)).collect();
    for r in plan.sysv_shm.values().filter(|r| r.user == pid && !attached.contains(&r.perm.id)) {
        let at = c.call(
            "shmat",
            libc::SYS_shmat,
            [crate::abi::int(r.perm.id), 0, crate::abi::int(sysv::SHM_RDONLY), 0, 0, 0],
        )?;
        c.call("shmdt", libc::SYS_shmdt, [at, 0, 0, 0, 0, 0])?;
    }
    for r in plan.sysv_sem.iter().filter(|r| r.user == pid) {
        let mut bytes: Vec<u8> = r.values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        bytes.resize(bytes.len().div_ceil(8) * 8, 0);
        let mut s = c.scratch();
        let a = s.put(c, &bytes)?;
        c.call("semctl(SETALL)", libc::SYS_semctl, [crate::abi::int(r.perm.id), 0, 17, a, 0, 0])?;
    }
    for r in plan.sysv_msg.iter().filter(|r| r.user == pid) {
        const IPC_NOWAIT: u64 = 0o4000;
        let id = crate::abi::int(r.perm.id);
        let mut s = c.scratch();
        match r.messages.last() {
            Some((t, m)) if user_sends_last(r) => {
                let mut b = t.to_ne_bytes().to_vec();
                b.extend_from_slice(m);
                let a = s.put(c, &b)?;
                c.call("msgsnd", libc::SYS_msgsnd, [id, a, m.len() as u64, IPC_NOWAIT, 0, 0])?;
            }
            Some(_) => {
                log::warn!("pid {pid}: System V msg {}: last message too large to be sent by the process", r.perm.id)
            }
            None if r.qbytes > 0 => {
                let a = s.put(c, &1i64.to_ne_bytes())?;
                c.call("msgsnd", libc::SYS_msgsnd, [id, a, 0, IPC_NOWAIT, 0, 0])?;
                c.call("msgrcv", libc::SYS_msgrcv, [id, a, 0, 0, IPC_NOWAIT, 0])?;
            }
            None => {}
        }
    }
    Ok(())
}

/// Sends the last message of each queue whose user was not rebuilt (its tree failed) or
/// failed to [`claim`] it, so that no other tree finds the queue short of a message.
pub fn send_unclaimed(plan: &Plan, claimed: &[i32]) {
    for r in plan.sysv_msg.iter().filter(|r| user_sends_last(r) && !claimed.contains(&r.user)) {
        if let Some((t, m)) = r.messages.last() {
            if let Err(e) = sysv::msgsnd(r.perm.id, *t, m) {
                log::error!("System V msg {}: queueing its last message: {}", r.perm.id, chain(&e));
            }
        }
    }
}

/// Removes the `SHM_DEST` segments again, now that their users have attached them (the
/// kernel frees each with its last detach).
pub fn remove_dest(c: &Created) {
    for &id in &c.dest {
        if let Err(e) = sysv::shm_rmid(id) {
            log::warn!("System V shm {id}: removing it again (SHM_DEST): {}", chain(&e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracee::fake::Recorder;

    #[test]
    fn segments_are_attached_at_their_addresses_with_their_protection() {
        let mut t = Recorder::new(42);
        let areas = [
            ShmArea { start: 0x7000_0000, end: 0x7000_2000, shmid: 5, prot: 3 },
            ShmArea { start: 0x7100_0000, end: 0x7100_1000, shmid: 6, prot: 5 },
        ];
        attach(&mut t, &areas).unwrap();
        let c = t.named("shmat");
        let got: Vec<[u64; 3]> = c.iter().map(|c| [c.args[0], c.args[1], c.args[2]]).collect();
        let rx = (sysv::SHM_RDONLY | sysv::SHM_EXEC) as u64;
        assert_eq!(got, [[5, 0x7000_0000, 0], [6, 0x7100_0000, rx]]);
        t.fail.push(("shmat", libc::EINVAL));
        assert!(attach(&mut t, &areas).is_err());
    }
}
