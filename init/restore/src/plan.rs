//! Loading an image into a restore plan: every record decoded, validated, and indexed by
//! pid, page chunks listed per process.

use crate::RestoreError;
use seamless_image::records::{
    self, FdTable, FileDesc, MmRecord, PipeRecord, ProcState, ProcessRecord, ProcessSettings, ThreadRecord, TreeRecord,
};
use seamless_image::validate::{validate, Decoded};
use seamless_image::{Reader, Store};
use std::collections::BTreeMap;

/// A page chunk: entry index, virtual address, length.
#[derive(Debug, Clone, Copy)]
pub struct Chunk {
    /// Index entry.
    pub index: u32,
    /// Virtual address of the first page.
    pub vaddr: u64,
    /// Bytes.
    pub len: u64,
}

/// Everything one process needs.
#[derive(Debug, Clone)]
pub struct ProcPlan {
    /// The process record.
    pub rec: ProcessRecord,
    /// Its threads, leader first.
    pub threads: Vec<ThreadRecord>,
    /// The CPU state of its threads on aarch64 (by tid; empty in an x86-64 image, whose
    /// thread records hold it).
    pub aarch64: BTreeMap<i32, records::Aarch64Thread>,
    /// Its address space.
    pub mm: MmRecord,
    /// Its descriptors.
    pub fds: FdTable,
    /// Its page chunks.
    pub chunks: Vec<Chunk>,
    /// Its memory-management settings (defaults when the image has none).
    pub settings: ProcessSettings,
    /// Its areas' `madvise` state (none when the image has no advice record for it).
    pub advice: Vec<records::AdvisedArea>,
    /// The file locks it holds (taken again through its descriptors).
    pub locks: Vec<records::FileLock>,
    /// Its threads' scheduling attributes (threads without a record keep the defaults).
    pub sched: Vec<records::ThreadSched>,
    /// The pages it shares copy-on-write with its parent (see [`crate::cow`]).
    pub cow: Option<records::CowShared>,
    /// The group stop it was in (stopped again before it runs).
    pub job_stop: Option<records::JobStop>,
    /// Its threads' seccomp filters (installed last, see [`crate::seccomp`]).
    pub seccomp: Option<records::seccomp::SeccompRecord>,
    /// Its System V shared memory attachments.
    pub shm_attach: Vec<records::ShmArea>,
    /// Its areas' flags beyond protection and advice (may write, locks).
    pub vma_flags: Vec<records::FlaggedArea>,
    /// Its private areas charged otherwise than their protection implies.
    pub account: records::VmaAccount,
    /// Its cgroup v2 membership when it was not the dumper's.
    pub cgroup: Option<records::CgroupMembership>,
    /// The saved object (memfd or deleted file) that is its executable.
    pub exe_object: Option<records::ExeObject>,
    /// Its `mq_notify` registrations.
    pub mq_notify: Option<records::MqNotify>,
}

impl ProcPlan {
    /// Whether the process was a zombie.
    pub fn is_zombie(&self) -> bool {
        matches!(self.rec.state, ProcState::Zombie { .. })
    }
}

