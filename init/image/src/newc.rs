//! The newc cpio format ("070701", and "070702" which differs only by a checksum field the
//! kernel ignores), the one way seamless reads and writes cpio: the [`CpioStore`] of an image
//! appended to an initramfs, `seamless check`'s look into an initramfs, and the test harness's
//! initramfs builder.
//!
//! An entry is a 110-byte header of thirteen 8-digit hex fields (magic first), the name with
//! its NUL, padding to 4 bytes, the data, padding to 4 bytes; the archive ends with an entry
//! named [`TRAILER`].
//!
//! [`CpioStore`]: crate::CpioStore

use std::collections::BTreeSet;

/// Length of a header.
pub const HEADER_LEN: usize = 110;
/// The magic of the archives seamless writes.
pub const MAGIC: &[u8; 6] = b"070701";
/// The magic of the variant with a data checksum (read as well).
pub const MAGIC_CRC: &[u8; 6] = b"070702";
/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// Longest name accepted while parsing.
pub const MAX_NAME: usize = 4096;

/// Padding after `n` bytes to the next multiple of 4.
pub fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Why bytes are not a newc archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NewcError {
    /// The data ends inside a header, a name or an entry's data.
    #[error("archive ends inside {what} at offset {at}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where the entry starts.
        at: u64,
    },
    /// No newc magic where a header should start.
    #[error("no newc header at offset {at}")]
    Magic {
        /// Offset.
        at: u64,
    },
    /// A header field is not 8 hex digits.
    #[error("bad hex field {field} of the header at offset {at}")]
    Field {
        /// Field number (0 is the magic).
        field: usize,
        /// Offset of the header.
        at: u64,
    },
    /// A name size of 0 or beyond [`MAX_NAME`].
    #[error("name size {size} out of range at offset {at}")]
    NameSize {
        /// The size.
        size: u64,
        /// Offset of the header.
        at: u64,
    },
}

/// The fields of a header seamless uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Inode number (distinct per entry of an archive).
    pub ino: u32,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Link count.
    pub nlink: u32,
    /// Size of the data.
    pub filesize: u64,
    /// Device number of a device node: major, minor.
    pub rdev: (u32, u32),
    /// Length of the name including its NUL.
    pub namesize: u64,
}

impl Header {
    /// Parses the 110 bytes of a header found at offset `at` (for the error).
    pub fn parse(h: &[u8], at: u64) -> Result<Self, NewcError> {
        let h = h.get(..HEADER_LEN).ok_or(NewcError::Truncated { what: "a header", at })?;
        if !(h.starts_with(MAGIC) || h.starts_with(MAGIC_CRC)) {
            return Err(NewcError::Magic { at });
        }
        let field = |i: usize| -> Result<u32, NewcError> {
            std::str::from_utf8(&h[6 + 8 * (i - 1)..6 + 8 * i])
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or(NewcError::Field { field: i, at })
        };
        let namesize = u64::from(field(12)?);
        if namesize == 0 || namesize > MAX_NAME as u64 {
            return Err(NewcError::NameSize { size: namesize, at });
        }
        Ok(Self {
            ino: field(1)?,
            mode: field(2)?,
            nlink: field(5)?,
            filesize: u64::from(field(7)?),
            rdev: (field(10)?, field(11)?),
            namesize,
        })
    }

    /// Offset of the data of the entry whose header is at `at`.
    pub fn data_at(&self, at: u64) -> u64 {
        let n = HEADER_LEN as u64 + self.namesize;
        at + n + pad4((n % 4) as usize) as u64
    }

    /// Offset of the next header after the entry whose header is at `at`.
    pub fn next_at(&self, at: u64) -> u64 {
        let end = self.data_at(at) + self.filesize;
        end + pad4((end % 4) as usize) as u64
    }
}

/// The header, the name with its NUL and the padding of an entry `name` (the data and its
/// padding follow; see [`pad4`]). Sizes above 4 GiB are cut to the 32-bit field.
pub fn entry_head(h: &Header, name: &str) -> Vec<u8> {
    let namesize = name.len() + 1;
    let size = h.filesize.min(u64::from(u32::MAX));
    let (ino, mode, nlink, (major, minor)) = (h.ino, h.mode, h.nlink, h.rdev);
    let mut out = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{major:08x}{minor:08x}{namesize:08x}{:08x}",
        0, 0, 0, 0, 0, 0
    )
    .into_bytes();
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len() + pad4(out.len()), 0);
    out
}

/// One entry of an archive read into memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path, without a leading `/` or `./`.
    pub name: String,
    /// The `st_mode` bits (type and permissions).
    pub mode: u32,
    /// The contents (the target for a symlink).
    pub data: Vec<u8>,
}

