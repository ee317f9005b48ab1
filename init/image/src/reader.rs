//! Reading an image: validate the superblock and index up front, then every record and
//! chunk against its checksum as it is read. All sizes are checked against caps before any
//! allocation, so a corrupt or hostile region cannot make the reader allocate or panic.

use crate::entry::{Entry, RecordKind, ENTRY_SIZE};
use crate::error::{ImageError, Result};
use crate::store::Store;
use crate::superblock::{State, Superblock, SUPERBLOCK_SIZE};
use crate::{MAX_ENTRIES, MAX_RECORD_LEN};
use serde::de::DeserializeOwned;

/// A validated image.
#[derive(Debug)]
pub struct Reader<S: Store> {
    store: S,
    sb: Superblock,
    entries: Vec<Entry>,
}

/// Outcome of verifying one entry.
#[derive(Debug)]
pub struct EntryCheck {
    /// Position in the index.
    pub index: u32,
    /// The entry.
    pub entry: Entry,
    /// `Ok` when the bytes match the checksum.
    pub result: Result<()>,
}

impl<S: Store> Reader<S> {
    /// Opens a complete image for restore. Besides the checks of FORMAT.md, refuses an
    /// entry of a kind this build does not know unless it is marked [`Entry::IGNORABLE`]
    /// ([`ImageError::UnknownKind`]): restoring without it would silently lose state.
    pub fn open(store: S) -> Result<Self> {
        let r = Self::open_in(store, &[State::Complete])?;
        if let Some((i, e)) =
            (0u32..).zip(r.entries.iter()).find(|(_, e)| !e.kind.is_known() && e.flags & Entry::IGNORABLE == 0)
        {
            return Err(ImageError::UnknownKind { index: i, kind: e.kind, owner: e.owner });
        }
        Ok(r)
    }

    /// Opens a complete or consumed image, for inspection.
    pub fn open_for_inspect(store: S) -> Result<Self> {
        Self::open_in(store, &[State::Complete, State::Consumed])
    }

    fn open_in(mut store: S, states: &[State]) -> Result<Self> {
        let name = store.describe();
        let available = store.capacity();
        if available < SUPERBLOCK_SIZE as u64 {
            return Err(ImageError::Truncated { store: name, needed: SUPERBLOCK_SIZE as u64, available });
        }
        let mut raw = [0u8; SUPERBLOCK_SIZE];
        store.read_at(0, &mut raw)?;
        let sb = Superblock::decode(&raw, &name)?;
        if !states.contains(&sb.state) {
            return Err(ImageError::WrongState { store: name, found: sb.state, expected: states[0] });
        }
        let bad = |field, detail: String| ImageError::BadSuperblock { store: name.clone(), field, detail };
        if sb.used > available {
            return Err(ImageError::Truncated { store: name, needed: sb.used, available });
        }
        if sb.entry_count > MAX_ENTRIES {
            return Err(bad("entry_count", format!("{} exceeds the limit {MAX_ENTRIES}", sb.entry_count)));
        }
        let index_len = u64::from(sb.entry_count) * ENTRY_SIZE as u64;
        if sb.index_offset < SUPERBLOCK_SIZE as u64 || sb.index_offset.checked_add(index_len) != Some(sb.used) {
            return Err(bad(
                "index_offset",
                format!(
                    "index at {:#x} with {} entries does not end at used size {:#x}",
                    sb.index_offset, sb.entry_count, sb.used
                ),
            ));
        }
        let mut index = vec![0u8; crate::usize_of(index_len)];
        store.read_at(sb.index_offset, &mut index)?;
        let computed = crc32c::crc32c(&index);
        if computed != sb.index_crc {
            return Err(ImageError::IndexChecksum { store: name, stored: sb.index_crc, computed });
        }
        let mut entries = Vec::with_capacity(sb.entry_count as usize);
        for (i, chunk) in (0u32..).zip(index.chunks_exact(ENTRY_SIZE)) {
            let mut b = [0u8; ENTRY_SIZE];
            b.copy_from_slice(chunk);
            let e = Entry::decode(&b);
            e.check(i, sb.index_offset)?;
            entries.push(e);
        }
        Ok(Self { store, sb, entries })
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// Every entry, in the order written.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entries of one kind, with their indices.
    pub fn find(&self, kind: RecordKind) -> impl Iterator<Item = (u32, &Entry)> + '_ {
        (0u32..).zip(self.entries.iter()).filter(move |(_, e)| e.kind == kind)
    }

