//! The cpio store: a newc ("070701") archive with the directory `seamless` and the file
//! `seamless/region.img`. Appended to an initramfs, the kernel unpacks it into the early root
//! filesystem, where seamless-init finds `/seamless/region.img`.

use super::file::FileStore;
use super::Store;
use crate::error::{ImageError, Result};
use crate::newc::{entry_head, pad4, Header, HEADER_LEN, TRAILER};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where the region file lands in the unpacked initramfs.
pub const CPIO_REGION_PATH: &str = "seamless/region.img";
const DIR_NAME: &str = "seamless";

/// One newc header plus its name, padded.
fn header(ino: u32, mode: u32, nlink: u32, size: u64, name: &str) -> Vec<u8> {
    entry_head(&Header { ino, mode, nlink, filesize: size, ..Default::default() }, name)
}

/// Creates and opens cpio stores.
#[derive(Debug)]
pub struct CpioStore {
    inner: FileStore,
    header_at: u64,
}

impl CpioStore {
    fn dir_header() -> Vec<u8> {
        header(1, 0o040_755, 2, 0, DIR_NAME)
    }
    fn file_header(size: u64) -> Vec<u8> {
        header(2, 0o100_600, 1, size, CPIO_REGION_PATH)
    }

    /// Creates an archive at `path` (privately: mode 0600, under a temporary name renamed over
    /// `path`) whose region may grow to `capacity` bytes (at most 4 GiB,
    /// the limit of the newc size field). The archive is valid only after the image is sealed.
    pub fn create(path: &Path, capacity: u64) -> Result<Self> {
        let capacity = capacity.min(u64::from(u32::MAX));
        let mut file = super::private::create_private(path)?;
        let dir = Self::dir_header();
        let fh = Self::file_header(0);
        let mut head = dir.clone();
        head.extend_from_slice(&fh);
        file.write_all(&head).map_err(|e| ImageError::Io {
            op: "write",
            store: path.display().to_string(),
            source: e,
        })?;
        let base = head.len() as u64;
        Ok(Self { inner: FileStore::window(file, path, base, capacity), header_at: dir.len() as u64 })
    }

    /// Opens an archive and finds `seamless/region.img` in it.
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |detail: String| ImageError::Cpio { path: path.display().to_string(), detail };
        let ioerr = |e| ImageError::Io { op: "read", store: path.display().to_string(), source: e };
        let file = OpenOptions::new().read(true).write(true).open(path).or_else(|_| File::open(path)).map_err(ioerr)?;
        let total = file.metadata().map_err(ioerr)?.len();
        let mut pos = 0u64;
        loop {
            let mut raw = [0u8; HEADER_LEN];
            file.read_exact_at(&mut raw, pos).map_err(|_| bad(format!("archive ends inside a header at {pos}")))?;
            let h = Header::parse(&raw, pos).map_err(|e| bad(e.to_string()))?;
            let filesize = h.filesize;
            let mut name = vec![0u8; crate::usize_of(h.namesize)];
            file.read_exact_at(&mut name, pos + HEADER_LEN as u64)
                .map_err(|_| bad("archive ends inside a name".into()))?;
            let name = String::from_utf8_lossy(&name[..name.len() - 1]).into_owned();
            let data_at = h.data_at(pos);
            if data_at.checked_add(filesize).is_none_or(|end| end > total) {
                return Err(bad(format!("{name}: {filesize} bytes run past the archive end")));
            }
            if name == TRAILER {
                return Err(bad(format!("no {CPIO_REGION_PATH} in the archive")));
            }
            if name.trim_start_matches("./").trim_start_matches('/') == CPIO_REGION_PATH {
                return Ok(Self { inner: FileStore::window(file, path, data_at, filesize), header_at: pos });
            }
            pos = h.next_at(pos);
        }
    }

    /// The archive's path.
    pub fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }
}

impl Store for CpioStore {
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read_at(off, buf)
    }
    fn write_at(&mut self, off: u64, buf: &[u8]) -> Result<()> {
        self.inner.write_at(off, buf)
    }
    fn sync(&mut self) -> Result<()> {
        self.inner.sync()
    }
    /// Writes the final file header (with the real size) and the trailer, and cuts the file.
    fn seal(&mut self, used: u64) -> Result<()> {
        let path = self.inner.path().to_path_buf();
        let ioerr = |e| ImageError::Io { op: "write", store: path.display().to_string(), source: e };
        let fh = Self::file_header(used);
        let data_at = self.header_at + fh.len() as u64;
        let file =
            std::mem::replace(&mut self.inner, FileStore::window(File::open("/dev/null").map_err(ioerr)?, &path, 0, 0))
                .into_file();
        file.write_all_at(&fh, self.header_at).map_err(ioerr)?;
        let mut tail = vec![0u8; pad4(crate::usize_of(used))];
        tail.extend_from_slice(&header(0, 0, 1, 0, TRAILER));
        tail.resize(tail.len() + pad4(tail.len()), 0);
        let end = data_at + used;
        file.write_all_at(&tail, end).map_err(ioerr)?;
        file.set_len(end + tail.len() as u64).map_err(ioerr)?;
        file.sync_all().map_err(ioerr)?;
        self.inner = FileStore::window(file, &path, data_at, used);
        Ok(())
    }
    fn describe(&self) -> String {
        format!("{}:{CPIO_REGION_PATH}", self.inner.describe())
    }
}

/// Writes `out` = the initramfs `base` padded to a 4-byte boundary, followed by the sealed
/// cpio archive `region`. The kernel unpacks concatenated archives in order. `out` is
/// created privately (mode 0600, renamed over an earlier file, never written through a link).
pub fn append_to_initrd(base: &Path, region: &Path, out: &Path) -> Result<()> {
    let ioerr = |op, p: &Path| {
        let store = p.display().to_string();
        move |e| ImageError::Io { op, store, source: e }
    };
    let mut o = super::private::create_private(out)?;
    let mut b = File::open(base).map_err(ioerr("open", base))?;
    let n = std::io::copy(&mut b, &mut o).map_err(ioerr("copy", base))?;
    o.write_all(&vec![0u8; pad4(crate::usize_of(n))]).map_err(ioerr("write", out))?;
    let mut r = File::open(region).map_err(ioerr("open", region))?;
    std::io::copy(&mut r, &mut o).map_err(ioerr("copy", region))?;
    o.sync_all().map_err(ioerr("sync", out))
}