impl Entry {
    /// Whether it is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & 0o170_000 == 0o120_000
    }
    /// The contents as text (a symlink's target, a script).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Parses the archive that starts at offset `pos` of `d`, up to and including its trailer;
/// appends its entries to `entries` and returns the offset after the trailer.
pub fn parse(d: &[u8], mut pos: usize, entries: &mut Vec<Entry>) -> Result<usize, NewcError> {
    loop {
        let at = pos as u64;
        let h = Header::parse(d.get(pos..).unwrap_or_default(), at)?;
        let name_end = pos + HEADER_LEN + crate::usize_of(h.namesize) - 1;
        let name = d.get(pos + HEADER_LEN..name_end).ok_or(NewcError::Truncated { what: "a name", at })?;
        let name = String::from_utf8_lossy(name).trim_start_matches("./").trim_start_matches('/').to_string();
        let start = crate::usize_of(h.data_at(at));
        let end = start + crate::usize_of(h.filesize);
        pos = crate::usize_of(h.next_at(at));
        if name == TRAILER {
            return Ok(pos);
        }
        let data = d.get(start..end).ok_or(NewcError::Truncated { what: "an entry's data", at })?.to_vec();
        entries.push(Entry { name, mode: h.mode, data });
    }
}

/// An archive built in memory: directories, files, symlinks and device nodes, all owned by
/// root, none needed on the host.
#[derive(Debug, Default)]
pub struct Builder {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Builder {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry exactly as given (no parent directories), with mode `mode`.
    pub fn raw(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, mode, (0, 0), data);
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let name = name.trim_start_matches('/');
        let h = Header { ino: self.ino, mode, nlink: 1, filesize: data.len() as u64, rdev, namesize: 0 };
        self.out.extend_from_slice(&entry_head(&h, name));
        self.out.extend_from_slice(data);
        self.out.resize(self.out.len() + pad4(self.out.len()), 0);
    }

    /// Adds a directory and its missing parents.
    pub fn dir(&mut self, path: &str) {
        let mut cur = String::new();
        for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(part);
            if self.dirs.insert(cur.clone()) {
                let c = cur.clone();
                self.entry(&c, 0o040_755, (0, 0), &[]);
            }
        }
    }

    fn parent(&mut self, path: &str) {
        if let Some((p, _)) = path.trim_start_matches('/').rsplit_once('/') {
            self.dir(p);
        }
    }

    /// Adds a regular file with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.parent(path);
        self.entry(path, 0o100_000 | perm, (0, 0), data);
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.parent(path);
        self.entry(path, 0o120_777, (0, 0), target.as_bytes());
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.parent(path);
        self.entry(path, 0o020_000 | perm, (major, minor), &[]);
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, 0, (0, 0), &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_archives_parse_back() {
        let mut b = Builder::new();
        b.file("/etc/seamless/x", 0o644, b"hello");
        b.symlink("bin/sh", "busybox");
        b.char_dev("dev/console", 0o600, 5, 1);
        let bytes = b.finish();
        assert_eq!(bytes.len() % 4, 0);
        let mut entries = Vec::new();
        assert_eq!(parse(&bytes, 0, &mut entries), Ok(bytes.len()));
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["etc", "etc/seamless", "etc/seamless/x", "bin", "bin/sh", "dev", "dev/console"]);
        assert_eq!((entries[2].mode, entries[2].data.as_slice()), (0o100_644, &b"hello"[..]));
        assert_eq!(entries[4].data, b"busybox");
        let h = Header::parse(&bytes[entries_offset(&bytes, 6)..], 0).unwrap();
        assert_eq!(h.rdev, (5, 1));
    }

    fn entries_offset(bytes: &[u8], n: usize) -> usize {
        let mut at = 0u64;
        for _ in 0..n {
            at = Header::parse(&bytes[crate::usize_of(at)..], at).unwrap().next_at(at);
        }
        crate::usize_of(at)
    }

    #[test]
    fn damaged_archives_are_refused_with_the_offset() {
        let mut b = Builder::new();
        b.file("a", 0o644, b"xyz");
        let bytes = b.finish();
        let mut e = Vec::new();
        assert_eq!(parse(&bytes[..50], 0, &mut e), Err(NewcError::Truncated { what: "a header", at: 0 }));
        assert_eq!(parse(&[b'x'; 120], 0, &mut e), Err(NewcError::Magic { at: 0 }));
        let mut bad = bytes.clone();
        bad[6] = b'z';
        assert_eq!(parse(&bad, 0, &mut e), Err(NewcError::Field { field: 1, at: 0 }));
        let cut = HEADER_LEN + 4;
        assert!(matches!(parse(&bytes[..cut], 0, &mut e), Err(NewcError::Truncated { .. })));
    }
}
