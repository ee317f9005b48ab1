//! Loading a kernel with `kexec_file_load` and jumping into it after making every writable
//! block-backed filesystem consistent on disk (sync, then `FIFREEZE`, innermost first, the
//! root last). If the jump fails, every frozen filesystem is thawed again.

use seamless_sys::chain;
use seamless_sys::kexec::{kexec_file_load, kexec_file_unload, kexec_reboot};
use seamless_sys::SysError;
use std::path::{Path, PathBuf};

/// Errors of the kexec library, each with the file or mount it is about.
#[derive(Debug, thiserror::Error)]
pub enum KexecError {
    /// A file needed for the load cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `kexec_file_load` refused the image.
    #[error("loading {kernel} failed: {reason}")]
    Load {
        /// The kernel image.
        kernel: PathBuf,
        /// What the refusal means here.
        reason: String,
        /// The system call error.
        #[source]
        source: SysError,
    },
    /// Unloading failed.
    #[error("unloading the kexec image failed")]
    Unload {
        /// The system call error.
        #[source]
        source: SysError,
    },
    /// `--exec` without a loaded image.
    #[error("no kernel is loaded for kexec (/sys/kernel/kexec_loaded is 0); load one first with `seamless kexec --kernel K --initrd I --reuse-cmdline`")]
    NotLoaded,
    /// A filesystem could not be frozen; the ones frozen before it were thawed.
    #[error("freezing {mountpoint} ({source_dev}) failed, nothing left frozen")]
    Freeze {
        /// The mount point.
        mountpoint: PathBuf,
        /// The device.
        source_dev: String,
        /// The ioctl error.
        #[source]
        source: SysError,
    },
    /// The jump did not happen; everything was thawed.
    #[error("the jump into the loaded kernel failed ({thawed} filesystems thawed{thaw_failures})")]
    Jump {
        /// How many filesystems were thawed again.
        thawed: usize,
        /// Thaw failures, if any, already formatted.
        thaw_failures: String,
        /// The reboot error.
        #[source]
        source: SysError,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, KexecError>;

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Explains a `kexec_file_load` failure in operator terms, looking at the sysctl and lockdown
/// state when the kernel said `EPERM`.
pub fn explain_load_error(err: &SysError) -> String {
    const EPERM: i32 = 1;
    const ENOEXEC: i32 = 8;
    const ENOMEM: i32 = 12;
    const EBUSY: i32 = 16;
    const EINVAL: i32 = 22;
    const ENOSYS: i32 = 38;
    const EKEYREJECTED: i32 = 129;
    const ENOKEY: i32 = 126;
    const EKEYREVOKED: i32 = 128;
    const EBADMSG: i32 = 74;
    match err.errno() {
        Some(EPERM) => {
            if read_trimmed("/proc/sys/kernel/kexec_load_disabled").as_deref() == Some("1") {
                return "kexec is disabled on this system (kernel.kexec_load_disabled=1; only a reboot clears it)".into();
            }
            if let Some(l) = read_trimmed("/sys/kernel/security/lockdown") {
                if l.contains("[integrity]") || l.contains("[confidentiality]") {
                    return format!("kernel lockdown is active ({l}): only kernels signed with a trusted key can be loaded");
                }
            }
            "permission denied: loading a kernel needs CAP_SYS_BOOT (run as root)".into()
        }
        Some(ENOEXEC) => {
            "the file is not a kernel image this kernel can load (an x86-64 bzImage is needed), or its signature is required and missing".into()
        }
        Some(EKEYREJECTED) | Some(ENOKEY) | Some(EKEYREVOKED) | Some(EBADMSG) => {
            "the image's signature was rejected (unsigned, or signed by a key this kernel does not trust)".into()
        }
        Some(ENOMEM) => "not enough memory to stage the new kernel and initramfs".into(),
        Some(EBUSY) => "another kexec load or jump is in progress".into(),
        Some(EINVAL) => "the kernel rejected the arguments (command line too long, or a malformed image)".into(),
        Some(ENOSYS) => "this kernel has no kexec_file_load (CONFIG_KEXEC_FILE is off)".into(),
        _ => format!("{}", err.source),
    }
}

/// The command line of the running kernel without the bootloader's own words
/// (`BOOT_IMAGE=`, `initrd=`), for `--reuse-cmdline`.
pub fn current_cmdline() -> Result<String> {
    let raw = std::fs::read_to_string("/proc/cmdline")
        .map_err(|source| KexecError::Read { path: "/proc/cmdline".into(), source })?;
    Ok(raw
        .split_whitespace()
        .filter(|w| !w.starts_with("BOOT_IMAGE=") && !w.starts_with("initrd="))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Loads `kernel` with `initrd` and `cmdline` for a later [`exec`].
pub fn load(kernel: &Path, initrd: Option<&Path>, cmdline: &str) -> Result<()> {
    for p in std::iter::once(kernel).chain(initrd) {
        std::fs::metadata(p).map_err(|source| KexecError::Read { path: p.to_path_buf(), source })?;
    }
    kexec_file_load(kernel, initrd, cmdline).map_err(|source| KexecError::Load {
        kernel: kernel.to_path_buf(),
        reason: explain_load_error(&source),
        source,
    })
}

/// Unloads the loaded image.
pub fn unload() -> Result<()> {
    kexec_file_unload().map_err(|source| KexecError::Unload { source })
}

/// Whether an image is loaded (`/sys/kernel/kexec_loaded`).
pub fn is_loaded() -> bool {
    read_trimmed("/sys/kernel/kexec_loaded").as_deref() == Some("1")
}

/// One mounted filesystem to freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeTarget {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// `major:minor` of its device.
    pub dev: String,
    /// The mount source (normally a `/dev/...` path).
    pub source: String,
    /// The filesystem type.
    pub fstype: String,
}

/// Decodes the octal escapes (`\040` for a space) of a mountinfo field.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The filesystems of a mountinfo table to freeze before a kexec: writable (per mount and per
/// superblock) and backed by a block device (a non-zero major, or a source that is a block
/// device), each superblock once, innermost mount point first and the root last.
pub fn freeze_targets(mountinfo: &str, is_block_device: impl Fn(&str) -> bool) -> Vec<FreezeTarget> {
    let mut out: Vec<FreezeTarget> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 6 || r.len() < 3 {
            continue;
        }
        let (dev, mountpoint, mount_opts) = (l[2], unescape(l[4]), l[5]);
        let (fstype, source, super_opts) = (r[0], unescape(r[1]), r[2]);
        let writable = mount_opts.split(',').any(|o| o == "rw") && super_opts.split(',').any(|o| o == "rw");
        let major_nonzero = dev.split(':').next().is_some_and(|m| m != "0");
        if !writable || !(major_nonzero || is_block_device(&source)) {
            continue;
        }
        // A later mount of the same superblock hides or duplicates the earlier one; keep one.
        out.retain(|t| t.dev != dev);
        out.push(FreezeTarget {
            mountpoint: PathBuf::from(mountpoint),
            dev: dev.to_string(),
            source,
            fstype: fstype.to_string(),
        });
    }
    out.sort_by_key(|t| {
        std::cmp::Reverse(if t.mountpoint == Path::new("/") { 0 } else { t.mountpoint.components().count() })
    });
    out
}

fn is_block_device(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    path.starts_with('/') && std::fs::metadata(path).map(|m| m.file_type().is_block_device()).unwrap_or(false)
}

/// The filesystems of the running system that [`exec`] freezes, in order.
pub fn current_freeze_targets() -> Result<Vec<FreezeTarget>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|source| KexecError::Read { path: "/proc/self/mountinfo".into(), source })?;
    Ok(freeze_targets(&text, is_block_device))
}

