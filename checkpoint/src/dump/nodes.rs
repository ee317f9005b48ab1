//! Files no path reaches any more: FIFOs and directories deleted while a descriptor holds
//! them or while a process works in them ([`DeletedNode`], record kind 61), and executables
//! that are memfds or deleted files ([`ExeObject`], record kind 62; the object itself, with its
//! contents and seals, is a memfd or deleted-file object of [`super::objects`]).
//!
//! A deleted FIFO is saved once per inode with its mode, owner and the bytes queued in it
//! (read without consuming them, like any pipe); a deleted directory with its mode and
//! owner (it is empty: only an empty directory can be removed). Each description that opens
//! it keeps its ordinary kind (`Fifo`, or `Regular` with a directory mode) under the path the
//! node had. A deleted root directory stays refused (the pre-check): `chroot` into a directory
//! made for the restore would give the process another root than its own.

use super::files::FilePlan;
use super::{DumpError, Frozen};
use seamless_image::records::{self, DeletedNode, ExeObject, FileKind};
use seamless_image::{Store, Writer};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

/// The nodes and executable objects of a dump.
#[derive(Debug, Default)]
pub struct Nodes {
    /// Nodes by (device, inode).
    pub by_inode: BTreeMap<(u64, u64), DeletedNode>,
    /// Executable objects by pid.
    pub exes: BTreeMap<i32, ExeObject>,
}

fn strip(link: &str) -> String {
    link.strip_suffix(" (deleted)").unwrap_or(link).to_string()
}

fn node<'a>(plan: &'a mut FilePlan, link: &str, md: &std::fs::Metadata, pipe: u64) -> &'a mut DeletedNode {
    let next = u32::try_from(plan.nodes.by_inode.len() + 1).unwrap_or(u32::MAX);
    plan.nodes.by_inode.entry((md.dev(), md.ino())).or_insert_with(|| DeletedNode {
        id: next,
        path: strip(link),
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        pipe,
        descs: Vec::new(),
        cwd_of: Vec::new(),
    })
}

/// A descriptor of a deleted FIFO (`link` is `PATH (deleted)`, link count 0).
pub fn fifo(
    pid: i32,
    fd: i32,
    link: &str,
    md: &std::fs::Metadata,
    plan: &mut FilePlan,
    id: u32,
) -> Result<FileKind, DumpError> {
    let ino = md.ino();
    if let std::collections::btree_map::Entry::Vacant(e) = plan.pipes.entry(ino) {
        e.insert(super::files::read_pipe(pid, fd, ino)?);
    }
    let n = node(plan, link, md, ino);
    n.descs.push(id);
    Ok(FileKind::Fifo { path: n.path.clone(), pipe: ino })
}

/// A descriptor of a deleted directory.
pub fn dir(link: &str, md: &std::fs::Metadata, plan: &mut FilePlan, id: u32) -> FileKind {
    let n = node(plan, link, md, 0);
    n.descs.push(id);
    FileKind::Regular { path: n.path.clone(), size: md.size(), mode: md.mode() }
}

/// Whether the pre-check's refusal of a deleted working directory or executable (`what` is
/// `cwd` or `exe`, `md` what `/proc/PID/<what>` leads to) is lifted because this module saves
/// it: a deleted directory as a node, a memfd or deleted regular file as an object.
pub fn saved_instead(what: &str, link: &str, md: &std::fs::Metadata) -> bool {
    match what {
        "cwd" => md.file_type().is_dir() && md.nlink() == 0 && link.ends_with(" (deleted)"),
        "exe" => {
            md.file_type().is_file()
                && link.ends_with(" (deleted)")
                && (super::objects::is_memfd_mapping(link) || md.nlink() == 0)
        }
        _ => false,
    }
}

/// Adds the deleted working directories and the executables that are memfds or deleted
/// files (after the descriptors and mappings: a node or object they share is saved once).
pub fn finish(frozen: &Frozen, plan: &mut FilePlan) -> Result<(), DumpError> {
    for p in frozen.procs().iter().filter(|p| p.zombie.is_none()) {
        let pid = p.pid;
        for what in ["cwd", "exe"] {
            let link_path = format!("/proc/{pid}/{what}");
            let link = std::fs::read_link(&link_path)
                .map_err(|e| DumpError::io(pid, format!("readlink {link_path}"), e))?
                .to_string_lossy()
                .into_owned();
            let md = std::fs::metadata(&link_path).map_err(|e| DumpError::io(pid, format!("stat {link_path}"), e))?;
            if !saved_instead(what, &link, &md) {
                continue;
            }
            if what == "cwd" {
                node(plan, &link, &md, 0).cwd_of.push(pid);
            } else {
                super::objects::exe_object(pid, &link, &link_path, plan)?;
                plan.nodes.exes.insert(pid, ExeObject { dev: md.dev(), ino: md.ino() });
            }
        }
    }
    Ok(())
}

