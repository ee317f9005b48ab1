//! The page cache's hot set, recorded before the freeze: for every regular file the preserved
//! processes have mapped or open, and every regular file under the paths the operator named
//! (`--warm`), the ranges resident in the page cache (`mincore` on a mapping of the file), with
//! the file's identity. seamless-init reads them back on the new kernel
//! (`init/src/page_cache.rs`). Files whose contents do not come from a disk (tmpfs, proc, ...) are
//! left out: there is nothing to read them back from.

use crate::check::process::tree_pids;
use seamless_image::upgrade::{CachedFile, PageCache, MAX_CACHED_FILES};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Files with a path the processes of the trees rooted at `roots` have mapped or open.
fn process_files(roots: &[i32]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pid in roots.iter().flat_map(|&r| tree_pids(r)) {
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            // address perms offset dev inode path: the path is the sixth field onwards.
            out.extend(
                maps.lines()
                    .filter_map(|l| l.splitn(6, char::is_whitespace).nth(5).map(str::trim))
                    .filter(|p| p.starts_with('/') && !p.ends_with(" (deleted)"))
                    .map(PathBuf::from),
            );
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            out.extend(
                fds.flatten()
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .filter(|p| p.is_absolute() && !p.to_string_lossy().ends_with(" (deleted)")),
            );
        }
    }
    out
}

/// Regular files under `path` (itself if it is one), without following symbolic links, at most
/// `limit` of them.
fn files_under(path: &Path, limit: usize, out: &mut Vec<PathBuf>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    if meta.is_file() {
        out.push(path.to_path_buf());
    } else if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else { return };
        for e in entries.flatten() {
            if out.len() >= limit {
                return;
            }
            files_under(&e.path(), limit, out);
        }
    }
}

/// The files (device major, minor, inode) someone holds a lease or delegation on
/// (`/proc/locks`): opening one would break the lease (the holder gets its signal, by default
/// SIGIO, which kills it; a write lease breaks on any open), so they are never opened here.
fn leased() -> HashSet<(u32, u32, u64)> {
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    parse_leased(&text)
}

fn parse_leased(text: &str) -> HashSet<(u32, u32, u64)> {
    let mut out = HashSet::new();
    for l in text.lines() {
        // N: KIND STATE TYPE PID MAJ:MIN:INO START END (waiters add "->" after N:).
        let f: Vec<&str> = l.split_whitespace().filter(|w| *w != "->").collect();
        if !matches!(f.get(1), Some(&"LEASE") | Some(&"DELEG")) {
            continue;
        }
        let Some(id) = f.get(5) else { continue };
        let mut parts = id.split(':');
        let (Some(maj), Some(min), Some(ino)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if let (Ok(maj), Ok(min), Ok(ino)) = (u32::from_str_radix(maj, 16), u32::from_str_radix(min, 16), ino.parse()) {
            out.insert((maj, min, ino));
        }
    }
    out
}

/// The file's device and its cached ranges (`None` for a leased file, which is not opened).
fn cached(path: &Path, leased: &HashSet<(u32, u32, u64)>) -> Option<(u64, CachedFile)> {
    let before = std::fs::metadata(path).ok()?;
    if leased.contains(&(libc::major(before.dev()), libc::minor(before.dev()), before.ino())) {
        log::debug!("page cache of {}: leased, not opened (that would break the lease)", path.display());
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() == 0 || !seamless_sys::pagecache::on_disk(&file).ok()? {
        return None;
    }
    let ranges = match seamless_sys::pagecache::resident_ranges(&file, meta.len()) {
        Ok(r) => r,
        Err(e) => {
            log::debug!("page cache of {}: {e}", path.display());
            return None;
        }
    };
    if ranges.is_empty() {
        return None;
    }
    let file = CachedFile {
        path: path.to_str()?.to_string(),
        ino: meta.ino(),
        size: meta.len(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ranges,
    };
    Some((meta.dev(), file))
}

/// Records the hot set of the trees rooted at `roots` and of the `extra` paths, for a re-read
/// of at most `budget` on the new kernel.
pub fn record(roots: &[i32], extra: &[PathBuf], budget: Duration) -> PageCache {
    let mut paths = process_files(roots);
    for p in extra {
        files_under(p, MAX_CACHED_FILES, &mut paths);
    }
    let (mut seen, mut inodes) = (HashSet::new(), HashSet::new());
    let leased = leased();
    let mut files: Vec<(u64, CachedFile)> = paths
        .iter()
        .filter(|p| seen.insert((*p).clone()))
        .filter_map(|p| cached(p, &leased))
        .filter(|(dev, f)| inodes.insert((*dev, f.ino)))
        .take(MAX_CACHED_FILES)
        .collect();
    // The new kernel reads them in this order: by device and inode, a proxy for where they lie
    // on disk.
    files.sort_by_key(|(dev, f)| (*dev, f.ino));
    PageCache { budget_ms: budget.as_millis() as u64, files: files.into_iter().map(|(_, f)| f).collect() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn leased_files_are_found_in_proc_locks() {
        let text = "1: FLOCK  ADVISORY  WRITE 30147 fe:00:422 0 EOF\n\
                    2: LEASE  ACTIVE    READ 30147 fe:00:424 0 EOF\n\
                    3: LEASE  BREAKING  WRITE 30158 08:11:427 0 EOF\n\
                    4: DELEG  ACTIVE    READ 1 00:2a:9 0 EOF\n\
                    5: -> POSIX  ADVISORY  WRITE 3 fe:00:500 0 EOF\n";
        let got = super::parse_leased(text);
        assert_eq!(got.len(), 3);
        assert!(got.contains(&(0xfe, 0, 424)));
        assert!(got.contains(&(8, 0x11, 427)));
        assert!(got.contains(&(0, 0x2a, 9)));
    }
}
