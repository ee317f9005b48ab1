//! The filesystems the preserved processes use: every file they hold open or map, their
//! working directories and roots (`/proc/PID/{fd,maps,cwd,root}`), by device number and by
//! mount point, among the filesystems `seamless upgrade` freezes; the root is always one.
//! After the freeze each one's identity and clean state is read from its device
//! ([`seamless_image::filesystems::read`]) into record kind 50, which seamless-init verifies
//! before the filesystem is mounted on the new kernel.

use crate::check::process::tree_pids;
use crate::kexec::FreezeTarget;
use seamless_image::filesystems::{self, Filesystems, FsReadError};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `(major, minor)` of a `dev_t` (glibc's encoding).
fn split_dev(dev: u64) -> (u64, u64) {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff), (dev & 0xff) | ((dev >> 12) & !0xff))
}

/// Device numbers and paths of what the processes of the trees rooted at `roots` use.
fn used(roots: &[i32]) -> (HashSet<(u64, u64)>, Vec<PathBuf>) {
    let (mut devs, mut paths) = (HashSet::new(), Vec::new());
    for pid in roots.iter().flat_map(|&r| tree_pids(r)) {
        for link in ["cwd", "root"] {
            let p = format!("/proc/{pid}/{link}");
            if let Ok(m) = std::fs::metadata(&p) {
                devs.insert(split_dev(m.dev()));
            }
            paths.extend(std::fs::read_link(&p).ok());
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for e in fds.flatten() {
                if let Ok(m) = std::fs::metadata(e.path()) {
                    devs.insert(split_dev(m.dev()));
                }
                paths.extend(std::fs::read_link(e.path()).ok().filter(|p| p.is_absolute()));
            }
        }
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            for l in maps.lines() {
                let f: Vec<&str> = l.splitn(6, char::is_whitespace).collect();
                if let Some((ma, mi)) = f.get(3).and_then(|d| d.split_once(':')) {
                    if let (Ok(ma), Ok(mi)) = (u64::from_str_radix(ma, 16), u64::from_str_radix(mi, 16)) {
                        if (ma, mi) != (0, 0) {
                            devs.insert((ma, mi));
                        }
                    }
                }
                if let Some(p) = f.get(5).map(|p| p.trim()).filter(|p| p.starts_with('/')) {
                    paths.push(PathBuf::from(p));
                }
            }
        }
    }
    (devs, paths)
}

/// The targets (in freeze order) that the trees rooted at `roots` use, and the root.
pub fn used_targets<'a>(targets: &'a [FreezeTarget], roots: &[i32]) -> Vec<&'a FreezeTarget> {
    let (devs, paths) = used(roots);
    let mut hit: HashSet<usize> = HashSet::new();
    for (i, t) in targets.iter().enumerate() {
        let dev = t.dev.split_once(':').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
        if t.mountpoint == Path::new("/") || dev.is_some_and(|d| devs.contains(&d)) {
            hit.insert(i);
        }
    }
    // By path too (btrfs subvolumes give their files other device numbers than the mount's):
    // the innermost mount point above each path.
    for p in &paths {
        let best = targets
            .iter()
            .enumerate()
            .filter(|(_, t)| p.starts_with(&t.mountpoint))
            .max_by_key(|(_, t)| t.mountpoint.components().count());
        if let Some((i, _)) = best {
            hit.insert(i);
        }
    }
    targets.iter().enumerate().filter(|(i, _)| hit.contains(i)).map(|(_, t)| t).collect()
}

