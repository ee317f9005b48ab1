//! Image-wide records of an upgrade: what the old kernel recorded about the root filesystem
//! and the machine, and how long each checkpoint stage took.

use crate::error::{ImageError, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;

/// How many bytes at the start of the root device are fingerprinted. Covers the ext2/3/4
/// superblock (at 1024), the XFS superblock (at 0) and the btrfs one (at 64 KiB).
pub const FINGERPRINT_LEN: usize = 1 << 20;
const EXT4_SB_OFFSET: usize = 1024;
const EXT4_MAGIC: u16 = 0xEF53;
const EXT4_INCOMPAT_RECOVER: u32 = 0x4;

/// What the root filesystem looked like on disk after it was frozen, so the new kernel can
/// prove nothing touched it before it is mounted again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootIdentity {
    /// The block device, as named in `/proc/self/mountinfo` (e.g. `/dev/vda`).
    pub device: String,
    /// Filesystem type (e.g. `ext4`).
    pub fstype: String,
    /// Mount options of the root mount (e.g. `rw,relatime`).
    pub options: String,
    /// The filesystem UUID, when the type is known (ext2/3/4).
    pub uuid: Option<[u8; 16]>,
    /// Whether the journal needed recovery (must be false after a freeze).
    pub needs_recovery: bool,
    /// crc32c of the first [`FINGERPRINT_LEN`] bytes of the device (or all of it if smaller).
    pub fingerprint: u32,
}

/// Reads the on-disk identity of the filesystem on `device`.
///
/// The first MiB is read with `O_DIRECT`, from the device itself and not from the page
/// cache: the running kernel's cached copy of a block device can differ from the medium
/// without anything being written. ext4 builds the block and inode bitmaps of groups
/// flagged `BLOCK_UNINIT`/`INODE_UNINIT` in memory (bits for the backup superblock and
/// descriptors) and never writes them until the group is used, and those bitmaps sit in
/// the first MiB with `flex_bg`; the next kernel reads zeros there. A cached read recorded
/// the in-memory bitmaps and made the new kernel refuse a root that nothing had touched.
/// Where `O_DIRECT` is refused (tmpfs-backed image files), the read goes through the cache.
pub fn read_identity(device: &Path, fstype: &str, options: &str) -> Result<RootIdentity> {
    let io = |source| ImageError::Io { op: "read", store: device.display().to_string(), source };
    let head = match read_head_direct(device) {
        Ok(head) => head,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let mut f = std::fs::File::open(device).map_err(io)?;
            let mut head = Vec::with_capacity(FINGERPRINT_LEN);
            f.by_ref().take(FINGERPRINT_LEN as u64).read_to_end(&mut head).map_err(io)?;
            head
        }
        Err(e) => return Err(io(e)),
    };
    let (uuid, needs_recovery) = ext4_fields(&head).unwrap_or((None, false));
    Ok(RootIdentity {
        device: device.display().to_string(),
        fstype: fstype.into(),
        options: options.into(),
        uuid,
        needs_recovery,
        fingerprint: crc32c::crc32c(&head),
    })
}

/// Alignment of `O_DIRECT` buffers and offsets (a page covers every logical block size).
const DIRECT_ALIGN: usize = 4096;

/// The first [`FINGERPRINT_LEN`] bytes of `device` (fewer if it is smaller), read with
/// `O_DIRECT` into a page-aligned part of an ordinary buffer.
fn read_head_direct(device: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(device)?;
    let mut buf = vec![0u8; FINGERPRINT_LEN + DIRECT_ALIGN];
    let skew = buf.as_ptr() as usize % DIRECT_ALIGN;
    let start = if skew == 0 { 0 } else { DIRECT_ALIGN - skew };
    let area = &mut buf[start..start + FINGERPRINT_LEN];
    let mut got = 0;
    while got < FINGERPRINT_LEN {
        // Every read but the last returns whole blocks, so `got` stays aligned.
        match f.read(&mut area[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if got % DIRECT_ALIGN != 0 {
            break;
        }
    }
    Ok(buf[start..start + got].to_vec())
}

/// UUID and recovery flag of an ext2/3/4 superblock, if `head` holds one.
fn ext4_fields(head: &[u8]) -> Option<(Option<[u8; 16]>, bool)> {
    let sb = head.get(EXT4_SB_OFFSET..EXT4_SB_OFFSET + 1024)?;
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != EXT4_MAGIC {
        return None;
    }
    let incompat = u32::from_le_bytes(sb[0x60..0x64].try_into().ok()?);
    let uuid: [u8; 16] = sb[0x68..0x78].try_into().ok()?;
    Some((Some(uuid), incompat & EXT4_INCOMPAT_RECOVER != 0))
}

/// How the root filesystem on disk differs from the one frozen before the jump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityMismatch {
    /// Another filesystem.
    #[error("{device}: filesystem UUID changed: this is not the filesystem that was frozen")]
    Uuid {
        /// The device.
        device: String,
    },
    /// Its journal must be replayed.
    #[error("{device}: the journal needs recovery: the filesystem was not frozen cleanly")]
    NeedsRecovery {
        /// The device.
        device: String,
    },
    /// Its metadata changed.
    #[error("{device}: on-disk metadata changed since the freeze (fingerprint {frozen:#010x}, now {now:#010x}): it was mounted or written in between")]
    Fingerprint {
        /// The device.
        device: String,
        /// Fingerprint at the freeze.
        frozen: u32,
        /// Fingerprint now.
        now: u32,
    },
}

impl RootIdentity {
    /// Compares with what is on disk now; `Err` says what differs.
    pub fn verify(&self, now: &RootIdentity) -> std::result::Result<(), IdentityMismatch> {
        let device = now.device.clone();
        if self.uuid != now.uuid {
            return Err(IdentityMismatch::Uuid { device });
        }
        if now.needs_recovery {
            return Err(IdentityMismatch::NeedsRecovery { device });
        }
        if self.fingerprint != now.fingerprint {
            return Err(IdentityMismatch::Fingerprint { device, frozen: self.fingerprint, now: now.fingerprint });
        }
        Ok(())
    }
}

/// One timed stage of the checkpoint side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Stage name (`check`, `load`, `freeze`, `dump`, `sync`, ...).
    pub name: String,
    /// Duration in microseconds.
    pub micros: u64,
}

