//! The filesystems the preserved processes use ([`crate::RecordKind::FILESYSTEMS`]): for each,
//! where it was mounted, its block device (with the device-mapper UUID of an LVM logical
//! volume) and its identity and clean state read from the device itself after the freeze, by
//! the filesystem's own markers:
//!
//! - ext2/3/4: the UUID and the journal's `needs_recovery` flag (`INCOMPAT_RECOVER`);
//! - XFS: the UUID and the log: its head is found from the cycle numbers that start every
//!   512-byte log block, and the last record before it must be an unmount record (one
//!   operation, flagged `XLOG_UNMOUNT_TRANS`, 0x20), or the log must be covered (from its
//!   tail to its head only transactions that log the superblock, or inodes whose on-disk copy
//!   carries that record's LSN or a later one, i.e. was written back since: what `FIFREEZE`
//!   leaves; recovery then rewrites what is on disk already); anything else is work for log
//!   recovery and refused. The tail and head LSNs are recorded, since any later
//!   write to the filesystem moves them;
//! - btrfs: the fsid, the superblock's generation (every transaction commit raises it) and
//!   `log_root`, which is 0 when no fsync log awaits replay; the superblock's checksum is
//!   verified.
//!
//! Every type also gets the CRC-32C of the device's first MiB ([`crate::upgrade::FINGERPRINT_LEN`]).
//! All reads use `O_DIRECT` (the medium, not the old kernel's page cache), like the root's
//! identity ([`crate::upgrade::read_identity`]).

use serde::{Deserialize, Serialize};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Most filesystems in a record.
pub const MAX_FILESYSTEMS: usize = 256;
/// Filesystem types with a verifier.
pub const VERIFIED_TYPES: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs"];

/// The record: every filesystem the preserved processes use, the root (`/`) included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Filesystems {
    /// The filesystems, innermost mount point first, `/` last (the freeze order).
    pub filesystems: Vec<FsIdentity>,
}

/// One filesystem as frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsIdentity {
    /// Where it was mounted (absolute).
    pub mountpoint: String,
    /// Its block device as the mount table named it (e.g. `/dev/mapper/vg-data`).
    pub device: String,
    /// The device-mapper UUID of the device (`LVM-` and the VG and LV UUIDs for a logical
    /// volume), empty when it is not a device-mapper device.
    pub dm_uuid: String,
    /// The filesystem type (one of [`VERIFIED_TYPES`]).
    pub fstype: String,
    /// The mount's own options as the mount table shows them (`rw,nosuid,relatime`), for
    /// seamless-init to mount it the same way before the restore.
    pub mount_options: String,
    /// The filesystem's options as the mount table shows them (`rw,attr2,inode64`,
    /// `rw,space_cache=v2,subvolid=5,subvol=/`).
    pub fs_options: String,
    /// The filesystem UUID (XFS `sb_uuid`, btrfs fsid, ext `s_uuid`).
    pub uuid: [u8; 16],
    /// The type's clean-state markers.
    pub state: FsState,
    /// CRC-32C of the device's first MiB (or all of it if smaller).
    pub fingerprint: u32,
}

/// The clean-state markers of one filesystem type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsState {
    /// ext2/3/4.
    Ext {
        /// The journal needs recovery (`INCOMPAT_RECOVER`).
        needs_recovery: bool,
    },
    /// XFS with an internal log.
    Xfs {
        /// A mount replays nothing that is not on disk already: the last log record is an
        /// unmount record, or the log is covered (from its tail to its head only updates of
        /// the superblock and of inodes written back since, as `FIFREEZE` leaves it).
        log_clean: bool,
        /// The last log record is an unmount record.
        unmount_record: bool,
        /// LSN (cycle << 32 | block) of the log's tail (of the unmount record when there is one).
        tail_lsn: u64,
        /// LSN of the last log record.
        head_lsn: u64,
    },
    /// Single-device btrfs.
    Btrfs {
        /// The superblock's transaction generation.
        generation: u64,
        /// The log tree's root (0: nothing to replay).
        log_root: u64,
    },
}

impl FsState {
    /// Whether a mount would replay nothing.
    pub fn is_clean(&self) -> bool {
        match *self {
            FsState::Ext { needs_recovery } => !needs_recovery,
            FsState::Xfs { log_clean, .. } => log_clean,
            FsState::Btrfs { log_root, .. } => log_root == 0,
        }
    }

