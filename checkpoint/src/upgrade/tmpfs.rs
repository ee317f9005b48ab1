//! Files on tmpfs carried across the jump: tmpfs lives in RAM, so on the new kernel `/run`,
//! `/dev/shm` and `/tmp` start empty, and a process that had a file open there, a POSIX shared
//! memory segment mapped, or a unix socket bound under `/run` would find its files gone. Recorded
//! while the trees are frozen (after the dump): the regular files the processes hold open or
//! map, the directories of their bound unix sockets (the restore binds them again), the
//! operator's `--keep` paths (walked), every directory between them and their mount point, and
//! the mounts' options. seamless-init recreates them before the restore (`init/src/tmpfs.rs`).
//! What is on tmpfs and not carried is lost, as after a reboot.

use crate::check::process::tree_pids;
use seamless_image::upgrade::{TmpfsEntry, TmpfsMount, TmpfsRecord, MAX_TMPFS_ENTRIES, TMPFS_BLOB_TAG};
use seamless_image::{ImageError, Store, Writer, MAX_CHUNK_LEN};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`: mount point, type, mount and super options.
#[derive(Debug, Clone)]
struct Mount {
    point: String,
    fstype: String,
    options: String,
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let oct: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&oct, 8) {
                Ok(b) => out.push(b as char),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&oct);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn mounts() -> Vec<Mount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(Mount {
                point: unescape(f.get(4)?),
                fstype: r.first()?.to_string(),
                options: format!("{},{}", f.get(5)?, r.get(2).unwrap_or(&"")),
            })
        })
        .collect()
}

/// The mount `path` is on (the longest mount point that is a prefix of it; later mounts of the
/// same point hide earlier ones).
fn mount_of<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let under = |m: &Mount| path == m.point || m.point == "/" || path.starts_with(&format!("{}/", m.point));
    mounts.iter().filter(|m| under(m)).max_by_key(|m| m.point.len())
}

fn is_tmpfs(m: &Mount) -> bool {
    m.fstype == "tmpfs" || m.fstype == "devtmpfs"
}

/// Socket inode → bound path, from `/proc/net/unix`.
fn unix_paths() -> BTreeMap<u64, String> {
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f.get(7)?;
            path.starts_with('/').then(|| Some((f.get(6)?.parse().ok()?, path.to_string())))?
        })
        .collect()
}

/// What the trees use on any filesystem: open or mapped files, and the directories of their
/// bound unix sockets.
fn used_paths(roots: &[i32]) -> (Vec<PathBuf>, Vec<PathBuf>, HashSet<String>) {
    let sockets = unix_paths();
    let (mut files, mut dirs, mut bound) = (Vec::new(), Vec::new(), HashSet::new());
    for pid in roots.iter().flat_map(|&r| tree_pids(r)) {
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            files.extend(
                maps.lines()
                    .filter_map(|l| l.splitn(6, char::is_whitespace).nth(5).map(str::trim))
                    .filter(|p| p.starts_with('/') && !p.ends_with(" (deleted)"))
                    .map(PathBuf::from),
            );
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for link in fds.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()) {
            let text = link.to_string_lossy();
            if let Some(ino) = text.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                if let Some(p) = ino.parse().ok().and_then(|i: u64| sockets.get(&i)) {
                    dirs.extend(Path::new(p).parent().map(Path::to_path_buf));
                    bound.insert(p.clone());
                }
            } else if link.is_absolute() && !text.ends_with(" (deleted)") {
                files.push(link);
            }
        }
    }
    (files, dirs, bound)
}

/// What is to be carried, before the contents are read.
#[derive(Debug, Default)]
pub struct Plan {
    mounts: BTreeMap<String, String>,
    entries: BTreeMap<String, std::fs::Metadata>,
    /// What the processes use in RAM that is not carried, and why.
    pub not_carried: Vec<(String, String)>,
    /// Paths of the trees' bound unix sockets (recreated by the restore's bind).
    bound: HashSet<String>,
}

impl Plan {
    /// Adds `path` (if on a tmpfs and of a carried type) with its directories up to the mount.
    fn add(&mut self, mounts: &[Mount], path: &Path) {
        let Some(p) = path.to_str() else { return };
        let Some(m) = mount_of(mounts, p) else { return };
        if m.fstype == "ramfs" {
            self.not_carried.push((p.to_string(), "on ramfs, which is not carried (only tmpfs is)".into()));
        }
        if !is_tmpfs(m) || p == m.point {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(path) else { return };
        let ft = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        if m.fstype == "devtmpfs" && (ft.is_char_device() || ft.is_block_device()) {
            return; // the new kernel's devtmpfs has its own device nodes
        }
        if ft.is_socket() && self.bound.contains(p) {
            return; // the restore binds it again
        }
        if !(ft.is_file() || ft.is_dir() || ft.is_symlink()) {
            self.not_carried.push((p.to_string(), "a FIFO, device or socket file on tmpfs is not carried".into()));
            return;
        }
        if self.entries.len() >= MAX_TMPFS_ENTRIES {
            self.not_carried.push((p.to_string(), format!("more than {MAX_TMPFS_ENTRIES} tmpfs entries")));
            return;
        }
        self.mounts.insert(m.point.clone(), m.options.clone());
        let mut dir = path.parent();
        while let Some(d) = dir.and_then(Path::to_str).filter(|d| d.len() > m.point.len()) {
            if let Ok(dm) = std::fs::symlink_metadata(d) {
                self.entries.entry(d.to_string()).or_insert(dm);
            }
            dir = Path::new(d).parent();
        }
        self.entries.insert(p.to_string(), meta);
    }

    /// Adds `path` and, for a directory, everything below it (links are not followed).
    fn add_tree(&mut self, mounts: &[Mount], path: &Path) {
        self.add(mounts, path);
        if std::fs::symlink_metadata(path).map(|m| m.is_dir()).unwrap_or(false) {
            for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
                if self.entries.len() >= MAX_TMPFS_ENTRIES {
                    return;
                }
                self.add_tree(mounts, &e.path());
            }
        }
    }
}

/// What would be carried for the trees rooted at `roots` and the `keep` paths.
pub fn plan(roots: &[i32], keep: &[PathBuf]) -> Plan {
    let mounts = mounts();
    let (files, dirs, bound) = used_paths(roots);
    let mut plan = Plan { bound, ..Plan::default() };
    let mut seen = HashSet::new();
    for p in files.iter().filter(|p| seen.insert((*p).clone())) {
        plan.add(&mounts, p);
    }
    // The directory of a bound unix socket is the service's runtime directory (its pid file,
    // lock files, other sockets): carried whole, unless it is the mount's root itself.
    for d in dirs.iter().filter(|p| seen.insert((*p).clone())) {
        let is_root = d.to_str().and_then(|p| mount_of(&mounts, p)).is_some_and(|m| Path::new(&m.point) == d);
        if !is_root {
            plan.add_tree(&mounts, d);
        }
    }
    for p in keep {
        plan.add_tree(&mounts, p);
    }
    plan
}

impl Plan {
    /// Entries and bytes (regular files' sizes now) to carry.
    pub fn size(&self) -> (usize, u64) {
        (self.entries.len(), self.entries.values().filter(|m| m.is_file()).map(|m| m.len()).sum())
    }
}

/// Records the tmpfs files of the trees rooted at `roots` and the `keep` paths, and writes
/// their contents as blobs into `writer`. Returns the record, to be written after them.
pub fn record<S: Store>(roots: &[i32], keep: &[PathBuf], writer: &mut Writer<S>) -> Result<TmpfsRecord, ImageError> {
    let plan = plan(roots, keep);
    for (p, why) in &plan.not_carried {
        log::warn!("tmpfs: {p} is not carried to the new kernel: {why}");
    }
    let mut entries = Vec::new();
    for (path, meta) in &plan.entries {
        let mut e = TmpfsEntry {
            path: path.clone(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            target: String::new(),
            size: 0,
            blobs: Vec::new(),
        };
        if meta.file_type().is_symlink() {
            e.target = std::fs::read_link(path).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
        } else if meta.is_file() {
            let io = |source| ImageError::Io { op: "read", store: path.clone(), source };
            let mut f = std::fs::File::open(path).map_err(io)?;
            let mut chunk = vec![0u8; (MAX_CHUNK_LEN as usize).min(meta.len() as usize)];
            loop {
                let mut got = 0;
                while got < chunk.len() {
                    match f.read(&mut chunk[got..]).map_err(io)? {
                        0 => break,
                        n => got += n,
                    }
                }
                if got == 0 {
                    break;
                }
                e.blobs.push(writer.put_blob(0, TMPFS_BLOB_TAG | entries.len() as u64, &chunk[..got])?);
                e.size += got as u64;
                if got < chunk.len() {
                    break;
                }
            }
        }
        entries.push(e);
    }
    let mounts = plan.mounts.into_iter().map(|(path, options)| TmpfsMount { path, options }).collect();
    Ok(TmpfsRecord { mounts, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_points_are_unescaped_and_the_longest_prefix_wins() {
        assert_eq!(unescape("/run/a\\040b"), "/run/a b");
        let m = |p: &str, t: &str| Mount { point: p.into(), fstype: t.into(), options: String::new() };
        let all = [m("/", "ext4"), m("/run", "tmpfs"), m("/run/user/0", "tmpfs"), m("/runner", "ext4")];
        assert_eq!(mount_of(&all, "/run/x.sock").map(|m| m.point.as_str()), Some("/run"));
        assert_eq!(mount_of(&all, "/run/user/0/bus").map(|m| m.point.as_str()), Some("/run/user/0"));
        assert_eq!(mount_of(&all, "/runner/x").map(|m| m.point.as_str()), Some("/runner"));
        assert_eq!(mount_of(&all, "/etc/passwd").map(|m| m.point.as_str()), Some("/"));
    }
}