/// The decoded image.
#[derive(Debug, Default)]
pub struct Plan {
    /// Tree record.
    pub tree: TreeRecord,
    /// Processes by pid.
    pub procs: BTreeMap<i32, ProcPlan>,
    /// Open file descriptions by id.
    pub descs: BTreeMap<u32, FileDesc>,
    /// Pipes by inode.
    pub pipes: BTreeMap<u64, PipeRecord>,
    /// Blob entry indices by tag (deleted files' contents), in order.
    pub blobs: BTreeMap<u64, Vec<u32>>,
    /// The network lock holding the image's TCP connections still, if the dump installed one.
    pub net_lock: Option<records::NetLockRecord>,
    /// The listeners whose new connections the lock holds too.
    pub held_listeners: Option<records::HeldListeners>,
    /// Socket state beyond the socket records, by description id.
    pub socket_extras: BTreeMap<u32, records::SocketExtra>,
    /// Datagrams queued on UDP sockets, by description id.
    pub datagrams: BTreeMap<u32, Vec<records::Datagram>>,
    /// Messages queued on unix sockets, by description id ([`crate::unix`]).
    pub unix_queues: BTreeMap<u32, Vec<records::UnixMessage>>,
    /// Unix sockets whose peer was closed, by description id.
    pub unix_gone: BTreeMap<u32, records::UnixPeerGone>,
    /// Descriptors in flight, by receiving description id: message index -> description ids.
    pub unix_in_flight: BTreeMap<u32, BTreeMap<u32, Vec<u32>>>,
    /// Close states of TCP connections past ESTABLISHED, by description id.
    pub tcp_closes: BTreeMap<u32, records::TcpCloseState>,
    /// TCP sockets whose connection ended, by description id.
    pub tcp_ended: BTreeMap<u32, records::TcpEnded>,
    /// Pty pairs by pts index.
    pub ptys: BTreeMap<u32, records::PtyRecord>,
    /// inotify instances by description id.
    pub inotify: BTreeMap<u32, records::InotifyRecord>,
    /// pidfds by description id.
    pub pidfds: BTreeMap<u32, records::PidfdRecord>,
    /// System V shared memory segments by id.
    pub sysv_shm: BTreeMap<i32, records::ShmRecord>,
    /// System V semaphore sets.
    pub sysv_sem: Vec<records::SemRecord>,
    /// System V message queues.
    pub sysv_msg: Vec<records::MsgRecord>,
    /// POSIX message queues and memfds, by entry tag.
    pub file_objects: Vec<(u64, records::FileObject)>,
    /// Owners of deleted files (not root), by description id.
    pub ghost_owners: BTreeMap<u32, records::GhostOwner>,
    /// FIFOs and directories deleted while held.
    pub deleted_nodes: Vec<records::DeletedNode>,
}

impl Plan {
    /// The whole network lock to install: the connections' record (an empty one when the
    /// image holds only listeners) and the held listeners' addresses; `None` when there is
    /// nothing to hold.
    pub fn lock(&self) -> Option<(records::NetLockRecord, Vec<records::Addr>)> {
        let listeners = self.held_listeners.as_ref().map(|h| h.listeners.clone()).unwrap_or_default();
        match (&self.net_lock, &self.held_listeners) {
            (Some(l), _) => Some((l.clone(), listeners)),
            (None, Some(h)) => Some((records::NetLockRecord { table: h.table.clone(), conns: Vec::new() }, listeners)),
            (None, None) => None,
        }
    }

    /// Children of `pid` in the image (those whose ppid is `pid`).
    pub fn children_of(&self, pid: i32) -> Vec<i32> {
        self.procs.values().filter(|p| p.rec.ppid == pid && p.rec.pid != pid).map(|p| p.rec.pid).collect()
    }

    /// Roots: processes whose parent is not in the image.
    pub fn roots(&self) -> Vec<i32> {
        self.procs.values().filter(|p| !self.procs.contains_key(&p.rec.ppid)).map(|p| p.rec.pid).collect()
    }
}

/// Decodes every process record of the image and validates them all
/// ([`seamless_image::validate`]) before anything is built from them: a bad image is refused
/// as a whole, with an error naming the record and the field, before any process is forked.
pub fn load<S: Store>(r: &mut Reader<S>) -> Result<Plan, RestoreError> {
    let d = Decoded::read(r).map_err(RestoreError::Image)?;
    validate(&d).map_err(RestoreError::Invalid)?;
    if let Some((_, j)) = d.journal_streams.first() {
        return Err(RestoreError::JournalStream { desc: j.desc, unit: j.unit.clone() });
    }
    // Validation proved the image holds threads of one architecture only.
    let image = if !d.aarch64_regs.is_empty() { "aarch64" } else { "x86_64" };
    if !d.threads.is_empty() && image != seamless_sys::arch::NAME {
        return Err(RestoreError::Architecture { image, running: seamless_sys::arch::NAME });
    }
    Ok(build(d))
}