    fn fits(&self, fstype: &str) -> bool {
        matches!(
            (self, fstype),
            (FsState::Ext { .. }, "ext2" | "ext3" | "ext4")
                | (FsState::Xfs { .. }, "xfs")
                | (FsState::Btrfs { .. }, "btrfs")
        )
    }
}

impl std::fmt::Display for FsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            FsState::Ext { needs_recovery } => {
                write!(f, "journal {}", if needs_recovery { "needs recovery" } else { "clean" })
            }
            FsState::Xfs { log_clean, unmount_record, tail_lsn, head_lsn } => write!(
                f,
                "log {}, tail {}/{}, head {}/{}",
                match (log_clean, unmount_record) {
                    (true, true) => "clean (unmount record)",
                    (true, false) => "covered (only updates already on disk)",
                    _ => "dirty (needs replay)",
                },
                tail_lsn >> 32,
                tail_lsn & 0xffff_ffff,
                head_lsn >> 32,
                head_lsn & 0xffff_ffff
            ),
            FsState::Btrfs { generation, log_root } => {
                write!(f, "generation {generation}, log_root {log_root}")
            }
        }
    }
}

/// Why a filesystem's on-disk state cannot be read or has no verifier.
#[derive(Debug, thiserror::Error)]
pub enum FsReadError {
    /// The device could not be read.
    #[error("reading {device}")]
    Io {
        /// The device.
        device: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The device does not hold what its type says, or holds a layout without a verifier.
    #[error("{device}: {what}")]
    Layout {
        /// The device.
        device: String,
        /// What is wrong.
        what: String,
    },
}

/// Alignment of `O_DIRECT` offsets, lengths and buffers.
const ALIGN: u64 = 4096;

/// A block device read with `O_DIRECT` (buffered where the kernel refuses it, as for image
/// files on tmpfs).
struct Device {
    file: std::fs::File,
    name: String,
}

impl Device {
    fn open(path: &Path) -> std::result::Result<Self, FsReadError> {
        use std::os::unix::fs::OpenOptionsExt;
        let name = path.display().to_string();
        let io = |source| FsReadError::Io { device: name.clone(), source };
        let direct = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path);
        let file = match direct {
            Ok(f) => {
                // Probe: some filesystems accept the flag and refuse the reads.
                let mut probe = AlignedBuf::new(crate::usize_of(ALIGN));
                match f.read_at(probe.as_mut(), 0) {
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => std::fs::File::open(path).map_err(io)?,
                    _ => f,
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => std::fs::File::open(path).map_err(io)?,
            Err(e) => return Err(io(e)),
        };
        Ok(Device { file, name })
    }

    /// `len` bytes at `off` (fewer at the end of the device).
    fn read(&self, off: u64, len: usize) -> std::result::Result<Vec<u8>, FsReadError> {
        let start = off - off % ALIGN;
        let end = (off + len as u64).next_multiple_of(ALIGN);
        let mut buf = AlignedBuf::new(crate::usize_of(end - start));
        let mut got = 0usize;
        let area = buf.as_mut();
        while got < area.len() {
            match self.file.read_at(&mut area[got..], start + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(FsReadError::Io { device: self.name.clone(), source }),
            }
            if !(got as u64).is_multiple_of(ALIGN) {
                break;
            }
        }
        let skip = crate::usize_of(off - start);
        let have = got.saturating_sub(skip).min(len);
        Ok(area[skip..skip + have].to_vec())
    }

    fn layout(&self, what: impl Into<String>) -> FsReadError {
        FsReadError::Layout { device: self.name.clone(), what: what.into() }
    }

    fn exact(&self, off: u64, len: usize, what: &str) -> std::result::Result<Vec<u8>, FsReadError> {
        let b = self.read(off, len)?;
        if b.len() < len {
            return Err(self.layout(format!("the device ends before the {what} (offset {off})")));
        }
        Ok(b)
    }
}

/// `len` bytes at `off` of block device `path`, read with `O_DIRECT` where the kernel allows
/// it (fewer at the end of the device): for other on-disk headers, such as LUKS's.
pub fn read_direct(path: &Path, off: u64, len: usize) -> std::result::Result<Vec<u8>, FsReadError> {
    Device::open(path)?.read(off, len)
}

/// A page-aligned part of an ordinary buffer.
struct AlignedBuf {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let align = crate::usize_of(ALIGN);
        let buf = vec![0u8; len + align];
        let skew = buf.as_ptr() as usize % align;
        let start = if skew == 0 { 0 } else { align - skew };
        AlignedBuf { buf, start, len }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

fn uuid_at(b: &[u8], at: usize) -> [u8; 16] {
    let mut u = [0u8; 16];
    u.copy_from_slice(&b[at..at + 16]);
    u
}

/// Reads the identity and clean state of the `fstype` filesystem on `device`.
pub fn read(
    mountpoint: &str,
    device: &Path,
    dm_uuid: &str,
    fstype: &str,
) -> std::result::Result<FsIdentity, FsReadError> {
    let dev = Device::open(device)?;
    let head = dev.read(0, crate::upgrade::FINGERPRINT_LEN)?;
    let (uuid, state) = match fstype {
        "ext2" | "ext3" | "ext4" => ext(&dev, &head)?,
        "xfs" => xfs(&dev, &head)?,
        "btrfs" => btrfs(&dev, &head)?,
        other => {
            return Err(dev.layout(format!("{other} has no clean-state verifier (only {})", VERIFIED_TYPES.join(", "))))
        }
    };
    Ok(FsIdentity {
        mountpoint: mountpoint.into(),
        device: device.display().to_string(),
        dm_uuid: dm_uuid.into(),
        fstype: fstype.into(),
        mount_options: String::new(),
        fs_options: String::new(),
        uuid,
        state,
        fingerprint: crc32c::crc32c(&head),
    })
}

fn ext(dev: &Device, head: &[u8]) -> std::result::Result<([u8; 16], FsState), FsReadError> {
    let sb = head.get(1024..2048).ok_or_else(|| dev.layout("no ext superblock: the device is too small"))?;
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
        return Err(dev.layout("no ext2/3/4 superblock (magic 0xEF53 at 1080)"));
    }
    let incompat = le32(sb, 0x60);
    Ok((uuid_at(sb, 0x68), FsState::Ext { needs_recovery: incompat & 0x4 != 0 }))
}

/// XFS on-disk facts used here (all big-endian): superblock at 0 with magic `XFSB`,
/// `sb_blocksize` at 4, `sb_uuid` at 32, `sb_logstart` at 48 (a filesystem block number,
/// 0 for an external log), `sb_agblocks` at 84, `sb_logblocks` at 96, `sb_blocklog` at 120,
/// `sb_agblklog` at 124. The log is made of 512-byte blocks; a log record starts with a header
/// (`h_magicno` 0xFEEDBABE, `h_cycle` at 4, `h_version` at 8, `h_len` at 12, `h_lsn` at 16,
/// `h_num_logops` at 40, `h_size` at 320), every other block starts with its cycle number;
/// the operation header after the record header has `oh_flags` at 9.
const XFS_MAGIC: u32 = 0x5846_5342;
const XLOG_MAGIC: u32 = 0xFEED_BABE;
const XLOG_UNMOUNT_TRANS: u8 = 0x20;
const XLOG_HEADER_CYCLE_SIZE: u32 = 32 * 1024;
const BB: u64 = 512;
/// How far before the head the last record header is looked for (a record is at most 256 KiB
/// plus its header blocks).
const XLOG_SEARCH_BACK: u64 = 2048;

fn xfs(dev: &Device, head: &[u8]) -> std::result::Result<([u8; 16], FsState), FsReadError> {
    let sb = head.get(..512).ok_or_else(|| dev.layout("no XFS superblock: the device is too small"))?;
    if be32(sb, 0) != XFS_MAGIC {
        return Err(dev.layout("no XFS superblock (magic XFSB at 0)"));
    }
    let uuid = uuid_at(sb, 32);
    let logstart = be64(sb, 48);
    let blocksize = u64::from(be32(sb, 4));
    let agblocks = u64::from(be32(sb, 84));
    let logblocks = u64::from(be32(sb, 96));
    let blocklog = u32::from(sb[120]);
    let agblklog = u32::from(sb[124]);
    if logstart == 0 {
        return Err(dev.layout("XFS with an external log has no verifier here"));
    }
    if !(9..=16).contains(&blocklog) || blocksize != 1 << blocklog || agblklog > 31 || logblocks == 0 {
        return Err(dev.layout("XFS superblock with impossible geometry"));
    }
    let agno = logstart >> agblklog;
    let agbno = logstart & ((1u64 << agblklog) - 1);
    let log_off = (agno * agblocks + agbno) * blocksize;
    let log_bbs = logblocks * blocksize / BB;
    let log = XfsLog { dev, off: log_off, bbs: log_bbs };
    let st = log.state()?;
    Ok((
        uuid,
        FsState::Xfs { log_clean: st.clean, unmount_record: st.unmount, tail_lsn: st.tail_lsn, head_lsn: st.head_lsn },
    ))
}

/// A log record: its header block, how many header blocks it has, its data.
type LogRecord = (Vec<u8>, u64, Vec<u8>);

struct XfsLog<'a> {
    dev: &'a Device,
    off: u64,
    bbs: u64,
}

impl XfsLog<'_> {
    fn block(&self, n: u64) -> std::result::Result<Vec<u8>, FsReadError> {
        self.dev.exact(self.off + n * BB, crate::usize_of(BB), "XFS log")
    }

