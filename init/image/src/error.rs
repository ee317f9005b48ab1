//! Typed errors of the image format. Every variant names the store, entry or chunk it is about,
//! so a refusal can say exactly what is wrong.

use crate::entry::RecordKind;
use crate::superblock::State;
use std::io;

/// Everything that can go wrong while writing or reading an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An I/O call on the store failed.
    #[error("{op} on {store} failed")]
    Io {
        /// What was being done (`"read"`, `"write"`, `"sync"`, `"open"` ...).
        op: &'static str,
        /// The store (a path).
        store: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The region does not start with the seamless magic: it holds no image.
    #[error("{store} holds no seamless image (bad magic)")]
    BadMagic {
        /// The store.
        store: String,
    },
    /// The image was written with a format version this build does not read.
    #[error("{store}: image format version {found} is not supported (this build reads versions {oldest} to {newest}); restore with a seamless-init that reads it")]
    UnsupportedVersion {
        /// The store.
        store: String,
        /// Version found in the superblock.
        found: u32,
        /// Oldest version this build reads.
        oldest: u32,
        /// Newest version this build reads.
        newest: u32,
    },
    /// The writer was asked for a format version that cannot hold the image.
    #[error("cannot write image format version {version}: {detail}")]
    CannotWrite {
        /// The version asked for.
        version: u32,
        /// Why not.
        detail: String,
    },
    /// The superblock checksum does not match its contents.
    #[error("{store}: superblock checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    SuperblockChecksum {
        /// The store.
        store: String,
        /// Checksum found in the superblock.
        stored: u32,
        /// Checksum computed over it.
        computed: u32,
    },
    /// A superblock field is out of range (sizes beyond the store, index beyond the data...).
    #[error("{store}: superblock field {field} is invalid: {detail}")]
    BadSuperblock {
        /// The store.
        store: String,
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The store is smaller than what the superblock says was written: the region is truncated.
    #[error("{store}: region truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// The store.
        store: String,
        /// Bytes the image needs.
        needed: u64,
        /// Bytes the store holds.
        available: u64,
    },
    /// The image is not in the state the operation needs.
    #[error("{store}: image is {found}, expected {expected}")]
    WrongState {
        /// The store.
        store: String,
        /// State found.
        found: State,
        /// State the operation needs.
        expected: State,
    },
    /// The record index fails its checksum.
    #[error("{store}: record index checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    IndexChecksum {
        /// The store.
        store: String,
        /// Checksum found in the superblock.
        stored: u32,
        /// Checksum computed over the index.
        computed: u32,
    },
    /// An index entry points outside the written data or is misaligned.
    #[error("entry {index} ({kind}, owner {owner}) is malformed: {detail}")]
    BadEntry {
        /// Position in the index.
        index: u32,
        /// Its kind.
        kind: RecordKind,
        /// Its owner (pid).
        owner: u32,
        /// What is wrong.
        detail: String,
    },
    /// A record or page chunk fails its checksum.
    #[error("entry {index} ({kind}, owner {owner}, tag {tag:#x}) checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    EntryChecksum {
        /// Position in the index.
        index: u32,
        /// Its kind.
        kind: RecordKind,
        /// Its owner (pid).
        owner: u32,
        /// Its tag (the virtual address for page chunks).
        tag: u64,
        /// Checksum in the index.
        stored: u32,
        /// Checksum computed over the bytes.
        computed: u32,
    },
    /// A record's bytes do not decode as the expected type.
    #[error("entry {index} ({kind}, owner {owner}) does not decode")]
    Decode {
        /// Position in the index.
        index: u32,
        /// Its kind.
        kind: RecordKind,
        /// Its owner (pid).
        owner: u32,
        /// The decoder's error.
        #[source]
        source: postcard::Error,
    },
    /// A value could not be encoded.
    #[error("encoding a {kind} record for owner {owner} failed")]
    Encode {
        /// Kind being written.
        kind: RecordKind,
        /// Its owner (pid).
        owner: u32,
        /// The encoder's error.
        #[source]
        source: postcard::Error,
    },
    /// No entry with that index exists.
    #[error("no entry {index} in the image ({count} entries)")]
    NoEntry {
        /// The requested index.
        index: u32,
        /// Number of entries.
        count: u32,
    },
    /// The entry has another kind than the one asked for.
    #[error("entry {index} is a {found} record, not a {expected}")]
    WrongKind {
        /// Position in the index.
        index: u32,
        /// What was asked for.
        expected: RecordKind,
        /// What is there.
        found: RecordKind,
    },
    /// A caller-provided buffer has the wrong size for a page chunk.
    #[error("entry {index}: buffer of {given} bytes for a chunk of {len} bytes")]
    BufferSize {
        /// Position in the index.
        index: u32,
        /// Chunk length.
        len: u64,
        /// Buffer length.
        given: usize,
    },
    /// Writing would exceed the store's capacity or a format limit.
    #[error("{store}: {what} does not fit: {needed} bytes needed, limit {limit}; use a larger region (memmap=) or fewer processes")]
    NoSpace {
        /// The store.
        store: String,
        /// What was being written.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// Pages named or rewritten at a region offset the writer has not written (pre-copy).
    #[error("{store}: {what}: bytes {at:#x}+{len:#x} are not whole pages inside the {written:#x} bytes written")]
    NotWritten {
        /// The store.
        store: String,
        /// What was being written.
        what: String,
        /// Region offset.
        at: u64,
        /// Length.
        len: u64,
        /// Bytes written so far.
        written: u64,
    },
    /// Page data must come in whole pages.
    #[error("page chunk for owner {owner} at {vaddr:#x} has {len} bytes, not a multiple of the page size")]
    UnalignedChunk {
        /// Owner (pid).
        owner: u32,
        /// Virtual address.
        vaddr: u64,
        /// Length given.
        len: usize,
    },
    /// An image (or a directory above it) could have been written by someone other than
    /// root, or a path seamless writes to is not safe to use.
    #[error("refusing {path}: {why}")]
    Untrusted {
        /// The file or directory.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// Another process holds the lock of an image directory.
    #[error("{dir} is locked by another seamless dump{}; wait for it to end or use another directory", holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The directory.
        dir: String,
        /// The pid holding the lock, when `/proc/locks` tells.
        holder: Option<i32>,
    },
    /// The index holds an entry of a kind this reader does not know and that is not marked
    /// as ignorable: restoring without it would lose part of a process.
    #[error("entry {index} (kind#{}, owner {owner}) is of a record kind this seamless does not know and is not marked ignorable; restore with the seamless version that wrote the image", kind.0)]
    UnknownKind {
        /// Position in the index.
        index: u32,
        /// Its kind.
        kind: RecordKind,
        /// Its owner (pid).
        owner: u32,
    },
    /// A cpio archive is malformed or lacks the region file.
    #[error("{path}: {detail}")]
    Cpio {
        /// The archive.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ImageError>;
