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

/// The `madvise` state of a process's areas that the kernel keeps in each VMA's flags and
/// `/proc/PID/smaps` shows as `VmFlags` (`nh`, `hg`, `dc`, `dd`, `wf`): stored under
/// [`super::VMA_ADVICE`], owner = pid, written `IGNORABLE` (a reader without it restores the
/// areas without the advice). Only areas with some advice are listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VmaAdvice {
    /// Areas (within the process's VMAs), ascending.
    pub areas: Vec<AdvisedArea>,
}

/// One area and its advice bits ([`VmaAdvice::NOHUGEPAGE`], ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvisedArea {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Advice bits.
    pub flags: u32,
}

impl VmaAdvice {
    /// `MADV_NOHUGEPAGE` (`nh`): never transparent huge pages, not even by khugepaged.
    pub const NOHUGEPAGE: u32 = 1;
    /// `MADV_HUGEPAGE` (`hg`).
    pub const HUGEPAGE: u32 = 2;
    /// `MADV_DONTFORK` (`dc`): not inherited by children.
    pub const DONTFORK: u32 = 4;
    /// `MADV_DONTDUMP` (`dd`): left out of core dumps.
    pub const DONTDUMP: u32 = 8;
    /// `MADV_WIPEONFORK` (`wf`): zero-filled in a child.
    pub const WIPEONFORK: u32 = 16;
    /// Every bit this release knows.
    pub const KNOWN: u32 = 31;

    /// The advice bits of a `VmFlags:` line of `/proc/PID/smaps` (its two-letter flags).
    pub fn from_vmflags(line: &str) -> u32 {
        line.split_whitespace().fold(0, |f, w| {
            f | match w {
                "nh" => Self::NOHUGEPAGE,
                "hg" => Self::HUGEPAGE,
                "dc" => Self::DONTFORK,
                "dd" => Self::DONTDUMP,
                "wf" => Self::WIPEONFORK,
                _ => 0,
            }
        })
    }

    /// The `madvise` advice values that give an area `flags` (Linux's `MADV_*` numbers).
    pub fn madvise_values(flags: u32) -> Vec<u32> {
        const MADV_DONTFORK: u32 = 10;
        const MADV_HUGEPAGE: u32 = 14;
        const MADV_NOHUGEPAGE: u32 = 15;
        const MADV_DONTDUMP: u32 = 16;
        const MADV_WIPEONFORK: u32 = 18;
        [
            (Self::NOHUGEPAGE, MADV_NOHUGEPAGE),
            (Self::HUGEPAGE, MADV_HUGEPAGE),
            (Self::DONTFORK, MADV_DONTFORK),
            (Self::DONTDUMP, MADV_DONTDUMP),
            (Self::WIPEONFORK, MADV_WIPEONFORK),
        ]
        .into_iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, v)| v)
        .collect()
    }
}

#[cfg(test)]
mod advice_tests {
    use super::VmaAdvice;

    #[test]
    fn vmflags_give_the_advice_bits() {
        assert_eq!(VmaAdvice::from_vmflags("VmFlags: rd wr mr mw me ac nh sd"), VmaAdvice::NOHUGEPAGE);
        assert_eq!(
            VmaAdvice::from_vmflags("VmFlags: rd wr mr mw me dc dd wf hg"),
            VmaAdvice::HUGEPAGE | VmaAdvice::DONTFORK | VmaAdvice::DONTDUMP | VmaAdvice::WIPEONFORK
        );
        assert_eq!(VmaAdvice::from_vmflags("VmFlags: rd ex mr mw me de sd"), 0);
        assert_eq!(VmaAdvice::madvise_values(VmaAdvice::NOHUGEPAGE | VmaAdvice::DONTDUMP), vec![15, 16]);
    }
}

/// The pages a forked child still shares copy-on-write with its parent: stored under
/// [`super::COW_SHARED`], owner = the child's pid, written `IGNORABLE` (a reader without it
/// gives the child its own copy of every page, as it always did: the same contents, more
/// memory). A page is listed when, at the dump, it was present at the same address in both
/// and was the same physical page (`/proc/PID/pagemap` frame numbers), inside a private
/// anonymous area of both. The child's pages are saved in full as well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CowShared {
    /// The parent's pid (the child's parent in the image).
    pub parent: i32,
    /// Page ranges `[start, end)`, page-aligned, ascending, not touching each other.
    pub ranges: Vec<(u64, u64)>,
}