    fn cycle(&self, n: u64) -> std::result::Result<u32, FsReadError> {
        let b = self.block(n)?;
        Ok(if be32(&b, 0) == XLOG_MAGIC { be32(&b, 4) } else { be32(&b, 0) })
    }

    /// The record starting at block `n`: its header and its data blocks, with the first word
    /// of each data block put back from the header's `h_cycle_data` (the log stamps the
    /// cycle number there).
    fn record(&self, n: u64) -> std::result::Result<Option<LogRecord>, FsReadError> {
        let h = self.block(n)?;
        if be32(&h, 0) != XLOG_MAGIC || be64(&h, 16) & 0xffff_ffff != n {
            return Ok(None);
        }
        let (version, size, len) = (be32(&h, 8), be32(&h, 320), be32(&h, 12));
        let hblks = if version & 2 != 0 && size > XLOG_HEADER_CYCLE_SIZE {
            u64::from(size.div_ceil(XLOG_HEADER_CYCLE_SIZE))
        } else {
            1
        };
        let data_bbs = u64::from(len).div_ceil(BB);
        if data_bbs > XLOG_COVER_MAX_BBS {
            return Ok(Some((h, hblks, Vec::new())));
        }
        let mut data = Vec::with_capacity(crate::usize_of(data_bbs * BB));
        for i in 0..data_bbs {
            let mut b = self.block((n + hblks + i) % self.bbs)?;
            let at = 44 + 4 * crate::usize_of(i);
            b[..4].copy_from_slice(&h[at..at + 4]);
            data.extend_from_slice(&b);
        }
        data.truncate(crate::usize_of(u64::from(len)));
        Ok(Some((h, hblks, data)))
    }

