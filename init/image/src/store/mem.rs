//! A store in memory: for tests, the fuzzer, and building a region before copying it out.

use super::Store;
use crate::error::{ImageError, Result};

/// A region held in a `Vec<u8>`, growing up to `capacity`.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    /// The bytes written so far.
    pub bytes: Vec<u8>,
    capacity: u64,
}

impl MemStore {
    /// An empty store that may grow to `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self { bytes: Vec::new(), capacity }
    }

    /// A store holding exactly `bytes` (its capacity is their length).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let capacity = bytes.len() as u64;
        Self { bytes, capacity }
    }
}

impl Store for MemStore {
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        let end = off.checked_add(buf.len() as u64).filter(|e| *e <= self.bytes.len() as u64);
        match end {
            Some(end) => {
                buf.copy_from_slice(&self.bytes[crate::usize_of(off)..crate::usize_of(end)]);
                Ok(())
            }
            None => Err(ImageError::Truncated {
                store: self.describe(),
                needed: off.saturating_add(buf.len() as u64),
                available: self.bytes.len() as u64,
            }),
        }
    }
    fn write_at(&mut self, off: u64, buf: &[u8]) -> Result<()> {
        let end =
            off.checked_add(buf.len() as u64).filter(|e| *e <= self.capacity).ok_or_else(|| ImageError::NoSpace {
                store: self.describe(),
                what: format!("{} bytes at {off:#x}", buf.len()),
                needed: off.saturating_add(buf.len() as u64),
                limit: self.capacity,
            })?;
        if self.bytes.len() < crate::usize_of(end) {
            self.bytes.resize(crate::usize_of(end), 0);
        }
        self.bytes[crate::usize_of(off)..crate::usize_of(end)].copy_from_slice(buf);
        Ok(())
    }
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
    fn seal(&mut self, used: u64) -> Result<()> {
        self.bytes.truncate(crate::usize_of(used));
        self.capacity = used;
        Ok(())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}
