//! Open files. The restorer opens every saved open file description once in its own
//! descriptor table (regular files at their offset, deleted files recreated and unlinked,
//! pipes refilled with their buffered bytes, FIFOs, character devices). Each child then
//! pulls the descriptions it needs with an injected `pidfd_getfd` on the restorer, so a
//! description shared between descriptors or processes stays shared (one offset, one pipe).
//! Sockets, eventfd/signalfd/timerfd and epoll are created by their own modules; epoll
//! watches are added once the owner's descriptors are all in place.

use crate::abi;
use crate::plan::Plan;
use crate::tracee::Tracee;
use crate::{Failures, RestoreError};
use seamless_image::records::{self, EpollRecord, FileKind};
use seamless_image::{Reader, Store};
use seamless_sys::chain;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

/// Descriptions opened in the restorer, by description id.
#[derive(Debug, Default)]
pub struct OpenFiles {
    /// Our descriptor of each description.
    pub by_id: BTreeMap<u32, OwnedFd>,
    /// Keeps pipes and FIFOs alive (and writable) until every child has its ends.
    keep: Vec<OwnedFd>,
    /// Epoll descriptions with their watches (added in the owner by [`install`]).
    pub epolls: BTreeMap<u32, EpollRecord>,
    /// Pty pairs (their descriptions are in `by_id` too).
    pub ptys: crate::tty::Ptys,
    /// POSIX message queues and memfds (see [`crate::objects`]).
    pub objects: crate::objects::Objects,
    /// Deleted FIFOs and directories (see [`crate::nodes`]).
    pub nodes: crate::nodes::Nodes,
}

const STRIP: i32 = libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_NOCTTY;

pub(crate) fn open_path(path: &str, flags: u32) -> std::io::Result<OwnedFd> {
    let flags = (abi::signed(flags) & !STRIP) | libc::O_CLOEXEC;
    let acc = flags & libc::O_ACCMODE;
    let f = std::fs::OpenOptions::new()
        .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags(flags & !libc::O_ACCMODE)
        .open(path)?;
    Ok(f.into())
}

/// Recreates a deleted-but-open file, so that no other user can reach it before its
/// contents and mode are final: preferably nameless (`O_TMPFILE`, mode 0600) in the
/// directory it was in; where the filesystem cannot, under a fresh name created 0600 with
/// `O_EXCL|O_NOFOLLOW` and unlinked at once, before any content. The contents are written first, the mode
/// (set-id bits included) is applied only after them; then the file is opened again with the
/// description's flags.
#[allow(clippy::too_many_arguments)]
fn ghost<S: Store>(
    id: u32,
    path: &str,
    mode: u32,
    owner: Option<records::GhostOwner>,
    flags: u32,
    blobs: &[u32],
    reader: &mut Reader<S>,
) -> Result<OwnedFd, RestoreError> {
    let err = |what: String, e: std::io::Error| RestoreError::File { id, what, source: e };
    let dir = std::path::Path::new(path).parent().map(|p| p.to_path_buf()).unwrap_or_else(|| "/tmp".into());
    let tmpfile = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(&dir);
    let mut f = match tmpfile {
        Ok(f) => f,
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::ENOENT))
                && dir.is_dir() =>
        {
            let tmp = dir.join(format!(".seamless-ghost.{}.{id}", std::process::id()));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)
                .map_err(|e| err(format!("create ghost {}", tmp.display()), e))?;
            // Nameless from here on, like an O_TMPFILE file.
            std::fs::remove_file(&tmp).map_err(|e| err(format!("unlink ghost {}", tmp.display()), e))?;
            f
        }
        Err(e) => return Err(err(format!("create a deleted file in {}", dir.display()), e)),
    };
    let filled = (|| -> Result<(), RestoreError> {
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| err("fchmod ghost 0600".into(), e))?;
        for &b in blobs {
            let data = reader.blob(b).map_err(RestoreError::Image)?;
            f.write_all(&data).map_err(|e| err("fill ghost".into(), e))?;
        }
        f.flush().map_err(|e| err("fill ghost".into(), e))?;
        // Owner before the mode: chown clears set-id bits.
        if let Some(o) = owner {
            std::os::unix::fs::fchown(&f, Some(o.uid), Some(o.gid))
                .map_err(|e| err(format!("fchown ghost {}:{}", o.uid, o.gid), e))?;
        }
        // Set-id bits only now that the contents are final.
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| err(format!("fchmod ghost {:04o}", mode & 0o7777), e))
    })();
    let reopened = filled.and_then(|()| {
        let via = format!("/proc/self/fd/{}", f.as_raw_fd());
        open_path(&via, flags & !(libc::O_NOFOLLOW as u32)).map_err(|e| err(format!("reopen ghost {path}"), e))
    });
    drop(f);
    reopened
}