    /// The state of the log: the last record before the head, and whether a mount would
    /// change anything (an unmount record, or a covered log).
    fn state(&self) -> std::result::Result<XfsLogState, FsReadError> {
        let dirty = |lsn| XfsLogState { clean: false, unmount: false, tail_lsn: 0, head_lsn: lsn };
        let first = self.cycle(0)?;
        let last = self.cycle(self.bbs - 1)?;
        if first == 0 {
            return Err(self.dev.layout("the XFS log was never written (cycle 0 at its start)"));
        }
        // The log holds cycle `first` up to the head and `first - 1` after it (or `first`
        // throughout when it has just wrapped): find the first block of the older cycle.
        let head = if first == last {
            self.bbs
        } else if last.wrapping_add(1) == first {
            let (mut lo, mut hi) = (0u64, self.bbs - 1);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if self.cycle(mid)? == first {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            hi
        } else {
            return Ok(dirty(0));
        };
        // The last record header before the head.
        let mut n = head;
        for _ in 0..XLOG_SEARCH_BACK.min(self.bbs) {
            n = if n == 0 { self.bbs - 1 } else { n - 1 };
            let b = self.block(n)?;
            if be32(&b, 0) != XLOG_MAGIC {
                continue;
            }
            let lsn = be64(&b, 16);
            let Some((h, hblks, _)) = self.record(n)? else { return Ok(dirty(lsn)) };
            if be32(&h, 40) == 1 {
                let op = self.block((n + hblks) % self.bbs)?;
                if op[9] & XLOG_UNMOUNT_TRANS != 0 {
                    return Ok(XfsLogState { clean: true, unmount: true, tail_lsn: lsn, head_lsn: lsn });
                }
            }
            let tail_lsn = be64(&h, 24);
            let covered = self.covered(tail_lsn, head % self.bbs)?;
            return Ok(XfsLogState { clean: covered, unmount: false, tail_lsn, head_lsn: lsn });
        }
        Err(self
            .dev
            .layout(format!("no XFS log record header within {XLOG_SEARCH_BACK} blocks before the head {head}")))
    }

    /// Whether every record from the tail to the head only logs the superblock, or inodes
    /// that were written back after it: a covered log, which is what `FIFREEZE` leaves (the
    /// log's idle state; its tail may still point before the last inode update the freeze
    /// wrote back). Recovery replays those updates, which are on disk already, and nothing
    /// else.
    fn covered(&self, tail_lsn: u64, head: u64) -> std::result::Result<bool, FsReadError> {
        let mut n = tail_lsn & 0xffff_ffff;
        for _ in 0..XLOG_COVER_MAX_RECORDS {
            if n == head {
                return Ok(true);
            }
            if n >= self.bbs {
                return Ok(false);
            }
            let Some((h, hblks, data)) = self.record(n)? else { return Ok(false) };
            let len = u64::from(be32(&h, 12));
            if len.div_ceil(BB) > XLOG_COVER_MAX_BBS {
                return Ok(false);
            }
            let Some(inodes) = replay_items(&data, be32(&h, 40)) else { return Ok(false) };
            // An inode logged here and written back since carries this record's LSN or a
            // later one (`di_lsn`, which is also what recovery compares): replaying the item
            // writes what is on disk already.
            let lsn = be64(&h, 16);
            for (daddr, boffset, ino) in inodes {
                let d = self.dev.exact(daddr * BB + boffset, 176, "XFS inode")?;
                let ok = u16::from_be_bytes([d[0], d[1]]) == XFS_DINODE_MAGIC
                    && d[4] >= 3
                    && be64(&d, 152) == ino
                    && be64(&d, 112) >= lsn;
                if !ok {
                    return Ok(false);
                }
            }
            n = (n + hblks + len.div_ceil(BB)) % self.bbs;
        }
        Ok(false)
    }
}

/// What [`XfsLog::state`] found.
struct XfsLogState {
    clean: bool,
    unmount: bool,
    tail_lsn: u64,
    head_lsn: u64,
}

/// Most records a covered log holds between its tail and head, and most blocks in one.
const XLOG_COVER_MAX_RECORDS: usize = 16;
const XLOG_COVER_MAX_BBS: u64 = 8;
const XLOG_START_TRANS: u8 = 0x01;
const XLOG_COMMIT_TRANS: u8 = 0x02;
const XLOG_CONTINUE_TRANS: u8 = 0x04;
const XLOG_WAS_CONT_TRANS: u8 = 0x08;
/// Log items are in the writer's byte order (little-endian on x86-64).
const XFS_TRANS_HEADER_MAGIC: u32 = 0x5452_414e;
const XFS_LI_BUF: u16 = 0x123c;
const XFS_LI_INODE: u16 = 0x123b;
/// On-disk inode (big-endian): magic `IN` at 0, version at 4, `di_lsn` at 112 and `di_ino` at
/// 152 in version 3 (v5 filesystems).
const XFS_DINODE_MAGIC: u16 = 0x494e;

/// The items of the `ops` operations of one log record (its data, cycle words restored; the
/// rest is padding), when they are whole transactions of superblock buffers and inodes: the
/// inodes, as (daddr of their cluster buffer, offset in it, inode number), for the caller to
/// prove they were written back. `None` for anything else. An operation is a 12-byte header
/// (`oh_tid`, `oh_len`, `oh_clientid`, `oh_flags` at 9, big-endian) and `oh_len` bytes; a
/// transaction is a start operation, a transaction header (`th_magic` 0x5452414e), per item a
/// format region and its data regions, and a commit. Formats: a buffer's (`blf_type` 0x123c,
/// `blf_size` regions at 2, `blf_len` at 6, `blf_blkno` at 8; only the superblock, block 0 of
/// one 512-byte block, is accepted), an inode's (`ilf_type` 0x123b, `ilf_size` at 2,
/// `ilf_ino` at 16, `ilf_blkno` at 40, `ilf_len` at 48, `ilf_boffset` at 52: 56 bytes).
fn replay_items(data: &[u8], ops: u32) -> Option<Vec<(u64, u64, u64)>> {
    let mut at = 0usize;
    let mut regions_left = 0u32;
    let mut items = 0u32;
    let mut inodes = Vec::new();
    for _ in 0..ops {
        if at + 12 > data.len() {
            return None;
        }
        let len = crate::usize_of(u64::from(be32(data, at + 4)));
        let flags = data[at + 9];
        let body = &data[at + 12..];
        if len > body.len() || flags & (XLOG_CONTINUE_TRANS | XLOG_WAS_CONT_TRANS) != 0 {
            return None;
        }
        let body = &body[..len];
        at += 12 + len;
        if flags & (XLOG_START_TRANS | XLOG_COMMIT_TRANS) != 0 {
            if len != 0 {
                return None;
            }
            continue;
        }
        if regions_left > 0 {
            regions_left -= 1;
            continue;
        }
        if len >= 4 && u32::from_le_bytes([body[0], body[1], body[2], body[3]]) == XFS_TRANS_HEADER_MAGIC {
            continue;
        }
        let le16 = |at: usize| u16::from_le_bytes([body[at], body[at + 1]]);
        let le64 = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap_or([0xff; 8]));
        if len == 56 && le16(0) == XFS_LI_INODE && le16(2) > 0 {
            let boffset = u32::from_le_bytes(body[52..56].try_into().unwrap_or([0xff; 4]));
            inodes.push((le64(40), u64::from(boffset), le64(16)));
            regions_left = u32::from(le16(2)) - 1;
            items += 1;
            continue;
        }
        if len < 16 || le16(0) != XFS_LI_BUF {
            return None;
        }
        let size = u16::from_le_bytes([body[2], body[3]]);
        let blen = u16::from_le_bytes([body[6], body[7]]);
        let blkno = u64::from_le_bytes(body[8..16].try_into().unwrap_or([0xff; 8]));
        if blkno != 0 || blen != 1 || size == 0 {
            return None;
        }
        regions_left = u32::from(size) - 1;
        items += 1;
    }
    (items > 0 && regions_left == 0).then_some(inodes)
}

