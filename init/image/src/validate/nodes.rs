//! Validation of the deleted-node and executable-object records (see [`super::validate`]).

use super::{live_owner, path, Decoded, Invalid, Res};
use crate::records::{DeletedNode, FileDesc, FileKind, FileObject, MqNotification, ProcessRecord};
use std::collections::{BTreeMap, BTreeSet};

/// Deleted nodes: tag = id, unique; an absolute path without NUL; a FIFO (with the inode of a
/// pipe record) or a directory (pipe 0); at least one user; each description listed once in
/// all nodes, of the matching kind (a FIFO description of the node's pipe, a directory
/// description of the node's path); each working-directory process live, listed once, only on
/// directories.
pub(super) fn check_nodes(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>, descs: &BTreeMap<u32, &FileDesc>) -> Res {
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut cwds = BTreeSet::new();
    for (tag, n) in &d.deleted_nodes {
        let bad = |field: &'static str, why: String| Invalid::File { id: n.id, field, why };
        if u64::from(n.id) != *tag {
            return Err(Invalid::Mislabelled {
                pid: 0,
                what: "deleted node",
                stored: (*tag).into(),
                inside: n.id.into(),
            });
        }
        if !ids.insert(n.id) {
            return Err(Invalid::Duplicate { what: "deleted node", id: n.id.into() });
        }
        path(0, "deleted node path", &n.path)?;
        if !n.path.starts_with('/') {
            return Err(bad("deleted node path", format!("{:?} is not absolute", n.path)));
        }
        if n.mode & !(DeletedNode::TYPE_MASK | 0o7777) != 0 {
            return Err(bad("deleted node mode", format!("{:o} has unknown bits", n.mode)));
        }
        let fifo = match n.mode & DeletedNode::TYPE_MASK {
            DeletedNode::FIFO => true,
            DeletedNode::DIR => false,
            t => return Err(bad("deleted node mode", format!("file type {t:o} is neither a FIFO nor a directory"))),
        };
        if fifo && (n.pipe == 0 || !d.pipes.iter().any(|(_, p)| p.ino == n.pipe)) {
            return Err(bad("deleted node pipe", format!("FIFO without a pipe record of inode {}", n.pipe)));
        }
        if !fifo && n.pipe != 0 {
            return Err(bad("deleted node pipe", "a directory has no pipe".into()));
        }
        if n.descs.is_empty() && n.cwd_of.is_empty() {
            return Err(bad("deleted node", "neither a description nor a process uses it".into()));
        }
        for &id in &n.descs {
            if !used.insert(id) {
                return Err(Invalid::Duplicate { what: "deleted node description", id: id.into() });
            }
            let fits = match descs.get(&id).map(|f| &f.kind) {
                Some(FileKind::Fifo { path, pipe }) => fifo && *pipe == n.pipe && *path == n.path,
                Some(FileKind::Regular { path, mode, .. }) => {
                    !fifo && mode & DeletedNode::TYPE_MASK == DeletedNode::DIR && *path == n.path
                }
                _ => false,
            };
            if !fits {
                return Err(bad(
                    "deleted node description",
                    format!(
                        "file #{id} is not a {} description of {}",
                        if fifo { "FIFO" } else { "directory" },
                        n.path
                    ),
                ));
            }
        }
        for &pid in &n.cwd_of {
            let owner = u32::try_from(pid).map_err(|_| bad("deleted node cwd", format!("pid {pid}")))?;
            live_owner(procs, "deleted working directory", owner)?;
            if fifo {
                return Err(bad("deleted node cwd", "a FIFO cannot be a working directory".into()));
            }
            if !cwds.insert(pid) {
                return Err(Invalid::Duplicate { what: "deleted working directory", id: pid.into() });
            }
        }
    }
    Ok(())
}

