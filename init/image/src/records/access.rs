//! Access state the older records do not carry: per-area VMA flags that restore must give
//! back (whether a shared file area may become writable, memory locks) and the owner of
//! deleted-but-open files.

use serde::{Deserialize, Serialize};

/// The flags of a process's areas beyond protection and advice that `/proc/PID/smaps` shows
/// as `VmFlags` (`mw` on a shared file area that is not writable now, `lo`, `lf`): stored
/// under [`super::VMA_FLAGS`], owner = pid, at most one per process, only areas with some
/// flag. Not `IGNORABLE`: without it the areas would come back unlocked, or unable to
/// become writable again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VmaFlags {
    /// Areas (each inside one of the process's areas), ascending.
    pub areas: Vec<FlaggedArea>,
}

/// One area and its bits ([`VmaFlags::MAY_WRITE`], ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlaggedArea {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Flag bits.
    pub flags: u32,
}

impl VmaFlags {
    /// `mw` on a shared file mapping without `PROT_WRITE`: its file was opened for writing,
    /// so `mprotect(PROT_WRITE)` works (the restore opens the file `O_RDWR` for it).
    pub const MAY_WRITE: u32 = 1;
    /// `lo`: locked (`mlock`, `mlock2`, `mlockall(MCL_CURRENT)`).
    pub const LOCKED: u32 = 2;
    /// `lf`: locked on fault (`MLOCK_ONFAULT`); only with [`Self::LOCKED`].
    pub const LOCK_ONFAULT: u32 = 4;
    /// Every bit this release knows.
    pub const KNOWN: u32 = 7;

    /// The bits of a `VmFlags:` line of `/proc/PID/smaps` (its two-letter flags); `mw` is
    /// reported as [`Self::MAY_WRITE`] and is meaningful only for the areas described there.
    pub fn from_vmflags(line: &str) -> u32 {
        line.split_whitespace().fold(0, |f, w| {
            f | match w {
                "mw" => Self::MAY_WRITE,
                "lo" => Self::LOCKED,
                "lf" => Self::LOCK_ONFAULT,
                _ => 0,
            }
        })
    }
}

/// How private areas are charged against the commit limit where their protection does not
/// say it (`VmFlags` `ac` and `nr` of `/proc/PID/smaps`): stored under
/// [`super::VMA_ACCOUNT`], owner = pid, at most one per process, only when some area is listed.
/// Written `IGNORABLE`: a restorer that skips it charges the areas as their protection
/// implies, so a library's read-only RELRO pages merge with the read-only area before them
/// into one area and `/proc/PID/maps` shows other bounds; the program runs the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VmaAccount {
    /// Whole private areas without `PROT_WRITE` that are charged (`ac`): they were writable
    /// once (RELRO pages after `mprotect`, memory a JIT made read-only). Ascending.
    pub charged: Vec<AccountArea>,
    /// Whole private writable areas that are not charged (`nr`: mapped `MAP_NORESERVE`).
    /// Ascending.
    pub uncharged: Vec<AccountArea>,
}

/// One whole area of a [`VmaAccount`] list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountArea {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
}

impl VmaAccount {
    /// Whether the area `start..end` is listed in `list`.
    pub fn lists(list: &[AccountArea], start: u64, end: u64) -> bool {
        list.iter().any(|a| (a.start, a.end) == (start, end))
    }
}

/// The owner of a deleted-but-open file ([`super::FileKind::Ghost`]) when it is not root:
/// stored under [`super::GHOST_OWNER`], owner 0, tag = description id, at most one per ghost
/// description. Not `IGNORABLE` (the file would come back owned by root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostOwner {
    /// Owning user id.
    pub uid: u32,
    /// Owning group id.
    pub gid: u32,
}

#[cfg(test)]
mod tests {
    use super::VmaFlags;

    #[test]
    fn vmflags_give_the_bits() {
        assert_eq!(VmaFlags::from_vmflags(" rd mr mw me sd"), VmaFlags::MAY_WRITE);
        assert_eq!(VmaFlags::from_vmflags(" rd wr mr me lo lf ac"), VmaFlags::LOCKED | VmaFlags::LOCK_ONFAULT);
        assert_eq!(VmaFlags::from_vmflags(" rd ex mr me de"), 0);
    }
}

/// A process's cgroup v2 membership when it is not the dumper's: stored under
/// [`super::CGROUP`], owner = pid, at most one per process. Not `IGNORABLE` (the process
/// would stay in the restorer's cgroup). The restore creates the cgroup where it is missing,
/// gives it and its ancestors the recorded limits and moves the process in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMembership {
    /// Path relative to the cgroup2 root, starting with `/` (`/system.slice/x.service`).
    pub path: String,
    /// Limits that differ from a new cgroup's defaults, of the cgroup and its ancestors
    /// (not the root), ancestors first.
    pub limits: Vec<CgroupLimit>,
}

/// One interface file value of a cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLimit {
    /// The cgroup (the membership's path or one of its ancestors).
    pub cgroup: String,
    /// Interface file, one of [`CgroupLimit::FILES`].
    pub file: String,
    /// Its value as read (one line, without the newline).
    pub value: String,
}

impl CgroupLimit {
    /// The interface files carried, each with the value a new cgroup has.
    pub const FILES: [(&'static str, &'static str); 9] = [
        ("memory.max", "max"),
        ("memory.high", "max"),
        ("memory.low", "0"),
        ("memory.min", "0"),
        ("memory.swap.max", "max"),
        ("pids.max", "max"),
        ("cpu.max", "max 100000"),
        ("cpu.weight", "100"),
        ("cpu.weight.nice", "0"),
    ];

    /// The controller an interface file belongs to (`memory` for `memory.max`).
    pub fn controller(&self) -> &str {
        self.file.split('.').next().unwrap_or("")
    }
}

/// Whether `path` is a safe cgroup path: absolute, no empty, `.` or `..` components, no
/// NUL or newline, at most 4096 bytes.
pub fn cgroup_path_ok(path: &str) -> bool {
    path == "/"
        || (path.starts_with('/')
            && path.len() <= 4096
            && !path.contains(['\0', '\n'])
            && path[1..].split('/').all(|c| !c.is_empty() && c != "." && c != ".."))
}