    /// The entry at `index`.
    pub fn entry(&self, index: u32) -> Result<Entry> {
        self.entries.get(index as usize).copied().ok_or(ImageError::NoEntry { index, count: self.sb.entry_count })
    }

    fn read_checked(&mut self, index: u32, e: &Entry, buf: &mut [u8]) -> Result<()> {
        self.store.read_at(e.offset, buf)?;
        let computed = crc32c::crc32c(buf);
        if computed != e.crc {
            return Err(ImageError::EntryChecksum {
                index,
                kind: e.kind,
                owner: e.owner,
                tag: e.tag,
                stored: e.crc,
                computed,
            });
        }
        Ok(())
    }

    /// The checksummed bytes of a postcard record.
    pub fn record_bytes(&mut self, index: u32) -> Result<Vec<u8>> {
        let e = self.entry(index)?;
        if e.len > MAX_RECORD_LEN || e.kind.is_raw() {
            return Err(ImageError::BadEntry {
                index,
                kind: e.kind,
                owner: e.owner,
                detail: "not a postcard record".into(),
            });
        }
        let mut buf = vec![0u8; crate::usize_of(e.len)];
        self.read_checked(index, &e, &mut buf)?;
        Ok(buf)
    }

    /// Reads, checks and decodes the record at `index`.
    pub fn record<T: DeserializeOwned>(&mut self, index: u32) -> Result<T> {
        let e = self.entry(index)?;
        let bytes = self.record_bytes(index)?;
        postcard::from_bytes(&bytes).map_err(|source| ImageError::Decode {
            index,
            kind: e.kind,
            owner: e.owner,
            source,
        })
    }

    /// Reads, checks and decodes the record at `index` that holds secrets (volume keys): the
    /// encoded bytes are wiped once decoded.
    pub fn secret_record<T: DeserializeOwned>(&mut self, index: u32) -> Result<T> {
        let e = self.entry(index)?;
        let bytes = seamless_sys::secret::Secret::new(self.record_bytes(index)?);
        postcard::from_bytes(bytes.as_bytes()).map_err(|source| ImageError::Decode {
            index,
            kind: e.kind,
            owner: e.owner,
            source,
        })
    }

    /// Decodes the first record of `kind` (the image-wide kinds have at most one), `None` when
    /// the image has none.
    pub fn first_record<T: DeserializeOwned>(&mut self, kind: RecordKind) -> Result<Option<T>> {
        let Some((index, _)) = self.find(kind).next() else { return Ok(None) };
        self.record_of(index, kind).map(Some)
    }

    /// Reads and decodes the record at `index`, which must be of kind `kind`.
    pub fn record_of<T: DeserializeOwned>(&mut self, index: u32, kind: RecordKind) -> Result<T> {
        let e = self.entry(index)?;
        if e.kind != kind {
            return Err(ImageError::WrongKind { index, expected: kind, found: e.kind });
        }
        self.record(index)
    }

    /// Reads a page chunk or blob into `buf`, which must be exactly as long as the entry.
    pub fn read_pages(&mut self, index: u32, buf: &mut [u8]) -> Result<()> {
        let e = self.entry(index)?;
        if !e.kind.is_raw() {
            return Err(ImageError::WrongKind { index, expected: RecordKind::PAGE_CHUNK, found: e.kind });
        }
        if buf.len() as u64 != e.len {
            return Err(ImageError::BufferSize { index, len: e.len, given: buf.len() });
        }
        self.read_checked(index, &e, buf)
    }

    /// Reads a blob into a new buffer (its length was capped when the index was checked).
    pub fn blob(&mut self, index: u32) -> Result<Vec<u8>> {
        let e = self.entry(index)?;
        let mut buf = vec![0u8; crate::usize_of(e.len)];
        self.read_pages(index, &mut buf)?;
        Ok(buf)
    }

    /// Checks every entry's bytes against its checksum, reusing one buffer.
    pub fn verify(&mut self) -> Vec<EntryCheck> {
        let mut buf = Vec::new();
        let entries = self.entries.clone();
        (0u32..)
            .zip(entries)
            .map(|(i, e)| {
                buf.resize(crate::usize_of(e.len), 0);
                let result = self.read_checked(i, &e, &mut buf);
                EntryCheck { index: i, entry: e, result }
            })
            .collect()
    }

    /// The first entry failing its checksum, if any.
    pub fn verify_all(&mut self) -> Result<()> {
        match self.verify().into_iter().find(|c| c.result.is_err()) {
            Some(c) => c.result,
            None => Ok(()),
        }
    }