/// btrfs on-disk facts used here (little-endian): the primary superblock at 64 KiB, 4096
/// bytes: `csum` at 0 (CRC-32C of bytes 32..4096 when `csum_type`, at 0xc4, is 0), `fsid` at
/// 0x20, magic `_BHRfS_M` at 0x40, `generation` at 0x48, `log_root` at 0x60, `num_devices` at
/// 0x88.
const BTRFS_SB: usize = 0x10000;

fn btrfs(dev: &Device, head: &[u8]) -> std::result::Result<([u8; 16], FsState), FsReadError> {
    let sb = head
        .get(BTRFS_SB..BTRFS_SB + 4096)
        .ok_or_else(|| dev.layout("no btrfs superblock: the device is too small"))?;
    if &sb[0x40..0x48] != b"_BHRfS_M" {
        return Err(dev.layout("no btrfs superblock (magic _BHRfS_M at 64 KiB + 0x40)"));
    }
    if u16::from_le_bytes([sb[0xc4], sb[0xc5]]) == 0 && crc32c::crc32c(&sb[32..]) != le32(sb, 0) {
        return Err(dev.layout("the btrfs superblock's checksum does not match"));
    }
    if le64(sb, 0x88) != 1 {
        return Err(dev.layout(format!("btrfs over {} devices has no verifier here", le64(sb, 0x88))));
    }
    Ok((uuid_at(sb, 0x20), FsState::Btrfs { generation: le64(sb, 0x48), log_root: le64(sb, 0x60) }))
}