/// Refuses the nodes and executable objects when the reader (knowing record kinds `kinds`)
/// does not know their kinds.
pub fn readable_by(plan: &FilePlan, kinds: &[u16]) -> Result<(), DumpError> {
    let refuse = |pid: i32, resource: String, kind: seamless_image::RecordKind| DumpError::Unsupported {
        pid,
        resource,
        reason: format!(
            "needs record kind {} ({kind}), which the target's seamless-init does not read: update it",
            kind.0
        ),
    };
    if !kinds.contains(&records::DELETED_NODE.0) {
        if let Some(n) = plan.nodes.by_inode.values().next() {
            let holder = n.descs.first().and_then(|&d| {
                plan.tables.iter().find_map(|(pid, t)| t.fds.iter().find(|f| f.desc == d).map(|f| (*pid, f.fd)))
            });
            let (pid, what) = match (holder, n.cwd_of.first()) {
                (Some((pid, fd)), _) => (pid, format!("fd {fd} (deleted {})", n.path)),
                (None, Some(&pid)) => (pid, format!("cwd (deleted {})", n.path)),
                (None, None) => (0, n.path.clone()),
            };
            return Err(refuse(pid, what, records::DELETED_NODE));
        }
    }
    if !kinds.contains(&records::EXE_OBJECT.0) {
        if let Some((&pid, _)) = plan.nodes.exes.iter().next() {
            return Err(refuse(pid, "exe (a memfd or deleted file)".into(), records::EXE_OBJECT));
        }
    }
    Ok(())
}

/// Writes the nodes (descriptions ascending) and executable objects.
pub fn write<S: Store>(nodes: &Nodes, w: &mut Writer<S>) -> Result<(), DumpError> {
    for n in nodes.by_inode.values() {
        let mut n = n.clone();
        n.descs.sort_unstable();
        n.cwd_of.sort_unstable();
        w.put_record(records::DELETED_NODE, 0, u64::from(n.id), &n)?;
    }
    for (&pid, e) in &nodes.exes {
        w.put_record(records::EXE_OBJECT, pid.unsigned_abs(), 0, e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_directory_is_recognised_as_a_working_directory_only() {
        let d = tempfile_dir();
        let f = std::fs::File::open(&d).unwrap();
        std::fs::remove_dir(&d).unwrap();
        let md = f.metadata().unwrap();
        let link = format!("{} (deleted)", d.display());
        assert!(saved_instead("cwd", &link, &md));
        assert!(!saved_instead("exe", &link, &md));
        assert!(!saved_instead("root", &link, &md));
        assert!(!saved_instead("cwd", &d.display().to_string(), &md));
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("seamless-nodes-test.{}", std::process::id()));
        std::fs::create_dir(&d).unwrap();
        d
    }

    #[test]
    fn a_reader_without_the_kinds_is_refused_with_the_holder() {
        let mut plan = FilePlan::default();
        plan.tables.insert(10, records::FdTable { fds: vec![records::Fd { fd: 4, cloexec: false, desc: 2 }] });
        plan.nodes.by_inode.insert(
            (1, 2),
            DeletedNode {
                id: 1,
                path: "/t/f".into(),
                mode: DeletedNode::FIFO | 0o600,
                uid: 0,
                gid: 0,
                pipe: 2,
                descs: vec![2],
                cwd_of: vec![],
            },
        );
        match readable_by(&plan, &[records::EXE_OBJECT.0]) {
            Err(DumpError::Unsupported { pid: 10, resource, reason }) => {
                assert_eq!(resource, "fd 4 (deleted /t/f)");
                assert!(reason.contains("61"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        readable_by(&plan, &[records::DELETED_NODE.0]).unwrap();
        plan.nodes.exes.insert(11, ExeObject { dev: 1, ino: 3 });
        assert!(readable_by(&plan, &[records::DELETED_NODE.0]).is_err());
        readable_by(&plan, &[records::DELETED_NODE.0, records::EXE_OBJECT.0]).unwrap();
    }
}
