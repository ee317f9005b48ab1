//! Which parts of a file are in the page cache: `mincore(2)` on a read-only shared mapping of
//! the file (it reports the page cache's pages of that file, whoever read them), one window at
//! a time so that a large file never needs a large mapping. `statfs(2)` tells the filesystems
//! whose contents cannot be read back from a disk (tmpfs, proc, ...).

use crate::{SysError, SysResult};
use std::fs::File;
use std::os::fd::AsRawFd;

const PAGE: u64 = 4096;
/// The largest window mapped at once (1 GiB: a 256 KiB residency vector).
const WINDOW: u64 = 1 << 30;

/// The resident byte ranges `(offset, length)` of the first `size` bytes of `file`, page
/// aligned, adjacent pages merged.
///
/// Man page: `mincore(2)` (over `mmap(2)` windows).
pub fn resident_ranges(file: &File, size: u64) -> SysResult<Vec<(u64, u64)>> {
    let fd = file.as_raw_fd();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut vec = Vec::new();
    let mut at = 0u64;
    while at < size {
        let len = (size - at).min(WINDOW);
        let pages = len.div_ceil(PAGE) as usize;
        vec.clear();
        vec.resize(pages, 0u8);
        // SAFETY: a read-only shared mapping of `len` bytes at a kernel-chosen address cannot
        // alias existing memory; it is only passed to mincore and unmapped below, never read.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), len as usize, libc::PROT_READ, libc::MAP_SHARED, fd, at as libc::off_t)
        };
        if addr == libc::MAP_FAILED {
            return Err(SysError::last("mmap(PROT_READ, MAP_SHARED)", format!("fd {fd} at {at:#x}")));
        }
        // SAFETY: `addr` is the start of a `len`-byte mapping; `vec` has one byte per page of it.
        let r = unsafe { libc::mincore(addr, len as usize, vec.as_mut_ptr()) };
        let err = (r != 0).then(|| SysError::last("mincore", format!("fd {fd} at {at:#x}")));
        // SAFETY: unmaps exactly the mapping made above, which nothing references.
        unsafe { libc::munmap(addr, len as usize) };
        if let Some(e) = err {
            return Err(e);
        }
        for (i, v) in vec.iter().enumerate() {
            if v & 1 == 0 {
                continue;
            }
            let off = at + i as u64 * PAGE;
            match ranges.last_mut() {
                Some((start, l)) if *start + *l == off => *l += PAGE,
                _ => ranges.push((off, PAGE)),
            }
        }
        at += len;
    }
    Ok(ranges)
}

/// Filesystem types whose file contents do not come from a disk (statfs `f_type`).
const NOT_ON_DISK: &[i64] = &[
    0x0102_1994, // tmpfs
    0x8584_58f6, // ramfs
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x1cd1,      // devpts
    0x6367_7270, // cgroup2
];

/// Whether `file` lives on a filesystem read from a disk (not tmpfs, ramfs, proc, sysfs, ...).
///
/// Man page: `fstatfs(2)`.
pub fn on_disk(file: &File) -> SysResult<bool> {
    // SAFETY: `statfs` is plain old data; zeroed is a valid initial value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer for the duration of the call.
    let r = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    if r != 0 {
        return Err(SysError::last("fstatfs", format!("fd {}", file.as_raw_fd())));
    }
    Ok(!NOT_ON_DISK.contains(&(st.f_type as i64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_file_just_written_and_read_is_resident() {
        let path = std::env::temp_dir().join(format!("seamless-pagecache-{}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![7u8; 3 * 4096 + 100]).unwrap();
        drop(f);
        let mut f = File::open(&path).unwrap();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        let ranges = resident_ranges(&f, buf.len() as u64).unwrap();
        assert_eq!(ranges, vec![(0, 4 * 4096)]);
        assert!(resident_ranges(&f, 0).unwrap().is_empty());
        let _ = std::fs::remove_file(&path);
    }
}