/// How a filesystem on disk differs from the one frozen before the jump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsMismatch {
    /// Another filesystem, or another logical volume.
    #[error(
        "filesystem {mountpoint} ({fstype} on {device}): {what} changed: this is not the filesystem that was frozen"
    )]
    Identity {
        /// Mount point before the jump.
        mountpoint: String,
        /// Type.
        fstype: String,
        /// Device now.
        device: String,
        /// `UUID`, `device-mapper UUID` or `type`.
        what: &'static str,
    },
    /// A mount would replay a journal or log.
    #[error("filesystem {mountpoint} ({fstype} on {device}) is not clean ({state}): it was not frozen cleanly or was written after the freeze")]
    NotClean {
        /// Mount point before the jump.
        mountpoint: String,
        /// Type.
        fstype: String,
        /// Device now.
        device: String,
        /// Its state now.
        state: FsState,
    },
    /// The clean-state markers moved.
    #[error("filesystem {mountpoint} ({fstype} on {device}) was written after the freeze: {frozen} at the freeze, {now} now")]
    Written {
        /// Mount point before the jump.
        mountpoint: String,
        /// Type.
        fstype: String,
        /// Device now.
        device: String,
        /// The markers at the freeze.
        frozen: FsState,
        /// The markers now.
        now: FsState,
    },
    /// Its metadata changed.
    #[error("filesystem {mountpoint} ({fstype} on {device}): on-disk metadata changed since the freeze (fingerprint {frozen:#010x}, now {now:#010x}): it was mounted or written in between")]
    Fingerprint {
        /// Mount point before the jump.
        mountpoint: String,
        /// Type.
        fstype: String,
        /// Device now.
        device: String,
        /// Fingerprint at the freeze.
        frozen: u32,
        /// Fingerprint now.
        now: u32,
    },
}