/// The image-wide upgrade record ([`crate::RecordKind::UPGRADE`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgrade {
    /// `uname -r` of the kernel being jumped to, if known.
    pub target_release: String,
    /// The command line given to the new kernel.
    pub cmdline: String,
    /// The root filesystem as frozen.
    pub root: Option<RootIdentity>,
    /// Root pids of the dumped trees.
    pub trees: Vec<u32>,
    /// Wall-clock (CLOCK_REALTIME) nanoseconds just before the jump, so the new side can
    /// report how long the processes were stopped.
    pub jump_realtime_ns: u64,
    /// CLOCK_MONOTONIC (ns) of the old kernel just before the jump: the restored processes'
    /// monotonic clock continues from here (through a time namespace).
    pub jump_monotonic_ns: i64,
    /// CLOCK_BOOTTIME (ns) of the old kernel just before the jump.
    pub jump_boottime_ns: i64,
    /// The checkpoint stages, in order.
    pub stages: Vec<Stage>,
    /// Network interfaces and their addresses, so the new kernel can bring them up before
    /// restoring TCP connections (a repaired connection needs a route to its peer).
    pub interfaces: Vec<NetInterface>,
    /// IPv4 routes of the main table.
    pub routes: Vec<Route4>,
    /// Run-time kernel settings (network and IPC sysctls) of the old kernel, applied on the
    /// new one before anything is restored.
    pub sysctls: Vec<Sysctl>,
}

/// One sysctl value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctl {
    /// Path below `/proc/sys` (e.g. `net/ipv4/ping_group_range`).
    pub name: String,
    /// The value as read, without the trailing newline.
    pub value: String,
}

/// One network interface as it was configured before the jump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInterface {
    /// Its name (e.g. `eth0`).
    pub name: String,
    /// Its hardware address, used to find it again on the new kernel; empty for `lo`.
    pub mac: Vec<u8>,
    /// Addresses: 4 or 16 bytes, with their prefix length.
    pub addrs: Vec<(Vec<u8>, u8)>,
}

/// One IPv4 route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route4 {
    /// Destination network.
    pub dest: [u8; 4],
    /// Prefix length.
    pub prefix: u8,
    /// Gateway (0.0.0.0 for a directly connected network).
    pub gateway: [u8; 4],
    /// Output interface name.
    pub dev: String,
}

/// The page cache's hot set before the jump ([`crate::RecordKind::PAGE_CACHE`]): the resident
/// ranges of the files the preserved processes had mapped or open (and of the paths the
/// operator named), read back on the new kernel before the hand-over so the services do not
/// start on a cold cache. Linux cannot keep page-cache pages across kexec; this makes them
/// hot again from the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PageCache {
    /// How long the new kernel may spend re-reading (milliseconds).
    pub budget_ms: u64,
    /// The files, with their resident ranges.
    pub files: Vec<CachedFile>,
}

/// One file of the hot set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFile {
    /// Absolute path.
    pub path: String,
    /// Inode number, size and modification time (ns since the epoch): a file that differs on
    /// the new kernel is skipped.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Resident `(offset, length)` byte ranges, page-aligned, ascending, not overlapping.
    pub ranges: Vec<(u64, u64)>,
}

/// Most files in a hot set.
pub const MAX_CACHED_FILES: usize = 1 << 20;

