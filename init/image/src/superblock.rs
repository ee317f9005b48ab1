//! The superblock: the first 4096 bytes of a region, fixed little-endian layout (see FORMAT.md).

use crate::error::{ImageError, Result};
use std::fmt;

/// The eight bytes every region starts with.
pub const MAGIC: [u8; 8] = *b"SEAMLESS";
/// The format version this build writes and reads. Independent of the release version.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the superblock, and the alignment of page chunks.
pub const SUPERBLOCK_SIZE: usize = 4096;
const CRC_OFFSET: usize = SUPERBLOCK_SIZE - 4;
const RELEASE_LEN: usize = 64;
const WRITER_LEN: usize = 32;
/// Superblock flags a reader must understand (the low 16 bits): a reader refuses an image
/// with a required flag it does not know. None is defined in format version 1.
pub const SB_REQUIRED_FLAGS_MASK: u32 = 0xffff;
/// The required superblock flags this build understands.
pub const SB_KNOWN_REQUIRED_FLAGS: u32 = 0;

/// The life cycle of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Being written; must never be restored.
    Writing,
    /// Every record and page written and checksummed; may be restored once.
    Complete,
    /// Restore has started; must never be restored again.
    Consumed,
}

impl State {
    fn to_u32(self) -> u32 {
        match self {
            State::Writing => 1,
            State::Complete => 2,
            State::Consumed => 3,
        }
    }
    fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(State::Writing),
            2 => Some(State::Complete),
            3 => Some(State::Consumed),
            _ => None,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Writing => "writing (incomplete)",
            State::Complete => "complete",
            State::Consumed => "consumed",
        })
    }
}

/// Decoded superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Format version.
    pub version: u32,
    /// Life-cycle state.
    pub state: State,
    /// Flags: low 16 bits required (unknown ones make a reader refuse the image), high 16 bits
    /// optional (a reader may ignore them). Zero when written by this build.
    pub flags: u32,
    /// Bytes the store can hold.
    pub capacity: u64,
    /// Bytes in use (superblock, data and index).
    pub used: u64,
    /// Where the index starts.
    pub index_offset: u64,
    /// Number of index entries.
    pub entry_count: u32,
    /// crc32c of the index.
    pub index_crc: u32,
    /// `/proc/sys/kernel/random/boot_id` of the writer's boot.
    pub boot_id: [u8; 16],
    /// Unix time (seconds) the image was started.
    pub created: u64,
    /// `uname -r` of the kernel that wrote the image.
    pub kernel_release: String,
    /// Release version of the seamless build that wrote it.
    pub writer: String,
}

fn put_str(buf: &mut [u8], s: &str) {
    let n = s.len().min(buf.len());
    buf[..n].copy_from_slice(&s.as_bytes()[..n]);
}

fn get_str(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Superblock {
    /// Encodes into the fixed 4096-byte layout, checksum included.
    pub fn encode(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&(SUPERBLOCK_SIZE as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.state.to_u32().to_le_bytes());
        b[20..24].copy_from_slice(&self.flags.to_le_bytes());
        b[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        b[32..40].copy_from_slice(&self.used.to_le_bytes());
        b[40..48].copy_from_slice(&self.index_offset.to_le_bytes());
        b[48..52].copy_from_slice(&self.entry_count.to_le_bytes());
        b[52..56].copy_from_slice(&self.index_crc.to_le_bytes());
        b[56..72].copy_from_slice(&self.boot_id);
        b[72..80].copy_from_slice(&self.created.to_le_bytes());
        put_str(&mut b[80..80 + RELEASE_LEN], &self.kernel_release);
        put_str(&mut b[144..144 + WRITER_LEN], &self.writer);
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks magic, version, checksum and the state field. `store` names the
    /// store in errors.
    pub fn decode(b: &[u8; SUPERBLOCK_SIZE], store: &str) -> Result<Self> {
        if b[0..8] != MAGIC {
            return Err(ImageError::BadMagic { store: store.into() });
        }
        let version = le_u32(b, 8);
        if version != FORMAT_VERSION {
            return Err(ImageError::UnsupportedVersion {
                store: store.into(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let stored = le_u32(b, CRC_OFFSET);
        let computed = crc32c::crc32c(&b[..CRC_OFFSET]);
        if stored != computed {
            return Err(ImageError::SuperblockChecksum { store: store.into(), stored, computed });
        }
        let bad = |field, detail: String| ImageError::BadSuperblock { store: store.into(), field, detail };
        let size = le_u32(b, 12);
        if size as usize != SUPERBLOCK_SIZE {
            return Err(bad("superblock_size", format!("{size}, expected {SUPERBLOCK_SIZE}")));
        }
        let state_raw = le_u32(b, 16);
        let state = State::from_u32(state_raw).ok_or_else(|| bad("state", format!("unknown value {state_raw}")))?;
        let flags = le_u32(b, 20);
        let unknown = flags & SB_REQUIRED_FLAGS_MASK & !SB_KNOWN_REQUIRED_FLAGS;
        if unknown != 0 {
            return Err(bad(
                "flags",
                format!("unknown required flags {unknown:#06x}: the image needs a newer seamless to be read"),
            ));
        }
        let mut boot_id = [0u8; 16];
        boot_id.copy_from_slice(&b[56..72]);
        Ok(Superblock {
            version,
            state,
            flags,
            capacity: le_u64(b, 24),
            used: le_u64(b, 32),
            index_offset: le_u64(b, 40),
            entry_count: le_u32(b, 48),
            index_crc: le_u32(b, 52),
            boot_id,
            created: le_u64(b, 72),
            kernel_release: get_str(&b[80..80 + RELEASE_LEN]),
            writer: get_str(&b[144..144 + WRITER_LEN]),
        })
    }
}

/// Formats a boot id the way `/proc/sys/kernel/random/boot_id` shows it.
pub fn format_boot_id(id: &[u8; 16]) -> String {
    let h: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Parses a boot id in the `/proc/sys/kernel/random/boot_id` form; `None` if malformed.
pub fn parse_boot_id(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