/// The device-mapper UUID of the block device `source` (`LVM-...` for a logical volume),
/// empty when it is not a device-mapper device.
pub fn dm_uuid(source: &str) -> String {
    use std::os::unix::fs::FileTypeExt;
    let Ok(m) = std::fs::metadata(source) else { return String::new() };
    if !m.file_type().is_block_device() {
        return String::new();
    }
    let (ma, mi) = split_dev(m.rdev());
    std::fs::read_to_string(format!("/sys/dev/block/{ma}:{mi}/dm/uuid"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The dm-crypt devices under block device `source` (itself, or below an LVM volume through
/// `slaves/`), by their device-mapper UUID (`CRYPT-LUKS2-...`), read from `sys` (`/sys`).
pub fn crypt_layers(sys: &Path, source: &str) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(m) = std::fs::metadata(source) else { return Vec::new() };
    if !m.file_type().is_block_device() {
        return Vec::new();
    }
    let (ma, mi) = split_dev(m.rdev());
    let mut out = Vec::new();
    let mut todo = vec![sys.join(format!("dev/block/{ma}:{mi}"))];
    while let Some(dir) = todo.pop() {
        if out.len() > 64 {
            break;
        }
        let uuid = std::fs::read_to_string(dir.join("dm/uuid")).unwrap_or_default();
        if uuid.starts_with("CRYPT-") {
            out.push(uuid.trim().to_string());
        }
        for e in std::fs::read_dir(dir.join("slaves")).into_iter().flatten().flatten() {
            todo.push(e.path());
        }
    }
    out
}

/// Why the filesystems could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum FsRecordError {
    /// A used filesystem's state could not be read.
    #[error("filesystem {mountpoint} ({fstype} on {source_dev})")]
    Read {
        /// Its mount point.
        mountpoint: String,
        /// Its type.
        fstype: String,
        /// Its device.
        source_dev: String,
        /// What failed.
        #[source]
        source: FsReadError,
    },
    /// A used filesystem is frozen but a mount would replay its log or journal.
    #[error("filesystem {0} is frozen but not clean ({1}): the new kernel would replay its log")]
    NotClean(String, String),
    /// The target's seamless-init does not know record kind 50.
    #[error("the new initramfs's seamless-init cannot verify filesystems other than an ext2/3/4 root (it does not know record kind 50): {0}")]
    Unverifiable(String),
}

/// Reads the identity of each used filesystem (frozen: the caller froze `targets`).
pub fn record(targets: &[FreezeTarget], roots: &[i32]) -> Result<Filesystems, FsRecordError> {
    let mut out = Filesystems::default();
    for t in used_targets(targets, roots) {
        let mountpoint = t.mountpoint.display().to_string();
        let id =
            filesystems::read(&mountpoint, Path::new(&t.source), &dm_uuid(&t.source), &t.fstype).map_err(|source| {
                FsRecordError::Read {
                    mountpoint: mountpoint.clone(),
                    fstype: t.fstype.clone(),
                    source_dev: t.source.clone(),
                    source,
                }
            })?;
        if !id.state.is_clean() {
            return Err(FsRecordError::NotClean(mountpoint, id.state.to_string()));
        }
        let (mount_options, fs_options) = mount_options(&t.mountpoint);
        let id = filesystems::FsIdentity { mount_options, fs_options, ..id };
        log::debug!("recorded filesystem {}", id.summary());
        out.filesystems.push(id);
    }
    Ok(out)
}

/// The options of the mount at `mountpoint` (the last one there) as `/proc/self/mountinfo`
/// shows them: the mount's own and the filesystem's.
fn mount_options(mountpoint: &Path) -> (String, String) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = mountpoint.display().to_string().replace(' ', "\\040");
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.get(4) != Some(&want.as_str()) {
                return None;
            }
            Some((l.get(5)?.to_string(), r.get(2)?.to_string()))
        })
        .next_back()
        .unwrap_or_default()
}

/// Whether the record is needed beyond the upgrade record's root identity (kind 3): some
/// filesystem besides the root, or a root that is not ext2/3/4.
pub fn needed(rec: &Filesystems) -> bool {
    rec.filesystems.iter().any(|f| f.mountpoint != "/" || !matches!(f.fstype.as_str(), "ext2" | "ext3" | "ext4"))
}