fn seek(fd: &OwnedFd, pos: u64) -> std::io::Result<()> {
    use std::io::Seek;
    let mut f = std::fs::File::from(fd.try_clone()?);
    f.seek(std::io::SeekFrom::Start(pos)).map(|_| ())
}

/// Opens every description of the plan in the restorer. A description that cannot be
/// recreated gives up the unit of trees holding it (see [`crate::plan::Units`]); the
/// descriptions of units already given up are not opened at all.
/// The pid of the plan whose `/proc/PID/...` file `d` is (a process reading its own or a
/// sibling's `/proc` entry, e.g. redis its `/proc/PID/stat`): such a file can be opened only
/// once that process exists again ([`open_proc_files`]).
pub fn proc_file_of(plan: &Plan, d: &seamless_image::records::FileDesc) -> Option<i32> {
    let FileKind::Regular { path, .. } = &d.kind else { return None };
    let pid: i32 = path.strip_prefix("/proc/")?.split('/').next()?.parse().ok()?;
    plan.procs.contains_key(&pid).then_some(pid)
}

/// Opens the `/proc/PID/...` files of processes of the plan ([`proc_file_of`]) into `by_id`,
/// now that the tree is forked; one that cannot be opened gives up its unit.
pub fn open_proc_files(plan: &Plan, by_id: &mut BTreeMap<u32, OwnedFd>, fails: &mut Failures) {
    for d in plan.descs.values() {
        if proc_file_of(plan, d).is_none() || fails.desc_failed(d.id) {
            continue;
        }
        let FileKind::Regular { path, .. } = &d.kind else { continue };
        match open_path(path, d.flags) {
            Ok(fd) => {
                let _ = seek(&fd, d.pos);
                by_id.insert(d.id, fd);
            }
            Err(e) => fails.fail_desc(d.id, format!("open {path}: {e}")),
        }
    }
}