/// Builds the plan from validated records.
fn build(d: Decoded) -> Plan {
    let mut plan = Plan {
        tree: d.trees.into_iter().next().unwrap_or_default(),
        net_lock: d.net_locks.into_iter().next(),
        held_listeners: d.held_listeners.into_iter().next(),
        ..Plan::default()
    };
    for (_, rec) in d.procs {
        plan.procs.insert(
            rec.pid,
            ProcPlan {
                rec,
                threads: Vec::new(),
                aarch64: BTreeMap::new(),
                mm: MmRecord::default(),
                fds: FdTable::default(),
                chunks: Vec::new(),
                settings: ProcessSettings::default(),
                advice: Vec::new(),
                locks: Vec::new(),
                sched: Vec::new(),
                cow: None,
                job_stop: None,
                seccomp: None,
                shm_attach: Vec::new(),
                vma_flags: Vec::new(),
                account: Default::default(),
                cgroup: None,
                exe_object: None,
                mq_notify: None,
            },
        );
    }
    // Validation proved every owner below is a process of the plan (a pid, so below 2^31).
    let owner = |o: u32| i32::try_from(o).unwrap_or(-1);
    for (o, _, t) in d.threads {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.threads.push(t);
        }
    }
    // Validation proved each thread has all three records or none.
    let mut fpsimd: BTreeMap<(u32, u64), records::Aarch64Fpsimd> =
        d.aarch64_fpsimd.into_iter().map(|(o, tag, r)| ((o, tag), r)).collect();
    let mut tls: BTreeMap<(u32, u64), records::Aarch64Tls> =
        d.aarch64_tls.into_iter().map(|(o, tag, r)| ((o, tag), r)).collect();
    for (o, tag, regs) in d.aarch64_regs {
        let (Some(fpsimd), Some(tls)) = (fpsimd.remove(&(o, tag)), tls.remove(&(o, tag))) else { continue };
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.aarch64.insert(regs.tid, records::Aarch64Thread { regs, fpsimd, tls });
        }
    }
    for (o, m) in d.mms {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.mm = m;
        }
    }
    for (o, f) in d.fd_tables {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.fds = f;
        }
    }
    for (o, s) in d.settings {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.settings = s;
        }
    }
    for (o, a) in d.advice {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.advice = a.areas;
        }
    }
    for (o, l) in d.file_locks {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.locks = l.locks;
        }
    }
    for (o, _, t) in d.sched {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.sched.push(t);
        }
    }
    for (o, f) in d.seccomp {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.seccomp = Some(f);
        }
    }
    for (o, j) in d.job_stops {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.job_stop = Some(j);
        }
    }
    for (o, c) in d.cow {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.cow = Some(c);
        }
    }
    for (o, f) in d.vma_flags {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.vma_flags = f.areas;
        }
    }
    for (o, a) in d.vma_account {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.account = a;
        }
    }
    for (o, c) in d.cgroups {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.cgroup = Some(c);
        }
    }
    for (o, e) in d.exe_objects {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.exe_object = Some(e);
        }
    }
    for (o, m) in d.mq_notify {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.mq_notify = Some(m);
        }
    }
    plan.deleted_nodes = d.deleted_nodes.into_iter().map(|(_, n)| n).collect();
    // Validation proved every tag is a description id.
    for (tag, g) in d.ghost_owners {
        if let Ok(id) = u32::try_from(tag) {
            plan.ghost_owners.insert(id, g);
        }
    }
    for (_, desc) in d.descs {
        plan.descs.insert(desc.id, desc);
    }
    for (_, pipe) in d.pipes {
        plan.pipes.insert(pipe.ino, pipe);
    }
    for (_, x) in d.socket_extras {
        plan.socket_extras.insert(x.desc, x);
    }
    for (_, q) in d.datagrams {
        plan.datagrams.insert(q.desc, q.datagrams);
    }
    for (_, q) in d.unix_queues {
        plan.unix_queues.insert(q.desc, q.messages);
    }
    for (_, g) in d.unix_gone {
        plan.unix_gone.insert(g.desc, g);
    }
    for (_, f) in d.unix_in_flight {
        plan.unix_in_flight.insert(f.desc, f.messages.into_iter().collect());
    }
    for (_, t) in d.tcp_closes {
        plan.tcp_closes.insert(t.desc, t);
    }
    for (_, t) in d.tcp_ended {
        plan.tcp_ended.insert(t.desc, t);
    }
    for (_, p) in d.pidfds {
        plan.pidfds.insert(p.desc, p);
    }
    for (_, n) in d.inotify {
        plan.inotify.insert(n.desc, n);
    }
    for (_, t) in d.ptys {
        plan.ptys.insert(t.index, t);
    }
    for (o, a) in d.shm_attach {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.shm_attach = a.areas;
        }
    }
    for (_, r) in d.sysv_shm {
        plan.sysv_shm.insert(r.perm.id, r);
    }
    plan.sysv_sem = d.sysv_sem.into_iter().map(|(_, r)| r).collect();
    plan.sysv_msg = d.sysv_msg.into_iter().map(|(_, r)| r).collect();
    plan.file_objects = d.file_objects;
    for b in d.blobs {
        plan.blobs.entry(b.tag).or_default().push(b.index);
    }
    for c in d.chunks {
        if let Some(p) = plan.procs.get_mut(&owner(c.owner)) {
            p.chunks.push(Chunk { index: c.index, vaddr: c.vaddr, len: c.len });
        }
    }
    for p in plan.procs.values_mut() {
        // Leader first (validation proved a live process has a record of its leader).
        let pid = p.rec.pid;
        p.threads.sort_by_key(|t| (t.tid != pid, t.tid));
    }
    plan
}

