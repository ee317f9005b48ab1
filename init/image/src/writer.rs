//! Writing an image: stream records and page chunks, then the index, then mark it complete.

use crate::entry::{Entry, RecordKind, ENTRY_SIZE};
use crate::error::{ImageError, Result};
use crate::store::Store;
use crate::superblock::{State, Superblock, FORMAT_VERSION, SUPERBLOCK_SIZE};
use crate::{MAX_CHUNK_LEN, MAX_ENTRIES, MAX_RECORD_LEN, PAGE_SIZE};
use serde::Serialize;

/// Who wrote the image; stored in the superblock.
#[derive(Debug, Clone, Default)]
pub struct WriterInfo {
    /// `uname -r` of the running kernel.
    pub kernel_release: String,
    /// The running boot's id.
    pub boot_id: [u8; 16],
    /// The seamless release version.
    pub release: String,
}

impl WriterInfo {
    /// Reads the kernel release and boot id of the running system.
    pub fn current(release: &str) -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_string();
        WriterInfo {
            kernel_release: seamless_sys::kernel_release(),
            boot_id: crate::superblock::parse_boot_id(&read("/proc/sys/kernel/random/boot_id")).unwrap_or_default(),
            release: release.to_string(),
        }
    }
}

/// Streams an image into a store. Until [`Writer::finish`] returns, the superblock says
/// "writing" and no reader accepts the region.
#[derive(Debug)]
pub struct Writer<S: Store> {
    store: S,
    sb: Superblock,
    entries: Vec<Entry>,
    pos: u64,
}

