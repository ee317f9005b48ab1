//! Validation of the process records of an image, in one place, before any of them is used.
//!
//! A checksum only proves that the bytes are the ones the writer wrote; it says nothing about
//! whether they make sense. [`Decoded::read`] decodes every process record of an image (and
//! lists its page chunks and blobs) and [`validate`] checks what the restore side relies on:
//! lengths (register arrays, XSAVE area, 128-byte siginfos, the saved vDSO), alignment
//! (page-aligned areas, chunks and file offsets), ranges (areas inside the user address
//! space, not overlapping, chunks inside their area, descriptor and signal numbers),
//! ownership (every record's owner is a process of the tree record, tags match the ids
//! inside the records) and structure (unique pids, tids, descriptors, description ids;
//! parent links that end at a root). The restore side calls it before it changes anything,
//! so a bad image is refused as a whole with an error that names the process, thread,
//! descriptor or address and the field, instead of failing (or worse) half-way.

use crate::records::{
    self, FdTable, FileDesc, FileKind, MmRecord, PipeRecord, ProcState, ProcessRecord, SockState, ThreadRecord,
    TreeRecord, VmaKind,
};
use crate::{ImageError, Reader, RecordKind, Store, Writer, PAGE_SIZE};
use std::collections::{BTreeMap, BTreeSet};

mod access;
mod attrs;
mod nodes;

/// End of the largest x86-64 user address space (5-level page tables); a kernel with 4-level
/// page tables refuses mappings above 128 TiB itself.
pub const USER_SPACE_END: u64 = (1 << 56) - PAGE_SIZE as u64;
/// Words in `user_regs_struct` on x86-64.
pub const REGS_WORDS: usize = 27;
/// Size of the legacy FXSAVE area, the smallest FPU state a thread record may hold.
pub const MIN_XSTATE: usize = 512;
/// Largest XSAVE area accepted (today's largest, with AMX tiles, is about 11 KiB).
pub const MAX_XSTATE: usize = 64 << 10;
/// Size of a raw `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;
/// Highest signal number on Linux.
pub const MAX_SIGNAL: i64 = 64;
/// Number of resource limits (`RLIM_NLIMITS`).
pub const RLIMITS: usize = 16;
/// Highest descriptor number + 1 the kernel can ever hand out (`sysctl_nr_open_max` on 64-bit).
pub const FD_LIMIT: i32 = 0x7fff_ffc0;
/// Most supplementary groups (`NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65536;
/// x86-64 `rip` of the `[vsyscall]` page.
const VSYSCALL_START: u64 = 0xffff_ffff_ff60_0000;

/// A page chunk of the image: entry index, owner, virtual address, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// Index entry.
    pub index: u32,
    /// Owner pid.
    pub owner: u32,
    /// Virtual address of the first page.
    pub vaddr: u64,
    /// Bytes.
    pub len: u64,
}

/// A blob of the image (a deleted file's contents): entry index, owner, tag, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRef {
    /// Index entry.
    pub index: u32,
    /// Owner (0).
    pub owner: u32,
    /// Tag (the description id of the deleted file).
    pub tag: u64,
    /// Bytes.
    pub len: u64,
}

/// Every process record of an image, decoded, with the owner (and tag) of its entry.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// Tree records (exactly one in a valid image with processes).
    pub trees: Vec<TreeRecord>,
    /// Process records by entry owner.
    pub procs: Vec<(u32, ProcessRecord)>,
    /// Thread records: entry owner, entry tag, record.
    pub threads: Vec<(u32, u64, ThreadRecord)>,
    /// aarch64 general registers by entry owner and tag.
    pub aarch64_regs: Vec<(u32, u64, records::Aarch64Regs)>,
    /// aarch64 FP/SIMD state by entry owner and tag.
    pub aarch64_fpsimd: Vec<(u32, u64, records::Aarch64Fpsimd)>,
    /// aarch64 thread pointers by entry owner and tag.
    pub aarch64_tls: Vec<(u32, u64, records::Aarch64Tls)>,
    /// Address spaces by entry owner.
    pub mms: Vec<(u32, MmRecord)>,
    /// Descriptor tables by entry owner.
    pub fd_tables: Vec<(u32, FdTable)>,
    /// Open file descriptions by entry tag.
    pub descs: Vec<(u64, FileDesc)>,
    /// Pipe buffers by entry tag.
    pub pipes: Vec<(u64, PipeRecord)>,
    /// Memory-management settings by entry owner.
    pub settings: Vec<(u32, records::ProcessSettings)>,
    /// Network lock records (at most one in a valid image).
    pub net_locks: Vec<records::NetLockRecord>,
    /// Socket extras by entry tag.
    pub socket_extras: Vec<(u64, records::SocketExtra)>,
    /// Queued datagrams by entry tag.
    pub datagrams: Vec<(u64, records::DatagramQueue)>,
    /// Queued unix messages by entry tag.
    pub unix_queues: Vec<(u64, records::UnixQueue)>,
    /// Unix sockets whose peer was closed, by entry tag.
    pub unix_gone: Vec<(u64, records::UnixPeerGone)>,
    /// Journal streams by description id (entry tag).
    pub journal_streams: Vec<(u64, records::JournalStream)>,
    /// Descriptors in flight on unix sockets, by entry tag.
    pub unix_in_flight: Vec<(u64, records::UnixInFlight)>,
    /// Close states of TCP connections past ESTABLISHED by entry tag.
    pub tcp_closes: Vec<(u64, records::TcpCloseState)>,
    /// TCP sockets whose connection ended, by entry tag.
    pub tcp_ended: Vec<(u64, records::TcpEnded)>,
    /// Held listeners (at most one in a valid image).
    pub held_listeners: Vec<records::HeldListeners>,
    /// Areas' `madvise` state by entry owner.
    pub advice: Vec<(u32, records::VmaAdvice)>,
    /// Pty pairs by entry tag.
    pub ptys: Vec<(u64, records::PtyRecord)>,
    /// inotify instances by entry tag.
    pub inotify: Vec<(u64, records::InotifyRecord)>,
    /// pidfds by entry tag.
    pub pidfds: Vec<(u64, records::PidfdRecord)>,
    /// File locks by entry owner.
    pub file_locks: Vec<(u32, records::FileLocks)>,
    /// Threads' scheduling attributes: entry owner, entry tag, record.
    pub sched: Vec<(u32, u64, records::ThreadSched)>,
    /// Pages shared copy-on-write with the parent, by entry owner.
    pub cow: Vec<(u32, records::CowShared)>,
    /// Group stops, by entry owner.
    pub job_stops: Vec<(u32, records::JobStop)>,
    /// Seccomp filters, by entry owner.
    pub seccomp: Vec<(u32, records::seccomp::SeccompRecord)>,
    /// System V shared memory segments by entry tag.
    pub sysv_shm: Vec<(u64, records::ShmRecord)>,
    /// System V semaphore sets by entry tag.
    pub sysv_sem: Vec<(u64, records::SemRecord)>,
    /// System V message queues by entry tag.
    pub sysv_msg: Vec<(u64, records::MsgRecord)>,
    /// Segment attachments by entry owner.
    pub shm_attach: Vec<(u32, records::ShmAttachments)>,
    /// POSIX message queues and memfds by entry tag.
    pub file_objects: Vec<(u64, records::FileObject)>,
    /// Areas' flags (may write, locks) by entry owner.
    pub vma_flags: Vec<(u32, records::VmaFlags)>,
    /// Areas' commit charge where the protection does not imply it, by entry owner.
    pub vma_account: Vec<(u32, records::VmaAccount)>,
    /// Owners of deleted files by entry tag (description id).
    pub ghost_owners: Vec<(u64, records::GhostOwner)>,
    /// cgroup v2 memberships by entry owner.
    pub cgroups: Vec<(u32, records::CgroupMembership)>,
    /// Deleted FIFOs and directories by entry tag.
    pub deleted_nodes: Vec<(u64, records::DeletedNode)>,
    /// Executables that are saved objects, by entry owner.
    pub exe_objects: Vec<(u32, records::ExeObject)>,
    /// `mq_notify` registrations by entry owner.
    pub mq_notify: Vec<(u32, records::MqNotify)>,
    /// Page chunks.
    pub chunks: Vec<ChunkRef>,
    /// Blobs.
    pub blobs: Vec<BlobRef>,
}

