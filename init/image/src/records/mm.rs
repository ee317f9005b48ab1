//! Memory-map records: the VMAs of a process and the vDSO it was using. Page contents are
//! separate [`RecordKind::PAGE_CHUNK`](crate::RecordKind::PAGE_CHUNK) entries (owner = pid,
//! tag = virtual address).

use serde::{Deserialize, Serialize};

/// Identity of a file backing a mapping, checked again on restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// Path as the kernel reported it.
    pub path: String,
    /// Device number (st_dev).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// What backs an area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKind {
    /// Anonymous memory (incl. `[heap]`, `[stack]`, thread stacks).
    Anon,
    /// A file mapping at `offset` bytes into the file.
    File {
        /// Which file.
        file: FileId,
        /// Offset of the mapping in the file.
        offset: u64,
    },
    /// Shared anonymous memory (`MAP_SHARED|MAP_ANONYMOUS`, also shared with other processes
    /// of the image that map the same object).
    SharedAnon {
        /// Inode of the shmem object (its identity across processes).
        ino: u64,
        /// Offset of the mapping in the object.
        offset: u64,
    },
    /// `[vdso]`.
    Vdso,
    /// `[vvar]`, `[vvar_vclock]` and other kernel data pages of the vDSO.
    Vvar,
    /// `[vsyscall]` (fixed by the kernel, not restored).
    Vsyscall,
}

/// One VMA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// PROT_* bits.
    pub prot: u32,
    /// Shared (MAP_SHARED) rather than private.
    pub shared: bool,
    /// Grows down (the main stack).
    pub growsdown: bool,
    /// What backs it.
    pub kind: VmaKind,
    /// The name column of `/proc/PID/maps` (`[heap]`, `[stack]`, a path, ...).
    pub name: String,
    /// Number of pages saved in page chunks for this area.
    pub saved_pages: u64,
}

/// The address space of one process: stored under [`super::MM`], owner = pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MmRecord {
    /// Every VMA, ascending.
    pub vmas: Vec<Vma>,
    /// Contents of the `[vdso]` at dump time (to detect a different kernel and to patch).
    pub vdso: Vec<u8>,
}
