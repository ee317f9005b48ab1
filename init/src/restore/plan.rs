//! Loading an image into a restore plan: every record decoded, validated, and indexed by
//! pid, page chunks listed per process.

use super::RestoreError;
use seamless_image::records::{
    FdTable, FileDesc, MmRecord, PipeRecord, ProcState, ProcessRecord, ThreadRecord, TreeRecord,
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

/// Decodes every process record of the image and validates them all
/// ([`seamless_image::validate`]) before anything is built from them: a bad image is refused
/// as a whole, with an error naming the record and the field, before any process is forked.
pub fn load<S: Store>(r: &mut Reader<S>) -> Result<Plan, RestoreError> {
    let d = Decoded::read(r).map_err(RestoreError::Image)?;
    validate(&d).map_err(RestoreError::Invalid)?;
    Ok(build(d))
}

/// Builds the plan from validated records.
fn build(d: Decoded) -> Plan {
    let mut plan = Plan { tree: d.trees.into_iter().next().unwrap_or_default(), ..Plan::default() };
    for (_, rec) in d.procs {
        plan.procs.insert(
            rec.pid,
            ProcPlan { rec, threads: Vec::new(), mm: MmRecord::default(), fds: FdTable::default(), chunks: Vec::new() },
        );
    }
    // Validation proved every owner below is a process of the plan.
    let owner = |o: u32| o as i32;
    for (o, _, t) in d.threads {
        if let Some(p) = plan.procs.get_mut(&owner(o)) {
            p.threads.push(t);
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
    for (_, desc) in d.descs {
        plan.descs.insert(desc.id, desc);
    }
    for (_, pipe) in d.pipes {
        plan.pipes.insert(pipe.ino, pipe);
    }
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