impl FsIdentity {
    /// Compares with what is on disk now (`now`, read from the device found for this one).
    pub fn verify(&self, now: &FsIdentity) -> std::result::Result<(), FsMismatch> {
        let (mountpoint, fstype, device) = (self.mountpoint.clone(), self.fstype.clone(), now.device.clone());
        let ident = |what| FsMismatch::Identity {
            mountpoint: mountpoint.clone(),
            fstype: fstype.clone(),
            device: device.clone(),
            what,
        };
        if self.fstype != now.fstype {
            return Err(ident("type"));
        }
        if self.uuid != now.uuid {
            return Err(ident("UUID"));
        }
        if self.dm_uuid != now.dm_uuid {
            return Err(ident("device-mapper UUID"));
        }
        if !now.state.is_clean() {
            return Err(FsMismatch::NotClean { mountpoint, fstype, device, state: now.state });
        }
        if self.state != now.state {
            return Err(FsMismatch::Written { mountpoint, fstype, device, frozen: self.state, now: now.state });
        }
        if self.fingerprint != now.fingerprint {
            return Err(FsMismatch::Fingerprint {
                mountpoint,
                fstype,
                device,
                frozen: self.fingerprint,
                now: now.fingerprint,
            });
        }
        Ok(())
    }

    /// One line for logs and `seamless inspect`.
    pub fn summary(&self) -> String {
        let lv = if self.dm_uuid.is_empty() { String::new() } else { format!(", dm {}", self.dm_uuid) };
        format!("{} {} on {}{lv}: {}", self.mountpoint, self.fstype, self.device, self.state)
    }
}

/// Whether `p` is a normal absolute path (no empty, `.` or `..` component, no NUL).
fn normal(p: &str) -> bool {
    p == "/"
        || (p.starts_with('/')
            && !p.contains('\0')
            && p.split('/').skip(1).all(|c| !c.is_empty() && c != "." && c != ".."))
}

impl Filesystems {
    /// Checks every field before anything uses the record: at most [`MAX_FILESYSTEMS`],
    /// normal absolute and distinct mount points, devices under `/dev/`, a device-mapper UUID
    /// of printable ASCII (at most 128 bytes), a type with a verifier and the state of that
    /// type, clean (the writer records only clean filesystems).
    pub fn check(&self) -> std::result::Result<(), crate::upgrade::RecordProblem> {
        use crate::upgrade::RecordProblem;
        if self.filesystems.len() > MAX_FILESYSTEMS {
            let count = self.filesystems.len();
            return Err(RecordProblem::TooMany { what: "filesystems", count, max: MAX_FILESYSTEMS });
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.filesystems {
            if !normal(&f.mountpoint) || !seen.insert(f.mountpoint.as_str()) {
                return Err(RecordProblem::Path { what: "filesystem mount point", path: f.mountpoint.clone() });
            }
            if !f.device.starts_with("/dev/") || !normal(&f.device) {
                return Err(RecordProblem::Path { what: "filesystem device", path: f.device.clone() });
            }
            if f.dm_uuid.len() > 128 || !f.dm_uuid.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(RecordProblem::Filesystem {
                    mountpoint: f.mountpoint.clone(),
                    what: "device-mapper UUID is not printable ASCII of at most 128 bytes".into(),
                });
            }
            let options_ok = |o: &str| o.len() <= 1024 && o.bytes().all(|b| b.is_ascii_graphic());
            if !options_ok(&f.mount_options) || !options_ok(&f.fs_options) {
                return Err(RecordProblem::Filesystem {
                    mountpoint: f.mountpoint.clone(),
                    what: "mount options are not printable ASCII of at most 1024 bytes without spaces".into(),
                });
            }
            if !VERIFIED_TYPES.contains(&f.fstype.as_str()) || !f.state.fits(&f.fstype) {
                return Err(RecordProblem::Filesystem {
                    mountpoint: f.mountpoint.clone(),
                    what: format!("type {:?} with state {:?} has no verifier", f.fstype, f.state),
                });
            }
            if !f.state.is_clean() {
                return Err(RecordProblem::Filesystem {
                    mountpoint: f.mountpoint.clone(),
                    what: format!("recorded unclean ({})", f.state),
                });
            }
        }
        Ok(())
    }

