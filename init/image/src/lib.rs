//! The seamless image format: a region that holds process checkpoints across a kexec.
//!
//! A region is a 4 KiB [`Superblock`], then records (postcard-encoded metadata) and page
//! chunks (raw memory, page-aligned, outside postcard), then an index of fixed-size
//! [`Entry`]s, each with the offset, length and crc32c of one record or chunk. The byte-level
//! contract is `FORMAT.md` beside this crate.
//!
//! Write with [`Writer`] into any [`Store`]; read with [`Reader`], which validates the
//! superblock and index before anything else and checks every record against its checksum.

// The image is read from bytes anyone may have damaged: no conversion may drop bits unseen.
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

pub mod compat;
pub mod crypt;
mod entry;
mod error;
pub mod filesystems;
pub mod newc;
pub mod pattern;
mod reader;
pub mod records;
mod store;
mod superblock;
pub mod upgrade;
pub mod validate;
mod writer;

pub use entry::{Entry, RecordKind, ENTRY_SIZE};
pub use error::{ImageError, Result};
pub use reader::{invalidate, EntryCheck, Reader};
pub use store::{
    append_to_initrd, create_private, discover_pmem, open_any, open_trusted, pmem_devices, private_dir, BlockStore,
    CpioStore, DirLock, DirStore, FileStore, MemStore, Store, CPIO_REGION_PATH, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE,
};
pub use superblock::{
    format_boot_id, parse_boot_id, State, Superblock, FORMAT_VERSION, KNOWN_COMPAT_FEATURES, KNOWN_INCOMPAT_FEATURES,
    MAGIC, OLDEST_FORMAT_VERSION, SUPERBLOCK_SIZE,
};
pub use writer::{Writer, WriterInfo};

/// Page size of the images (x86-64).
pub const PAGE_SIZE: usize = 4096;
/// Largest postcard record accepted (16 MiB).
pub const MAX_RECORD_LEN: u64 = 16 << 20;
/// Largest page chunk or blob accepted (64 MiB).
pub const MAX_CHUNK_LEN: u64 = 64 << 20;
/// Most index entries accepted (2^20).
pub const MAX_ENTRIES: u32 = 1 << 20;

// seamless runs on x86-64 only, where `usize` is 64 bits: `usize_of` relies on it.
const _: () = assert!(usize::BITS == 64, "seamless assumes a 64-bit usize");

/// A 64-bit length, offset or position of the image as `usize`: lossless, since `usize` is
/// 64 bits (asserted at build time above). For the record consumers too.
#[allow(clippy::cast_possible_truncation)]
pub const fn usize_of(v: u64) -> usize {
    v as usize
}
