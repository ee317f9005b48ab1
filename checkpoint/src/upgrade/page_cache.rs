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

/// The file's device and its cached ranges.
fn cached(path: &Path) -> Option<(u64, CachedFile)> {
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
    let mut files: Vec<(u64, CachedFile)> = paths
        .iter()
        .filter(|p| seen.insert((*p).clone()))
        .filter_map(|p| cached(p))
        .filter(|(dev, f)| inodes.insert((*dev, f.ino)))
        .take(MAX_CACHED_FILES)
        .collect();
    // The new kernel reads them in this order: by device and inode, a proxy for where they lie
    // on disk.
    files.sort_by_key(|(dev, f)| (*dev, f.ino));
    PageCache { budget_ms: budget.as_millis() as u64, files: files.into_iter().map(|(_, f)| f).collect() }
}