/// The units a restore succeeds or fails by: each tree of the image (a root and its
/// descendants), joined with every other tree it shares restored kernel state with, since
/// that state is recreated once and handed to all of its users: an open file description
/// (one offset, one pipe end), a pipe or FIFO by inode (its ends may be different
/// descriptions), the two ends of a unix socket pair, a shared anonymous mapping, or a
/// process group or session whose leader is in the other tree (joining it needs the leader).
/// A TCP connection between two restored trees does not join them: each end is rebuilt on
/// its own, and a peer tree that fails looks like a peer that went away (connection reset).
#[derive(Debug, Default)]
pub struct Units {
    /// Unit of each process.
    pub of_pid: BTreeMap<i32, usize>,
    /// Processes of each unit, ascending.
    pub pids: Vec<Vec<i32>>,
    /// Tree roots of each unit, ascending.
    pub roots: Vec<Vec<i32>>,
    /// Unit of each open file description some process of the image holds.
    pub of_desc: BTreeMap<u32, usize>,
}

/// Union-find over pids.
struct Join(BTreeMap<i32, i32>);

impl Join {
    fn find(&mut self, mut p: i32) -> i32 {
        let mut path = Vec::new();
        while let Some(&up) = self.0.get(&p) {
            if up == p {
                break;
            }
            path.push(p);
            p = up;
        }
        for q in path {
            self.0.insert(q, p);
        }
        p
    }
    fn join(&mut self, a: i32, b: i32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0.insert(ra.max(rb), ra.min(rb));
        }
    }
}

impl Units {
    /// Groups the trees of `plan` into units.
    pub fn of(plan: &Plan) -> Self {
        use seamless_image::records::SockState;
        let mut j = Join(plan.procs.keys().map(|&p| (p, p)).collect());
        // What each shared object's first user is, to join the later ones with it.
        let mut first_desc: BTreeMap<u32, i32> = BTreeMap::new();
        let mut first_shm: BTreeMap<u64, i32> = BTreeMap::new();
        for (&pid, p) in &plan.procs {
            if plan.procs.contains_key(&p.rec.ppid) {
                j.join(pid, p.rec.ppid);
            }
            for leader in [p.rec.pgid, p.rec.sid] {
                if leader != pid && plan.procs.contains_key(&leader) {
                    j.join(pid, leader);
                }
            }
            for f in &p.fds.fds {
                let first = *first_desc.entry(f.desc).or_insert(pid);
                j.join(pid, first);
            }
            for v in &p.mm.vmas {
                if let records::VmaKind::SharedAnon { ino, .. } = v.kind {
                    let first = *first_shm.entry(ino).or_insert(pid);
                    j.join(pid, first);
                }
            }
        }
        // Descriptions tied to each other: pipe/FIFO ends by inode, unix pairs by peer.
        let mut by_object: BTreeMap<(u8, u64), u32> = BTreeMap::new();
        let mut peers: Vec<(u32, u64)> = Vec::new();
        let masters: BTreeMap<u32, u32> = plan.ptys.values().map(|t| (t.master, t.index)).collect();
        for d in plan.descs.values() {
            let key = match &d.kind {
                // The ends of a pty pair, by pts index.
                records::FileKind::CharDev { path, .. } => masters
                    .get(&d.id)
                    .copied()
                    .or_else(|| path.strip_prefix("/dev/pts/").and_then(|n| n.parse().ok()))
                    .map(|n| (2, u64::from(n))),
                records::FileKind::Pipe { pipe } | records::FileKind::Fifo { pipe, .. } => Some((0, *pipe)),
                records::FileKind::Socket(s) => {
                    if let SockState::UnixPair { peer, .. } = &s.state {
                        peers.push((d.id, *peer));
                    }
                    Some((1, s.ino))
                }
                _ => None,
            };
            let Some(key) = key else { continue };
            match by_object.get(&key) {
                Some(&other) if key.0 != 1 => {
                    if let (Some(&a), Some(&b)) = (first_desc.get(&d.id), first_desc.get(&other)) {
                        j.join(a, b);
                    }
                }
                _ => {
                    by_object.insert(key, d.id);
                }
            }
        }
        for (id, peer) in peers {
            if let (Some(&a), Some(other)) = (first_desc.get(&id), by_object.get(&(1, peer))) {
                if let Some(&b) = first_desc.get(other) {
                    j.join(a, b);
                }
            }
        }
        let mut units = Units::default();
        let mut index: BTreeMap<i32, usize> = BTreeMap::new();
        for &pid in plan.procs.keys() {
            let rep = j.find(pid);
            let n = index.len();
            let u = *index.entry(rep).or_insert(n);
            if u == units.pids.len() {
                units.pids.push(Vec::new());
                units.roots.push(Vec::new());
            }
            units.of_pid.insert(pid, u);
            units.pids[u].push(pid);
        }
        for root in plan.roots() {
            if let Some(&u) = units.of_pid.get(&root) {
                units.roots[u].push(root);
            }
        }
        for (id, pid) in first_desc {
            units.of_desc.insert(id, units.of_pid[&pid]);
        }
        units
    }
}

