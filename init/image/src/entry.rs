//! Index entries and record kinds.

use crate::error::{ImageError, Result};
use std::fmt;

/// Size of one index entry on disk.
pub const ENTRY_SIZE: usize = 40;

/// What an entry holds. A 16-bit number on disk; unknown numbers are kept, not rejected,
/// so a reader can still list and verify entries written by a newer minor writer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKind(pub u16);

impl RecordKind {
    /// Raw page data (not postcard); the tag is the virtual address of the first page.
    pub const PAGE_CHUNK: Self = Self(1);
    /// A test pattern record (see `seamless region write-pattern`).
    pub const PATTERN: Self = Self(2);
    /// Upgrade metadata: what the writer recorded about the machine and the root filesystem.
    pub const UPGRADE: Self = Self(3);
    /// Timings of the checkpoint-side stages.
    pub const STAGES: Self = Self(4);
    /// Opaque blob stored as raw bytes (files' contents and the like); tag chosen by the writer.
    pub const BLOB: Self = Self(5);
    /// The page cache's hot set before the jump ([`crate::upgrade::PageCache`]), re-read on the
    /// new kernel. Written `IGNORABLE`: a reader without it restores the same processes.
    pub const PAGE_CACHE: Self = Self(6);
    /// Files on tmpfs the preserved processes need ([`crate::upgrade::TmpfsRecord`]),
    /// recreated on the new kernel before the restore. Written `IGNORABLE`: a reader without it
    /// fails the trees that need those files, cleanly, as before.
    pub const TMPFS: Self = Self(7);
    /// The filesystems the preserved processes use, with their identity and clean state
    /// ([`crate::filesystems::Filesystems`]), verified on the new kernel before they are
    /// mounted. Not ignorable: a reader that skipped it would restore processes onto
    /// filesystems nobody verified.
    pub const FILESYSTEMS: Self = Self(50);
    /// The dm-crypt volumes below the recorded filesystems, with their volume keys
    /// ([`crate::crypt::CryptVolumes`]), unlocked by seamless-init on the new kernel before the
    /// distribution's prompt. Not ignorable: a reader that skipped it would go on with the
    /// volumes locked (the prompt waits) while it restores processes that need them; a reader
    /// that does not know it refuses the region, and the boot goes on normally, with the prompt.
    pub const CRYPT_VOLUMES: Self = Self(51);

    /// Whether this build knows what the kind means (the built-in kinds and the process
    /// records of [`crate::records`]).
    pub fn is_known(self) -> bool {
        matches!(
            self,
            Self::PAGE_CHUNK
                | Self::PATTERN
                | Self::UPGRADE
                | Self::STAGES
                | Self::BLOB
                | Self::PAGE_CACHE
                | Self::TMPFS
                | Self::FILESYSTEMS
                | Self::CRYPT_VOLUMES
        ) || crate::records::kind_name(self).is_some()
    }

    /// Whether the entry's bytes are raw data rather than a postcard record.
    pub fn is_raw(self) -> bool {
        self == Self::PAGE_CHUNK || self == Self::BLOB
    }

    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            Self::PAGE_CHUNK => "page-chunk",
            Self::PATTERN => "pattern",
            Self::UPGRADE => "upgrade",
            Self::STAGES => "stages",
            Self::BLOB => "blob",
            Self::PAGE_CACHE => "page-cache",
            Self::TMPFS => "tmpfs",
            Self::FILESYSTEMS => "filesystems",
            Self::CRYPT_VOLUMES => "crypt-volumes",
            other => crate::records::kind_name(other).unwrap_or("unknown"),
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "unknown" => write!(f, "kind#{}", self.0),
            n => f.write_str(n),
        }
    }
}

impl fmt::Debug for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

/// One index entry: where a record or page chunk is and what it must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// What the bytes are.
    pub kind: RecordKind,
    /// Flags: [`Entry::IGNORABLE`] or zero.
    pub flags: u16,
    /// Owner, normally a pid (0 for image-wide records).
    pub owner: u32,
    /// Free 64-bit id; the virtual address for page chunks.
    pub tag: u64,
    /// Offset of the bytes from the start of the region.
    pub offset: u64,
    /// Length of the bytes.
    pub len: u64,
    /// crc32c of the bytes.
    pub crc: u32,
}

impl Entry {
    /// Entry flag: a reader that does not know the entry's kind may skip it. Without it, an
    /// entry of an unknown kind makes a restore refuse the image.
    pub const IGNORABLE: u16 = 1;
    /// Every entry flag this build knows.
    pub const KNOWN_FLAGS: u16 = Self::IGNORABLE;

    /// Encodes into the fixed 40-byte layout.
    pub fn encode(&self, out: &mut [u8; ENTRY_SIZE]) {
        out[0..2].copy_from_slice(&self.kind.0.to_le_bytes());
        out[2..4].copy_from_slice(&self.flags.to_le_bytes());
        out[4..8].copy_from_slice(&self.owner.to_le_bytes());
        out[8..16].copy_from_slice(&self.tag.to_le_bytes());
        out[16..24].copy_from_slice(&self.offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.len.to_le_bytes());
        out[32..36].copy_from_slice(&self.crc.to_le_bytes());
        out[36..40].copy_from_slice(&0u32.to_le_bytes());
    }

    /// Decodes the fixed layout.
    pub fn decode(b: &[u8; ENTRY_SIZE]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Entry {
            kind: RecordKind(u16_at(0)),
            flags: u16_at(2),
            owner: u32_at(4),
            tag: u64_at(8),
            offset: u64_at(16),
            len: u64_at(24),
            crc: u32_at(32),
        }
    }

    /// Checks the entry against the layout rules: inside the data area, within the size
    /// caps, page chunks page-aligned.
    pub(crate) fn check(&self, index: u32, data_end: u64) -> Result<()> {
        let bad = |detail: String| ImageError::BadEntry { index, kind: self.kind, owner: self.owner, detail };
        if self.offset < crate::SUPERBLOCK_SIZE as u64 {
            return Err(bad(format!("offset {:#x} lies inside the superblock", self.offset)));
        }
        let end = self.offset.checked_add(self.len).ok_or_else(|| bad("offset + length overflows".into()))?;
        if end > data_end {
            return Err(bad(format!("bytes {:#x}..{end:#x} run past the data area end {data_end:#x}", self.offset)));
        }
        let cap = if self.kind.is_raw() { crate::MAX_CHUNK_LEN } else { crate::MAX_RECORD_LEN };
        if self.len > cap {
            return Err(bad(format!("length {} exceeds the limit {cap}", self.len)));
        }
        if self.kind == RecordKind::PAGE_CHUNK
            && (!self.offset.is_multiple_of(crate::PAGE_SIZE as u64)
                || !self.len.is_multiple_of(crate::PAGE_SIZE as u64)
                || self.len == 0)
        {
            return Err(bad(format!("page chunk at {:#x} of {} bytes is not page-aligned", self.offset, self.len)));
        }
        if self.flags & !Self::KNOWN_FLAGS != 0 {
            return Err(bad(format!("unknown flags {:#x}", self.flags & !Self::KNOWN_FLAGS)));
        }
        Ok(())
    }
}