/// Executable objects: one per live process, naming a memfd or deleted-file object of the
/// image that is a regular file.
pub(super) fn check_exe_objects(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut seen = BTreeSet::new();
    for (owner, e) in &d.exe_objects {
        let pid = live_owner(procs, "executable object", *owner)?.pid;
        if !seen.insert(pid) {
            return Err(Invalid::Duplicate { what: "executable object", id: pid.into() });
        }
        let mode = d.file_objects.iter().find_map(|(_, o)| match o {
            FileObject::Memfd(m) if (m.dev, m.ino) == (e.dev, e.ino) => Some(m.mode),
            FileObject::Deleted(f) if (f.dev, f.ino) == (e.dev, e.ino) => Some(f.mode),
            _ => None,
        });
        match mode {
            Some(m) if m & DeletedNode::TYPE_MASK == 0o100_000 => {}
            _ => {
                return Err(Invalid::Value {
                    pid,
                    field: "executable object",
                    value: i128::from(e.ino),
                    why: "no memfd or deleted regular file of that device and inode in the image",
                })
            }
        }
    }
    Ok(())
}

/// `mq_notify` registrations: one record per live process; each through a descriptor of
/// the process that opens a POSIX message queue object of the image, each queue registered
/// once in the whole image; `SIGEV_SIGNAL` with a signal in 1..=64 that does not stop,
/// continue or kill, or `SIGEV_NONE`.
pub(super) fn check_mq_notify(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut seen = BTreeSet::new();
    let mut queues = BTreeSet::new();
    for (owner, m) in &d.mq_notify {
        let pid = live_owner(procs, "mq_notify", *owner)?.pid;
        if !seen.insert(pid) {
            return Err(Invalid::Duplicate { what: "mq_notify", id: pid.into() });
        }
        let table = d.fd_tables.iter().find(|(o, _)| o == owner).map(|(_, t)| t);
        for r in &m.regs {
            let bad = |why: String| Invalid::Fd { pid, fd: r.fd.into(), why };
            let desc = table
                .and_then(|t| t.fds.iter().find(|f| f.fd == r.fd))
                .map(|f| f.desc)
                .ok_or_else(|| bad("mq_notify registration through a descriptor the process does not have".into()))?;
            let queue = d
                .file_objects
                .iter()
                .find(|(_, o)| matches!(o, FileObject::PosixMq(q) if q.descs.contains(&desc)))
                .map(|(tag, _)| *tag)
                .ok_or_else(|| {
                    bad(format!("mq_notify registration through file #{desc}, not a POSIX message queue"))
                })?;
            if !queues.insert(queue) {
                return Err(Invalid::Duplicate { what: "mq_notify queue", id: queue.into() });
            }
            match r.notify {
                MqNotification::SIGEV_NONE => {}
                MqNotification::SIGEV_SIGNAL
                    if (1..=64).contains(&r.signo) && !MqNotification::REFUSED_SIGNALS.contains(&r.signo) => {}
                n => return Err(bad(format!("mq_notify notification {n} with signal {}", r.signo))),
            }
        }
    }
    Ok(())
}

