//! Stores backed by a file descriptor: a region file in a directory, a block device, or a
//! window inside a larger file (used by the cpio store).

use super::Store;
use crate::error::{ImageError, Result};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A region stored in a file (or block device), starting at `base` and at most `capacity`
/// bytes long.
#[derive(Debug)]
pub struct FileStore {
    file: File,
    path: PathBuf,
    base: u64,
    capacity: u64,
    /// Held while the store lives (the lock of a directory store being written).
    _lock: Option<super::private::DirLock>,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let store = path.display().to_string();
    move |source| ImageError::Io { op, store, source }
}

impl FileStore {
    /// Opens an existing file or device; its size is the capacity.
    pub fn open_file(path: &Path, writable: bool) -> Result<Self> {
        let mut file = match OpenOptions::new().read(true).write(writable).open(path) {
            // A read-only medium or file still allows inspection.
            Err(e)
                if writable && matches!(e.raw_os_error(), Some(libc_erofs) if libc_erofs == 30 || libc_erofs == 13) =>
            {
                File::open(path).map_err(io("open", path))?
            }
            r => r.map_err(io("open", path))?,
        };
        // Seeking to the end gives the size of block devices too, where metadata says 0.
        let capacity = file.seek(SeekFrom::End(0)).map_err(io("seek", path))?;
        Ok(Self { file, path: path.to_path_buf(), base: 0, capacity, _lock: None })
    }

    /// A window `[base, base + capacity)` of an open file.
    pub(crate) fn window(file: File, path: &Path, base: u64, capacity: u64) -> Self {
        Self { file, path: path.to_path_buf(), base, capacity, _lock: None }
    }

    /// The path of the file or device.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives back the file.
    pub(crate) fn into_file(self) -> File {
        self.file
    }

    fn check(&self, off: u64, len: usize, op: &'static str) -> Result<u64> {
        let end = off.checked_add(len as u64).filter(|e| *e <= self.capacity);
        match end {
            Some(_) => Ok(self.base + off),
            None if op == "read" => Err(ImageError::Truncated {
                store: self.describe(),
                needed: off.saturating_add(len as u64),
                available: self.capacity,
            }),
            None => Err(ImageError::NoSpace {
                store: self.describe(),
                what: format!("{len} bytes at offset {off:#x}"),
                needed: off.saturating_add(len as u64),
                limit: self.capacity,
            }),
        }
    }
}

impl Store for FileStore {
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.check(off, buf.len(), "read")?;
        self.file.read_exact_at(buf, at).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ImageError::Truncated {
                    store: self.describe(),
                    needed: off + buf.len() as u64,
                    available: self.capacity,
                }
            } else {
                ImageError::Io { op: "read", store: self.describe(), source: e }
            }
        })
    }
    fn write_at(&mut self, off: u64, buf: &[u8]) -> Result<()> {
        let at = self.check(off, buf.len(), "write")?;
        self.file.write_all_at(buf, at).map_err(io("write", &self.path))
    }
    fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(io("sync", &self.path))
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A region kept as `region.img` inside a directory.
#[derive(Debug)]
pub struct DirStore;

/// The file name of the region inside a directory store.
pub const DIR_REGION_FILE: &str = "region.img";

impl DirStore {
    /// Creates `dir/region.img` for writing: `dir` is created with mode 0700 if missing
    /// (an existing one must be a directory of this user that only it can write) and locked
    /// for as long as the store lives, so a second dump into it is refused
    /// ([`ImageError::Locked`]); the file is created privately (mode 0600, under a temporary
    /// name, renamed over an earlier image). `capacity` bounds how large the image may grow;
    /// the file only takes the space actually written.
    #[allow(clippy::new_ret_no_self)]
    pub fn create(dir: &Path, capacity: u64) -> Result<FileStore> {
        let lock = super::private::DirLock::acquire(dir)?;
        let path = dir.join(DIR_REGION_FILE);
        let file = super::private::create_private(&path)?;
        Ok(FileStore { file, path, base: 0, capacity, _lock: Some(lock) })
    }

    /// Opens `dir/region.img` for reading and state updates (inspection, tests: no ownership
    /// checks; restore uses [`DirStore::open_trusted`]).
    #[allow(clippy::new_ret_no_self)]
    pub fn open(dir: &Path) -> Result<FileStore> {
        FileStore::open_file(&dir.join(DIR_REGION_FILE), true)
    }

    /// Opens `dir/region.img` for restore, only if root alone can have written it (see
    /// [`super::open_trusted`]). `writable`: read-write, to mark it consumed.
    #[allow(clippy::new_ret_no_self)]
    pub fn open_trusted(dir: &Path, writable: bool) -> Result<FileStore> {
        FileStore::open_trusted(&dir.join(DIR_REGION_FILE), writable)
    }
}

impl FileStore {
    /// Opens a region file or block device for restore through [`super::open_trusted`]; its
    /// size is the capacity.
    pub fn open_trusted(path: &Path, writable: bool) -> Result<Self> {
        let mut file = super::private::open_trusted(path, writable)?;
        let capacity = file.seek(SeekFrom::End(0)).map_err(io("seek", path))?;
        Ok(Self { file, path: path.to_path_buf(), base: 0, capacity, _lock: None })
    }
}

/// A region on a block device such as `/dev/pmem0`.
#[derive(Debug)]
pub struct BlockStore;

impl BlockStore {
    /// Opens the device read-write; its size is the capacity.
    #[allow(clippy::new_ret_no_self)]
    pub fn open(dev: &Path) -> Result<FileStore> {
        FileStore::open_file(dev, true)
    }
}
