//! The superblock: the first 4096 bytes of a region, fixed little-endian layout (see FORMAT.md).

use crate::error::{ImageError, Result};
use std::fmt;

/// The eight bytes every region starts with.
pub const MAGIC: [u8; 8] = *b"SEAMLESS";
/// The newest format version: what this build writes unless asked for an older one.
/// Independent of the release version.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build still reads and can write (release N reads and
/// writes the formats of N and N−1; see FORMAT.md, "Compatibility").
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Size of the superblock, and the alignment of page chunks.
pub const SUPERBLOCK_SIZE: usize = 4096;
/// [`SUPERBLOCK_SIZE`] as the superblock's own 32-bit size field.
#[allow(clippy::cast_possible_truncation)] // 4096
const SUPERBLOCK_SIZE_FIELD: u32 = SUPERBLOCK_SIZE as u32;
const CRC_OFFSET: usize = SUPERBLOCK_SIZE - 4;
const RELEASE_LEN: usize = 64;
const WRITER_LEN: usize = 32;
/// Format 2: where the incompatible and compatible feature words live.
const V2_INCOMPAT: usize = 176;
const V2_COMPAT: usize = 184;
/// Incompatible features this build understands: a reader refuses an image with an
/// incompatible feature bit it does not know. None is defined yet.
pub const KNOWN_INCOMPAT_FEATURES: u64 = 0;
/// Compatible features this build understands (a reader may ignore unknown ones). None is
/// defined yet.
pub const KNOWN_COMPAT_FEATURES: u64 = 0;
/// In format 1 the features share one 32-bit `flags` word: incompatible ones in the low 16
/// bits, compatible ones in the high 16 bits.
const V1_INCOMPAT_MASK: u32 = 0xffff;

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
    /// Incompatible features: a reader that does not know one of these bits must refuse the
    /// image.
    pub incompat: u64,
    /// Compatible features: a reader may ignore the bits it does not know.
    pub compat: u64,
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
    /// Encodes into the fixed 4096-byte layout of `self.version`, checksum included. Fails
    /// when that version cannot express the superblock: a version this build does not write,
    /// or (format 1) a feature bit above bit 15.
    pub fn encode(&self) -> Result<[u8; SUPERBLOCK_SIZE]> {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&SUPERBLOCK_SIZE_FIELD.to_le_bytes());
        b[16..20].copy_from_slice(&self.state.to_u32().to_le_bytes());
        let cannot = |detail: String| ImageError::CannotWrite { version: self.version, detail };
        match self.version {
            1 => {
                let fits = |f: u64| u32::try_from(f).ok().filter(|f| f & !V1_INCOMPAT_MASK == 0);
                let (Some(incompat), Some(compat)) = (fits(self.incompat), fits(self.compat)) else {
                    return Err(cannot(format!(
                        "features incompat {:#x} / compat {:#x} do not fit format 1's 16-bit fields",
                        self.incompat, self.compat
                    )));
                };
                b[20..24].copy_from_slice(&(incompat | compat << 16).to_le_bytes());
            }
            2 => {
                b[V2_INCOMPAT..V2_INCOMPAT + 8].copy_from_slice(&self.incompat.to_le_bytes());
                b[V2_COMPAT..V2_COMPAT + 8].copy_from_slice(&self.compat.to_le_bytes());
            }
            v => {
                return Err(cannot(format!(
                    "this build writes formats {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}, not {v}"
                )))
            }
        }
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
        Ok(b)
    }

    /// Decodes and checks magic, version, checksum and the state field. `store` names the
    /// store in errors.
    pub fn decode(b: &[u8; SUPERBLOCK_SIZE], store: &str) -> Result<Self> {
        if b[0..8] != MAGIC {
            return Err(ImageError::BadMagic { store: store.into() });
        }
        let version = le_u32(b, 8);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(ImageError::UnsupportedVersion {
                store: store.into(),
                found: version,
                oldest: OLDEST_FORMAT_VERSION,
                newest: FORMAT_VERSION,
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
        let (incompat, compat) = match version {
            1 => {
                let flags = le_u32(b, 20);
                (u64::from(flags & V1_INCOMPAT_MASK), u64::from(flags >> 16))
            }
            _ => {
                if le_u32(b, 20) != 0 {
                    return Err(bad("flags", format!("{:#x}: reserved in format {version}, must be 0", le_u32(b, 20))));
                }
                (le_u64(b, V2_INCOMPAT), le_u64(b, V2_COMPAT))
            }
        };
        let unknown = incompat & !KNOWN_INCOMPAT_FEATURES;
        if unknown != 0 {
            return Err(bad(
                "incompat",
                format!(
                    "unknown incompatible features {unknown:#x} (format {version}): the image needs a newer seamless to be read"
                ),
            ));
        }
        let mut boot_id = [0u8; 16];
        boot_id.copy_from_slice(&b[56..72]);
        Ok(Superblock {
            version,
            state,
            incompat,
            compat,
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