    /// Marks the image consumed, durably, so it is never restored again. Call before any
    /// restored process runs.
    pub fn mark_consumed(&mut self) -> Result<()> {
        self.sb.state = State::Consumed;
        self.store.write_at(0, &self.sb.encode()?)?;
        self.store.sync()
    }

    /// Overwrites the postcard record at `index` with `bytes` of exactly its length and
    /// updates its checksum in the index and the index's in the superblock, durably: how
    /// seamless-init wipes a volume key in the region once it is used (the record stays valid,
    /// with zeros for the key). The old bytes are read into a buffer that is wiped.
    pub fn rewrite_record(&mut self, index: u32, bytes: &[u8]) -> Result<()> {
        let e = self.entry(index)?;
        if e.kind.is_raw() || e.len != bytes.len() as u64 {
            return Err(ImageError::BadEntry {
                index,
                kind: e.kind,
                owner: e.owner,
                detail: format!("rewrite of {} bytes over a record of {}", bytes.len(), e.len),
            });
        }
        self.store.write_at(e.offset, bytes)?;
        self.entries[index as usize].crc = crc32c::crc32c(bytes);
        let mut index_bytes = Vec::with_capacity(self.entries.len() * ENTRY_SIZE);
        for entry in &self.entries {
            let mut b = [0u8; ENTRY_SIZE];
            entry.encode(&mut b);
            index_bytes.extend_from_slice(&b);
        }
        self.store.write_at(self.sb.index_offset, &index_bytes)?;
        self.sb.index_crc = crc32c::crc32c(&index_bytes);
        self.store.write_at(0, &self.sb.encode()?)?;
        self.store.sync()
    }

    /// Overwrites all record and page data with zeros (the index and superblock stay, so the
    /// image still shows what it held). Used once restore is done: process memory must not
    /// linger in the region.
    pub fn wipe_data(&mut self) -> Result<()> {
        let zeros = vec![0u8; 1 << 20];
        let mut at = SUPERBLOCK_SIZE as u64;
        while at < self.sb.index_offset {
            let n = crate::usize_of((self.sb.index_offset - at).min(zeros.len() as u64));
            self.store.write_at(at, &zeros[..n])?;
            at += n as u64;
        }
        self.store.sync()
    }

    /// Gives back the store.
    pub fn into_store(self) -> S {
        self.store
    }
}

/// Destroys the image in `store` by zeroing its superblock, so that no reader ever accepts
/// it (used when an upgrade is abandoned after the image was completed). Records that hold
/// secrets (dm-crypt volume keys, [`RecordKind::CRYPT_VOLUMES`]) are zeroed first, as far as
/// the index can still be read.
pub fn invalidate<S: Store + ?Sized>(store: &mut S) -> Result<()> {
    wipe_secrets(store);
    store.write_at(0, &[0u8; SUPERBLOCK_SIZE])?;
    store.sync()
}

/// Zeroes the bytes of every [`RecordKind::CRYPT_VOLUMES`] entry the index of `store` lists
/// (best effort: an unreadable superblock or index leaves the store as it is).
fn wipe_secrets<S: Store + ?Sized>(store: &mut S) {
    let name = store.describe();
    let mut raw = [0u8; SUPERBLOCK_SIZE];
    if store.capacity() < SUPERBLOCK_SIZE as u64 || store.read_at(0, &mut raw).is_err() {
        return;
    }
    let Ok(sb) = Superblock::decode(&raw, &name) else { return };
    if sb.entry_count > MAX_ENTRIES
        || sb.index_offset.saturating_add(u64::from(sb.entry_count) * ENTRY_SIZE as u64) > store.capacity()
    {
        return;
    }
    let mut index = vec![0u8; sb.entry_count as usize * ENTRY_SIZE];
    if store.read_at(sb.index_offset, &mut index).is_err() {
        return;
    }
    for chunk in index.chunks_exact(ENTRY_SIZE) {
        let mut b = [0u8; ENTRY_SIZE];
        b.copy_from_slice(chunk);
        let e = Entry::decode(&b);
        if e.kind == RecordKind::CRYPT_VOLUMES
            && e.len <= MAX_RECORD_LEN
            && e.offset.saturating_add(e.len) <= store.capacity()
        {
            let _ = store.write_at(e.offset, &vec![0u8; crate::usize_of(e.len)]);
        }
    }
    let _ = store.sync();
}
