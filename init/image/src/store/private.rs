//! Where images may live, and who may have touched them.
//!
//! Writing side: every directory seamless creates is mode 0700, every file 0600, created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` under a temporary name and renamed over the final name (so a
//! symbolic link planted at the final name is replaced, never followed). A directory store is
//! locked (`flock` on the directory) for as long as it is being written.
//!
//! Reading side ([`open_trusted`]): an image is only restored when nobody but root can have
//! written it: the file (opened with `O_NOFOLLOW`) and every directory above it up to `/`
//! are owned by root and not writable by group or others (like sshd's `StrictModes`); a block
//! device must be owned by root and not writable by others.

use crate::error::{ImageError, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the directories seamless creates.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the files seamless creates.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let store = path.display().to_string();
    move |source| ImageError::Io { op, store, source }
}

/// The effective uid of this process (from `/proc/self/status`), if readable.
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Creates `dir` (and missing parents) with mode 0700, or checks an existing one: it must be
/// a real directory (not a symbolic link) owned by this user and not writable by group or
/// others (its mode is left alone otherwise). Returns the open directory.
pub fn private_dir(dir: &Path) -> Result<File> {
    match std::fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) => return Err(io("mkdir", dir)(e)),
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
                ImageError::Untrusted {
                    path: dir.display().to_string(),
                    why: "is a symbolic link or not a directory; give a real directory".into(),
                }
            } else {
                io("open", dir)(e)
            }
        })?;
    let meta = f.metadata().map_err(io("stat", dir))?;
    let me = euid().unwrap_or(0);
    if meta.uid() != me {
        return Err(ImageError::Untrusted {
            path: dir.display().to_string(),
            why: format!(
                "is owned by uid {}, not by uid {me} that writes the image; use a directory of your own",
                meta.uid()
            ),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(ImageError::Untrusted {
            path: dir.display().to_string(),
            why: format!("is writable by others than its owner (mode {mode:04o}); give a directory only you can write"),
        });
    }
    Ok(f)
}

/// An exclusive lock on an image directory, held while it exists.
#[derive(Debug)]
pub struct DirLock {
    dir: File,
    path: PathBuf,
}

impl DirLock {
    /// Creates or checks `dir` as [`private_dir`] does and locks it (`flock`, exclusive,
    /// without waiting). Fails with [`ImageError::Locked`], naming the holder when
    /// `/proc/locks` tells, if another process holds the lock.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let f = private_dir(dir)?;
        let name = dir.display().to_string();
        match seamless_sys::flock::try_lock_exclusive(f.as_fd(), &name) {
            Ok(true) => Ok(Self { dir: f, path: dir.to_path_buf() }),
            Ok(false) => {
                let holder = f.metadata().ok().and_then(|m| lock_holder(m.dev(), m.ino()));
                Err(ImageError::Locked { dir: name, holder })
            }
            Err(e) => Err(ImageError::Io { op: "lock", store: name, source: e.source }),
        }
    }

    /// The locked directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open directory.
    pub fn dir(&self) -> &File {
        &self.dir
    }
}

/// The pid holding a `flock` on the file `dev`/`ino`, from `/proc/locks`.
fn lock_holder(dev: u64, ino: u64) -> Option<i32> {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let want = format!("{major:02x}:{minor:02x}:{ino}");
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->" after "1:".
        if w.len() >= 6 && w[1] == "FLOCK" && w[5] == want {
            w[4].parse().ok()
        } else {
            None
        }
    })
}

/// Creates the file `path` privately: a new file (mode 0600, `O_EXCL|O_NOFOLLOW`) under a
/// temporary name in the same directory, renamed over `path`. An existing file or symbolic
/// link at `path` is replaced, never written through. Returns the file open read-write.
pub fn create_private(path: &Path) -> Result<File> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".{name}.{}.{nanos:08x}.tmp", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    // The umask can only clear bits; make the mode exact anyway.
    if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE_MODE)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("chmod", &tmp)(e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("rename", path)(e));
    }
    Ok(file)
}

fn untrusted(path: &Path, why: String) -> ImageError {
    ImageError::Untrusted { path: path.display().to_string(), why }
}

/// Whether `meta` is owned by root and not writable by group or others.
fn root_only(meta: &std::fs::Metadata) -> Option<String> {
    if meta.uid() != 0 {
        return Some(format!("is owned by uid {}, not root", meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "is writable by {} (mode {mode:04o}); run chmod go-w on it",
            if mode & 0o002 != 0 { "others" } else { "its group" }
        ));
    }
    None
}

/// Opens an image file or block device for restore, only if nobody but root can have
/// written it: `path` is opened with `O_NOFOLLOW` (a symbolic link is refused); a regular
/// file must be owned by root and not group/other-writable, and so must every directory from
/// `/` down to the one holding it; a block device must be owned by root and not writable by
/// others (where its node lives does not matter: only root can make device nodes). `writable` opens it read-write (to mark it consumed).
pub fn open_trusted(path: &Path, writable: bool) -> Result<File> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = std::fs::canonicalize(parent).map_err(io("resolve", parent))?;
    let name = path.file_name().ok_or_else(|| untrusted(path, "names no file".into()))?;
    let full = parent.join(name);
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let file = OpenOptions::new().read(true).write(writable).custom_flags(flags).open(&full).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            untrusted(&full, "is a symbolic link; give the real file".into())
        } else {
            io("open", &full)(e)
        }
    })?;
    let meta = file.metadata().map_err(io("stat", &full))?;
    let ft = meta.file_type();
    if ft.is_block_device() {
        if meta.uid() != 0 {
            return Err(untrusted(&full, format!("is a block device owned by uid {}, not root", meta.uid())));
        }
        if meta.mode() & 0o002 != 0 {
            return Err(untrusted(
                &full,
                format!("is a block device writable by others (mode {:04o})", meta.mode() & 0o7777),
            ));
        }
        // Only root can make device nodes, so where the node lives does not matter.
        return Ok(file);
    }
    if !ft.is_file() {
        return Err(untrusted(&full, "is neither a regular file nor a block device".into()));
    }
    if let Some(why) = root_only(&meta) {
        return Err(untrusted(&full, why));
    }
    for dir in parent.ancestors() {
        let m = std::fs::symlink_metadata(dir).map_err(io("stat", dir))?;
        if let Some(why) = root_only(&m) {
            return Err(untrusted(dir, format!("this directory (above the image {}) {why}", full.display())));
        }
    }
    Ok(file)
}