impl Decoded {
    /// Decodes every process record of the image (checksums verified on the way).
    pub fn read<S: Store>(r: &mut Reader<S>) -> Result<Self, ImageError> {
        let list = |r: &Reader<S>, kind: RecordKind| -> Vec<(u32, u32, u64, u64)> {
            r.find(kind).map(|(i, e)| (i, e.owner, e.tag, e.len)).collect()
        };
        let mut d = Decoded::default();
        for (i, _, _, _) in list(r, records::TREE) {
            d.trees.push(r.record(i)?);
        }
        for (i, owner, _, _) in list(r, records::PROCESS) {
            d.procs.push((owner, r.record(i)?));
        }
        for (i, owner, tag, _) in list(r, records::THREAD) {
            d.threads.push((owner, tag, r.record(i)?));
        }
        for (i, owner, tag, _) in list(r, records::AARCH64_REGS) {
            d.aarch64_regs.push((owner, tag, r.record(i)?));
        }
        for (i, owner, tag, _) in list(r, records::AARCH64_FPSIMD) {
            d.aarch64_fpsimd.push((owner, tag, r.record(i)?));
        }
        for (i, owner, tag, _) in list(r, records::AARCH64_TLS) {
            d.aarch64_tls.push((owner, tag, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::MM) {
            d.mms.push((owner, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::FDS) {
            d.fd_tables.push((owner, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::FILE_DESC) {
            d.descs.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::PIPE) {
            d.pipes.push((tag, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::SETTINGS) {
            d.settings.push((owner, r.record(i)?));
        }
        for (i, _, _, _) in list(r, records::NET_LOCK) {
            d.net_locks.push(r.record(i)?);
        }
        for (i, _, tag, _) in list(r, records::SOCKET_EXTRA) {
            d.socket_extras.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::DATAGRAMS) {
            d.datagrams.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::UNIX_QUEUE) {
            d.unix_queues.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::UNIX_PEER_GONE) {
            d.unix_gone.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::JOURNAL_STREAM) {
            d.journal_streams.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::UNIX_IN_FLIGHT) {
            d.unix_in_flight.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::TCP_CLOSE) {
            d.tcp_closes.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::TCP_ENDED) {
            d.tcp_ended.push((tag, r.record(i)?));
        }
        for (i, _, _, _) in list(r, records::HELD_LISTENERS) {
            d.held_listeners.push(r.record(i)?);
        }
        for (i, owner, _, _) in list(r, records::VMA_ADVICE) {
            d.advice.push((owner, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::PTY) {
            d.ptys.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::INOTIFY) {
            d.inotify.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::PIDFD) {
            d.pidfds.push((tag, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::FILE_LOCKS) {
            d.file_locks.push((owner, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::VMA_FLAGS) {
            d.vma_flags.push((owner, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::VMA_ACCOUNT) {
            d.vma_account.push((owner, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::CGROUP) {
            d.cgroups.push((owner, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::GHOST_OWNER) {
            d.ghost_owners.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::DELETED_NODE) {
            d.deleted_nodes.push((tag, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::EXE_OBJECT) {
            d.exe_objects.push((owner, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::MQ_NOTIFY) {
            d.mq_notify.push((owner, r.record(i)?));
        }
        for (i, owner, tag, _) in list(r, records::THREAD_SCHED) {
            d.sched.push((owner, tag, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::COW_SHARED) {
            d.cow.push((owner, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::JOB_STOP) {
            d.job_stops.push((owner, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::SECCOMP) {
            d.seccomp.push((owner, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::SYSV_SHM) {
            d.sysv_shm.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::SYSV_SEM) {
            d.sysv_sem.push((tag, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::SYSV_MSG) {
            d.sysv_msg.push((tag, r.record(i)?));
        }
        for (i, owner, _, _) in list(r, records::SHM_ATTACH) {
            d.shm_attach.push((owner, r.record(i)?));
        }
        for (i, _, tag, _) in list(r, records::FILE_OBJECT) {
            d.file_objects.push((tag, r.record(i)?));
        }
        for (index, owner, vaddr, len) in list(r, RecordKind::PAGE_CHUNK) {
            d.chunks.push(ChunkRef { index, owner, vaddr, len });
        }
        for (index, owner, tag, len) in list(r, RecordKind::BLOB) {
            d.blobs.push(BlobRef { index, owner, tag, len });
        }
        Ok(d)
    }

    /// Writes these records into `w` under the entry owners and tags they carry (page chunks
    /// and blobs as `len` bytes of filler), e.g. to build test images or fuzz seeds, valid or
    /// deliberately not.
    pub fn write_to<S: Store>(&self, w: &mut Writer<S>) -> Result<(), ImageError> {
        for t in &self.trees {
            w.put_record(records::TREE, 0, 0, t)?;
        }
        for (o, p) in &self.procs {
            w.put_record(records::PROCESS, *o, 0, p)?;
        }
        for (o, tag, t) in &self.threads {
            w.put_record(records::THREAD, *o, *tag, t)?;
        }
        for (o, tag, t) in &self.aarch64_regs {
            w.put_record(records::AARCH64_REGS, *o, *tag, t)?;
        }
        for (o, tag, t) in &self.aarch64_fpsimd {
            w.put_record(records::AARCH64_FPSIMD, *o, *tag, t)?;
        }
        for (o, tag, t) in &self.aarch64_tls {
            w.put_record(records::AARCH64_TLS, *o, *tag, t)?;
        }
        for (o, m) in &self.mms {
            w.put_record(records::MM, *o, 0, m)?;
        }
        for (o, f) in &self.fd_tables {
            w.put_record(records::FDS, *o, 0, f)?;
        }
        for (tag, f) in &self.descs {
            w.put_record(records::FILE_DESC, 0, *tag, f)?;
        }
        for (tag, p) in &self.pipes {
            w.put_record(records::PIPE, 0, *tag, p)?;
        }
        for (o, s) in &self.settings {
            w.put_record(records::SETTINGS, *o, 0, s)?;
        }
        for l in &self.net_locks {
            w.put_ignorable_record(records::NET_LOCK, 0, 0, l)?;
        }
        for (tag, x) in &self.socket_extras {
            w.put_record(records::SOCKET_EXTRA, 0, *tag, x)?;
        }
        for (tag, q) in &self.datagrams {
            w.put_record(records::DATAGRAMS, 0, *tag, q)?;
        }
        for (tag, q) in &self.unix_queues {
            w.put_record(records::UNIX_QUEUE, 0, *tag, q)?;
        }
        for (tag, g) in &self.unix_gone {
            w.put_record(records::UNIX_PEER_GONE, 0, *tag, g)?;
        }
        for (tag, j) in &self.journal_streams {
            w.put_record(records::JOURNAL_STREAM, 0, *tag, j)?;
        }
        for (tag, f) in &self.unix_in_flight {
            w.put_record(records::UNIX_IN_FLIGHT, 0, *tag, f)?;
        }
        for (tag, t) in &self.tcp_closes {
            w.put_record(records::TCP_CLOSE, 0, *tag, t)?;
        }
        for (tag, t) in &self.tcp_ended {
            w.put_record(records::TCP_ENDED, 0, *tag, t)?;
        }
        for h in &self.held_listeners {
            w.put_ignorable_record(records::HELD_LISTENERS, 0, 0, h)?;
        }
        for (o, a) in &self.advice {
            w.put_ignorable_record(records::VMA_ADVICE, *o, 0, a)?;
        }
        for (tag, t) in &self.ptys {
            w.put_record(records::PTY, 0, *tag, t)?;
        }
        for (tag, n) in &self.inotify {
            w.put_record(records::INOTIFY, 0, *tag, n)?;
        }
        for (tag, p) in &self.pidfds {
            w.put_record(records::PIDFD, 0, *tag, p)?;
        }
        for (o, l) in &self.file_locks {
            w.put_record(records::FILE_LOCKS, *o, 0, l)?;
        }
        for (o, tag, t) in &self.sched {
            w.put_record(records::THREAD_SCHED, *o, *tag, t)?;
        }
        for (o, c) in &self.cow {
            w.put_ignorable_record(records::COW_SHARED, *o, 0, c)?;
        }
        for (o, j) in &self.job_stops {
            w.put_record(records::JOB_STOP, *o, 0, j)?;
        }
        for (o, f) in &self.seccomp {
            w.put_record(records::SECCOMP, *o, 0, f)?;
        }
        for (tag, x) in &self.sysv_shm {
            w.put_record(records::SYSV_SHM, 0, *tag, x)?;
        }
        for (tag, x) in &self.sysv_sem {
            w.put_record(records::SYSV_SEM, 0, *tag, x)?;
        }
        for (tag, x) in &self.sysv_msg {
            w.put_record(records::SYSV_MSG, 0, *tag, x)?;
        }
        for (o, x) in &self.shm_attach {
            w.put_record(records::SHM_ATTACH, *o, 0, x)?;
        }
        for (tag, x) in &self.file_objects {
            w.put_record(records::FILE_OBJECT, 0, *tag, x)?;
        }
        for (o, f) in &self.vma_flags {
            w.put_record(records::VMA_FLAGS, *o, 0, f)?;
        }
        for (o, a) in &self.vma_account {
            w.put_ignorable_record(records::VMA_ACCOUNT, *o, 0, a)?;
        }
        for (o, c) in &self.cgroups {
            w.put_record(records::CGROUP, *o, 0, c)?;
        }
        for (tag, g) in &self.ghost_owners {
            w.put_record(records::GHOST_OWNER, 0, *tag, g)?;
        }
        for (tag, n) in &self.deleted_nodes {
            w.put_record(records::DELETED_NODE, 0, *tag, n)?;
        }
        for (o, e) in &self.exe_objects {
            w.put_record(records::EXE_OBJECT, *o, 0, e)?;
        }
        for (o, m) in &self.mq_notify {
            w.put_record(records::MQ_NOTIFY, *o, 0, m)?;
        }
        for c in &self.chunks {
            w.put_pages(c.owner, c.vaddr, &vec![0x5a; crate::usize_of(c.len)])?;
        }
        for b in &self.blobs {
            w.put_blob(b.owner, b.tag, &vec![0; crate::usize_of(b.len)])?;
        }
        Ok(())
    }

    /// The records of a small valid image: one live process `pid` with one thread, an
    /// anonymous area with one saved page, a `[vdso]`, a pipe on fds 0 and 1 with two buffered
    /// bytes, one ignored signal. [`validate`] accepts it; tests break one field at a time.
    pub fn sample(pid: i32) -> Decoded {
        use records::{Fd, SigAction, SyscallState, Vma};
        let vma = |start: u64, end: u64, kind: VmaKind, name: &str, saved_pages: u64| Vma {
            start,
            end,
            prot: 3,
            shared: false,
            growsdown: false,
            kind,
            name: name.into(),
            saved_pages,
        };
        let mut regs = vec![0u64; REGS_WORDS];
        regs[16] = 0x10_0000; // rip
        regs[19] = 0x11_0000; // rsp
        let process = ProcessRecord {
            pid,
            ppid: 1,
            pgid: pid,
            sid: pid,
            comm: "sample".into(),
            tids: vec![pid],
            umask: 0o22,
            cwd: "/".into(),
            root: "/".into(),
            exe: "/bin/true".into(),
            auxv: vec![0, 0],
            rlimits: vec![(1024, 4096)],
            sigactions: vec![SigAction { sig: 10, handler: 1, ..SigAction::default() }],
            dumpable: 1,
            exit_signal: 17,
            ..ProcessRecord::default()
        };
        let thread = ThreadRecord {
            tid: pid,
            regs,
            xstate: vec![0; 832],
            sigmask: 0,
            pending: Vec::new(),
            syscall: SyscallState::None,
            rseq: None,
            robust_list: None,
            clear_child_tid: 0,
            altstack: (0, 2, 0),
            comm: "sample".into(),
        };
        let mm = MmRecord {
            vmas: vec![
                vma(0x10_0000, 0x12_0000, VmaKind::Anon, "", 1),
                vma(0x7fff_f7fc_1000, 0x7fff_f7fc_3000, VmaKind::Vdso, "[vdso]", 0),
            ],
            vdso: vec![0; 2 * PAGE_SIZE],
        };
        let pipe = |id: u32, flags: u32| FileDesc { id, flags, pos: 0, kind: FileKind::Pipe { pipe: 77 } };
        let pid_u = pid.unsigned_abs();
        Decoded {
            trees: vec![TreeRecord { roots: vec![pid], pids: vec![pid], kernel_release: "6.1.0-sample".into() }],
            procs: vec![(pid_u, process)],
            threads: vec![(pid_u, u64::from(pid_u), thread)],
            aarch64_regs: Vec::new(),
            aarch64_fpsimd: Vec::new(),
            aarch64_tls: Vec::new(),
            mms: vec![(pid_u, mm)],
            fd_tables: vec![(
                pid_u,
                FdTable { fds: vec![Fd { fd: 0, cloexec: false, desc: 1 }, Fd { fd: 1, cloexec: false, desc: 2 }] },
            )],
            descs: vec![(1, pipe(1, 0)), (2, pipe(2, 1))],
            pipes: vec![(77, PipeRecord { ino: 77, capacity: 65536, data: b"hi".to_vec() })],
            settings: Vec::new(),
            net_locks: Vec::new(),
            socket_extras: Vec::new(),
            datagrams: Vec::new(),
            unix_queues: Vec::new(),
            unix_gone: Vec::new(),
            journal_streams: Vec::new(),
            unix_in_flight: Vec::new(),
            tcp_closes: Vec::new(),
            tcp_ended: Vec::new(),
            held_listeners: Vec::new(),
            advice: Vec::new(),
            ptys: Vec::new(),
            inotify: Vec::new(),
            pidfds: Vec::new(),
            file_locks: Vec::new(),
            sched: Vec::new(),
            cow: Vec::new(),
            job_stops: Vec::new(),
            seccomp: Vec::new(),
            sysv_shm: Vec::new(),
            sysv_sem: Vec::new(),
            sysv_msg: Vec::new(),
            shm_attach: Vec::new(),
            file_objects: Vec::new(),
            vma_flags: Vec::new(),
            vma_account: Vec::new(),
            ghost_owners: Vec::new(),
            cgroups: Vec::new(),
            deleted_nodes: Vec::new(),
            exe_objects: Vec::new(),
            mq_notify: Vec::new(),
            chunks: vec![ChunkRef { index: 0, owner: pid_u, vaddr: 0x10_0000, len: PAGE_SIZE as u64 }],
            blobs: Vec::new(),
        }
    }
}

/// A record that makes no sense, found by [`validate`]. Every variant names the record and
/// the field; `pid` is the process (0 for image-wide records).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Process records without the tree record that lists them.
    #[error("{processes} process record(s) but no tree record")]
    NoTree {
        /// Process records found.
        processes: usize,
    },
    /// Two records for the same process, thread, descriptor, description, ...
    #[error("two {what} records for {id}")]
    Duplicate {
        /// Which record kind or field.
        what: &'static str,
        /// The repeated id.
        id: i128,
    },
    /// A record whose owner is not a (live) process of the tree record.
    #[error("{what} record of pid {owner}, which is not a {need} of the tree record")]
    Owner {
        /// Which record kind.
        what: &'static str,
        /// Entry owner.
        owner: u32,
        /// What the owner had to be ("process", "live process").
        need: &'static str,
    },
    /// A record whose entry owner or tag disagrees with the id inside it.
    #[error("pid {pid}: {what} record stored under {stored} holds {inside}")]
    Mislabelled {
        /// Process (entry owner).
        pid: i32,
        /// Which record kind.
        what: &'static str,
        /// Owner or tag of the entry.
        stored: i128,
        /// Id inside the record.
        inside: i128,
    },
    /// The tree record and the process records disagree.
    #[error("pid {pid}: {why}")]
    Tree {
        /// Process.
        pid: i32,
        /// What is wrong.
        why: &'static str,
    },
    /// A network lock record that names something other than a lock table or IP connections.
    #[error("network lock: {why}")]
    NetLock {
        /// What is wrong.
        why: String,
    },
    /// A socket extras or datagram queue record that does not fit its socket.
    #[error("{what} record of file #{desc}: {why}")]
    Socket {
        /// Which record kind.
        what: &'static str,
        /// The description id (entry tag).
        desc: u64,
        /// What is wrong.
        why: String,
    },
    /// A pty record that makes no sense or does not fit the descriptions and processes.
    #[error("pty record of /dev/pts/{index}: {why}")]
    Pty {
        /// The pts index (entry tag).
        index: u64,
        /// What is wrong.
        why: String,
    },
    /// A record is missing.
    #[error("pid {pid}: no {what} record")]
    Missing {
        /// Process.
        pid: i32,
        /// Which record.
        what: &'static str,
    },
    /// A parent link that does not end at a root of the tree.
    #[error("pid {pid}: parent {ppid} {why}")]
    Parent {
        /// Process.
        pid: i32,
        /// Its recorded parent.
        ppid: i32,
        /// What is wrong.
        why: &'static str,
    },
    /// Thread records that do not match the process's thread list.
    #[error("pid {pid} thread {tid}: {why}")]
    Thread {
        /// Process.
        pid: i32,
        /// Thread.
        tid: i32,
        /// What is wrong.
        why: &'static str,
    },
    /// A field with the wrong length.
    #[error("pid {pid} thread {tid}: {field} is {len} long, expected {expected}")]
    Length {
        /// Process.
        pid: i32,
        /// Thread (the pid for process-wide fields).
        tid: i32,
        /// Field.
        field: &'static str,
        /// Its length (bytes or words).
        len: u64,
        /// What it must be.
        expected: &'static str,
    },
    /// An address, length or offset that must be page-aligned and is not.
    #[error("pid {pid}: {field} {value:#x} is not page-aligned")]
    Unaligned {
        /// Process.
        pid: i32,
        /// Field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// An address range that is empty, reversed, outside user space or overlapping.
    #[error("pid {pid}: {field} {start:#x}-{end:#x}: {why}")]
    Range {
        /// Process.
        pid: i32,
        /// Field.
        field: &'static str,
        /// Start address.
        start: u64,
        /// End address (exclusive).
        end: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// A signal number outside 1..=64.
    #[error("pid {pid} thread {tid}: {field}: signal {signo} is not in 1..=64")]
    Signal {
        /// Process.
        pid: i32,
        /// Thread (the pid for process-wide fields).
        tid: i32,
        /// Field.
        field: &'static str,
        /// The number.
        signo: i64,
    },
    /// A bad descriptor number or a descriptor of an unknown description.
    #[error("pid {pid} fd {fd}: {why}")]
    Fd {
        /// Process.
        pid: i32,
        /// Descriptor.
        fd: i64,
        /// What is wrong.
        why: String,
    },
    /// A bad open file description.
    #[error("file #{id}: {field}: {why}")]
    File {
        /// Description id.
        id: u32,
        /// Field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A bad System V IPC record (segment, semaphore set, message queue, attachment).
    #[error("{what} {id}: {why}")]
    Ipc {
        /// Which kind of object (`sysv shm`, `sysv sem`, `sysv msg`, `shm attachment of pid N`).
        what: String,
        /// Its id.
        id: i64,
        /// What is wrong.
        why: String,
    },
    /// Any other field with a value the restore cannot use.
    #[error("pid {pid}: {field} = {value}: {why}")]
    Value {
        /// Process.
        pid: i32,
        /// Field.
        field: &'static str,
        /// The value.
        value: i128,
        /// What is wrong.
        why: &'static str,
    },
}

type Res = Result<(), Invalid>;

#[path = "validate_sysv.rs"]
mod sysv_check;

fn aligned(v: u64) -> bool {
    v.is_multiple_of(PAGE_SIZE as u64)
}

fn page_aligned(pid: i32, field: &'static str, value: u64) -> Res {
    if aligned(value) {
        Ok(())
    } else {
        Err(Invalid::Unaligned { pid, field, value })
    }
}

fn signal(pid: i32, tid: i32, field: &'static str, signo: i64) -> Res {
    if (1..=MAX_SIGNAL).contains(&signo) {
        Ok(())
    } else {
        Err(Invalid::Signal { pid, tid, field, signo })
    }
}

fn siginfos(pid: i32, tid: i32, field: &'static str, infos: &[Vec<u8>]) -> Res {
    for info in infos {
        if info.len() != SIGINFO_SIZE {
            return Err(Invalid::Length { pid, tid, field, len: info.len() as u64, expected: "128 bytes" });
        }
        let signo = i32::from_le_bytes([info[0], info[1], info[2], info[3]]);
        signal(pid, tid, field, i64::from(signo))?;
    }
    Ok(())
}

fn path(pid: i32, field: &'static str, p: &str) -> Res {
    if p.contains('\0') {
        return Err(Invalid::Value { pid, field, value: i128::from(p.len() as u64), why: "path contains a NUL byte" });
    }
    Ok(())
}

/// Checks every record of `d` (see the module docs). `Ok` means the restore side can use
/// every field without further checks of its own.
pub fn validate(d: &Decoded) -> Result<(), Invalid> {
    let procs = check_tree(d)?;
    let tids = check_threads(d, &procs)?;
    let descs = check_descs(d, &procs)?;
    check_fd_tables(d, &procs, &descs)?;
    check_mms(d, &procs)?;
    check_settings(d, &procs)?;
    check_advice(d, &procs)?;
    attrs::check_file_locks(d, &procs, &descs)?;
    attrs::check_sched(d, &procs)?;
    check_cow(d, &procs)?;
    check_job_stops(d, &procs)?;
    check_seccomp(d, &procs, &tids)?;
    access::check_vma_flags(d, &procs)?;
    access::check_vma_account(d, &procs)?;
    access::check_ghost_owners(d, &descs)?;
    access::check_cgroups(d, &procs)?;
    nodes::check_nodes(d, &procs, &descs)?;
    nodes::check_exe_objects(d, &procs)?;
    nodes::check_mq_notify(d, &procs)?;
    nodes::check_timerfds(&descs)?;
    check_net_lock(d)?;
    check_socket_records(d, &descs)?;
    check_ptys(d, &procs, &descs)?;
    check_inotify(d, &descs)?;
    check_pidfds(d, &procs, &descs)?;
    sysv_check::check(d, &procs)?;
    for (_, p) in d.procs.iter() {
        check_process(p, tids.get(&p.pid).map(|s| s.as_slice()).unwrap_or(&[]))?;
    }
    Ok(())
}

/// Tree record vs process records; returns the processes by pid.
fn check_tree(d: &Decoded) -> Result<BTreeMap<i32, &ProcessRecord>, Invalid> {
    if d.trees.len() > 1 {
        return Err(Invalid::Duplicate { what: "tree", id: 0 });
    }
    let mut procs: BTreeMap<i32, &ProcessRecord> = BTreeMap::new();
    for (owner, p) in &d.procs {
        if i64::from(*owner) != i64::from(p.pid) {
            return Err(Invalid::Mislabelled {
                pid: p.pid,
                what: "process",
                stored: i128::from(*owner),
                inside: p.pid.into(),
            });
        }
        if p.pid <= 0 {
            return Err(Invalid::Value { pid: p.pid, field: "pid", value: p.pid.into(), why: "not a valid pid" });
        }
        if procs.insert(p.pid, p).is_some() {
            return Err(Invalid::Duplicate { what: "process", id: p.pid.into() });
        }
    }
    let Some(tree) = d.trees.first() else {
        return if procs.is_empty() { Ok(procs) } else { Err(Invalid::NoTree { processes: procs.len() }) };
    };
    let mut listed = BTreeSet::new();
    for &pid in &tree.pids {
        if !listed.insert(pid) {
            return Err(Invalid::Duplicate { what: "tree entry", id: pid.into() });
        }
        if !procs.contains_key(&pid) {
            return Err(Invalid::Tree { pid, why: "listed in the tree record but has no process record" });
        }
    }
    for &pid in procs.keys() {
        if !listed.contains(&pid) {
            return Err(Invalid::Owner { what: "process", owner: pid.unsigned_abs(), need: "process" });
        }
    }
    for &root in &tree.roots {
        if !listed.contains(&root) {
            return Err(Invalid::Tree { pid: root, why: "root of the tree record but not one of its processes" });
        }
    }
    // Every parent chain must leave the image (at a root) without coming back; a chain that
    // reaches a process already known to lead out is not walked again.
    let mut leads_out: BTreeSet<i32> = BTreeSet::new();
    for (&pid, p) in &procs {
        if p.ppid < 0 {
            return Err(Invalid::Parent { pid, ppid: p.ppid, why: "is not a valid pid" });
        }
        let mut seen = BTreeSet::from([pid]);
        let mut cur = p.ppid;
        while let Some(parent) = procs.get(&cur) {
            if leads_out.contains(&cur) {
                break;
            }
            if !seen.insert(cur) {
                return Err(Invalid::Parent { pid, ppid: p.ppid, why: "leads into a cycle of parent links" });
            }
            cur = parent.ppid;
        }
        leads_out.extend(seen);
    }
    Ok(procs)
}

fn alive(p: &ProcessRecord) -> bool {
    matches!(p.state, ProcState::Alive)
}

/// A record owner that must be a live process of the tree.
/// The live process owning the per-process record `what` (at most one per process: `seen`
/// collects them) and its mm.
fn once_per_mm<'a>(
    d: &'a Decoded,
    procs: &BTreeMap<i32, &ProcessRecord>,
    seen: &mut BTreeSet<i32>,
    what: &'static str,
    owner: u32,
) -> Result<(i32, &'a records::MmRecord), Invalid> {
    let pid = live_owner(procs, what, owner)?.pid;
    if !seen.insert(pid) {
        return Err(Invalid::Duplicate { what, id: pid.into() });
    }
    let mm = d.mms.iter().find(|(o, _)| *o == owner).map(|(_, m)| m).ok_or(Invalid::Missing { pid, what: "mm" })?;
    Ok((pid, mm))
}

fn live_owner<'a>(
    procs: &BTreeMap<i32, &'a ProcessRecord>,
    what: &'static str,
    owner: u32,
) -> Result<&'a ProcessRecord, Invalid> {
    match i32::try_from(owner).ok().and_then(|o| procs.get(&o)) {
        Some(p) if alive(p) => Ok(p),
        Some(_) => Err(Invalid::Owner { what, owner, need: "live process" }),
        None => Err(Invalid::Owner { what, owner, need: "process" }),
    }
}

/// Records of one kind keyed by (pid, tid), each owned by a live process and tagged with the
/// tid inside it, at most one per thread.
fn per_thread<'a, T>(
    procs: &BTreeMap<i32, &ProcessRecord>,
    what: &'static str,
    list: &'a [(u32, u64, T)],
    tid_of: impl Fn(&T) -> i32,
) -> Result<BTreeMap<(i32, i32), &'a T>, Invalid> {
    let mut out = BTreeMap::new();
    for (owner, tag, r) in list {
        let pid = live_owner(procs, what, *owner)?.pid;
        let tid = tid_of(r);
        if u64::try_from(tid).ok() != Some(*tag) || tid <= 0 {
            return Err(Invalid::Mislabelled { pid, what, stored: i128::from(*tag), inside: tid.into() });
        }
        if out.insert((pid, tid), r).is_some() {
            return Err(Invalid::Duplicate { what, id: tid.into() });
        }
    }
    Ok(out)
}

/// The state of an aarch64 thread: registers of EL0 AArch64 code at user addresses, 512
/// bytes of SIMD registers.
fn check_aarch64(
    pid: i32,
    tid: i32,
    t: &ThreadRecord,
    regs: &records::Aarch64Regs,
    fp: &records::Aarch64Fpsimd,
) -> Res {
    use records::aarch64::{PC, PSTATE, PT_REGS_WORDS, SP, VREGS_BYTES};
    if regs.regs.len() != PT_REGS_WORDS {
        return Err(Invalid::Length {
            pid,
            tid,
            field: "aarch64 regs",
            len: regs.regs.len() as u64,
            expected: "34 words",
        });
    }
    if fp.vregs.len() != VREGS_BYTES {
        return Err(Invalid::Length {
            pid,
            tid,
            field: "aarch64 vregs",
            len: fp.vregs.len() as u64,
            expected: "512 bytes",
        });
    }
    let (pc, sp, pstate) = (regs.regs[PC], regs.regs[SP], regs.regs[PSTATE]);
    // M[4:0] = 0: EL0 with the stack pointer SP_EL0, AArch64 state.
    if pstate & 0x1f != 0 || pstate >> 32 != 0 {
        return Err(Invalid::Value { pid, field: "pstate", value: i128::from(pstate), why: "not AArch64 EL0 state" });
    }
    if pc % 4 != 0 || pc >= USER_SPACE_END {
        return Err(Invalid::Value { pid, field: "pc", value: i128::from(pc), why: "not an aligned user address" });
    }
    if sp >= USER_SPACE_END {
        return Err(Invalid::Value { pid, field: "sp", value: i128::from(sp), why: "not a user address" });
    }
    if let records::SyscallState::Restart { .. } = t.syscall {
        if pc < 4 {
            return Err(Invalid::Value {
                pid,
                field: "pc",
                value: i128::from(pc),
                why: "a syscall to restart needs pc >= 4",
            });
        }
    }
    Ok(())
}

/// Thread records; returns the tids of each process as the records have them.
fn check_threads(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Result<BTreeMap<i32, Vec<i32>>, Invalid> {
    let mut all = BTreeSet::new();
    let mut by_pid: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    let a64_regs = per_thread(procs, "aarch64-regs", &d.aarch64_regs, |r| r.tid)?;
    let a64_fp = per_thread(procs, "aarch64-fpsimd", &d.aarch64_fpsimd, |r| r.tid)?;
    let a64_tls = per_thread(procs, "aarch64-tls", &d.aarch64_tls, |r| r.tid)?;
    let (mut x86, mut a64) = (0usize, 0usize);
    for (owner, tag, t) in &d.threads {
        let p = live_owner(procs, "thread", *owner)?;
        let pid = p.pid;
        if u64::try_from(t.tid).ok() != Some(*tag) || t.tid <= 0 {
            return Err(Invalid::Mislabelled { pid, what: "thread", stored: i128::from(*tag), inside: t.tid.into() });
        }
        if !all.insert(t.tid) {
            return Err(Invalid::Duplicate { what: "thread", id: t.tid.into() });
        }
        by_pid.entry(pid).or_default().push(t.tid);
        let key = (pid, t.tid);
        let state = (a64_regs.get(&key), a64_fp.get(&key), a64_tls.get(&key));
        if t.regs.is_empty() && t.xstate.is_empty() {
            let (Some(regs), Some(fp), Some(_)) = state else {
                return Err(Invalid::Thread {
                    pid,
                    tid: t.tid,
                    why: "has no x86-64 registers and not all three aarch64 records (regs, fpsimd, tls)",
                });
            };
            check_aarch64(pid, t.tid, t, regs, fp)?;
            check_thread_common(pid, t)?;
            a64 += 1;
        } else {
            if state != (None, None, None) {
                return Err(Invalid::Thread { pid, tid: t.tid, why: "has both x86-64 registers and aarch64 records" });
            }
            check_thread(pid, t)?;
            x86 += 1;
        }
    }
    if x86 > 0 && a64 > 0 {
        return Err(Invalid::Thread { pid: 0, tid: 0, why: "the image mixes x86-64 and aarch64 threads" });
    }
    let stray = a64_regs
        .keys()
        .chain(a64_fp.keys())
        .chain(a64_tls.keys())
        .find(|k| !d.threads.iter().any(|(o, _, t)| i32::try_from(*o).ok() == Some(k.0) && t.tid == k.1));
    if let Some(&(pid, tid)) = stray {
        return Err(Invalid::Thread { pid, tid, why: "has aarch64 records but no thread record" });
    }
    for p in procs.values().filter(|p| alive(p)) {
        let have: BTreeSet<i32> = by_pid.get(&p.pid).map(|v| v.iter().copied().collect()).unwrap_or_default();
        if p.tids.first() != Some(&p.pid) {
            return Err(Invalid::Thread {
                pid: p.pid,
                tid: p.pid,
                why: "the thread list does not start with the leader",
            });
        }
        let listed: BTreeSet<i32> = p.tids.iter().copied().collect();
        if listed.len() != p.tids.len() {
            return Err(Invalid::Thread { pid: p.pid, tid: p.pid, why: "the thread list repeats a tid" });
        }
        if let Some(&tid) = listed.difference(&have).next() {
            return Err(Invalid::Thread { pid: p.pid, tid, why: "listed by the process but has no thread record" });
        }
        if let Some(&tid) = have.difference(&listed).next() {
            return Err(Invalid::Thread {
                pid: p.pid,
                tid,
                why: "has a thread record but is not listed by the process",
            });
        }
        // A thread id is a pid too: no other process may use it.
        if let Some(&tid) = listed.iter().find(|&&t| t != p.pid && procs.contains_key(&t)) {
            return Err(Invalid::Thread { pid: p.pid, tid, why: "is also the pid of another process" });
        }
    }
    Ok(by_pid)
}

/// An x86-64 thread: 27 register words, an FXSAVE or XSAVE area, then the common checks.
fn check_thread(pid: i32, t: &ThreadRecord) -> Res {
    let tid = t.tid;
    if t.regs.len() != REGS_WORDS {
        return Err(Invalid::Length { pid, tid, field: "regs", len: t.regs.len() as u64, expected: "27 words" });
    }
    if !(MIN_XSTATE..=MAX_XSTATE).contains(&t.xstate.len()) {
        return Err(Invalid::Length {
            pid,
            tid,
            field: "xstate",
            len: t.xstate.len() as u64,
            expected: "512 to 65536 bytes",
        });
    }
    if let records::SyscallState::Restart { .. } = t.syscall {
        // The syscall is restarted by moving rip back over the 2-byte syscall instruction.
        let rip = t.regs[16];
        if rip < 2 {
            return Err(Invalid::Value {
                pid,
                field: "rip",
                value: i128::from(rip),
                why: "a syscall to restart needs rip >= 2",
            });
        }
    }
    check_thread_common(pid, t)
}

/// What every thread record must satisfy whatever its architecture.
fn check_thread_common(pid: i32, t: &ThreadRecord) -> Res {
    let tid = t.tid;
    siginfos(pid, tid, "pending", &t.pending)?;
    if let Some((area, len, _)) = t.rseq {
        if area == 0 || area % 32 != 0 || area >= USER_SPACE_END || len < 32 {
            return Err(Invalid::Value {
                pid,
                field: "rseq area",
                value: i128::from(area),
                why: "not a 32-byte aligned user address of an area of at least 32 bytes",
            });
        }
    }
    Ok(())
}

fn check_process(p: &ProcessRecord, tids: &[i32]) -> Res {
    let pid = p.pid;
    if p.pgid < 0 || p.sid < 0 {
        return Err(Invalid::Value { pid, field: "pgid/sid", value: p.pgid.min(p.sid).into(), why: "negative" });
    }
    path(pid, "cwd", &p.cwd)?;
    path(pid, "root", &p.root)?;
    path(pid, "exe", &p.exe)?;
    let mut sigs = BTreeSet::new();
    for s in &p.sigactions {
        signal(pid, pid, "sigaction", s.sig.into())?;
        if !sigs.insert(s.sig) {
            return Err(Invalid::Duplicate { what: "sigaction", id: s.sig.into() });
        }
    }
    siginfos(pid, pid, "shared_pending", &p.shared_pending)?;
    let mut which = BTreeSet::new();
    for t in &p.itimers {
        if t.which > 2 || !which.insert(t.which) {
            return Err(Invalid::Value {
                pid,
                field: "itimer",
                value: t.which.into(),
                why: "not ITIMER_REAL/VIRTUAL/PROF once each",
            });
        }
    }
    let mut ids = BTreeSet::new();
    for t in &p.posix_timers {
        if t.id < 0 || !ids.insert(t.id) {
            return Err(Invalid::Value {
                pid,
                field: "posix timer id",
                value: t.id.into(),
                why: "negative or repeated",
            });
        }
        match t.notify {
            1 => {}
            0 | 4 => signal(pid, pid, "posix timer signal", t.signo.into())?,
            n => {
                return Err(Invalid::Value {
                    pid,
                    field: "posix timer notify",
                    value: n.into(),
                    why: "not SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD_ID",
                })
            }
        }
        if t.notify == 4 && !tids.contains(&t.tid) {
            return Err(Invalid::Value {
                pid,
                field: "posix timer thread",
                value: t.tid.into(),
                why: "not a thread of the process",
            });
        }
    }
    if p.rlimits.len() > RLIMITS {
        return Err(Invalid::Length {
            pid,
            tid: pid,
            field: "rlimits",
            len: p.rlimits.len() as u64,
            expected: "at most 16",
        });
    }
    for (res, &(soft, hard)) in (0u32..).zip(p.rlimits.iter()) {
        if soft > hard {
            return Err(Invalid::Value {
                pid,
                field: "rlimit (soft above hard)",
                value: i128::from(res),
                why: "soft limit above the hard limit",
            });
        }
    }
    if !p.auxv.len().is_multiple_of(2) {
        return Err(Invalid::Length {
            pid,
            tid: pid,
            field: "auxv",
            len: p.auxv.len() as u64,
            expected: "pairs of words",
        });
    }
    if p.creds.groups.len() > MAX_GROUPS {
        return Err(Invalid::Length {
            pid,
            tid: pid,
            field: "groups",
            len: p.creds.groups.len() as u64,
            expected: "at most 65536",
        });
    }
    if p.umask > 0o777 {
        return Err(Invalid::Value { pid, field: "umask", value: p.umask.into(), why: "more than 0777" });
    }
    if !(-20..=19).contains(&p.nice) {
        return Err(Invalid::Value { pid, field: "nice", value: p.nice.into(), why: "not in -20..=19" });
    }
    if p.pdeath_signal != 0 {
        signal(pid, pid, "pdeath_signal", p.pdeath_signal.into())?;
    }
    if p.exit_signal != 0 {
        signal(pid, pid, "exit_signal", p.exit_signal.into())?;
    }
    Ok(())
}

/// Open file descriptions and pipes; returns the descriptions by id.
fn check_descs<'a>(
    d: &'a Decoded,
    procs: &BTreeMap<i32, &ProcessRecord>,
) -> Result<BTreeMap<u32, &'a FileDesc>, Invalid> {
    let mut descs = BTreeMap::new();
    for (tag, f) in &d.descs {
        if *tag != u64::from(f.id) {
            return Err(Invalid::Mislabelled { pid: 0, what: "file", stored: i128::from(*tag), inside: f.id.into() });
        }
        if descs.insert(f.id, f).is_some() {
            return Err(Invalid::Duplicate { what: "file", id: f.id.into() });
        }
    }
    let mut sockets = BTreeMap::new();
    for f in descs.values() {
        if let FileKind::Socket(s) = &f.kind {
            if sockets.insert(s.ino, s).is_some() {
                return Err(Invalid::Duplicate { what: "socket", id: i128::from(s.ino) });
            }
        }
    }
    let bad = |id: u32, field: &'static str, why: String| Invalid::File { id, field, why };
    for f in descs.values() {
        let id = f.id;
        match &f.kind {
            FileKind::Regular { path, .. } | FileKind::Ghost { path, .. } | FileKind::CharDev { path, .. } => {
                if path.contains('\0') {
                    return Err(bad(id, "path", "contains a NUL byte".into()));
                }
            }
            FileKind::Fifo { path, .. } => {
                if path.contains('\0') {
                    return Err(bad(id, "path", "contains a NUL byte".into()));
                }
            }
            FileKind::Pipe { .. } | FileKind::SignalFd { .. } | FileKind::TimerFd(_) => {}
            FileKind::EventFd { count, .. } => {
                if *count == u64::MAX {
                    return Err(bad(id, "eventfd count", "0xffffffffffffffff is not a counter value".into()));
                }
            }
            FileKind::Socket(s) => match &s.state {
                SockState::UnixPair { peer, .. } => match sockets.get(peer) {
                    Some(o) if matches!(o.state, SockState::UnixPair { peer: back, .. } if back == s.ino) => {}
                    _ => {
                        return Err(bad(
                            id,
                            "peer",
                            format!("unix socket {} is paired with {peer}, which does not pair back", s.ino),
                        ))
                    }
                },
                SockState::Tcp(c) if c.unsent as usize > c.send_queue.len() => {
                    return Err(bad(
                        id,
                        "unsent",
                        format!("{} unsent bytes of a {}-byte send queue", c.unsent, c.send_queue.len()),
                    ));
                }
                _ => {}
            },
            FileKind::Epoll(ep) => {
                if u32::try_from(ep.owner).map_or(true, |o| live_owner(procs, "epoll", o).is_err()) {
                    return Err(bad(id, "owner", format!("pid {} is not a live process of the image", ep.owner)));
                }
                for it in &ep.items {
                    if !(0..FD_LIMIT).contains(&it.tfd) {
                        return Err(bad(id, "watch", format!("fd {} is not a descriptor number", it.tfd)));
                    }
                    if !descs.contains_key(&it.target) {
                        return Err(bad(id, "watch", format!("fd {} watches unknown file #{}", it.tfd, it.target)));
                    }
                }
            }
        }
    }
    let mut inos = BTreeSet::new();
    for (tag, p) in &d.pipes {
        if *tag != p.ino {
            return Err(Invalid::Mislabelled {
                pid: 0,
                what: "pipe",
                stored: i128::from(*tag),
                inside: i128::from(p.ino),
            });
        }
        if !inos.insert(p.ino) {
            return Err(Invalid::Duplicate { what: "pipe", id: i128::from(p.ino) });
        }
        if p.data.len() as u64 > p.capacity || p.capacity > i32::MAX as u64 {
            return Err(Invalid::Value {
                pid: 0,
                field: "pipe buffer",
                value: i128::from(p.data.len() as u64),
                why: "more bytes buffered than the pipe holds, or an impossible capacity",
            });
        }
    }
    Ok(descs)
}

fn check_fd_tables(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>, descs: &BTreeMap<u32, &FileDesc>) -> Res {
    let mut owners = BTreeSet::new();
    for (owner, table) in &d.fd_tables {
        let pid = live_owner(procs, "fds", *owner)?.pid;
        if !owners.insert(pid) {
            return Err(Invalid::Duplicate { what: "fds", id: pid.into() });
        }
        let mut seen = BTreeSet::new();
        for f in &table.fds {
            if !(0..FD_LIMIT).contains(&f.fd) {
                return Err(Invalid::Fd { pid, fd: f.fd.into(), why: "not a descriptor number".into() });
            }
            if !seen.insert(f.fd) {
                return Err(Invalid::Fd { pid, fd: f.fd.into(), why: "listed twice".into() });
            }
            if !descs.contains_key(&f.desc) {
                return Err(Invalid::Fd { pid, fd: f.fd.into(), why: format!("refers to unknown file #{}", f.desc) });
            }
        }
    }
    Ok(())
}

/// Settings records: one per live process at most, values the kernel accepts.
fn check_settings(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut seen = BTreeSet::new();
    for (owner, s) in &d.settings {
        let pid = live_owner(procs, "settings", *owner)?.pid;
        if !seen.insert(pid) {
            return Err(Invalid::Duplicate { what: "settings", id: pid.into() });
        }
        if !(-1000..=1000).contains(&s.oom_score_adj) {
            return Err(Invalid::Value {
                pid,
                field: "oom_score_adj",
                value: s.oom_score_adj.into(),
                why: "outside -1000..=1000",
            });
        }
    }
    Ok(())
}

/// Seccomp records: one per live process; each filter a program the kernel would run, with
/// known flags, used by some chain; each thread of the process at most once, its chain
/// non-empty with valid indices, no filter twice in one chain.
fn check_seccomp(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>, tids: &BTreeMap<i32, Vec<i32>>) -> Res {
    use records::seccomp::{check_program, FLAG_LOG};
    let mut seen = BTreeSet::new();
    for (owner, r) in &d.seccomp {
        let pid = live_owner(procs, "seccomp", *owner)?.pid;
        if !seen.insert(pid) {
            return Err(Invalid::Duplicate { what: "seccomp", id: pid.into() });
        }
        let value = |field, value: i128, why| Invalid::Value { pid, field, value, why };
        for (i, f) in r.filters.iter().enumerate() {
            check_program(&f.prog)
                .map_err(|_| value("seccomp filter program", i as i128, "not a program the kernel runs"))?;
            if f.flags & !FLAG_LOG != 0 {
                return Err(value("seccomp filter flags", f.flags.into(), "unknown bits"));
            }
        }
        let mine = tids.get(&pid).cloned().unwrap_or_default();
        let mut used = vec![false; r.filters.len()];
        let mut threads = BTreeSet::new();
        for (tid, chain) in &r.threads {
            if !mine.contains(tid) || !threads.insert(*tid) {
                return Err(value("seccomp thread", (*tid).into(), "not a thread of the process, or twice"));
            }
            let mut in_chain = BTreeSet::new();
            if chain.is_empty() {
                return Err(value("seccomp chain", (*tid).into(), "empty"));
            }
            for &i in chain {
                let slot = usize::try_from(i).ok().and_then(|i| used.get_mut(i));
                match slot {
                    Some(u) if in_chain.insert(i) => *u = true,
                    _ => return Err(value("seccomp chain index", i.into(), "no such filter, or twice in one chain")),
                }
            }
        }
        if used.iter().any(|u| !u) {
            return Err(value("seccomp filters", r.filters.len() as i128, "a filter no thread has"));
        }
    }
    Ok(())
}

/// Group-stop records: one per live process, a stop signal.
fn check_job_stops(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut seen = BTreeSet::new();
    for (owner, j) in &d.job_stops {
        let pid = live_owner(procs, "job-stop", *owner)?.pid;
        if !seen.insert(pid) {
            return Err(Invalid::Duplicate { what: "job-stop", id: pid.into() });
        }
        if ![libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU].contains(&j.signal) {
            return Err(Invalid::Value {
                pid,
                field: "stop signal",
                value: j.signal.into(),
                why: "not SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU",
            });
        }
    }
    Ok(())
}

/// Copy-on-write records: one per live process, naming its parent (a live process of the
/// image), whole pages, ascending and disjoint, each range inside one private anonymous area
/// of the process and one of the parent.
fn check_cow(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut seen = BTreeSet::new();
    for (owner, c) in &d.cow {
        let p = live_owner(procs, "cow-shared", *owner)?;
        let pid = p.pid;
        if !seen.insert(pid) {
            return Err(Invalid::Duplicate { what: "cow-shared", id: pid.into() });
        }
        if c.parent != p.ppid || !procs.get(&c.parent).is_some_and(|q| alive(q)) {
            return Err(Invalid::Value {
                pid,
                field: "cow-shared parent",
                value: c.parent.into(),
                why: "not the process's parent, or not a live process of the image",
            });
        }
        let mm_of = |who: i32| {
            d.mms
                .iter()
                .find(|(o, _)| i32::try_from(*o).ok() == Some(who))
                .map(|(_, m)| m)
                .ok_or(Invalid::Missing { pid: who, what: "mm" })
        };
        let (mine, theirs) = (mm_of(pid)?, mm_of(c.parent)?);
        let private_anon = |m: &records::MmRecord, a: u64, b: u64| {
            m.vmas.iter().any(|v| v.kind == VmaKind::Anon && !v.shared && v.start <= a && b <= v.end)
        };
        let mut prev_end = 0u64;
        for &(start, end) in &c.ranges {
            let range = |why| Invalid::Range { pid, field: "cow-shared range", start, end, why };
            page_aligned(pid, "cow-shared start", start)?;
            page_aligned(pid, "cow-shared end", end)?;
            if end <= start || start < prev_end {
                return Err(range("empty, reversed, overlapping or out of order"));
            }
            prev_end = end;
            if !private_anon(mine, start, end) || !private_anon(theirs, start, end) {
                return Err(range("not inside one private anonymous area of both the process and its parent"));
            }
        }
    }
    Ok(())
}

/// Advice records: one per live process, known bits, whole pages inside the process's areas,
/// ascending and disjoint, not both huge-page bits.
fn check_advice(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut seen = BTreeSet::new();
    for (owner, a) in &d.advice {
        let (pid, mm) = once_per_mm(d, procs, &mut seen, "vma advice", *owner)?;
        let mut prev_end = 0u64;
        for x in &a.areas {
            let range = |why| Invalid::Range { pid, field: "advised area", start: x.start, end: x.end, why };
            page_aligned(pid, "advised area start", x.start)?;
            page_aligned(pid, "advised area end", x.end)?;
            if x.end <= x.start || x.start < prev_end {
                return Err(range("empty, reversed, overlapping or out of order"));
            }
            prev_end = x.end;
            let mapped =
                |v: &&records::Vma| matches!(v.kind, VmaKind::Anon | VmaKind::File { .. } | VmaKind::SharedAnon { .. });
            if !mm.vmas.iter().filter(mapped).any(|v| v.start <= x.start && x.end <= v.end) {
                return Err(range("not inside one area of the process that the restore maps"));
            }
            let both = records::VmaAdvice::NOHUGEPAGE | records::VmaAdvice::HUGEPAGE;
            if x.flags & !records::VmaAdvice::KNOWN != 0 || x.flags & both == both || x.flags == 0 {
                return Err(Invalid::Value {
                    pid,
                    field: "advice flags",
                    value: x.flags.into(),
                    why: "unknown bits, none, or both huge-page bits",
                });
            }
        }
    }
    Ok(())
}

fn check_net_lock(d: &Decoded) -> Res {
    if d.net_locks.len() > 1 {
        return Err(Invalid::Duplicate { what: "network lock", id: 0 });
    }
    for l in &d.net_locks {
        if let Some(why) = l.problem() {
            return Err(Invalid::NetLock { why });
        }
    }
    if d.held_listeners.len() > 1 {
        return Err(Invalid::Duplicate { what: "held listeners", id: 0 });
    }
    for h in &d.held_listeners {
        if let Some(why) = h.problem() {
            return Err(Invalid::NetLock { why });
        }
        if d.net_locks.iter().any(|l| l.table != h.table) {
            return Err(Invalid::NetLock {
                why: format!("held listeners in table {}, connections in another", h.table),
            });
        }
    }
    Ok(())
}

/// Socket extras and datagram queues: one of each at most per description, stored under its
/// id, for a socket of a kind they fit.
fn check_socket_records(d: &Decoded, descs: &BTreeMap<u32, &FileDesc>) -> Res {
    fn socket<'a>(
        descs: &BTreeMap<u32, &'a FileDesc>,
        what: &'static str,
        tag: u64,
        inside: u32,
    ) -> Result<&'a records::SocketRecord, Invalid> {
        if tag != u64::from(inside) {
            return Err(Invalid::Mislabelled { pid: 0, what, stored: tag.into(), inside: inside.into() });
        }
        match descs.get(&inside).map(|f| &f.kind) {
            Some(FileKind::Socket(s)) => Ok(s),
            _ => Err(Invalid::Socket { what, desc: tag, why: "no socket description of that id".into() }),
        }
    }
    let mut seen = BTreeSet::new();
    for (tag, x) in &d.socket_extras {
        let s = socket(descs, "socket extras", *tag, x.desc)?;
        if !seen.insert(x.desc) {
            return Err(Invalid::Duplicate { what: "socket extras", id: x.desc.into() });
        }
        if let Some(why) = x.problem(s) {
            return Err(Invalid::Socket { what: "socket extras", desc: *tag, why });
        }
    }
    let mut seen = BTreeSet::new();
    for (tag, q) in &d.datagrams {
        let s = socket(descs, "datagrams", *tag, q.desc)?;
        if !seen.insert(q.desc) {
            return Err(Invalid::Duplicate { what: "datagrams", id: q.desc.into() });
        }
        if let Some(why) = q.problem(s) {
            return Err(Invalid::Socket { what: "datagrams", desc: *tag, why });
        }
    }
    let mut gone = BTreeSet::new();
    for (tag, g) in &d.unix_gone {
        let s = socket(descs, "closed unix peer", *tag, g.desc)?;
        if !gone.insert(g.desc) {
            return Err(Invalid::Duplicate { what: "closed unix peer", id: g.desc.into() });
        }
        if let Some(why) = g.problem(s) {
            return Err(Invalid::Socket { what: "closed unix peer", desc: *tag, why });
        }
    }
    let mut seen = BTreeSet::new();
    for (tag, j) in &d.journal_streams {
        let s = socket(descs, "journal stream", *tag, j.desc)?;
        if !seen.insert(j.desc) {
            return Err(Invalid::Duplicate { what: "journal stream", id: j.desc.into() });
        }
        if gone.contains(&j.desc) {
            return Err(Invalid::Socket {
                what: "journal stream",
                desc: *tag,
                why: "a journal stream whose peer is also recorded as closed".into(),
            });
        }
        if let Some(why) = j.problem(s) {
            return Err(Invalid::Socket { what: "journal stream", desc: *tag, why });
        }
    }
    let mut seen = BTreeSet::new();
    for (tag, q) in &d.unix_queues {
        let s = socket(descs, "unix queue", *tag, q.desc)?;
        if !seen.insert(q.desc) {
            return Err(Invalid::Duplicate { what: "unix queue", id: q.desc.into() });
        }
        if let Some(why) = q.problem(s, gone.contains(&q.desc)) {
            return Err(Invalid::Socket { what: "unix queue", desc: *tag, why });
        }
        let live = |pid: i32| {
            d.procs.iter().any(|(_, p)| p.pid == pid && !matches!(p.state, records::ProcState::Zombie { .. }))
        };
        if let Some(c) = q.messages.iter().find_map(|m| m.creds.filter(|c| !live(c.0))) {
            return Err(Invalid::Socket {
                what: "unix queue",
                desc: *tag,
                why: format!("a message carries the credentials of pid {}, which is no live process of the image", c.0),
            });
        }
    }
    let mut seen = BTreeSet::new();
    for (tag, f) in &d.unix_in_flight {
        socket(descs, "descriptors in flight", *tag, f.desc)?;
        if !seen.insert(f.desc) {
            return Err(Invalid::Duplicate { what: "descriptors in flight", id: f.desc.into() });
        }
        let q = d.unix_queues.iter().map(|(_, q)| q).find(|q| q.desc == f.desc);
        if let Some(why) = f.problem(q, &|id| descs.contains_key(&id)) {
            return Err(Invalid::Socket { what: "descriptors in flight", desc: *tag, why });
        }
    }
    let mut seen = BTreeSet::new();
    for (tag, t) in &d.tcp_closes {
        let s = socket(descs, "tcp close", *tag, t.desc)?;
        if !seen.insert(t.desc) {
            return Err(Invalid::Duplicate { what: "tcp close", id: t.desc.into() });
        }
        if let Some(why) = t.problem(s) {
            return Err(Invalid::Socket { what: "tcp close", desc: *tag, why });
        }
    }
    let mut seen = BTreeSet::new();
    for (tag, t) in &d.tcp_ended {
        let s = socket(descs, "tcp ended", *tag, t.desc)?;
        if !seen.insert(t.desc) {
            return Err(Invalid::Duplicate { what: "tcp ended", id: t.desc.into() });
        }
        if let Some(why) = t.problem(s) {
            return Err(Invalid::Socket { what: "tcp ended", desc: *tag, why });
        }
    }
    Ok(())
}

/// Pty records: one per index, stored under it, each with a `/dev/ptmx` master description
/// of its own and a session and foreground group of live processes; every `/dev/ptmx` and
/// `/dev/pts/N` description belongs to one.
fn check_ptys(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>, descs: &BTreeMap<u32, &FileDesc>) -> Res {
    let mut by_index = BTreeMap::new();
    let mut masters = BTreeSet::new();
    for (tag, t) in &d.ptys {
        let bad = |why: String| Invalid::Pty { index: *tag, why };
        if *tag != u64::from(t.index) {
            return Err(Invalid::Mislabelled { pid: 0, what: "pty", stored: i128::from(*tag), inside: t.index.into() });
        }
        if by_index.insert(t.index, t).is_some() {
            return Err(Invalid::Duplicate { what: "pty", id: t.index.into() });
        }
        if let Some(why) = t.problem() {
            return Err(bad(why));
        }
        match descs.get(&t.master).map(|f| &f.kind) {
            Some(FileKind::CharDev { path, .. }) if path == "/dev/ptmx" => {}
            _ => return Err(bad(format!("master file #{} is not a /dev/ptmx description", t.master))),
        }
        if !masters.insert(t.master) {
            return Err(bad(format!("master file #{} is the master of another pty too", t.master)));
        }
        if t.session != 0 {
            let live = |p: &&&ProcessRecord| alive(p) && p.sid == t.session;
            if procs.get(&t.session).filter(live).is_none_or(|p| p.pid != p.sid) {
                return Err(bad(format!("session {} has no live leader in the image", t.session)));
            }
            if !procs.values().filter(live).any(|p| p.pgid == t.foreground) {
                return Err(bad(format!(
                    "foreground group {} has no live process of session {}",
                    t.foreground, t.session
                )));
            }
        }
    }
    for f in descs.values() {
        let FileKind::CharDev { path, .. } = &f.kind else { continue };
        let fine = if path == "/dev/ptmx" {
            masters.contains(&f.id)
        } else if let Some(n) = path.strip_prefix("/dev/pts/") {
            n.parse::<u32>().is_ok_and(|n| by_index.contains_key(&n))
        } else {
            true
        };
        if !fine {
            return Err(Invalid::File { id: f.id, field: "path", why: format!("{path} belongs to no pty record") });
        }
    }
    Ok(())
}

/// inotify records: one per placeholder description, stored under its id; every placeholder
/// has one.
fn check_inotify(d: &Decoded, descs: &BTreeMap<u32, &FileDesc>) -> Res {
    use records::inotify::INOTIFY_PATH;
    let mut seen = BTreeSet::new();
    for (tag, n) in &d.inotify {
        let bad = |why: String| Invalid::File { id: n.desc, field: "inotify", why };
        if *tag != u64::from(n.desc) {
            return Err(Invalid::Mislabelled {
                pid: 0,
                what: "inotify",
                stored: i128::from(*tag),
                inside: n.desc.into(),
            });
        }
        if !seen.insert(n.desc) {
            return Err(Invalid::Duplicate { what: "inotify", id: n.desc.into() });
        }
        if !matches!(descs.get(&n.desc).map(|f| &f.kind), Some(FileKind::CharDev { path, .. }) if path == INOTIFY_PATH)
        {
            return Err(bad(format!("no {INOTIFY_PATH} description of that id")));
        }
        if let Some(why) = n.problem() {
            return Err(bad(why));
        }
    }
    for f in descs.values() {
        if matches!(&f.kind, FileKind::CharDev { path, .. } if path == INOTIFY_PATH) && !seen.contains(&f.id) {
            return Err(Invalid::File {
                id: f.id,
                field: "inotify",
                why: "an inotify description without its watches record".into(),
            });
        }
    }
    Ok(())
}

/// pidfd records: one per placeholder description, stored under its id, each referring to a
/// live process of the image; every placeholder has one.
fn check_pidfds(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>, descs: &BTreeMap<u32, &FileDesc>) -> Res {
    use records::pidfd::PIDFD_PATH;
    let mut seen = BTreeSet::new();
    for (tag, p) in &d.pidfds {
        let bad = |why: String| Invalid::File { id: p.desc, field: "pidfd", why };
        if *tag != u64::from(p.desc) {
            return Err(Invalid::Mislabelled {
                pid: 0,
                what: "pidfd",
                stored: i128::from(*tag),
                inside: p.desc.into(),
            });
        }
        if !seen.insert(p.desc) {
            return Err(Invalid::Duplicate { what: "pidfd", id: p.desc.into() });
        }
        if !matches!(descs.get(&p.desc).map(|f| &f.kind), Some(FileKind::CharDev { path, .. }) if path == PIDFD_PATH) {
            return Err(bad(format!("no {PIDFD_PATH} description of that id")));
        }
        if !procs.get(&p.pid).is_some_and(|r| alive(r)) {
            return Err(bad(format!("pid {} is not a live process of the image", p.pid)));
        }
    }
    for f in descs.values() {
        if matches!(&f.kind, FileKind::CharDev { path, .. } if path == PIDFD_PATH) && !seen.contains(&f.id) {
            return Err(Invalid::File {
                id: f.id,
                field: "pidfd",
                why: "a pidfd description without its record".into(),
            });
        }
    }
    Ok(())
}

fn check_mms(d: &Decoded, procs: &BTreeMap<i32, &ProcessRecord>) -> Res {
    let mut mms: BTreeMap<i32, &MmRecord> = BTreeMap::new();
    for (owner, mm) in &d.mms {
        let pid = live_owner(procs, "mm", *owner)?.pid;
        if mms.insert(pid, mm).is_some() {
            return Err(Invalid::Duplicate { what: "mm", id: pid.into() });
        }
        check_mm(pid, mm)?;
    }
    for p in procs.values().filter(|p| alive(p)) {
        if !mms.contains_key(&p.pid) {
            return Err(Invalid::Missing { pid: p.pid, what: "mm" });
        }
    }
    // Page chunks: whole pages inside one restorable area of their process, not overlapping.
    let mut by_pid: BTreeMap<i32, Vec<(u64, u64)>> = BTreeMap::new();
    for ch in &d.chunks {
        let pid = live_owner(procs, "page chunk", ch.owner)?.pid;
        let end = ch.vaddr.saturating_add(ch.len);
        page_aligned(pid, "page chunk address", ch.vaddr)?;
        if ch.len == 0 || !aligned(ch.len) {
            return Err(Invalid::Range {
                pid,
                field: "page chunk",
                start: ch.vaddr,
                end,
                why: "not a whole number of pages",
            });
        }
        let mm = mms.get(&pid).ok_or(Invalid::Missing { pid, what: "mm" })?;
        // The areas are sorted and disjoint (check_mm): the last one starting at or below.
        let at = mm.vmas.partition_point(|v| v.start <= ch.vaddr);
        let vma = at.checked_sub(1).and_then(|i| mm.vmas.get(i)).filter(|v| ch.vaddr < v.end);
        let chunk = |why| Invalid::Range { pid, field: "page chunk", start: ch.vaddr, end, why };
        match vma {
            None => return Err(chunk("not inside any area of the process")),
            Some(v) if end > v.end => return Err(chunk("runs past the end of its area")),
            Some(v) if matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar | VmaKind::Vsyscall) => {
                return Err(chunk("lies in a kernel-provided area (vdso, vvar, vsyscall)"))
            }
            Some(_) => {}
        }
        by_pid.entry(pid).or_default().push((ch.vaddr, end));
    }
    for (&pid, mm) in &mms {
        let mut ranges = by_pid.remove(&pid).unwrap_or_default();
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(Invalid::Range {
                    pid,
                    field: "page chunk",
                    start: w[1].0,
                    end: w[1].1,
                    why: "overlaps another chunk",
                });
            }
        }
        for v in &mm.vmas {
            // Sorted chunks: those starting inside this area are one run.
            let first = ranges.partition_point(|&(s, _)| s < v.start);
            let last = ranges.partition_point(|&(s, _)| s < v.end);
            let pages: u64 =
                ranges.get(first..last).unwrap_or_default().iter().map(|&(s, e)| (e - s) / PAGE_SIZE as u64).sum();
            if pages != v.saved_pages {
                return Err(Invalid::Range {
                    pid,
                    field: "area",
                    start: v.start,
                    end: v.end,
                    why: "its saved_pages differs from the pages of its chunks",
                });
            }
        }
    }
    Ok(())
}

fn check_mm(pid: i32, mm: &MmRecord) -> Res {
    let mut prev_end = 0u64;
    let mut vdso = None;
    for v in &mm.vmas {
        let range = |why| Invalid::Range { pid, field: "area", start: v.start, end: v.end, why };
        page_aligned(pid, "area start", v.start)?;
        page_aligned(pid, "area end", v.end)?;
        if v.end <= v.start {
            return Err(range("empty or reversed"));
        }
        if v.start < prev_end {
            return Err(range("overlaps the previous area or is out of order"));
        }
        prev_end = v.end;
        let len = v.end - v.start;
        if v.kind == VmaKind::Vsyscall {
            if v.start != VSYSCALL_START {
                return Err(range("a [vsyscall] area anywhere but its fixed address"));
            }
        } else if v.end > USER_SPACE_END {
            return Err(range("outside the user address space"));
        }
        if v.saved_pages > len / PAGE_SIZE as u64 {
            return Err(range("more saved pages than the area has"));
        }
        match &v.kind {
            VmaKind::File { file, offset } => {
                path(pid, "mapped file", &file.path)?;
                page_aligned(pid, "file mapping offset", *offset)?;
                if offset.checked_add(len).is_none() {
                    return Err(range("file offset plus length overflows"));
                }
            }
            VmaKind::SharedAnon { offset, .. } => {
                page_aligned(pid, "shared memory offset", *offset)?;
                if offset.checked_add(len).is_none_or(|e| e > USER_SPACE_END) {
                    return Err(range("shared memory offset plus length is beyond any object size"));
                }
            }
            VmaKind::Vdso => {
                if vdso.replace(len).is_some() {
                    return Err(range("a second [vdso] area"));
                }
            }
            VmaKind::Anon | VmaKind::Vvar | VmaKind::Vsyscall => {}
        }
        if matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar | VmaKind::Vsyscall) && v.saved_pages != 0 {
            return Err(range("saved pages of a kernel-provided area"));
        }
    }
    let saved = mm.vdso.len() as u64;
    match vdso {
        Some(len) if saved != len => Err(Invalid::Length {
            pid,
            tid: pid,
            field: "saved vdso",
            len: saved,
            expected: "the length of the [vdso] area (a positive multiple of 4096)",
        }),
        None if saved != 0 => {
            Err(Invalid::Length { pid, tid: pid, field: "saved vdso", len: saved, expected: "0 (no [vdso] area)" })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Fd, SyscallState, Vma};
    use crate::{MemStore, WriterInfo};

    const PID: i32 = 4242;

    fn check(f: impl FnOnce(&mut Decoded)) -> Invalid {
        let mut d = Decoded::sample(PID);
        f(&mut d);
        validate(&d).expect_err("the broken image was accepted")
    }

    fn thread(d: &mut Decoded) -> &mut ThreadRecord {
        &mut d.threads[0].2
    }
    fn process(d: &mut Decoded) -> &mut ProcessRecord {
        &mut d.procs[0].1
    }
    fn mm(d: &mut Decoded) -> &mut MmRecord {
        &mut d.mms[0].1
    }

    #[test]
    fn the_sample_is_valid_and_survives_the_writer_and_reader() {
        let d = Decoded::sample(PID);
        validate(&d).unwrap();
        let info = WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [3; 16], release: "test".into() };
        let mut w = Writer::new(MemStore::new(1 << 20), info).unwrap();
        d.write_to(&mut w).unwrap();
        let store = w.finish().unwrap();
        let mut r = Reader::open(store).unwrap();
        let back = Decoded::read(&mut r).unwrap();
        validate(&back).unwrap();
        assert_eq!(back.procs, d.procs);
        assert_eq!(back.mms, d.mms);
        assert_eq!(back.chunks.len(), 1);
        // An image without processes (a test-pattern image) is valid too.
        validate(&Decoded::default()).unwrap();
    }

    #[test]
    fn network_lock_is_read_back_and_checked() {
        use crate::records::{Addr, LockedConn, NetLockRecord};
        let lock = NetLockRecord {
            table: "seamless-lock-42".into(),
            conns: vec![LockedConn {
                local: Addr::V4 { ip: [127, 0, 0, 1], port: 80 },
                peer: Addr::V4 { ip: [127, 0, 0, 1], port: 4000 },
            }],
        };
        let mut d = Decoded::sample(PID);
        d.net_locks.push(lock.clone());
        validate(&d).unwrap();
        let info = WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [3; 16], release: "test".into() };
        let mut w = Writer::new(MemStore::new(1 << 20), info).unwrap();
        d.write_to(&mut w).unwrap();
        let mut r = Reader::open(w.finish().unwrap()).unwrap();
        assert_eq!(Decoded::read(&mut r).unwrap().net_locks, vec![lock.clone()]);
        // Only lock tables may be named, only IP connections with ports held.
        let e = check(|d| d.net_locks.push(NetLockRecord { table: "filter".into(), ..lock.clone() }));
        assert!(matches!(e, Invalid::NetLock { .. }), "{e:?}");
        let e = check(|d| {
            let mut l = lock.clone();
            l.conns[0].peer = Addr::Unix { path: b"/x".to_vec() };
            d.net_locks.push(l);
        });
        assert!(matches!(e, Invalid::NetLock { .. }), "{e:?}");
        let e = check(|d| d.net_locks.extend([lock.clone(), lock.clone()]));
        assert_eq!(e, Invalid::Duplicate { what: "network lock", id: 0 });
        // Held listeners: in the same table, IP addresses with ports.
        use crate::records::HeldListeners;
        let held = HeldListeners { table: lock.table.clone(), listeners: vec![Addr::V4 { ip: [0; 4], port: 80 }] };
        let mut d = Decoded::sample(PID);
        d.net_locks.push(lock.clone());
        d.held_listeners.push(held.clone());
        validate(&d).unwrap();
        let info = WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [3; 16], release: "test".into() };
        let mut w = Writer::new(MemStore::new(1 << 20), info).unwrap();
        d.write_to(&mut w).unwrap();
        let mut r = Reader::open(w.finish().unwrap()).unwrap();
        assert_eq!(Decoded::read(&mut r).unwrap().held_listeners, vec![held.clone()]);
        let e = check(|d| {
            d.net_locks.push(lock.clone());
            d.held_listeners.push(HeldListeners { table: "seamless-lock-43".into(), ..held.clone() });
        });
        assert!(matches!(e, Invalid::NetLock { .. }), "{e:?}");
        let e = check(|d| {
            d.held_listeners.push(HeldListeners { listeners: vec![Addr::V4 { ip: [0; 4], port: 0 }], ..held.clone() })
        });
        assert!(matches!(e, Invalid::NetLock { .. }), "{e:?}");
    }

    #[test]
    fn pty_records_are_read_back_and_checked() {
        use crate::records::{PtyRecord, Termios};
        let chardev = |path: &str| FileKind::CharDev { path: path.into(), rdev: 0 };
        let pty = PtyRecord {
            index: 4,
            master: 3,
            termios: Termios { cc: vec![0; records::tty::NCCS], ..Termios::default() },
            mode: 0o620,
            session: PID,
            foreground: PID,
            input: b"line\n".to_vec(),
            ..PtyRecord::default()
        };
        let with = |d: &mut Decoded| {
            d.descs.push((3, FileDesc { id: 3, flags: 2, pos: 0, kind: chardev("/dev/ptmx") }));
            d.descs.push((4, FileDesc { id: 4, flags: 2, pos: 0, kind: chardev("/dev/pts/4") }));
            d.ptys.push((4, pty.clone()));
        };
        let mut d = Decoded::sample(PID);
        with(&mut d);
        validate(&d).unwrap();
        let info = WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [3; 16], release: "test".into() };
        let mut w = Writer::new(MemStore::new(1 << 20), info).unwrap();
        d.write_to(&mut w).unwrap();
        let mut r = Reader::open(w.finish().unwrap()).unwrap();
        assert_eq!(Decoded::read(&mut r).unwrap().ptys, vec![(4, pty.clone())]);
        type Breaker = fn(&mut Decoded);
        let cases: [(&str, Breaker); 7] = [
            ("mislabelled", |d| d.ptys[0].0 = 5),
            ("master not ptmx", |d| d.ptys[0].1.master = 4),
            ("cc length", |d| d.ptys[0].1.termios.cc.pop().map(|_| ()).unwrap_or(())),
            ("session without leader", |d| d.ptys[0].1.session = PID + 1),
            ("foreground of nobody", |d| d.ptys[0].1.foreground = PID + 7),
            ("slave of no record", |d| {
                d.descs.push((
                    5,
                    FileDesc {
                        id: 5,
                        flags: 2,
                        pos: 0,
                        kind: FileKind::CharDev { path: "/dev/pts/9".into(), rdev: 0 },
                    },
                ))
            }),
            ("too much input", |d| d.ptys[0].1.input = vec![b'x'; 4096]),
        ];
        for (what, break_it) in cases {
            let e = check(|d| {
                with(d);
                break_it(d);
            });
            assert!(
                matches!(e, Invalid::Pty { .. } | Invalid::Mislabelled { .. } | Invalid::File { .. }),
                "{what}: {e:?}"
            );
        }
    }

    #[test]
    fn unix_queues_closed_peers_and_descriptors_in_flight_are_read_back_and_checked() {
        use crate::records::{Addr, SockState, SocketRecord, UnixInFlight, UnixMessage, UnixPeerGone, UnixQueue};
        let unix = |ty: i32, state: SockState| SocketRecord {
            ino: 9,
            family: 1,
            ty,
            protocol: 0,
            local: Addr::Unix { path: b"/run/x.sock".to_vec() },
            peer: Addr::None,
            state,
            opts: Vec::new(),
            path_mode: 0,
        };
        let queue = UnixQueue {
            desc: 3,
            messages: vec![
                UnixMessage {
                    from: Addr::Unix { path: b"\0abc".to_vec() },
                    data: b"x".to_vec(),
                    creds: Some((PID, 0, 0)),
                },
                UnixMessage { from: Addr::None, data: Vec::new(), creds: None },
            ],
        };
        let flight = UnixInFlight { desc: 3, messages: vec![(1, vec![1, 2])] };
        let with = |d: &mut Decoded| {
            let k = FileKind::Socket(unix(2, SockState::Unconnected));
            d.descs.push((3, FileDesc { id: 3, flags: 2, pos: 0, kind: k }));
            d.unix_queues.push((3, queue.clone()));
            d.unix_in_flight.push((3, flight.clone()));
        };
        let mut d = Decoded::sample(PID);
        with(&mut d);
        validate(&d).unwrap();
        let info = WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [3; 16], release: "test".into() };
        let mut w = Writer::new(MemStore::new(1 << 20), info).unwrap();
        d.write_to(&mut w).unwrap();
        let mut r = Reader::open(w.finish().unwrap()).unwrap();
        let back = Decoded::read(&mut r).unwrap();
        assert_eq!(back.unix_queues, vec![(3, queue.clone())]);
        assert_eq!(back.unix_in_flight, vec![(3, flight.clone())]);
        let bad = |f: &dyn Fn(&mut Decoded), what: &str| {
            let e = check(|d| {
                with(d);
                f(d);
            });
            assert!(matches!(&e, Invalid::Socket { what: w, .. } if *w == what), "{e:?}");
        };
        // A message index past the queue, a description that does not exist, the socket itself.
        bad(&|d| d.unix_in_flight[0].1.messages[0].0 = 2, "descriptors in flight");
        bad(&|d| d.unix_in_flight[0].1.messages[0].1 = vec![99], "descriptors in flight");
        bad(&|d| d.unix_in_flight[0].1.messages[0].1 = vec![3], "descriptors in flight");
        bad(&|d| d.unix_in_flight[0].1.messages[0].1.clear(), "descriptors in flight");
        // Credentials of a pid that is not a process of the image.
        bad(&|d| d.unix_queues[0].1.messages[0].creds = Some((PID + 1, 0, 0)), "unix queue");
        // A sender that is no unix name, a name too long, a stream queue on a connected socket.
        bad(&|d| d.unix_queues[0].1.messages[0].from = Addr::V4 { ip: [1, 2, 3, 4], port: 5 }, "unix queue");
        bad(&|d| d.unix_queues[0].1.messages[0].from = Addr::Unix { path: vec![b'a'; 200] }, "unix queue");
        bad(
            &|d| {
                if let FileKind::Socket(s) = &mut d.descs.last_mut().unwrap().1.kind {
                    s.ty = 1;
                }
            },
            "unix queue",
        );
        // A closed peer: only on an unconnected unix socket; an accepted one needs its name.
        let mut d = Decoded::sample(PID);
        with(&mut d);
        if let FileKind::Socket(s) = &mut d.descs.last_mut().unwrap().1.kind {
            s.ty = 5;
        }
        d.unix_gone.push((3, UnixPeerGone { desc: 3, peer: Addr::None, accepted: true }));
        validate(&d).unwrap();
        bad(
            &|d| {
                d.unix_gone
                    .push((3, UnixPeerGone { desc: 3, peer: Addr::Unix { path: b"/p".to_vec() }, accepted: true }))
            },
            "closed unix peer",
        );
        bad(
            &|d| {
                if let FileKind::Socket(s) = &mut d.descs.last_mut().unwrap().1.kind {
                    s.state = SockState::Listen { backlog: 1 };
                }
                d.unix_gone.push((3, UnixPeerGone { desc: 3, peer: Addr::None, accepted: false }));
            },
            "closed unix peer",
        );
    }

    #[test]
    fn journal_streams_are_read_back_and_checked() {
        use crate::records::{Addr, JournalStream, SockState, SocketRecord, UnixPeerGone};
        let sock = |ty: i32| SocketRecord {
            ino: 9,
            family: 1,
            ty,
            protocol: 0,
            local: Addr::None,
            peer: Addr::Unix { path: b"/run/systemd/journal/stdout".to_vec() },
            state: SockState::Unconnected,
            opts: Vec::new(),
            path_mode: 0,
        };
        let stream = JournalStream {
            desc: 3,
            identifier: "memcached".into(),
            unit: "memcached.service".into(),
            priority: 6,
            level_prefix: true,
            forward_to_syslog: false,
            forward_to_kmsg: false,
            forward_to_console: false,
        };
        assert_eq!(stream.header(), b"memcached\nmemcached.service\n6\n1\n0\n0\n0\n".to_vec());
        let with = |d: &mut Decoded, ty: i32| {
            d.descs.push((3, FileDesc { id: 3, flags: 2, pos: 0, kind: FileKind::Socket(sock(ty)) }));
            d.journal_streams.push((3, stream.clone()));
        };
        let mut d = Decoded::sample(PID);
        with(&mut d, 1);
        validate(&d).unwrap();
        let info = WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [3; 16], release: "test".into() };
        let mut w = Writer::new(MemStore::new(1 << 20), info).unwrap();
        d.write_to(&mut w).unwrap();
        let mut r = Reader::open(w.finish().unwrap()).unwrap();
        assert_eq!(Decoded::read(&mut r).unwrap().journal_streams, vec![(3, stream.clone())]);
        let bad = |ty: i32, f: &dyn Fn(&mut Decoded)| {
            let e = check(|d| {
                with(d, ty);
                f(d);
            });
            assert!(matches!(&e, Invalid::Socket { what: "journal stream", .. }), "{e:?}");
        };
        // Not a stream socket; a priority past 7; a newline in a header line; too long a unit.
        bad(2, &|_| {});
        bad(1, &|d| d.journal_streams[0].1.priority = 8);
        bad(1, &|d| d.journal_streams[0].1.identifier = "a\nb".into());
        bad(1, &|d| d.journal_streams[0].1.unit = "u".repeat(4096));
        // A description that is no socket; a peer also recorded as closed.
        bad(1, &|d| {
            d.journal_streams[0].1.desc = 99;
            d.journal_streams[0].0 = 99;
        });
        bad(1, &|d| d.unix_gone.push((3, UnixPeerGone { desc: 3, peer: Addr::None, accepted: false })));
        let e = check(|d| {
            with(d, 1);
            d.journal_streams.push((3, stream.clone()));
        });
        assert!(matches!(&e, Invalid::Duplicate { what: "journal stream", .. }), "{e:?}");
    }

    #[test]
    fn tcp_close_states_are_read_back_and_checked() {
        use crate::records::tcp_states::{CLOSE_WAIT, FIN_WAIT2, LAST_ACK};
        use crate::records::{Addr, SockState, SocketRecord, TcpCloseState, TcpConn};
        let conn = |send: usize, unsent: u32| SocketRecord {
            ino: 9,
            family: 2,
            ty: 1,
            protocol: 6,
            local: Addr::V4 { ip: [127, 0, 0, 1], port: 5000 },
            peer: Addr::V4 { ip: [127, 0, 0, 1], port: 6000 },
            state: SockState::Tcp(TcpConn { send_queue: vec![7; send], unsent, ..TcpConn::default() }),
            opts: Vec::new(),
            path_mode: 0,
        };
        let close = TcpCloseState { desc: 3, state: LAST_ACK, fin_sent: true };
        let with = |d: &mut Decoded, s: SocketRecord, t: TcpCloseState| {
            d.descs.push((3, FileDesc { id: 3, flags: 2, pos: 0, kind: FileKind::Socket(s) }));
            d.tcp_closes.push((3, t));
        };
        let mut d = Decoded::sample(PID);
        with(&mut d, conn(10, 0), close.clone());
        validate(&d).unwrap();
        let info = WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [3; 16], release: "test".into() };
        let mut w = Writer::new(MemStore::new(1 << 20), info).unwrap();
        d.write_to(&mut w).unwrap();
        let mut r = Reader::open(w.finish().unwrap()).unwrap();
        assert_eq!(Decoded::read(&mut r).unwrap().tcp_closes, vec![(3, close.clone())]);
        let bad = |s: SocketRecord, t: TcpCloseState| check(|d| with(d, s, t));
        let e = bad(conn(0, 0), TcpCloseState { state: 1, ..close.clone() });
        assert!(matches!(e, Invalid::Socket { what: "tcp close", .. }), "ESTABLISHED is no close state: {e:?}");
        let e = bad(conn(0, 0), TcpCloseState { state: CLOSE_WAIT, ..close.clone() });
        assert!(matches!(e, Invalid::Socket { what: "tcp close", .. }), "a FIN sent in CLOSE_WAIT: {e:?}");
        let e = bad(conn(5, 0), TcpCloseState { state: FIN_WAIT2, ..close.clone() });
        assert!(matches!(e, Invalid::Socket { what: "tcp close", .. }), "FIN_WAIT2 with bytes unacknowledged: {e:?}");
        let e = bad(conn(5, 2), close.clone());
        assert!(matches!(e, Invalid::Socket { what: "tcp close", .. }), "a FIN sent before unsent bytes: {e:?}");
        let e = bad(conn(0, 0), TcpCloseState { desc: 4, ..close.clone() });
        assert!(matches!(e, Invalid::Mislabelled { .. }), "{e:?}");
        let e = check(|d| {
            with(d, conn(0, 0), close.clone());
            d.tcp_closes.push((3, close.clone()));
        });
        assert_eq!(e, Invalid::Duplicate { what: "tcp close", id: 3 });
        let mut unconnected = conn(0, 0);
        unconnected.state = SockState::Unconnected;
        let e = bad(unconnected.clone(), close.clone());
        assert!(matches!(e, Invalid::Socket { what: "tcp close", .. }), "{e:?}");
        // An ended connection: an unconnected TCP socket.
        let ended = crate::records::TcpEnded { desc: 3 };
        let mut d = Decoded::sample(PID);
        d.descs.push((3, FileDesc { id: 3, flags: 2, pos: 0, kind: FileKind::Socket(unconnected.clone()) }));
        d.tcp_ended.push((3, ended.clone()));
        validate(&d).unwrap();
        let e = check(|d| {
            d.descs.push((3, FileDesc { id: 3, flags: 2, pos: 0, kind: FileKind::Socket(conn(0, 0)) }));
            d.tcp_ended.push((3, ended.clone()));
        });
        assert!(matches!(e, Invalid::Socket { what: "tcp ended", .. }), "a connection is not ended: {e:?}");
    }

    #[test]
    fn socket_extras_and_datagrams_are_read_back_and_checked() {
        use crate::records::{Addr, Datagram, DatagramQueue, SockState, SocketExtra, SocketRecord};
        let udp = SocketRecord {
            ino: 9,
            family: 2,
            ty: 2,
            protocol: 17,
            local: Addr::V4 { ip: [127, 0, 0, 1], port: 5000 },
            peer: Addr::None,
            state: SockState::Unconnected,
            opts: Vec::new(),
            path_mode: 0,
        };
        let extra =
            SocketExtra { desc: 3, linger: None, buf_lock: 2, filter: vec![(6, 0, 0, 0xffff)], filter_locked: true };
        let queue = DatagramQueue {
            desc: 3,
            datagrams: vec![Datagram { from: Addr::V4 { ip: [127, 0, 0, 1], port: 6000 }, data: b"x".to_vec() }],
        };
        let with = |d: &mut Decoded| {
            d.descs.push((3, FileDesc { id: 3, flags: 2, pos: 0, kind: FileKind::Socket(udp.clone()) }));
            d.socket_extras.push((3, extra.clone()));
            d.datagrams.push((3, queue.clone()));
        };
        let mut d = Decoded::sample(PID);
        with(&mut d);
        validate(&d).unwrap();
        let info = WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [3; 16], release: "test".into() };
        let mut w = Writer::new(MemStore::new(1 << 20), info).unwrap();
        d.write_to(&mut w).unwrap();
        let mut r = Reader::open(w.finish().unwrap()).unwrap();
        let back = Decoded::read(&mut r).unwrap();
        assert_eq!(back.socket_extras, vec![(3, extra.clone())]);
        assert_eq!(back.datagrams, vec![(3, queue.clone())]);
        let e = check(|d| {
            with(d);
            d.socket_extras[0].1.desc = 1;
        });
        assert!(matches!(e, Invalid::Mislabelled { .. }), "{e:?}");
        let e = check(|d| {
            with(d);
            d.datagrams[0].0 = 1;
            d.datagrams[0].1.desc = 1;
        });
        assert!(matches!(e, Invalid::Socket { what: "datagrams", desc: 1, .. }), "{e:?}");
        let e = check(|d| {
            with(d);
            d.socket_extras[0].1.buf_lock = 4;
        });
        assert!(matches!(e, Invalid::Socket { what: "socket extras", .. }), "{e:?}");
        let e = check(|d| {
            with(d);
            d.datagrams[0].1.datagrams[0].from = Addr::V6 { ip: [0; 16], port: 1, flowinfo: 0, scope_id: 0 };
        });
        assert!(matches!(e, Invalid::Socket { what: "datagrams", .. }), "{e:?}");
        let e = check(|d| {
            with(d);
            let x = d.socket_extras[0].clone();
            d.socket_extras.push(x);
        });
        assert_eq!(e, Invalid::Duplicate { what: "socket extras", id: 3 });
    }

    /// The sample as an aarch64 image: its thread's CPU state in the three aarch64 records.
    fn as_aarch64(d: &mut Decoded) {
        let (owner, tag, tid) = (d.threads[0].0, d.threads[0].1, d.threads[0].2.tid);
        let t = thread(d);
        t.regs.clear();
        t.xstate.clear();
        let mut regs = vec![0u64; records::aarch64::PT_REGS_WORDS];
        regs[records::aarch64::PC] = 0x40_1000;
        regs[records::aarch64::SP] = 0x7fff_f000;
        d.aarch64_regs.push((owner, tag, records::Aarch64Regs { tid, regs }));
        d.aarch64_fpsimd.push((owner, tag, records::Aarch64Fpsimd { tid, vregs: vec![0; 512], fpsr: 0, fpcr: 0 }));
        d.aarch64_tls.push((owner, tag, records::Aarch64Tls { tid, tpidr_el0: 0x7f00_0000 }));
    }

    fn check_a64(f: impl FnOnce(&mut Decoded)) -> Invalid {
        check(|d| {
            as_aarch64(d);
            f(d)
        })
    }

    #[test]
    fn aarch64_threads() {
        let mut d = Decoded::sample(PID);
        as_aarch64(&mut d);
        validate(&d).expect("the aarch64 sample is valid");
        let e = check_a64(|d| {
            d.aarch64_tls.clear();
        });
        assert!(matches!(e, Invalid::Thread { why, .. } if why.contains("all three aarch64")), "{e}");
        let e = check_a64(|d| d.aarch64_regs[0].2.regs.truncate(33));
        assert!(matches!(e, Invalid::Length { field: "aarch64 regs", len: 33, .. }), "{e}");
        let e = check_a64(|d| d.aarch64_fpsimd[0].2.vregs.truncate(256));
        assert!(matches!(e, Invalid::Length { field: "aarch64 vregs", len: 256, .. }), "{e}");
        let e = check_a64(|d| d.aarch64_regs[0].2.regs[records::aarch64::PSTATE] = 0x10);
        assert!(matches!(e, Invalid::Value { field: "pstate", .. }), "an AArch32 thread: {e}");
        let e = check_a64(|d| d.aarch64_regs[0].2.regs[records::aarch64::PSTATE] = 0x5);
        assert!(matches!(e, Invalid::Value { field: "pstate", .. }), "EL1: {e}");
        let e = check_a64(|d| d.aarch64_regs[0].2.regs[records::aarch64::PC] = 0x40_1002);
        assert!(matches!(e, Invalid::Value { field: "pc", .. }), "{e}");
        let e = check_a64(|d| d.aarch64_regs[0].2.regs[records::aarch64::SP] = USER_SPACE_END);
        assert!(matches!(e, Invalid::Value { field: "sp", .. }), "{e}");
        let e = check_a64(|d| d.aarch64_regs[0].1 = 1);
        assert!(matches!(e, Invalid::Mislabelled { what: "aarch64-regs", .. }), "{e}");
        let e = check_a64(|d| {
            let dup = d.aarch64_tls[0];
            d.aarch64_tls.push(dup);
        });
        assert!(matches!(e, Invalid::Duplicate { what: "aarch64-tls", .. }), "{e}");
        // aarch64 records next to an x86-64 thread.
        let e = check(|d| {
            let mut a = Decoded::sample(PID);
            as_aarch64(&mut a);
            d.aarch64_tls = a.aarch64_tls;
        });
        assert!(matches!(e, Invalid::Thread { why, .. } if why.contains("both")), "{e}");
        // An aarch64 thread and an x86-64 one in the same image.
        let e = check_a64(|d| {
            let mut x86 = Decoded::sample(PID).threads[0].2.clone();
            x86.tid = PID + 1;
            d.threads.push((PID as u32, (PID + 1) as u64, x86));
            d.procs[0].1.tids.push(PID + 1);
        });
        assert!(matches!(e, Invalid::Thread { why, .. } if why.contains("mixes")), "{e}");
    }

    #[test]
    fn lengths() {
        let e = check(|d| thread(d).pending.push(vec![10, 0]));
        assert_eq!(e, Invalid::Length { pid: PID, tid: PID, field: "pending", len: 2, expected: "128 bytes" });
        let e = check(|d| process(d).shared_pending.push(vec![0; 4]));
        assert!(matches!(e, Invalid::Length { field: "shared_pending", len: 4, .. }), "{e}");
        let e = check(|d| thread(d).regs.truncate(26));
        assert!(matches!(e, Invalid::Length { field: "regs", len: 26, .. }), "{e}");
        let e = check(|d| thread(d).xstate.truncate(100));
        assert!(matches!(e, Invalid::Length { field: "xstate", len: 100, .. }), "{e}");
        let e = check(|d| thread(d).xstate.resize(MAX_XSTATE + 1, 0));
        assert!(matches!(e, Invalid::Length { field: "xstate", .. }), "{e}");
        let e = check(|d| mm(d).vdso.truncate(4));
        assert!(matches!(e, Invalid::Length { pid: PID, field: "saved vdso", len: 4, .. }), "{e}");
        assert!(e.to_string().contains("saved vdso is 4 long"), "{e}");
        let e = check(|d| {
            mm(d).vmas.pop();
        });
        assert!(matches!(e, Invalid::Length { field: "saved vdso", len: 8192, .. }), "{e}");
        let e = check(|d| process(d).rlimits = vec![(0, 0); 17]);
        assert!(matches!(e, Invalid::Length { field: "rlimits", .. }), "{e}");
        let e = check(|d| process(d).auxv.push(1));
        assert!(matches!(e, Invalid::Length { field: "auxv", .. }), "{e}");
    }

    #[test]
    fn signals() {
        let mut info = vec![0u8; 128];
        info[0] = 65;
        let e = check(|d| thread(d).pending.push(info.clone()));
        assert_eq!(e, Invalid::Signal { pid: PID, tid: PID, field: "pending", signo: 65 });
        let e = check(|d| process(d).sigactions[0].sig = 0);
        assert!(matches!(e, Invalid::Signal { field: "sigaction", signo: 0, .. }), "{e}");
        let e = check(|d| {
            let a = process(d).sigactions[0];
            process(d).sigactions.push(a);
        });
        assert!(matches!(e, Invalid::Duplicate { what: "sigaction", id: 10 }), "{e}");
        let e = check(|d| process(d).exit_signal = 99);
        assert!(matches!(e, Invalid::Signal { field: "exit_signal", signo: 99, .. }), "{e}");
    }

    #[test]
    fn alignment_and_ranges() {
        let e = check(|d| mm(d).vmas[0].start = 0x10_0010);
        assert_eq!(e, Invalid::Unaligned { pid: PID, field: "area start", value: 0x10_0010 });
        let e = check(|d| mm(d).vmas[0].end = 0x10_0000);
        assert!(matches!(e, Invalid::Range { field: "area", why: "empty or reversed", .. }), "{e}");
        let e = check(|d| {
            let v = mm(d).vmas[1].clone();
            mm(d).vmas[1] = Vma { start: USER_SPACE_END, end: USER_SPACE_END + 0x2000, ..v };
        });
        assert!(matches!(e, Invalid::Range { why: "outside the user address space", .. }), "{e}");
        let e = check(|d| {
            let v = Vma { start: 0x11_0000, end: 0x13_0000, saved_pages: 0, ..mm(d).vmas[0].clone() };
            mm(d).vmas.insert(1, v);
        });
        assert!(
            matches!(e, Invalid::Range { start: 0x11_0000, why: "overlaps the previous area or is out of order", .. }),
            "{e}"
        );
        let e = check(|d| d.chunks[0].vaddr = 0x10_0800);
        assert!(matches!(e, Invalid::Unaligned { field: "page chunk address", .. }), "{e}");
        let e = check(|d| d.chunks[0].vaddr = 0x50_0000);
        assert!(
            matches!(
                e,
                Invalid::Range { field: "page chunk", start: 0x50_0000, why: "not inside any area of the process", .. }
            ),
            "{e}"
        );
        // A chunk that starts inside its area and runs past its end.
        let e = check(|d| {
            d.chunks[0].vaddr = 0x11_f000;
            d.chunks[0].len = 2 * PAGE_SIZE as u64;
        });
        assert!(matches!(e, Invalid::Range { field: "page chunk", start: 0x11_f000, end: 0x12_1000, .. }), "{e}");
        let e = check(|d| mm(d).vmas[0].saved_pages = 2);
        assert!(
            matches!(
                e,
                Invalid::Range { field: "area", why: "its saved_pages differs from the pages of its chunks", .. }
            ),
            "{e}"
        );
        let mut d = Decoded::sample(PID);
        d.threads[0].2.syscall = SyscallState::Restart { nr: 0, code: -4 };
        validate(&d).unwrap();
        let e = check(|d| {
            thread(d).syscall = SyscallState::Restart { nr: 0, code: -4 };
            thread(d).regs[16] = 1;
        });
        assert!(matches!(e, Invalid::Value { field: "rip", value: 1, .. }), "{e}");
    }

    #[test]
    fn shared_memory_chunk_longer_than_its_area() {
        let e = check(|d| {
            mm(d).vmas[0].kind = VmaKind::SharedAnon { ino: 9, offset: 0 };
            mm(d).vmas[0].shared = true;
            d.chunks[0].vaddr = 0x11_f000;
            d.chunks[0].len = 0x10_0000;
        });
        assert!(matches!(e, Invalid::Range { pid: PID, field: "page chunk", start: 0x11_f000, .. }), "{e}");
        let e = check(|d| mm(d).vmas[0].kind = VmaKind::SharedAnon { ino: 9, offset: 0x800 });
        assert!(matches!(e, Invalid::Unaligned { field: "shared memory offset", .. }), "{e}");
        let e = check(|d| mm(d).vmas[0].kind = VmaKind::SharedAnon { ino: 9, offset: u64::MAX - 0xfff });
        assert!(matches!(e, Invalid::Range { field: "area", .. }), "{e}");
    }

    #[test]
    fn descriptors() {
        let e = check(|d| d.fd_tables[0].1.fds[1].fd = -1);
        assert!(matches!(e, Invalid::Fd { pid: PID, fd: -1, .. }), "{e}");
        let e = check(|d| d.fd_tables[0].1.fds[1].fd = 0);
        assert!(matches!(e, Invalid::Fd { pid: PID, fd: 0, .. }), "{e}");
        let e = check(|d| d.fd_tables[0].1.fds.push(Fd { fd: 5, cloexec: true, desc: 99 }));
        assert!(matches!(&e, Invalid::Fd { fd: 5, why, .. } if why.contains("#99")), "{e}");
        let e = check(|d| d.descs[1].0 = 7);
        assert!(matches!(e, Invalid::Mislabelled { what: "file", stored: 7, inside: 2, .. }), "{e}");
        let e = check(|d| d.pipes[0].1.data = vec![0; 65537]);
        assert!(matches!(e, Invalid::Value { field: "pipe buffer", .. }), "{e}");
    }

    #[test]
    fn ownership_and_structure() {
        let e = check(|d| d.trees.clear());
        assert_eq!(e, Invalid::NoTree { processes: 1 });
        let e = check(|d| d.mms[0].0 = 7);
        assert_eq!(e, Invalid::Owner { what: "mm", owner: 7, need: "process" });
        let e = check(|d| d.chunks[0].owner = 7);
        assert!(matches!(e, Invalid::Owner { what: "page chunk", owner: 7, .. }), "{e}");
        let e = check(|d| d.procs[0].0 = 7);
        assert!(matches!(e, Invalid::Mislabelled { what: "process", stored: 7, .. }), "{e}");
        let e = check(|d| d.trees[0].pids.push(77));
        assert!(matches!(e, Invalid::Tree { pid: 77, .. }), "{e}");
        let e = check(|d| d.trees[0].pids.clear());
        assert!(matches!(e, Invalid::Owner { what: "process", owner: 4242, .. }), "{e}");
        let e = check(|d| {
            let p = d.procs[0].clone();
            d.procs.push(p);
        });
        assert!(matches!(e, Invalid::Duplicate { what: "process", id: 4242 }), "{e}");
        let e = check(|d| {
            let t = d.threads[0].clone();
            d.threads.push(t);
        });
        assert!(matches!(e, Invalid::Duplicate { what: "thread", id: 4242 }), "{e}");
        let e = check(|d| d.threads[0].1 = 5);
        assert!(matches!(e, Invalid::Mislabelled { what: "thread", .. }), "{e}");
        let e = check(|d| process(d).tids.push(4243));
        assert!(matches!(e, Invalid::Thread { pid: PID, tid: 4243, .. }), "{e}");
        let e = check(|d| d.mms.clear());
        assert_eq!(e, Invalid::Missing { pid: PID, what: "mm" });
        // Parent links: a process that is its own parent, and a cycle of two.
        let e = check(|d| process(d).ppid = PID);
        assert!(matches!(e, Invalid::Parent { pid: PID, ppid: PID, .. }), "{e}");
        let e = check(|d| {
            let mut other = Decoded::sample(PID + 1);
            other.procs[0].1.ppid = PID;
            process(d).ppid = PID + 1;
            d.trees[0].pids.push(PID + 1);
            d.procs.append(&mut other.procs);
            d.threads.append(&mut other.threads);
            d.mms.append(&mut other.mms);
        });
        assert!(matches!(e, Invalid::Parent { why: "leads into a cycle of parent links", .. }), "{e}");
    }

    #[test]
    fn seccomp_filters_are_programs_of_threads_of_the_process() {
        use crate::records::seccomp::{SeccompFilter, SeccompRecord, RET_ALLOW};
        let allow = SeccompFilter { prog: vec![0x06 | u64::from(RET_ALLOW) << 32], flags: 0 };
        let rec = |threads: Vec<(i32, Vec<u32>)>, f: SeccompFilter| SeccompRecord { filters: vec![f], threads };
        let mut d = Decoded::sample(PID);
        d.seccomp.push((PID as u32, rec(vec![(PID, vec![0])], allow.clone())));
        validate(&d).unwrap();
        let e = check(|d| d.seccomp.push((PID as u32, rec(vec![(PID + 1, vec![0])], allow.clone()))));
        assert!(matches!(e, Invalid::Value { field: "seccomp thread", .. }), "{e}");
        let e = check(|d| d.seccomp.push((PID as u32, rec(vec![(PID, vec![0, 0])], allow.clone()))));
        assert!(matches!(e, Invalid::Value { field: "seccomp chain index", .. }), "{e}");
        let e = check(|d| d.seccomp.push((PID as u32, rec(vec![(PID, vec![1])], allow.clone()))));
        assert!(matches!(e, Invalid::Value { field: "seccomp chain index", .. }), "{e}");
        let e = check(|d| d.seccomp.push((PID as u32, rec(vec![], allow.clone()))));
        assert!(matches!(e, Invalid::Value { field: "seccomp filters", .. }), "{e}");
        let e = check(|d| {
            d.seccomp.push((PID as u32, rec(vec![(PID, vec![0])], SeccompFilter { prog: vec![0x20], flags: 0 })))
        });
        assert!(matches!(e, Invalid::Value { field: "seccomp filter program", .. }), "{e}");
        let e = check(|d| {
            d.seccomp.push((PID as u32, rec(vec![(PID, vec![0])], SeccompFilter { flags: 1, ..allow.clone() })))
        });
        assert!(matches!(e, Invalid::Value { field: "seccomp filter flags", .. }), "{e}");
    }

    #[test]
    fn job_stops_name_a_stop_signal_of_a_live_process() {
        use crate::records::JobStop;
        let mut d = Decoded::sample(PID);
        d.job_stops.push((PID as u32, JobStop { signal: libc::SIGTSTP }));
        validate(&d).unwrap();
        let e = check(|d| d.job_stops.push((PID as u32, JobStop { signal: libc::SIGKILL })));
        assert!(matches!(e, Invalid::Value { field: "stop signal", .. }), "{e}");
        let e = check(|d| d.job_stops.push((PID as u32 + 1, JobStop { signal: libc::SIGSTOP })));
        assert!(matches!(e, Invalid::Owner { .. }), "{e}");
        let e = check(|d| {
            d.job_stops.push((PID as u32, JobStop { signal: libc::SIGSTOP }));
            d.job_stops.push((PID as u32, JobStop { signal: libc::SIGSTOP }));
        });
        assert!(matches!(e, Invalid::Duplicate { what: "job-stop", .. }), "{e}");
    }

    /// A copy-on-write record names the parent and lies in private anonymous areas of both.
    #[test]
    fn cow_shared_pages_lie_in_both_processes() {
        use crate::records::CowShared;
        let family = || {
            let mut d = Decoded::sample(PID);
            let mut other = Decoded::sample(PID + 1);
            other.procs[0].1.ppid = PID;
            d.trees[0].pids.push(PID + 1);
            d.procs.append(&mut other.procs);
            d.threads.append(&mut other.threads);
            d.mms.append(&mut other.mms);
            d.fd_tables.append(&mut other.fd_tables);
            d.chunks.append(&mut other.chunks);
            d
        };
        let child = (PID + 1) as u32;
        let mut d = family();
        validate(&d).unwrap();
        d.cow.push((child, CowShared { parent: PID, ranges: vec![(0x10_0000, 0x10_1000), (0x11_0000, 0x12_0000)] }));
        validate(&d).unwrap();
        let bad = |c: CowShared| {
            let mut d = family();
            d.cow.push((child, c));
            validate(&d).unwrap_err()
        };
        let e = bad(CowShared { parent: PID + 7, ranges: vec![] });
        assert!(matches!(e, Invalid::Value { field: "cow-shared parent", .. }), "{e}");
        let e = bad(CowShared { parent: PID, ranges: vec![(0x11_0000, 0x12_0000), (0x10_0000, 0x10_1000)] });
        assert!(matches!(e, Invalid::Range { .. }), "{e}");
        let e = bad(CowShared { parent: PID, ranges: vec![(0x10_0000, 0x10_0800)] });
        assert!(matches!(e, Invalid::Unaligned { field: "cow-shared end", .. }), "{e}");
        let e = bad(CowShared { parent: PID, ranges: vec![(0x11_0000, 0x13_0000)] });
        assert!(
            matches!(
                e,
                Invalid::Range { why: "not inside one private anonymous area of both the process and its parent", .. }
            ),
            "{e}"
        );
        // The root has no parent in the image.
        let mut d = family();
        d.cow.push((PID as u32, CowShared { parent: 1, ranges: vec![] }));
        assert!(matches!(validate(&d).unwrap_err(), Invalid::Value { field: "cow-shared parent", .. }));
    }

    #[test]
    fn vma_account_lists_whole_private_areas_by_their_protection() {
        use crate::records::{AccountArea, VmaAccount};
        let area = |start: u64, end: u64| AccountArea { start, end };
        let mut d = Decoded::sample(PID);
        // The sample's area 0x10_0000..0x12_0000 is private, anonymous and writable.
        d.vma_account.push((PID as u32, VmaAccount { charged: vec![], uncharged: vec![area(0x10_0000, 0x12_0000)] }));
        validate(&d).unwrap();
        let e = check(|d| {
            d.vma_account
                .push((PID as u32, VmaAccount { charged: vec![area(0x10_0000, 0x12_0000)], uncharged: vec![] }))
        });
        assert!(matches!(e, Invalid::Range { why: "charged but writable", .. }), "{e}");
        let e = check(|d| {
            d.vma_account
                .push((PID as u32, VmaAccount { charged: vec![], uncharged: vec![area(0x10_0000, 0x11_0000)] }))
        });
        assert!(
            matches!(e, Invalid::Range { why: "not a whole private area of the process that the restore maps", .. }),
            "{e}"
        );
        let e = check(|d| {
            d.vma_account
                .push((PID as u32 + 9, VmaAccount { charged: vec![], uncharged: vec![area(0x10_0000, 0x12_0000)] }))
        });
        assert!(matches!(e, Invalid::Owner { .. }), "{e}");
        let e = check(|d| {
            let a = VmaAccount { charged: vec![], uncharged: vec![area(0x10_0000, 0x12_0000)] };
            d.vma_account.push((PID as u32, a.clone()));
            d.vma_account.push((PID as u32, a));
        });
        assert!(matches!(e, Invalid::Duplicate { .. }), "{e}");
    }

    #[test]
    fn vma_flags_lie_in_the_areas_with_known_bits_and_may_write_only_where_it_matters() {
        use crate::records::{FlaggedArea, VmaFlags};
        let one = |start: u64, end: u64, flags: u32| VmaFlags { areas: vec![FlaggedArea { start, end, flags }] };
        let mut d = Decoded::sample(PID);
        d.vma_flags.push((PID as u32, one(0x10_0000, 0x11_0000, VmaFlags::LOCKED | VmaFlags::LOCK_ONFAULT)));
        validate(&d).unwrap();
        let e = check(|d| d.vma_flags.push((PID as u32, one(0x10_0000, 0x13_0000, VmaFlags::LOCKED))));
        assert!(matches!(e, Invalid::Range { .. }), "{e}");
        let e = check(|d| d.vma_flags.push((PID as u32, one(0x10_0000, 0x11_0000, VmaFlags::LOCK_ONFAULT))));
        assert!(matches!(e, Invalid::Value { why: "locked on fault but not locked", .. }), "{e}");
        let e = check(|d| d.vma_flags.push((PID as u32, one(0x10_0000, 0x11_0000, 8))));
        assert!(matches!(e, Invalid::Value { why: "unknown bits or none", .. }), "{e}");
        // The sample's area is private anonymous memory: may-write means nothing there.
        let e = check(|d| d.vma_flags.push((PID as u32, one(0x10_0000, 0x12_0000, VmaFlags::MAY_WRITE))));
        assert!(matches!(e, Invalid::Value { .. }), "{e}");
        let e = check(|d| d.vma_flags.push((PID as u32 + 9, one(0x10_0000, 0x11_0000, VmaFlags::LOCKED))));
        assert!(matches!(e, Invalid::Owner { .. }), "{e}");
    }

    #[test]
    fn a_cgroup_record_names_a_plain_path_and_limits_of_it_or_its_ancestors() {
        use crate::records::{CgroupLimit, CgroupMembership};
        let limit = |cgroup: &str, file: &str, value: &str| CgroupLimit {
            cgroup: cgroup.into(),
            file: file.into(),
            value: value.into(),
        };
        let rec = |path: &str, limits| CgroupMembership { path: path.into(), limits };
        let mut d = Decoded::sample(PID);
        d.cgroups
            .push((PID as u32, rec("/a/b", vec![limit("/a", "pids.max", "500"), limit("/a/b", "memory.max", "4096")])));
        validate(&d).unwrap();
        for path in ["/", "a/b", "/a/../b", "/a//b", "/a/./b", "/a\nb"] {
            let e = check(|d| d.cgroups.push((PID as u32, rec(path, Vec::new()))));
            assert!(matches!(e, Invalid::Value { field: "cgroup path", .. }), "{path}: {e}");
        }
        for l in [limit("/ab", "pids.max", "1"), limit("/a/b/c", "pids.max", "1"), limit("/", "pids.max", "1")] {
            let e = check(|d| d.cgroups.push((PID as u32, rec("/a/b", vec![l]))));
            assert!(matches!(e, Invalid::Value { field: "cgroup limit", .. }), "{e}");
        }
        let e = check(|d| d.cgroups.push((PID as u32, rec("/a", vec![limit("/a", "cgroup.procs", "1")]))));
        assert!(matches!(e, Invalid::Value { field: "cgroup limit", .. }), "{e}");
        let e = check(|d| d.cgroups.push((PID as u32, rec("/a", vec![limit("/a", "pids.max", "1\n2")]))));
        assert!(matches!(e, Invalid::Value { field: "cgroup limit", .. }), "{e}");
    }

    #[test]
    fn a_ghost_owner_belongs_to_a_deleted_file() {
        use crate::records::GhostOwner;
        // Description 1 of the sample is a pipe end.
        let e = check(|d| d.ghost_owners.push((1, GhostOwner { uid: 5, gid: 6 })));
        assert!(matches!(e, Invalid::File { field: "ghost owner", .. }), "{e}");
        let e = check(|d| d.ghost_owners.push((1 << 40, GhostOwner { uid: 5, gid: 6 })));
        assert!(matches!(e, Invalid::File { field: "ghost owner", .. }), "{e}");
    }

    #[test]
    fn advice_must_lie_in_the_areas_with_known_bits() {
        use crate::records::{AdvisedArea, VmaAdvice};
        let ok = |start: u64, end: u64, flags: u32| VmaAdvice { areas: vec![AdvisedArea { start, end, flags }] };
        let mut d = Decoded::sample(PID);
        d.advice.push((PID as u32, ok(0x10_0000, 0x12_0000, VmaAdvice::NOHUGEPAGE | VmaAdvice::DONTDUMP)));
        validate(&d).unwrap();
        let e = check(|d| d.advice.push((PID as u32, ok(0x10_0000, 0x13_0000, VmaAdvice::NOHUGEPAGE))));
        assert!(
            matches!(e, Invalid::Range { why: "not inside one area of the process that the restore maps", .. }),
            "{e}"
        );
        // Not in the [vdso] either: the new kernel places its own.
        let e = check(|d| d.advice.push((PID as u32, ok(0x7fff_f7fc_1000, 0x7fff_f7fc_2000, VmaAdvice::DONTDUMP))));
        assert!(matches!(e, Invalid::Range { .. }), "{e}");
        let e = check(|d| {
            d.advice.push((PID as u32, ok(0x10_0000, 0x11_0000, VmaAdvice::NOHUGEPAGE | VmaAdvice::HUGEPAGE)))
        });
        assert!(matches!(e, Invalid::Value { field: "advice flags", .. }), "{e}");
        let e = check(|d| d.advice.push((PID as u32, ok(0x10_0000, 0x11_0000, 64))));
        assert!(matches!(e, Invalid::Value { field: "advice flags", .. }), "{e}");
        let e = check(|d| d.advice.push((PID as u32, ok(0x10_0001, 0x11_0000, 1))));
        assert!(matches!(e, Invalid::Unaligned { field: "advised area start", .. }), "{e}");
        let e = check(|d| {
            d.advice.push((PID as u32, ok(0x10_0000, 0x11_0000, 1)));
            d.advice.push((PID as u32, ok(0x11_0000, 0x12_0000, 1)));
        });
        assert!(matches!(e, Invalid::Duplicate { what: "vma advice", .. }), "{e}");
        let e = check(|d| d.advice.push((PID as u32 + 7, ok(0x10_0000, 0x11_0000, 1))));
        assert!(matches!(e, Invalid::Owner { what: "vma advice", .. }), "{e}");
    }

    #[test]
    fn messages_name_the_process_and_the_field() {
        let e = check(|d| thread(d).pending.push(vec![1, 2, 3]));
        assert_eq!(e.to_string(), "pid 4242 thread 4242: pending is 3 long, expected 128 bytes");
    }
}