/// timerfds: a clock `timerfd_create` accepts (`CLOCK_REALTIME`, `CLOCK_MONOTONIC`,
/// `CLOCK_BOOTTIME` and the two alarm clocks); settime flags `TFD_TIMER_ABSTIME` (1) and
/// `TFD_TIMER_CANCEL_ON_SET` (2), the latter only with the former on a real-time clock.
pub(super) fn check_timerfds(descs: &BTreeMap<u32, &FileDesc>) -> Res {
    for (&id, f) in descs {
        let FileKind::TimerFd(t) = &f.kind else { continue };
        let bad = |field: &'static str, why: String| Invalid::File { id, field, why };
        if ![0, 1, 7, 8, 9].contains(&t.clock) {
            return Err(bad("timerfd clock", format!("clock {} is not one timerfd_create takes", t.clock)));
        }
        let realtime = t.clock == 0 || t.clock == 8;
        if t.settime_flags & !3 != 0 || (t.settime_flags & 2 != 0 && (t.settime_flags & 1 == 0 || !realtime)) {
            return Err(bad("timerfd settime flags", format!("{:#o} on clock {}", t.settime_flags, t.clock)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use super::*;
    use crate::records::{ExeObject, Memfd, PipeRecord};

    const PID: i32 = 4343;

    fn fifo_node(d: &mut Decoded) -> DeletedNode {
        d.pipes.push((88, PipeRecord { ino: 88, capacity: 65536, data: b"xy".to_vec() }));
        d.descs.push((9, FileDesc { id: 9, flags: 0, pos: 0, kind: FileKind::Fifo { path: "/t/f".into(), pipe: 88 } }));
        DeletedNode {
            id: 1,
            path: "/t/f".into(),
            mode: DeletedNode::FIFO | 0o640,
            uid: 5,
            gid: 6,
            pipe: 88,
            descs: vec![9],
            cwd_of: Vec::new(),
        }
    }

    #[test]
    fn a_deleted_fifo_and_directory_fit_their_descriptions() {
        let mut d = Decoded::sample(PID);
        let n = fifo_node(&mut d);
        d.deleted_nodes.push((1, n));
        let dir = FileKind::Regular { path: "/t/d".into(), size: 0, mode: DeletedNode::DIR | 0o755 };
        d.descs.push((10, FileDesc { id: 10, flags: 0o200000, pos: 0, kind: dir }));
        let dn = DeletedNode {
            id: 2,
            path: "/t/d".into(),
            mode: DeletedNode::DIR | 0o755,
            uid: 0,
            gid: 0,
            pipe: 0,
            descs: vec![10],
            cwd_of: vec![PID],
        };
        d.deleted_nodes.push((2, dn.clone()));
        validate(&d).unwrap();

        let broken = |f: &dyn Fn(&mut Decoded)| {
            let mut b = Decoded::sample(PID);
            let n = fifo_node(&mut b);
            b.deleted_nodes.push((1, n));
            f(&mut b);
            validate(&b).expect_err("the broken image was accepted").to_string()
        };
        assert!(broken(&|b| b.deleted_nodes[0].0 = 7).contains("stored under 7"));
        assert!(broken(&|b| b.deleted_nodes[0].1.pipe = 99).contains("pipe record"));
        assert!(broken(&|b| b.deleted_nodes[0].1.mode = 0o100644).contains("neither a FIFO"));
        assert!(broken(&|b| b.deleted_nodes[0].1.path = "t/f".into()).contains("not absolute"));
        assert!(broken(&|b| b.deleted_nodes[0].1.path = "/t/\0".into()).contains("NUL"));
        assert!(broken(&|b| b.deleted_nodes[0].1.descs = vec![1]).contains("not a FIFO description"));
        assert!(broken(&|b| b.deleted_nodes[0].1.descs.clear()).contains("neither a description"));
        assert!(broken(&|b| b.deleted_nodes[0].1.cwd_of = vec![PID]).contains("cannot be a working"));
        assert!(broken(&|b| b.deleted_nodes[0].1.descs.push(9)).contains("two deleted node description"));
        let mut twice = dn.clone();
        twice.id = 3;
        twice.descs.clear();
        assert!(broken(&|b| {
            b.deleted_nodes.push((2, dn.clone()));
            b.descs.push((
                10,
                FileDesc {
                    id: 10,
                    flags: 0,
                    pos: 0,
                    kind: FileKind::Regular { path: "/t/d".into(), size: 0, mode: DeletedNode::DIR | 0o755 },
                },
            ));
            b.deleted_nodes.push((3, twice.clone()));
        })
        .contains("two deleted working directory"));
        assert!(broken(&|b| {
            let mut n = dn.clone();
            n.descs.clear();
            n.cwd_of = vec![PID + 1];
            b.deleted_nodes.push((2, n));
        })
        .contains("not a process"));
    }

    #[test]
    fn timerfd_flags_fit_their_clock() {
        use crate::records::TimerFdRecord;
        let with = |clock, settime_flags| {
            let mut d = Decoded::sample(PID);
            let t = TimerFdRecord { clock, value_ns: 5, interval_ns: 0, ticks: 0, settime_flags };
            d.descs.push((9, FileDesc { id: 9, flags: 0, pos: 0, kind: FileKind::TimerFd(t) }));
            validate(&d)
        };
        with(0, 3).unwrap();
        with(1, 1).unwrap();
        with(7, 0).unwrap();
        assert!(with(1, 3).unwrap_err().to_string().contains("settime flags"));
        assert!(with(0, 2).is_err() && with(0, 4).is_err());
        assert!(with(3, 0).unwrap_err().to_string().contains("clock 3"));
    }

    #[test]
    fn an_executable_object_names_a_saved_regular_object() {
        let mut d = Decoded::sample(PID);
        let e = ExeObject { dev: 1, ino: 2 };
        d.exe_objects.push((PID.unsigned_abs(), e));
        assert!(validate(&d).unwrap_err().to_string().contains("no memfd"));
        let m = Memfd {
            name: "runc".into(),
            dev: 1,
            ino: 2,
            mode: 0o100755,
            uid: 0,
            gid: 0,
            size: 0,
            runs: Vec::new(),
            seals: 0,
            descs: Vec::new(),
        };
        d.file_objects.push((0, FileObject::Memfd(m)));
        validate(&d).unwrap();
        d.exe_objects.push((PID.unsigned_abs(), e));
        assert!(validate(&d).unwrap_err().to_string().contains("two executable object"));
        d.exe_objects.truncate(1);
        d.exe_objects[0].0 = 1;
        assert!(validate(&d).unwrap_err().to_string().contains("not a process"));
    }

    #[test]
    fn an_mq_notify_registration_goes_through_a_queue_descriptor_of_its_process() {
        use crate::records::{Fd, MqNotify, PosixMq};
        let mut d = Decoded::sample(PID);
        let kind = FileKind::Ghost { path: "/q".into(), size: 0, mode: 0o100600 };
        d.descs.push((3, FileDesc { id: 3, flags: 2, pos: 0, kind }));
        d.fd_tables[0].1.fds.push(Fd { fd: 5, cloexec: false, desc: 3 });
        let q = PosixMq {
            name: "q".into(),
            unlinked: false,
            mode: 0o600,
            uid: 0,
            gid: 0,
            maxmsg: 4,
            msgsize: 16,
            messages: Vec::new(),
            descs: vec![3],
        };
        d.file_objects.push((0, FileObject::PosixMq(q)));
        let reg = MqNotification { fd: 5, notify: MqNotification::SIGEV_SIGNAL, signo: 40, value: 0xabc };
        d.mq_notify.push((PID.unsigned_abs(), MqNotify { regs: vec![reg] }));
        validate(&d).unwrap();
        let broken = |f: &dyn Fn(&mut MqNotification)| {
            let mut b = d.clone();
            f(&mut b.mq_notify[0].1.regs[0]);
            validate(&b).expect_err("the broken image was accepted").to_string()
        };
        assert!(broken(&|r| r.fd = 9).contains("does not have"));
        assert!(broken(&|r| r.fd = 0).contains("not a POSIX message queue"));
        assert!(broken(&|r| r.signo = 9).contains("signal 9"));
        assert!(broken(&|r| r.signo = 65).contains("signal 65"));
        assert!(broken(&|r| r.notify = 2).contains("notification 2"));
        let mut none = d.clone();
        none.mq_notify[0].1.regs[0] = MqNotification { fd: 5, notify: MqNotification::SIGEV_NONE, signo: 0, value: 0 };
        validate(&none).unwrap();
        let mut twice = d.clone();
        twice.mq_notify[0].1.regs.push(reg);
        assert!(validate(&twice).unwrap_err().to_string().contains("two mq_notify queue"));
    }
}