fn align(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

impl<S: Store> Writer<S> {
    /// Starts an image: writes a "writing" superblock, so a crash leaves a region that is
    /// never restored.
    pub fn new(store: S, info: WriterInfo) -> Result<Self> {
        Self::with_format(store, info, FORMAT_VERSION)
    }

    /// Like [`Writer::new`], in format `version` (this build writes
    /// [`crate::OLDEST_FORMAT_VERSION`] to [`FORMAT_VERSION`]), for a reader of an older release.
    pub fn with_format(mut store: S, info: WriterInfo, version: u32) -> Result<Self> {
        let capacity = store.capacity();
        if capacity < 2 * SUPERBLOCK_SIZE as u64 {
            return Err(ImageError::NoSpace {
                store: store.describe(),
                what: "superblock".into(),
                needed: 2 * SUPERBLOCK_SIZE as u64,
                limit: capacity,
            });
        }
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let sb = Superblock {
            version,
            state: State::Writing,
            incompat: 0,
            compat: 0,
            capacity,
            used: SUPERBLOCK_SIZE as u64,
            index_offset: 0,
            entry_count: 0,
            index_crc: 0,
            boot_id: info.boot_id,
            created,
            kernel_release: info.kernel_release,
            writer: info.release,
        };
        store.write_at(0, &sb.encode()?)?;
        store.sync()?;
        Ok(Self { store, sb, entries: Vec::new(), pos: SUPERBLOCK_SIZE as u64 })
    }

    /// The entries written so far.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Bytes used so far (without the index still to come).
    pub fn used(&self) -> u64 {
        self.pos
    }

    /// The store's capacity.
    pub fn capacity(&self) -> u64 {
        self.sb.capacity
    }

    fn push(&mut self, kind: RecordKind, owner: u32, tag: u64, at: u64, bytes: &[u8]) -> Result<u32> {
        let Some(index) = u32::try_from(self.entries.len()).ok().filter(|&i| i < MAX_ENTRIES) else {
            return Err(ImageError::NoSpace {
                store: self.store.describe(),
                what: "index".into(),
                needed: self.entries.len() as u64 + 1,
                limit: u64::from(MAX_ENTRIES),
            });
        };
        self.store.write_at(at, bytes)?;
        self.pos = at + bytes.len() as u64;
        let crc = crc32c::crc32c(bytes);
        self.entries.push(Entry { kind, flags: 0, owner, tag, offset: at, len: bytes.len() as u64, crc });
        Ok(index)
    }

    /// Raw data (page chunks, blobs) is capped at [`MAX_CHUNK_LEN`] per entry.
    fn check_raw_len(&self, len: usize, what: impl FnOnce() -> String) -> Result<()> {
        if len as u64 > MAX_CHUNK_LEN {
            return Err(ImageError::NoSpace {
                store: self.store.describe(),
                what: what(),
                needed: len as u64,
                limit: MAX_CHUNK_LEN,
            });
        }
        Ok(())
    }

    /// Stores a postcard-encoded record; returns its entry index.
    pub fn put_record<T: Serialize + ?Sized>(
        &mut self,
        kind: RecordKind,
        owner: u32,
        tag: u64,
        value: &T,
    ) -> Result<u32> {
        let bytes = postcard::to_allocvec(value).map_err(|source| ImageError::Encode { kind, owner, source })?;
        self.put_encoded_record(kind, owner, tag, &bytes)
    }

    /// Stores a postcard-encoded record that holds secrets (volume keys): it is encoded into
    /// one buffer of the largest record size, never reallocated, and wiped afterwards.
    pub fn put_secret_record<T: Serialize + ?Sized>(
        &mut self,
        kind: RecordKind,
        owner: u32,
        tag: u64,
        value: &T,
    ) -> Result<u32> {
        let mut buf = seamless_sys::secret::Secret::new(vec![0u8; crate::usize_of(MAX_RECORD_LEN.min(1 << 20))]);
        let len = postcard::to_slice(value, buf.as_mut_bytes())
            .map_err(|source| ImageError::Encode { kind, owner, source })?
            .len();
        self.put_encoded_record(kind, owner, tag, &buf.as_bytes()[..len])
    }

    /// Stores a record whose bytes are already postcard-encoded (copying records from one
    /// image into another); returns its entry index.
    pub fn put_encoded_record(&mut self, kind: RecordKind, owner: u32, tag: u64, bytes: &[u8]) -> Result<u32> {
        if kind.is_raw() || bytes.len() as u64 > MAX_RECORD_LEN {
            return Err(ImageError::NoSpace {
                store: self.store.describe(),
                what: format!("{kind} record of owner {owner}"),
                needed: bytes.len() as u64,
                limit: if kind.is_raw() { 0 } else { MAX_RECORD_LEN },
            });
        }
        let at = align(self.pos, 8);
        self.push(kind, owner, tag, at, bytes)
    }

    /// Stores a postcard-encoded record whose index entry carries [`Entry::IGNORABLE`]: a
    /// reader that does not know `kind` may skip it (for additions an older seamless can do
    /// without). Returns its entry index.
    pub fn put_ignorable_record<T: Serialize + ?Sized>(
        &mut self,
        kind: RecordKind,
        owner: u32,
        tag: u64,
        value: &T,
    ) -> Result<u32> {
        let index = self.put_record(kind, owner, tag, value)?;
        if let Some(e) = self.entries.last_mut() {
            e.flags |= Entry::IGNORABLE;
        }
        Ok(index)
    }

    /// Stores raw bytes (not postcard) under [`RecordKind::BLOB`], e.g. a deleted file's
    /// contents. At most [`MAX_CHUNK_LEN`] bytes per call.
    pub fn put_blob(&mut self, owner: u32, tag: u64, data: &[u8]) -> Result<u32> {
        self.check_raw_len(data.len(), || format!("blob {tag:#x} of owner {owner}"))?;
        let at = align(self.pos, 8);
        self.push(RecordKind::BLOB, owner, tag, at, data)
    }

    /// Stores whole pages starting at virtual address `vaddr`, page-aligned in the region.
    /// At most [`MAX_CHUNK_LEN`] bytes per call.
    pub fn put_pages(&mut self, owner: u32, vaddr: u64, data: &[u8]) -> Result<u32> {
        if data.is_empty() || !data.len().is_multiple_of(PAGE_SIZE) {
            return Err(ImageError::UnalignedChunk { owner, vaddr, len: data.len() });
        }
        self.check_raw_len(data.len(), || format!("page chunk at {vaddr:#x} of owner {owner}"))?;
        let at = align(self.pos, PAGE_SIZE as u64);
        self.push(RecordKind::PAGE_CHUNK, owner, vaddr, at, data)
    }

    /// Stores whole pages in the data area, page-aligned, without an index entry: a dumper
    /// that copies memory while the process still runs (pre-copy) writes pages here first,
    /// rewrites those changed since with [`Writer::rewrite_pages`], and names the final
    /// contents with [`Writer::put_pages_entry`] once the process is frozen. Bytes never named
    /// by an entry are dead space, which no reader looks at. Returns the region offset.
    pub fn put_unindexed_pages(&mut self, data: &[u8]) -> Result<u64> {
        if data.is_empty() || !data.len().is_multiple_of(PAGE_SIZE) {
            return Err(ImageError::UnalignedChunk { owner: 0, vaddr: 0, len: data.len() });
        }
        let at = align(self.pos, PAGE_SIZE as u64);
        self.store.write_at(at, data)?;
        self.pos = at + data.len() as u64;
        Ok(at)
    }

    /// Overwrites whole pages stored earlier by [`Writer::put_unindexed_pages`] at region
    /// offset `at` (page-aligned, inside what was written).
    pub fn rewrite_pages(&mut self, at: u64, data: &[u8]) -> Result<()> {
        self.check_written(at, data.len(), || format!("rewrite of {} bytes at {at:#x}", data.len()))?;
        self.store.write_at(at, data)
    }

    /// Adds the index entry of a page chunk whose `len` bytes the writer stored already at
    /// region offset `at` ([`Writer::put_unindexed_pages`]), with their CRC-32C `crc`, for the
    /// pages from virtual address `vaddr`. Returns its entry index.
    pub fn put_pages_entry(&mut self, owner: u32, vaddr: u64, at: u64, len: usize, crc: u32) -> Result<u32> {
        if len == 0 || !len.is_multiple_of(PAGE_SIZE) {
            return Err(ImageError::UnalignedChunk { owner, vaddr, len });
        }
        self.check_raw_len(len, || format!("page chunk at {vaddr:#x} of owner {owner}"))?;
        self.check_written(at, len, || format!("page chunk at {vaddr:#x} of owner {owner}"))?;
        let Some(index) = u32::try_from(self.entries.len()).ok().filter(|&i| i < MAX_ENTRIES) else {
            return Err(ImageError::NoSpace {
                store: self.store.describe(),
                what: "index".into(),
                needed: self.entries.len() as u64 + 1,
                limit: u64::from(MAX_ENTRIES),
            });
        };
        self.entries.push(Entry {
            kind: RecordKind::PAGE_CHUNK,
            flags: 0,
            owner,
            tag: vaddr,
            offset: at,
            len: len as u64,
            crc,
        });
        Ok(index)
    }

    /// `len` bytes at `at` are page-aligned and inside the data written so far.
    fn check_written(&self, at: u64, len: usize, what: impl FnOnce() -> String) -> Result<()> {
        let inside = at >= SUPERBLOCK_SIZE as u64 && at.checked_add(len as u64).is_some_and(|end| end <= self.pos);
        if !inside || !at.is_multiple_of(PAGE_SIZE as u64) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(ImageError::NotWritten {
                store: self.store.describe(),
                what: what(),
                at,
                len: len as u64,
                written: self.pos,
            });
        }
        Ok(())
    }

    /// Writes the index, then the "complete" superblock, then seals the store. Only now may
    /// the region be restored.
    pub fn finish(mut self) -> Result<S> {
        let at = align(self.pos, 8);
        let mut index = vec![0u8; self.entries.len() * ENTRY_SIZE];
        for (e, slot) in self.entries.iter().zip(index.chunks_exact_mut(ENTRY_SIZE)) {
            let mut b = [0u8; ENTRY_SIZE];
            e.encode(&mut b);
            slot.copy_from_slice(&b);
        }
        self.store.write_at(at, &index)?;
        self.store.sync()?;
        self.sb.index_offset = at;
        // At most MAX_ENTRIES, each pushed with its u32 index.
        self.sb.entry_count = u32::try_from(self.entries.len()).unwrap_or(MAX_ENTRIES);
        self.sb.index_crc = crc32c::crc32c(&index);
        self.sb.used = at + index.len() as u64;
        self.sb.state = State::Complete;
        self.store.write_at(0, &self.sb.encode()?)?;
        self.store.seal(self.sb.used)?;
        Ok(self.store)
    }
}