    /// The entry of the root filesystem.
    pub fn root(&self) -> Option<&FsIdentity> {
        self.filesystems.iter().find(|f| f.mountpoint == "/")
    }
}

/// Reads `device` as [`read`] does and compares with `recorded`.
pub fn verify_device(recorded: &FsIdentity, device: &Path) -> std::result::Result<(), FsVerifyError> {
    let now = read(&recorded.mountpoint, device, &recorded.dm_uuid, &recorded.fstype)
        .map_err(|source| FsVerifyError::Read { mountpoint: recorded.mountpoint.clone(), source })?;
    recorded.verify(&now).map_err(FsVerifyError::Mismatch)
}

/// Why a recorded filesystem did not verify.
#[derive(Debug, thiserror::Error)]
pub enum FsVerifyError {
    /// Its device could not be read as its type.
    #[error("filesystem {mountpoint}: cannot read its state")]
    Read {
        /// Mount point before the jump.
        mountpoint: String,
        /// What failed.
        #[source]
        source: FsReadError,
    },
    /// It differs.
    #[error(transparent)]
    Mismatch(FsMismatch),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(state: FsState, fstype: &str) -> FsIdentity {
        FsIdentity {
            mountpoint: "/srv".into(),
            device: "/dev/mapper/vg-data".into(),
            dm_uuid: "LVM-abc".into(),
            fstype: fstype.into(),
            mount_options: "rw,relatime".into(),
            fs_options: "rw,attr2".into(),
            uuid: [7; 16],
            state,
            fingerprint: 1,
        }
    }

    #[test]
    fn record_fields_are_checked() {
        let good = Filesystems {
            filesystems: vec![sample(
                FsState::Xfs { log_clean: true, unmount_record: false, tail_lsn: 1 << 32, head_lsn: 1 << 32 },
                "xfs",
            )],
        };
        assert!(good.check().is_ok());
        let mut bad = good.clone();
        bad.filesystems[0].mountpoint = "srv".into();
        assert!(bad.check().is_err());
        let mut bad = good.clone();
        bad.filesystems.push(bad.filesystems[0].clone());
        assert!(bad.check().is_err(), "duplicate mount point");
        let mut bad = good.clone();
        bad.filesystems[0].device = "/tmp/x".into();
        assert!(bad.check().is_err());
        let mut bad = good.clone();
        bad.filesystems[0].fstype = "btrfs".into();
        assert!(bad.check().is_err(), "state of another type");
        let mut bad = good.clone();
        bad.filesystems[0].state = FsState::Xfs { log_clean: false, unmount_record: false, tail_lsn: 1, head_lsn: 1 };
        assert!(bad.check().is_err(), "unclean");
        let mut bad = good.clone();
        bad.filesystems[0].fs_options = "rw, x".into();
        assert!(bad.check().is_err());
        let mut bad = good.clone();
        bad.filesystems[0].dm_uuid = "a b".into();
        assert!(bad.check().is_err());
        let mut bad = good;
        bad.filesystems[0].fstype = "f2fs".into();
        assert!(bad.check().is_err());
    }

    #[test]
    fn verify_names_what_moved() {
        let frozen = sample(FsState::Btrfs { generation: 9, log_root: 0 }, "btrfs");
        assert!(frozen.verify(&frozen.clone()).is_ok());
        let mut now = frozen.clone();
        now.state = FsState::Btrfs { generation: 10, log_root: 0 };
        let e = frozen.verify(&now).unwrap_err().to_string();
        assert!(e.contains("/srv") && e.contains("written after the freeze"), "{e}");
        now.state = FsState::Btrfs { generation: 10, log_root: 4096 };
        assert!(matches!(frozen.verify(&now), Err(FsMismatch::NotClean { .. })));
        let mut now = frozen.clone();
        now.uuid = [8; 16];
        assert!(matches!(frozen.verify(&now), Err(FsMismatch::Identity { what: "UUID", .. })));
        let mut now = frozen.clone();
        now.dm_uuid = "LVM-other".into();
        assert!(matches!(frozen.verify(&now), Err(FsMismatch::Identity { what: "device-mapper UUID", .. })));
        let mut now = frozen.clone();
        now.fingerprint = 2;
        assert!(matches!(frozen.verify(&now), Err(FsMismatch::Fingerprint { .. })));
    }
}