pub fn open_all<S: Store>(plan: &Plan, reader: &mut Reader<S>, fails: &mut Failures) -> OpenFiles {
    let mut out = OpenFiles::default();
    let mut pipe_ends: BTreeMap<u64, (Option<OwnedFd>, Option<OwnedFd>)> = BTreeMap::new();
    let mut fifo_keep: BTreeMap<u64, OwnedFd> = BTreeMap::new();
    let err = |id: u32, what: String, e: std::io::Error| RestoreError::File { id, what, source: e };
    let mut socks = crate::sockets::Ctx::new(
        plan.descs.values().map(|d| &d.kind),
        plan.socket_extras.clone(),
        plan.datagrams.clone(),
    )
    .with_closes(plan.tcp_closes.clone())
    .with_ended(plan.tcp_ended.keys().copied().collect());
    out.objects = crate::objects::prepare(plan, reader, fails);
    out.nodes = crate::nodes::prepare(plan, fails);
    let mut order: Vec<&seamless_image::records::FileDesc> = plan.descs.values().collect();
    order.sort_by_key(|d| crate::sockets::open_order(&d.kind));
    out.ptys = crate::tty::open_all(plan, &mut out.by_id, fails);
    crate::inotify::open_all(plan, &mut out.by_id, fails);
    for d in order {
        let id = d.id;
        // pidfds and /proc files of the plan's processes are opened once those exist
        // (`crate::pidfd`, `open_proc_files`).
        if fails.desc_failed(id)
            || out.by_id.contains_key(&id)
            || plan.pidfds.contains_key(&id)
            || proc_file_of(plan, d).is_some()
            || crate::unix::deferred(plan, id)
        {
            continue;
        }
        let acc = abi::signed(d.flags) & libc::O_ACCMODE;
        let opened = (|| -> Result<OwnedFd, RestoreError> {
            let fd: OwnedFd = match &d.kind {
                FileKind::Fifo { .. } | FileKind::Regular { .. } if out.nodes.has(id) => out.nodes.open(id, d.flags)?,
                FileKind::Regular { path, .. } => {
                    let fd = open_path(path, d.flags).map_err(|e| err(id, format!("open {path}"), e))?;
                    if abi::signed(d.flags) & libc::O_APPEND == 0 || d.pos != 0 {
                        let _ = seek(&fd, d.pos);
                    }
                    fd
                }
                FileKind::CharDev { path, .. } => {
                    open_path(path, d.flags).map_err(|e| err(id, format!("open {path}"), e))?
                }
                FileKind::Ghost { .. } if out.objects.has(id) => {
                    let fd = out.objects.open(id, d.flags)?;
                    let _ = seek(&fd, d.pos);
                    fd
                }
                FileKind::Ghost { path, mode, .. } => {
                    let blobs = plan.blobs.get(&u64::from(id)).map(Vec::as_slice).unwrap_or(&[]);
                    let owner = plan.ghost_owners.get(&id).copied();
                    let fd = ghost(id, path, *mode, owner, d.flags, blobs, reader)?;
                    let _ = seek(&fd, d.pos);
                    fd
                }
                FileKind::Pipe { pipe } => {
                    let ends = pipe_ends.entry(*pipe).or_insert((None, None));
                    if ends.0.is_none() && ends.1.is_none() {
                        let (r, w) = seamless_sys::proc::pipe().map_err(|e| RestoreError::sys(0, "pipe2", e))?;
                        if let Some(rec) = plan.pipes.get(pipe) {
                            if let Err(e) =
                                seamless_sys::proc::set_pipe_size(w.as_raw_fd(), seamless_image::usize_of(rec.capacity))
                            {
                                log::warn!("pipe {pipe}: capacity {} not set: {}", rec.capacity, chain(&e));
                            }
                            // The write end blocks: never write more than the pipe now holds.
                            let room = seamless_sys::proc::pipe_size(w.as_raw_fd()).unwrap_or(0);
                            if rec.data.len() > room {
                                return Err(err(
                                    id,
                                    format!(
                                        "refilling pipe {pipe}: {} buffered bytes, room for {room}",
                                        rec.data.len()
                                    ),
                                    std::io::ErrorKind::StorageFull.into(),
                                ));
                            }
                            let mut wf = std::fs::File::from(w.try_clone().map_err(|e| err(id, "dup".into(), e))?);
                            wf.write_all(&rec.data).map_err(|e| err(id, format!("refilling pipe {pipe}"), e))?;
                        }
                        *ends = (Some(r), Some(w));
                    }
                    let slot = if acc == libc::O_WRONLY { &mut ends.1 } else { &mut ends.0 };
                    match slot.take() {
                        Some(fd) => {
                            out.keep.push(fd.try_clone().map_err(|e| err(id, "dup".into(), e))?);
                            fd
                        }
                        None => {
                            // A second description of the same end: reopen through /proc.
                            let other = out.keep.iter().find(|k| {
                                std::fs::read_link(format!("/proc/self/fd/{}", k.as_raw_fd()))
                                    .map(|l| l.to_string_lossy() == format!("pipe:[{pipe}]"))
                                    .unwrap_or(false)
                            });
                            let other = other
                                .ok_or_else(|| err(id, format!("pipe {pipe}"), std::io::ErrorKind::NotFound.into()))?;
                            open_path(
                                &format!("/proc/self/fd/{}", other.as_raw_fd()),
                                (d.flags & !abi::bits(libc::O_ACCMODE)) | abi::bits(acc),
                            )
                            .map_err(|e| err(id, format!("reopen pipe {pipe}"), e))?
                        }
                    }
                }
                FileKind::Fifo { path, pipe } => {
                    if !fifo_keep.contains_key(pipe) {
                        let k = open_path(path, (libc::O_RDWR | libc::O_NONBLOCK) as u32)
                            .map_err(|e| err(id, format!("open fifo {path}"), e))?;
                        if let Some(rec) = plan.pipes.get(pipe) {
                            let mut wf = std::fs::File::from(k.try_clone().map_err(|e| err(id, "dup".into(), e))?);
                            wf.write_all(&rec.data).map_err(|e| err(id, format!("refilling fifo {path}"), e))?;
                        }
                        fifo_keep.insert(*pipe, k);
                    }
                    open_path(path, d.flags | libc::O_NONBLOCK as u32)
                        .map_err(|e| err(id, format!("open fifo {path}"), e))?
                }
                FileKind::Socket(s) => crate::sockets::open(&mut socks, id, s)?,
                FileKind::EventFd { count, semaphore } => crate::eventfd::eventfd(id, *count, *semaphore)?,
                FileKind::SignalFd { mask } => crate::eventfd::signalfd(id, *mask)?,
                FileKind::TimerFd(t) => crate::eventfd::timerfd(id, t)?,
                FileKind::Epoll(ep) => {
                    out.epolls.insert(id, ep.clone());
                    seamless_sys::epoll::epoll_create().map_err(|e| err(id, "epoll_create1".into(), e.source))?
                }
            };
            // An O_PATH descriptor has no status flags to set (fcntl(F_SETFL) refuses it).
            if abi::signed(d.flags) & libc::O_PATH == 0 {
                set_fl(&fd, d.flags).map_err(|e| err(id, "fcntl(F_SETFL)".into(), e))?;
            }
            Ok(fd)
        })();
        match opened {
            Ok(fd) => {
                out.by_id.insert(id, fd);
            }
            Err(e) => fails.fail_desc(id, chain(&e).to_string()),
        }
    }
    out.keep.extend(fifo_keep.into_values());
    for (id, e) in crate::sockets::finish(&mut socks, |id| fails.desc_failed(id)) {
        fails.fail_desc(id, chain(&e).to_string());
    }
    out
}