/// A live process `pid` with no threads, memory or limits, holding descriptions `descs` at
/// fds 3, 4, ... (for unit tests).
#[cfg(test)]
pub(crate) fn sample_proc(pid: i32, ppid: i32, pgid: i32, descs: &[u32]) -> ProcPlan {
    use seamless_image::records::Fd;
    let rec = ProcessRecord {
        pid,
        ppid,
        pgid,
        sid: pgid,
        comm: "t".into(),
        tids: vec![pid],
        umask: 0o22,
        cwd: "/".into(),
        root: "/".into(),
        exe: "/bin/t".into(),
        dumpable: 1,
        exit_signal: 17,
        ..ProcessRecord::default()
    };
    let fds = (3..).zip(descs).map(|(fd, &desc)| Fd { fd, cloexec: false, desc }).collect();
    ProcPlan {
        rec,
        threads: Vec::new(),
        aarch64: BTreeMap::new(),
        mm: MmRecord::default(),
        fds: FdTable { fds },
        chunks: Vec::new(),
        settings: Default::default(),
        advice: Vec::new(),
        locks: Vec::new(),
        sched: Vec::new(),
        cow: None,
        job_stop: None,
        seccomp: None,
        shm_attach: Vec::new(),
        vma_flags: Vec::new(),
        account: Default::default(),
        cgroup: None,
        exe_object: None,
        mq_notify: None,
    }
}

#[cfg(test)]
mod tests {
    use super::{sample_proc as proc, Plan, Units};
    use seamless_image::records::{Addr, FileDesc, FileKind, SockState, SocketRecord, Vma, VmaKind};

    /// The sample image with its thread's CPU state moved to the aarch64 records (or, on
    /// aarch64, left in the x86-64 thread record): the image of the other architecture.
    fn other_architecture_image() -> seamless_image::MemStore {
        use seamless_image::records::aarch64::{PC, PT_REGS_WORDS};
        use seamless_image::records::{Aarch64Fpsimd, Aarch64Regs, Aarch64Tls};
        use seamless_image::{MemStore, Writer, WriterInfo};
        let mut d = seamless_image::validate::Decoded::sample(4242);
        if seamless_sys::arch::NAME == "x86_64" {
            let (owner, tag) = (d.threads[0].0, d.threads[0].1);
            let t = &mut d.threads[0].2;
            t.regs.clear();
            t.xstate.clear();
            let mut regs = vec![0u64; PT_REGS_WORDS];
            regs[PC] = 0x40_1000;
            d.aarch64_regs.push((owner, tag, Aarch64Regs { tid: 4242, regs }));
            d.aarch64_fpsimd.push((owner, tag, Aarch64Fpsimd { tid: 4242, vregs: vec![0; 512], fpsr: 0, fpcr: 0 }));
            d.aarch64_tls.push((owner, tag, Aarch64Tls { tid: 4242, tpidr_el0: 0 }));
        }
        let info = WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [3; 16], release: "test".into() };
        let mut w = Writer::new(MemStore::new(1 << 20), info).unwrap();
        d.write_to(&mut w).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn an_image_of_another_architecture_is_refused_before_anything() {
        let mut r = seamless_image::Reader::open(other_architecture_image()).unwrap();
        let e = super::load(&mut r).unwrap_err();
        let crate::RestoreError::Architecture { image, running } = e else { panic!("{e}") };
        assert_eq!(running, seamless_sys::arch::NAME);
        assert_ne!(image, running);
        assert!(e.to_string().contains("restores only on the architecture it was dumped on"), "{e}");
    }

