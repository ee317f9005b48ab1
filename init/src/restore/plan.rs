//! Loading an image into a restore plan: every record decoded and indexed by pid, page
//! chunks listed per process.

use super::RestoreError;
use seamless_image::records::{
    self, FdTable, FileDesc, MmRecord, PipeRecord, ProcState, ProcessRecord, ThreadRecord, TreeRecord,
};
use seamless_image::{Reader, RecordKind, Store};
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
    /// Its address space.
    pub mm: MmRecord,
    /// Its descriptors.
    pub fds: FdTable,
    /// Its page chunks.
    pub chunks: Vec<Chunk>,
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
}

impl Plan {
    /// Children of `pid` in the image (those whose ppid is `pid`).
    pub fn children_of(&self, pid: i32) -> Vec<i32> {
        self.procs.values().filter(|p| p.rec.ppid == pid && p.rec.pid != pid).map(|p| p.rec.pid).collect()
    }

    /// Roots: processes whose parent is not in the image.
    pub fn roots(&self) -> Vec<i32> {
        self.procs.values().filter(|p| !self.procs.contains_key(&p.rec.ppid)).map(|p| p.rec.pid).collect()
    }
}

fn entries<S: Store>(r: &Reader<S>, kind: RecordKind) -> Vec<(u32, u32, u64)> {
    r.find(kind).map(|(i, e)| (i, e.owner, e.tag)).collect()
}

/// Decodes every process record of the image.
pub fn load<S: Store>(r: &mut Reader<S>) -> Result<Plan, RestoreError> {
    let mut plan = Plan::default();
    let img = |e| RestoreError::Image(e);
    if let Some((i, _, _)) = entries(r, records::TREE).first().copied() {
        plan.tree = r.record(i).map_err(img)?;
    }
    for (i, _, _) in entries(r, records::PROCESS) {
        let rec: ProcessRecord = r.record(i).map_err(img)?;
        plan.procs.insert(
            rec.pid,
            ProcPlan { rec, threads: Vec::new(), mm: MmRecord::default(), fds: FdTable::default(), chunks: Vec::new() },
        );
    }
    let missing = |pid: u32, what: &str| RestoreError::Corrupt {
        pid: pid as i32,
        what: format!("{what} record of an unknown process"),
    };
    for (i, owner, _) in entries(r, records::THREAD) {
        let t: ThreadRecord = r.record(i).map_err(img)?;
        plan.procs.get_mut(&(owner as i32)).ok_or_else(|| missing(owner, "thread"))?.threads.push(t);
    }
    for (i, owner, _) in entries(r, records::MM) {
        let m: MmRecord = r.record(i).map_err(img)?;
        plan.procs.get_mut(&(owner as i32)).ok_or_else(|| missing(owner, "mm"))?.mm = m;
    }
    for (i, owner, _) in entries(r, records::FDS) {
        let f: FdTable = r.record(i).map_err(img)?;
        plan.procs.get_mut(&(owner as i32)).ok_or_else(|| missing(owner, "fds"))?.fds = f;
    }
    for (i, _, _) in entries(r, records::FILE_DESC) {
        let d: FileDesc = r.record(i).map_err(img)?;
        plan.descs.insert(d.id, d);
    }
    for (i, _, _) in entries(r, records::PIPE) {
        let p: PipeRecord = r.record(i).map_err(img)?;
        plan.pipes.insert(p.ino, p);
    }
    for (i, _, tag) in entries(r, RecordKind::BLOB) {
        plan.blobs.entry(tag).or_default().push(i);
    }
    let chunks: Vec<(u32, u32, u64, u64)> =
        r.find(RecordKind::PAGE_CHUNK).map(|(i, e)| (i, e.owner, e.tag, e.len)).collect();
    for (index, owner, vaddr, len) in chunks {
        plan.procs.get_mut(&(owner as i32)).ok_or_else(|| missing(owner, "page chunk"))?.chunks.push(Chunk {
            index,
            vaddr,
            len,
        });
    }
    for p in plan.procs.values_mut() {
        // Leader first.
        let pid = p.rec.pid;
        p.threads.sort_by_key(|t| (t.tid != pid, t.tid));
        if !p.is_zombie() && p.threads.first().map(|t| t.tid) != Some(pid) {
            return Err(RestoreError::Corrupt { pid, what: "no record of the thread-group leader".into() });
        }
    }
    Ok(plan)
}
