//! The error of `seamless-init`'s own steps (finding the region, checking and mounting the
//! root, switching to it, putting services back into their units). Like every error type of
//! seamless, a message names what failed and on what, never its cause's text: print it with
//! [`seamless_sys::chain`].

use seamless_image::ImageError;
use seamless_sys::SysError;
use std::path::PathBuf;

/// Why a step of the boot (or of the hand-over to systemd units) failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A file-system operation on `path` failed.
    #[error("{what} {}", path.display())]
    Path {
        /// What was being done (`"creating"`, `"writing"`, ...).
        what: String,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The image could not be read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The kernel command line names no root filesystem.
    #[error("no root= on the kernel command line")]
    NoRoot,
    /// The root is named in a way this init cannot resolve.
    #[error("root={0} is not supported (only /dev/... paths; no udev in the initramfs)")]
    RootSpec(String),
    /// The root device did not show up in time.
    #[error("root device {} did not appear within {ms} ms", device.display())]
    DeviceTimeout {
        /// The device.
        device: PathBuf,
        /// How long it was waited for.
        ms: u64,
    },
    /// No filesystem type mounted the root device.
    #[error("cannot mount {device}: {}", if tried.is_empty() { "no block filesystem type is known to the kernel".to_string() } else { tried.iter().map(|(t, e)| format!("{t}: {e}")).collect::<Vec<_>>().join("; ") })]
    Mount {
        /// The device.
        device: String,
        /// Each type tried, with the kernel's answer (several causes: listed, not chained).
        tried: Vec<(String, std::io::Error)>,
    },
    /// The upgrade record has no identity of the root filesystem to compare with.
    #[error("the image recorded no root filesystem identity")]
    NoRootIdentity,
    /// The root filesystem is not the one frozen before the jump.
    #[error("root filesystem check failed")]
    RootChanged(#[source] seamless_image::upgrade::IdentityMismatch),
    /// The filesystems record is unreadable or malformed.
    #[error("the filesystems record is refused: {0}")]
    FsRecord(String),
    /// A filesystem the preserved processes use is not the one frozen before the jump.
    #[error("filesystem check failed")]
    FsChanged(#[source] seamless_image::filesystems::FsVerifyError),
    /// The device of a recorded filesystem did not show up in time.
    #[error("the device of filesystem {mountpoint} ({device}{}) did not appear within {ms} ms", if dm_uuid.is_empty() { String::new() } else { format!(", device-mapper {dm_uuid}") })]
    FsDeviceTimeout {
        /// Its mount point before the jump.
        mountpoint: String,
        /// The device recorded.
        device: String,
        /// Its device-mapper UUID, if any.
        dm_uuid: String,
        /// How long it was waited for.
        ms: u64,
    },
    /// A dm-crypt volume could not be unlocked (nothing was).
    #[error("{0}")]
    Crypt(String),
    /// The image was made for another kernel.
    #[error("the image was made for kernel {target} but kernel {running} is running")]
    OtherKernel {
        /// The release the upgrade jumped to.
        target: String,
        /// The running release.
        running: String,
    },
    /// The initramfs hook did not (or could not) verify the root before it was mounted.
    #[error("{0}")]
    Verdict(String),
    /// A test image's pages do not hold its pattern.
    #[error("{0}")]
    Pattern(String),
    /// Switching to the real root failed.
    #[error("switching root to {0} failed")]
    SwitchRoot(&'static str, #[source] Box<BootError>),
}

impl BootError {
    /// A failed file-system operation `what` on `path`.
    pub fn path(what: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Path { what: what.into(), path: path.into(), source }
    }
}
