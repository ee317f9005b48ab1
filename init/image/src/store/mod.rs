//! Stores: where a region's bytes live. The same bytes mean the same thing in each store;
//! only the container differs.
//!
//! - [`DirStore`]: the file `region.img` in a directory (same-kernel round trips, debugging).
//! - [`BlockStore`]: a block device, normally `/dev/pmemN` created by `memmap=SIZE!OFFSET`.
//! - [`CpioStore`]: a newc cpio archive holding `seamless/region.img`, appended to the new
//!   kernel's initramfs so that no reserved memory is needed.

mod cpio;
mod file;
mod mem;
mod private;

pub use cpio::{append_to_initrd, CpioStore, CPIO_REGION_PATH};
pub use file::{BlockStore, DirStore, FileStore};
pub use mem::MemStore;
pub use private::{create_private, open_trusted, private_dir, DirLock, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};

use crate::error::{ImageError, Result};
use std::path::{Path, PathBuf};

/// Random-access byte storage for one region.
pub trait Store {
    /// Bytes the store can hold.
    fn capacity(&self) -> u64;
    /// Reads exactly `buf.len()` bytes at `off`.
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<()>;
    /// Writes all of `buf` at `off`.
    fn write_at(&mut self, off: u64, buf: &[u8]) -> Result<()>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> Result<()>;
    /// Called once the image is complete and `used` bytes long (a cpio archive fixes its
    /// header and trailer here). The default only syncs.
    fn seal(&mut self, used: u64) -> Result<()> {
        let _ = used;
        self.sync()
    }
    /// A name for messages (normally a path).
    fn describe(&self) -> String;
}

impl<S: Store + ?Sized> Store for Box<S> {
    fn capacity(&self) -> u64 {
        (**self).capacity()
    }
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(off, buf)
    }
    fn write_at(&mut self, off: u64, buf: &[u8]) -> Result<()> {
        (**self).write_at(off, buf)
    }
    fn sync(&mut self) -> Result<()> {
        (**self).sync()
    }
    fn seal(&mut self, used: u64) -> Result<()> {
        (**self).seal(used)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Opens an existing store for reading, by what `path` is: a directory, a block device, a
/// cpio archive, or a plain region file.
pub fn open_any(path: &Path) -> Result<Box<dyn Store>> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path).map_err(|e| ImageError::Io {
        op: "stat",
        store: path.display().to_string(),
        source: e,
    })?;
    if meta.is_dir() {
        return Ok(Box::new(DirStore::open(path)?));
    }
    if meta.file_type().is_block_device() {
        return Ok(Box::new(BlockStore::open(path)?));
    }
    let mut probe = FileStore::open_file(path, false)?;
    let mut head = [0u8; 6];
    if probe.capacity() >= 6 {
        probe.read_at(0, &mut head)?;
    }
    if &head == b"070701" {
        return Ok(Box::new(CpioStore::open(path)?));
    }
    Ok(Box::new(probe))
}

/// The `/dev/pmem*` device nodes (persistent memory, e.g. from `memmap=SIZE!OFFSET`), sorted.
pub fn pmem_devices() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("pmem")))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The `/dev/pmem*` devices whose first bytes carry the seamless magic, sorted by name.
pub fn discover_pmem() -> Vec<PathBuf> {
    pmem_devices()
        .into_iter()
        .filter(|path| {
            let mut head = [0u8; 8];
            let ok = std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head)).is_ok();
            if !(ok && head == crate::MAGIC) {
                log::debug!("{}: no seamless magic", path.display());
                return false;
            }
            true
        })
        .collect()
}