/// Thaws `frozen` in reverse order (root first); returns one message per failure.
pub fn thaw_all(frozen: &[FreezeTarget]) -> Vec<String> {
    frozen
        .iter()
        .rev()
        .filter_map(|t| match seamless_sys::fsfreeze::thaw(&t.mountpoint) {
            Ok(()) => {
                crate::supervisor::note(&crate::supervisor::Undo::Thawed(t.mountpoint.clone()));
                None
            }
            Err(e) => Some(chain(&e).to_string()),
        })
        .collect()
}

/// Syncs and freezes `targets` in order. On a failure, thaws what was frozen and reports it.
pub fn freeze_all(targets: &[FreezeTarget]) -> Result<()> {
    seamless_sys::fsfreeze::sync_all();
    for (i, t) in targets.iter().enumerate() {
        if let Err(source) = seamless_sys::fsfreeze::freeze(&t.mountpoint) {
            for msg in thaw_all(&targets[..i]) {
                log::error!("{msg}");
            }
            return Err(KexecError::Freeze { mountpoint: t.mountpoint.clone(), source_dev: t.source.clone(), source });
        }
        crate::supervisor::note(&crate::supervisor::Undo::Frozen(t.mountpoint.clone()));
        log::debug!("froze {} ({}, {})", t.mountpoint.display(), t.source, t.fstype);
    }
    Ok(())
}

/// Syncs, freezes every target, then jumps into the loaded kernel. `before_jump` runs after
/// the freeze, right before the jump (the caller prints its last words there; it must not
/// write to a frozen filesystem). Returns only on failure, with everything thawed.
pub fn exec(before_jump: impl FnOnce(&[FreezeTarget])) -> Result<std::convert::Infallible> {
    if !is_loaded() {
        return Err(KexecError::NotLoaded);
    }
    let targets = current_freeze_targets()?;
    freeze_all(&targets)?;
    before_jump(&targets);
    let source = kexec_reboot();
    let failures = thaw_all(&targets);
    let thaw_failures =
        if failures.is_empty() { String::new() } else { format!("; thaw failures: {}", failures.join("; ")) };
    Err(KexecError::Jump { thawed: targets.len() - failures.len(), thaw_failures, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid shared:2 - proc proc rw
24 22 0:5 / /dev rw shared:3 - devtmpfs devtmpfs rw,size=1000k
30 22 254:16 / /mnt/data\\040disk rw,relatime - ext4 /dev/vdb rw
31 30 254:32 / /mnt/data\\040disk/inner rw - xfs /dev/vdc rw
32 22 254:48 / /media/cd ro - iso9660 /dev/sr0 ro
33 22 254:16 /sub /srv rw - ext4 /dev/vdb rw
34 22 0:40 / /btr rw - btrfs /dev/vdd rw
";

    #[test]
    fn freeze_order_and_selection() {
        let t = freeze_targets(MOUNTINFO, |s| s == "/dev/vdd");
        let mps: Vec<String> = t.iter().map(|t| t.mountpoint.display().to_string()).collect();
        assert_eq!(mps, vec!["/mnt/data disk/inner", "/srv", "/btr", "/"]);
        assert_eq!(t.last().map(|t| t.source.as_str()), Some("/dev/vda"));
    }

    #[test]
    fn unescape_octal() {
        assert_eq!(unescape("a\\040b\\011c\\"), "a b\tc\\");
    }
}