fn set_fl(fd: &OwnedFd, flags: u32) -> std::io::Result<()> {
    seamless_sys::proc::set_status_flags(fd.as_raw_fd(), abi::signed(flags)).map_err(|e| e.source)
}

/// Installs the child's descriptors (ascending, so a temporary number never clobbers a
/// descriptor already in place).
pub fn install<T: Tracee + ?Sized>(
    c: &mut T,
    fds: &seamless_image::records::FdTable,
    open: &OpenFiles,
) -> Result<(), RestoreError> {
    if fds.fds.is_empty() {
        return Ok(());
    }
    let pid = c.pid();
    let me = u64::from(std::process::id());
    let max = abi::int(fds.fds.iter().map(|f| f.fd).max().unwrap_or(0));
    let pfd = c.call("pidfd_open", libc::SYS_pidfd_open, [me, 0, 0, 0, 0, 0])?;
    let hi =
        c.call("fcntl(F_DUPFD_CLOEXEC)", libc::SYS_fcntl, [pfd, libc::F_DUPFD_CLOEXEC as u64, max + 1, 0, 0, 0])?;
    c.call("close", libc::SYS_close, [pfd, 0, 0, 0, 0, 0])?;
    let mut sorted = fds.fds.clone();
    sorted.sort_by_key(|f| f.fd);
    for f in &sorted {
        let ours = open.by_id.get(&f.desc).ok_or_else(|| RestoreError::Corrupt {
            pid,
            what: format!("fd {} refers to unknown file #{}", f.fd, f.desc),
        })?;
        let n = c.call_for(
            format!("fd {}: pidfd_getfd", f.fd),
            "pidfd_getfd",
            libc::SYS_pidfd_getfd,
            [hi, abi::int(ours.as_raw_fd()), 0, 0, 0, 0],
        )?;
        let target = abi::int(f.fd);
        if n != target {
            let fl = if f.cloexec { libc::O_CLOEXEC as u64 } else { 0 };
            c.call("dup3", libc::SYS_dup3, [n, target, fl, 0, 0, 0])?;
            c.call("close", libc::SYS_close, [n, 0, 0, 0, 0, 0])?;
        } else if !f.cloexec {
            c.call("fcntl(F_SETFD)", libc::SYS_fcntl, [n, libc::F_SETFD as u64, 0, 0, 0, 0])?;
        }
    }
    c.call("close", libc::SYS_close, [hi, 0, 0, 0, 0, 0])?;
    crate::epoll::add_watches(c, fds, &open.epolls, &|id| open.by_id.get(&id).map(|f| f.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracee::fake::Recorder;
    use seamless_image::records::{EpollItem, Fd, FdTable};

    fn fd(fd: i32, desc: u32, cloexec: bool) -> Fd {
        Fd { fd, cloexec, desc }
    }

    fn opened(ids: &[u32]) -> OpenFiles {
        let mut o = OpenFiles::default();
        for &id in ids {
            o.by_id.insert(id, std::fs::File::open("/dev/null").unwrap().into());
        }
        o
    }

    /// Descriptors go in ascending order through a pidfd parked above the highest number, so no
    /// temporary number lands on a descriptor already in place; each is moved to its number with
    /// its close-on-exec flag.
    #[test]
    fn file_table_is_installed_in_ascending_order_above_the_highest_number() {
        let mut t = Recorder::new(42);
        let table = FdTable { fds: vec![fd(200, 2, true), fd(0, 1, false), fd(5, 1, false)] };
        let open = opened(&[1, 2]);
        install(&mut t, &table, &open).unwrap();
        let calls = t.calls();
        let names: Vec<_> = calls.iter().map(|c| c.name).collect();
        assert_eq!(&names[..3], ["pidfd_open", "fcntl(F_DUPFD_CLOEXEC)", "close"]);
        assert_eq!(calls[0].args[0], u64::from(std::process::id()));
        assert_eq!(calls[1].args[2], 201, "the pidfd is parked above fd 200");
        let hi = 201;
        let dups: Vec<(u64, u64)> = calls.iter().filter(|c| c.name == "dup3").map(|c| (c.args[1], c.args[2])).collect();
        assert_eq!(dups, [(0, 0), (5, 0), (200, libc::O_CLOEXEC as u64)]);
        let gets: Vec<u64> = calls.iter().filter(|c| c.name == "pidfd_getfd").map(|c| c.args[1]).collect();
        let ours = |id: u32| abi::int(open.by_id[&id].as_raw_fd());
        assert_eq!(gets, [ours(1), ours(1), ours(2)]);
        assert!(calls.iter().filter(|c| c.name == "pidfd_getfd").all(|c| c.args[0] == hi));
        assert_eq!(calls.last().map(|c| (c.name, c.args[0])), Some(("close", hi)));
    }

    #[test]
    fn a_descriptor_of_an_unknown_description_is_refused() {
        let mut t = Recorder::new(42);
        let table = FdTable { fds: vec![fd(3, 9, false)] };
        let e = install(&mut t, &table, &opened(&[1])).unwrap_err();
        assert!(e.to_string().contains("fd 3 refers to unknown file #9"), "{e}");
    }

    /// Watches are added in the owner with the descriptor numbers they were registered with,
    /// once per description even where it sits at two numbers, with the packed event layout.
    #[test]
    fn epoll_watches_are_added_once_with_their_registered_numbers() {
        let mut t = Recorder::new(42);
        let table = FdTable { fds: vec![fd(3, 1, false), fd(4, 2, false), fd(9, 1, false), fd(6, 3, false)] };
        let item = |tfd, target, events, data| EpollItem { tfd, target, events, data };
        let mut epolls = BTreeMap::new();
        epolls.insert(1, EpollRecord { owner: 42, items: vec![item(4, 2, 0x1, 0xabcd), item(6, 3, 0x8000_0004, 7)] });
        epolls.insert(3, EpollRecord { owner: 77, items: vec![item(4, 2, 1, 1)] }); // another owner's
        crate::epoll::add_watches(&mut t, &table, &epolls, &|_| None).unwrap();
        let adds = t.named("epoll_ctl(EPOLL_CTL_ADD)");
        assert_eq!(adds.len(), 2);
        for (c, (tfd, events, data)) in adds.iter().zip([(4, 0x1, 0xabcd), (6, 0x8000_0004u32, 7u64)]) {
            assert_eq!(c.args[..3], [3, libc::EPOLL_CTL_ADD as u64, tfd]);
            assert_eq!(c.mem(c.args[3], 12), crate::abi::epoll_event(events, data));
        }
    }

    /// A watch whose descriptor was closed (its file open at another number) is added through
    /// a duplicate placed at its number for the call, closed again right after.
    #[test]
    fn an_epoll_watch_of_a_closed_number_goes_through_a_temporary_duplicate() {
        let mut t = Recorder::new(42);
        let table = FdTable { fds: vec![fd(3, 1, false), fd(5, 2, false)] };
        let mut epolls = BTreeMap::new();
        epolls.insert(1, EpollRecord { owner: 42, items: vec![EpollItem { tfd: 4, target: 2, events: 1, data: 9 }] });
        crate::epoll::add_watches(&mut t, &table, &epolls, &|_| None).unwrap();
        let calls: Vec<(&str, u64, u64)> = t.calls().iter().map(|c| (c.name, c.args[0], c.args[1])).collect();
        assert_eq!(
            calls,
            [("dup3", 5, 4), ("epoll_ctl(EPOLL_CTL_ADD)", 3, libc::EPOLL_CTL_ADD as u64), ("close", 4, 0)]
        );
    }

    #[test]
    fn an_epoll_watch_of_a_number_holding_another_file_is_refused() {
        let mut t = Recorder::new(42);
        let table = FdTable { fds: vec![fd(3, 1, false), fd(4, 2, false)] };
        let mut epolls = BTreeMap::new();
        epolls.insert(1, EpollRecord { owner: 42, items: vec![EpollItem { tfd: 4, target: 5, events: 1, data: 0 }] });
        let e = crate::epoll::add_watches(&mut t, &table, &epolls, &|_| None).unwrap_err();
        assert!(e.to_string().contains("watches fd 4 which is not file #5"), "{e}");
        assert!(t.calls().is_empty());
    }
}
