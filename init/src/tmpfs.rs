//! Recreating the tmpfs files the old kernel carried ([`TmpfsRecord`]) before the processes are
//! restored, so they find their `/run` directories, pid files, POSIX shared memory in
//! `/dev/shm` and the directories of their unix sockets as they were. A recorded mount point
//! where nothing is mounted yet gets a tmpfs with the recorded options (the real init leaves an
//! existing mount alone). Existing entries are left as they are (something on this boot made
//! them). Nothing here fails the boot: problems are counted and logged, and a tree that still
//! misses a file fails its own restore, cleanly.

use seamless_image::upgrade::{TmpfsEntry, TmpfsMount, TmpfsRecord, TMPFS_BLOB_TAG};
use seamless_image::{Reader, RecordKind, Store};
use seamless_sys::chain;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// What was recreated, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Mounts made.
    pub mounted: u32,
    /// Entries created.
    pub created: u32,
    /// Bytes written.
    pub bytes: u64,
    /// Entries that were already there.
    pub existing: u32,
    /// Entries that could not be created.
    pub failed: u32,
}

/// The image's tmpfs record, if it has a valid one.
pub fn recorded<S: Store>(reader: &mut Reader<S>) -> Option<TmpfsRecord> {
    crate::handover::optional_record(
        reader,
        RecordKind::TMPFS,
        TmpfsRecord::check,
        "tmpfs",
        "its files are not recreated",
    )
}

fn is_mount_point(path: &Path) -> bool {
    let dev = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.dev()).ok();
    match (dev(path), path.parent().and_then(dev)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// The recorded options as mount(2) flags and tmpfs data (mode, size, inode and owner options).
fn mount_options(options: &str) -> (libc::c_ulong, String) {
    use seamless_sys::mount::{MS_NODEV, MS_NOEXEC, MS_NOSUID};
    let mut flags = 0;
    let mut data = Vec::new();
    for o in options.split(',') {
        match o {
            "nosuid" => flags |= MS_NOSUID,
            "nodev" => flags |= MS_NODEV,
            "noexec" => flags |= MS_NOEXEC,
            _ if ["mode=", "size=", "nr_inodes=", "uid=", "gid="].iter().any(|k| o.starts_with(k)) => {
                data.push(o.to_string())
            }
            _ => {}
        }
    }
    (flags, data.join(","))
}

fn ensure_mounted(m: &TmpfsMount, s: &mut Summary) {
    let path = Path::new(&m.path);
    if is_mount_point(path) {
        return;
    }
    let (flags, data) = mount_options(&m.options);
    let made = std::fs::create_dir_all(path)
        .map_err(|e| crate::error::BootError::path("creating", path, e))
        .and_then(|()| Ok(seamless_sys::mount::mount("tmpfs", path, Some("tmpfs"), flags, Some(&data))?));
    match made {
        Ok(()) => {
            s.mounted += 1;
            log::info!("tmpfs mounted on {} ({data}) for the carried files", m.path);
        }
        Err(e) => log::warn!("cannot mount a tmpfs on {}: {}; its files go to whatever is there", m.path, chain(&e)),
    }
}

fn create<S: Store>(e: &TmpfsEntry, reader: &mut Reader<S>) -> std::io::Result<u64> {
    let path = Path::new(&e.path);
    let perm = std::fs::Permissions::from_mode(e.mode & 0o7777);
    let mtime = UNIX_EPOCH + Duration::from_nanos(e.mtime_ns.max(0) as u64);
    match e.mode & 0o170000 {
        0o040000 => {
            std::fs::DirBuilder::new().mode(0o700).create(path)?;
            std::os::unix::fs::lchown(path, Some(e.uid), Some(e.gid))?;
            std::fs::set_permissions(path, perm)?;
            Ok(0)
        }
        0o120000 => {
            std::os::unix::fs::symlink(&e.target, path)?;
            std::os::unix::fs::lchown(path, Some(e.uid), Some(e.gid))?;
            Ok(0)
        }
        _ => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)?;
            let mut bytes = 0u64;
            for &b in &e.blobs {
                let entry = reader.entry(b).map_err(std::io::Error::other)?;
                if entry.kind != RecordKind::BLOB || entry.owner != 0 || entry.tag & TMPFS_BLOB_TAG == 0 {
                    return Err(std::io::Error::other(format!("index entry {b} is not a tmpfs blob")));
                }
                let data = reader.blob(b).map_err(std::io::Error::other)?;
                f.write_all(&data)?;
                bytes += data.len() as u64;
            }
            if bytes != e.size {
                return Err(std::io::Error::other(format!("{bytes} bytes of contents, recorded {}", e.size)));
            }
            std::os::unix::fs::fchown(&f, Some(e.uid), Some(e.gid))?;
            // After the contents and the owner, so set-id bits are kept.
            f.set_permissions(perm)?;
            f.set_modified(mtime)?;
            Ok(bytes)
        }
    }
}

/// Recreates `rec`'s mounts and entries in the current root.
pub fn recreate<S: Store>(rec: &TmpfsRecord, reader: &mut Reader<S>) -> Summary {
    let mut s = Summary::default();
    for m in &rec.mounts {
        ensure_mounted(m, &mut s);
    }
    for e in &rec.entries {
        match create(e, reader) {
            Ok(bytes) => {
                s.created += 1;
                s.bytes += bytes;
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => s.existing += 1,
            Err(err) => {
                s.failed += 1;
                log::warn!("tmpfs: cannot recreate {}: {}", e.path, chain(&err));
            }
        }
    }
    // Directory times last: creating their entries changed them.
    for e in rec.entries.iter().rev().filter(|e| e.mode & 0o170000 == 0o040000) {
        let mtime = UNIX_EPOCH + Duration::from_nanos(e.mtime_ns.max(0) as u64);
        if let Err(err) = std::fs::File::open(&e.path).and_then(|d| d.set_modified(mtime)) {
            log::debug!("tmpfs: times of {}: {}", e.path, chain(&err));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tmpfs_options_and_safe_flags_are_kept() {
        let (flags, data) = mount_options("rw,nosuid,nodev,relatime,rw,size=401276k,mode=755,inode64");
        assert_eq!(flags, seamless_sys::mount::MS_NOSUID | seamless_sys::mount::MS_NODEV);
        assert_eq!(data, "size=401276k,mode=755");
    }
}