/// Why a page-cache or tmpfs record is refused before anything uses it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    /// More entries than any real system has.
    #[error("{count} {what}, at most {max}")]
    TooMany {
        /// What is counted.
        what: &'static str,
        /// How many.
        count: usize,
        /// The most accepted.
        max: usize,
    },
    /// A path that is not a normal absolute one.
    #[error("{what} {path:?} is not a normal absolute path")]
    Path {
        /// Whose path.
        what: &'static str,
        /// The path.
        path: String,
    },
    /// A cached range outside its file or out of order.
    #[error("{path}: range {off}+{len} is not page-aligned, ordered and inside {size} bytes")]
    Range {
        /// The file.
        path: String,
        /// Offset.
        off: u64,
        /// Length.
        len: u64,
        /// The file's size.
        size: u64,
    },
    /// A tmpfs entry on none of the recorded mounts.
    #[error("tmpfs entry {path} is on none of the recorded mounts")]
    NoMount {
        /// The entry.
        path: String,
    },
    /// A filesystem entry that no verifier can use.
    #[error("filesystem {mountpoint}: {what}")]
    Filesystem {
        /// Its mount point.
        mountpoint: String,
        /// What is wrong.
        what: String,
    },
    /// A tmpfs entry of a type that is not carried.
    #[error("tmpfs entry {path}: file type {kind:o} is not carried")]
    FileType {
        /// The entry.
        path: String,
        /// Its `S_IFMT` bits.
        kind: u32,
    },
}

impl PageCache {
    /// Checks the record before anything uses it: absolute paths, sane ranges.
    pub fn check(&self) -> std::result::Result<(), RecordProblem> {
        if self.files.len() > MAX_CACHED_FILES {
            return Err(RecordProblem::TooMany { what: "files", count: self.files.len(), max: MAX_CACHED_FILES });
        }
        for f in &self.files {
            if !f.path.starts_with('/') || f.path.contains('\0') {
                return Err(RecordProblem::Path { what: "cached file", path: f.path.clone() });
            }
            let mut end = 0u64;
            for &(off, len) in &f.ranges {
                let bad = off % 4096 != 0
                    || len == 0
                    || off < end
                    || off.checked_add(len).is_none_or(|e| e > f.size.next_multiple_of(4096));
                if bad {
                    return Err(RecordProblem::Range { path: f.path.clone(), off, len, size: f.size });
                }
                end = off + len;
            }
        }
        Ok(())
    }

    /// Bytes of all ranges.
    pub fn bytes(&self) -> u64 {
        self.files.iter().flat_map(|f| f.ranges.iter()).map(|r| r.1).sum()
    }
}

/// Files on tmpfs that the preserved processes hold open, map or are bound to (a unix socket's
/// directory), and the operator's `--keep` paths ([`crate::RecordKind::TMPFS`]): tmpfs lives
/// in RAM, so the new kernel starts with it empty. seamless-init recreates the mounts (where
/// nothing is mounted yet) and the entries, with their contents, mode, owner and times, before
/// the processes are restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TmpfsRecord {
    /// The tmpfs mounts the entries are on.
    pub mounts: Vec<TmpfsMount>,
    /// The entries, every directory before what it contains.
    pub entries: Vec<TmpfsEntry>,
}

/// One tmpfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// Mount point.
    pub path: String,
    /// Its options as `/proc/self/mountinfo` shows them (e.g. `rw,nosuid,nodev,size=...,mode=755`).
    pub options: String,
}

/// One file, directory or symbolic link on a tmpfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsEntry {
    /// Absolute path.
    pub path: String,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// A symbolic link's target (empty otherwise).
    pub target: String,
    /// A regular file's size.
    pub size: u64,
    /// A regular file's contents: index entries of blobs (owner 0), in order.
    pub blobs: Vec<u32>,
}

/// Blobs holding tmpfs contents have this bit in their tag (owner 0), next to the entry's
/// number: the tags of deleted files' blobs are open-file ids, far below it.
pub const TMPFS_BLOB_TAG: u64 = 1 << 63;

/// Most entries in a tmpfs record.
pub const MAX_TMPFS_ENTRIES: usize = 1 << 16;

impl TmpfsRecord {
    /// Checks the record before anything uses it: absolute, normal paths, known types.
    pub fn check(&self) -> std::result::Result<(), RecordProblem> {
        if self.entries.len() > MAX_TMPFS_ENTRIES {
            let count = self.entries.len();
            return Err(RecordProblem::TooMany { what: "tmpfs entries", count, max: MAX_TMPFS_ENTRIES });
        }
        let normal = |p: &str| {
            p.starts_with('/')
                && !p.contains('\0')
                && p.split('/').skip(1).all(|c| !c.is_empty() && c != "." && c != "..")
        };
        for m in &self.mounts {
            if !normal(&m.path) {
                return Err(RecordProblem::Path { what: "tmpfs mount point", path: m.path.clone() });
            }
        }
        for e in &self.entries {
            if !normal(&e.path) {
                return Err(RecordProblem::Path { what: "tmpfs entry", path: e.path.clone() });
            }
            if !self.mounts.iter().any(|m| e.path.starts_with(&format!("{}/", m.path.trim_end_matches('/')))) {
                return Err(RecordProblem::NoMount { path: e.path.clone() });
            }
            match e.mode & 0o170000 {
                0o040000 | 0o120000 => {}
                0o100000 => {}
                t => return Err(RecordProblem::FileType { path: e.path.clone(), kind: t }),
            }
        }
        Ok(())
    }
}
