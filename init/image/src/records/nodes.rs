//! Files the older records reach only by path, for the cases where no path reaches them any
//! more: FIFOs and directories deleted while open (or a deleted working directory), and an
//! executable that is a memfd or a deleted file (a process started with `fexecve` on a memfd,
//! as container runtimes re-execute themselves).

use serde::{Deserialize, Serialize};

/// A FIFO or directory whose last name was removed while processes held it: stored under
/// [`super::DELETED_NODE`], owner 0, tag = [`Self::id`]. The descriptions that open it keep
/// their ordinary kinds ([`super::FileKind::Fifo`] with the node's pipe inode,
/// [`super::FileKind::Regular`] with a directory mode), their paths being [`Self::path`];
/// the FIFO's buffered bytes are in the [`super::PipeRecord`] of [`Self::pipe`]. Not
/// `IGNORABLE`: a reader that skipped it would open those paths, which name nothing (or
/// another file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedNode {
    /// A number unique among the nodes of the image (the entry tag).
    pub id: u32,
    /// The path it had (without the ` (deleted)` suffix).
    pub path: String,
    /// Mode: file type (`S_IFIFO` or `S_IFDIR`) and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// A FIFO's inode on the dumping kernel (its [`super::PipeRecord`]); 0 for a directory.
    pub pipe: u64,
    /// Open file descriptions of it, ascending.
    pub descs: Vec<u32>,
    /// Processes whose working directory it is (directories only), ascending.
    pub cwd_of: Vec<i32>,
}

impl DeletedNode {
    /// `S_IFMT`.
    pub const TYPE_MASK: u32 = 0o170_000;
    /// `S_IFIFO`.
    pub const FIFO: u32 = 0o010_000;
    /// `S_IFDIR`.
    pub const DIR: u32 = 0o040_000;

    /// Whether it is a FIFO (else a directory).
    pub fn is_fifo(&self) -> bool {
        self.mode & Self::TYPE_MASK == Self::FIFO
    }
}

/// The executable of a process when no path reaches it (a memfd, or a deleted file): the
/// [`super::FileObject`] (memfd or deleted file) of that device and inode, which the dump
/// saved with its contents and seals. Stored under [`super::EXE_OBJECT`], owner = pid, at most
/// one per process. Not `IGNORABLE`: without it the restore would open the executable's
/// recorded name (`/memfd:NAME (deleted)`), which names nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExeObject {
    /// Device of the object on the dumping kernel.
    pub dev: u64,
    /// Inode of the object on the dumping kernel.
    pub ino: u64,
}