    #[test]
    fn an_image_with_a_journal_stream_is_refused_before_anything() {
        use seamless_image::records::JournalStream;
        use seamless_image::{MemStore, Writer, WriterInfo};
        let mut d = seamless_image::validate::Decoded::sample(4242);
        let sock = SocketRecord {
            ino: 9,
            family: 1,
            ty: 1,
            protocol: 0,
            local: Addr::None,
            peer: Addr::Unix { path: b"/run/systemd/journal/stdout".to_vec() },
            state: SockState::Unconnected,
            opts: Vec::new(),
            path_mode: 0,
        };
        d.descs.push((3, desc(3, FileKind::Socket(sock))));
        let stream = JournalStream { desc: 3, unit: "demo.service".into(), priority: 6, ..JournalStream::default() };
        d.journal_streams.push((3, stream));
        let info = WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [3; 16], release: "test".into() };
        let mut w = Writer::new(MemStore::new(1 << 20), info).unwrap();
        d.write_to(&mut w).unwrap();
        let mut r = seamless_image::Reader::open(w.finish().unwrap()).unwrap();
        let e = super::load(&mut r).unwrap_err();
        assert!(matches!(&e, crate::RestoreError::JournalStream { desc: 3, unit } if unit == "demo.service"), "{e}");
    }

    fn desc(id: u32, kind: FileKind) -> FileDesc {
        FileDesc { id, flags: 0, pos: 0, kind }
    }

    fn unix(ino: u64, peer: u64) -> FileKind {
        FileKind::Socket(SocketRecord {
            ino,
            family: libc::AF_UNIX,
            ty: libc::SOCK_STREAM,
            protocol: 0,
            local: Addr::None,
            peer: Addr::None,
            state: SockState::UnixPair { peer, queue: Vec::new(), shutdown: 0 },
            opts: Vec::new(),
            path_mode: 0,
        })
    }

    /// Trees are joined exactly when they share restored state: the two ends of one pipe (as
    /// different descriptions), a unix pair, one description, shared memory, a group leader.
    #[test]
    fn trees_sharing_state_are_one_unit() {
        let mut plan = Plan::default();
        let mut shm = proc(70, 1, 70, &[]);
        let anon = |start| Vma {
            start,
            end: start + 4096,
            prot: 3,
            shared: true,
            growsdown: false,
            kind: VmaKind::SharedAnon { ino: 9, offset: 0 },
            name: "/dev/zero (deleted)".into(),
            saved_pages: 0,
        };
        shm.mm.vmas.push(anon(0x1000));
        let mut shm2 = proc(80, 1, 80, &[]);
        shm2.mm.vmas.push(anon(0x5000));
        for p in [
            proc(10, 1, 10, &[]),
            proc(11, 10, 10, &[1]), // read end of pipe 7, in the tree of 10
            proc(20, 1, 20, &[2]),  // write end of pipe 7
            proc(30, 1, 30, &[3, 4]),
            proc(40, 1, 40, &[]),
            proc(50, 1, 40, &[5]), // in the process group of 40
            proc(60, 1, 60, &[6]), // the other end of 30's unix pair
            proc(65, 1, 65, &[3]), // the same regular-file description as 30
            proc(90, 1, 90, &[7]), // alone
            shm,
            shm2,
        ] {
            plan.procs.insert(p.rec.pid, p);
        }
        let regular = FileKind::Regular { path: "/f".into(), size: 0, mode: 0o644 };
        for d in [
            desc(1, FileKind::Pipe { pipe: 7 }),
            desc(2, FileKind::Pipe { pipe: 7 }),
            desc(3, regular.clone()),
            desc(4, unix(100, 101)),
            desc(5, regular.clone()),
            desc(6, unix(101, 100)),
            desc(7, FileKind::Pipe { pipe: 8 }),
        ] {
            plan.descs.insert(d.id, d);
        }
        let u = Units::of(&plan);
        let mut units: Vec<Vec<i32>> = u.pids.clone();
        units.sort();
        assert_eq!(units, vec![vec![10, 11, 20], vec![30, 60, 65], vec![40, 50], vec![70, 80], vec![90]]);
        let of = |pid: i32| u.of_pid[&pid];
        assert_eq!(u.roots[of(11)], vec![10, 20]);
        assert_eq!(u.of_desc[&6], of(30));
        assert_eq!(u.of_desc[&7], of(90));
    }
}
