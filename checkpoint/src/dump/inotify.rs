//! inotify instances: every watch from `/proc/PID/fdinfo` (watch descriptor, mask, inode and
//! file handle), each watched file's path found again from its handle (`open_by_handle_at` on
//! a mount of its filesystem) and checked to name the same inode. Refused, with the reason: an
//! instance with unread events, a watched file no path reaches (deleted, or on a filesystem
//! the dumper does not see mounted). fanotify is refused by the generic anonymous-inode rule.

use super::DumpError;
use seamless_image::records::inotify::{InotifyWatch, INOTIFY_PATH, MAX_WATCHES};
use seamless_image::records::{FileKind, InotifyRecord};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

fn refuse(pid: i32, fd: i32, reason: impl Into<String>) -> DumpError {
    DumpError::Unsupported { pid, resource: format!("fd {fd} ({INOTIFY_PATH})"), reason: reason.into() }
}

/// One `inotify wd:...` line of fdinfo.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    wd: i32,
    ino: u64,
    /// The kernel's `s_dev` (major << 20 | minor).
    sdev: u64,
    mask: u32,
    handle_type: i32,
    handle: Vec<u8>,
}

/// Parses the watch lines of an inotify fdinfo text.
pub fn parse(text: &str) -> Option<Vec<Line>> {
    let mut out = Vec::new();
    for l in text.lines().filter(|l| l.starts_with("inotify ")) {
        let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k).map(str::to_string));
        let hex = |k: &str| field(k).and_then(|v| u64::from_str_radix(&v, 16).ok());
        let handle_hex = field("f_handle:")?;
        let handle = (0..handle_hex.len() / 2)
            .map(|i| u8::from_str_radix(handle_hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        let bytes: usize = field("fhandle-bytes:").and_then(|v| usize::from_str_radix(&v, 16).ok())?;
        if bytes != handle.len() {
            return None;
        }
        out.push(Line {
            wd: i32::try_from(hex("wd:")?).ok()?,
            ino: hex("ino:")?,
            sdev: hex("sdev:")?,
            mask: u32::try_from(hex("mask:")?).ok()?,
            handle_type: i32::from_str_radix(&field("fhandle-type:")?, 16).ok()?,
            handle,
        });
    }
    Some(out)
}

/// Mount points of the dumper's namespace on device `major:minor`, those mounting the
/// filesystem's root first.
fn mounts_of(major: u64, minor: u64) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = format!("{major}:{minor}");
    let mut v: Vec<(bool, String)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&want.as_str()))
                .then(|| (f.get(3) != Some(&"/"), f.get(4).unwrap_or(&"").replace("\\040", " ")))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, m)| m).collect()
}

/// The path of a watched file, from its handle, checked against inode and device.
fn path_of(l: &Line) -> Result<(String, u64), String> {
    let (major, minor) = (l.sdev >> 20, l.sdev & 0xf_ffff);
    let mut last = format!("no mount of device {major}:{minor} is visible to the dumper");
    for m in mounts_of(major, minor) {
        let Ok(mfd) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC).open(&m)
        else {
            continue;
        };
        let f = match seamless_sys::notify::open_by_handle(mfd.as_raw_fd(), l.handle_type, &l.handle, libc::O_PATH) {
            Ok(f) => f,
            Err(e) => {
                last = format!("its file handle does not open on {m}: {}", seamless_sys::chain(&e));
                continue;
            }
        };
        let Ok(p) = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())) else { continue };
        let p = p.to_string_lossy().into_owned();
        if p.ends_with(" (deleted)") || !p.starts_with('/') {
            return Err(format!("the watched file (inode {}) was deleted", l.ino));
        }
        match std::fs::symlink_metadata(&p) {
            Ok(md)
                if md.ino() == l.ino
                    && libc::major(md.dev()) as u64 == major
                    && libc::minor(md.dev()) as u64 == minor =>
            {
                return Ok((p, md.dev()))
            }
            _ => last = format!("its path {p} names another file now"),
        }
    }
    Err(last)
}

/// Classifies inotify descriptor `fd` of `pid` (description `id`): the placeholder
/// description, and the record of its watches into `out`.
pub fn classify(pid: i32, fd: i32, id: u32, out: &mut Vec<InotifyRecord>) -> Result<FileKind, DumpError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .map_err(|e| DumpError::io(pid, format!("reading fdinfo of fd {fd}"), e))?;
    let lines = parse(&text).ok_or_else(|| refuse(pid, fd, "unreadable watch lines in /proc/PID/fdinfo"))?;
    if lines.len() > MAX_WATCHES {
        return Err(refuse(pid, fd, format!("{} watches, more than {MAX_WATCHES}", lines.len())));
    }
    let sys = |what: &str, e| DumpError::sys(pid, format!("fd {fd}: {what}"), e);
    let pfd = seamless_sys::proc::pidfd_open(pid).map_err(|e| sys("pidfd_open", e))?;
    let dup = seamless_sys::proc::pidfd_getfd(&pfd, fd, pid).map_err(|e| sys("pidfd_getfd", e))?;
    let queued = seamless_sys::proc::fionread(dup.as_raw_fd()).map_err(|e| sys("FIONREAD", e))?;
    if queued > 0 {
        return Err(refuse(
            pid,
            fd,
            format!(
                "{queued} bytes of inotify events not read yet: unread events are not checkpointed; read them first"
            ),
        ));
    }
    let mut watches = Vec::new();
    for l in lines {
        let (path, dev) = path_of(&l).map_err(|why| refuse(pid, fd, format!("watch {}: {why}", l.wd)))?;
        watches.push(InotifyWatch { wd: l.wd, path, mask: l.mask, ino: l.ino, dev });
    }
    watches.sort_by_key(|w| w.wd);
    out.push(InotifyRecord { desc: id, watches });
    Ok(FileKind::CharDev { path: INOTIFY_PATH.into(), rdev: 0 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_fdinfo_watch_lines() {
        let text = "pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t1039\n\
            inotify wd:1 ino:3c4a7 sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000\n\
            inotify wd:1a ino:2 sdev:800001 mask:80000002 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:0200000011223344\n";
        let l = super::parse(text).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].wd, l[0].ino, l[0].sdev, l[0].mask), (1, 0x3c4a7, 0xfe0_0000, 0x100));
        assert_eq!(l[0].handle, [0xa7, 0xc4, 3, 0, 0, 0, 0, 0]);
        assert_eq!((l[1].wd, l[1].mask, l[1].handle_type), (26, 0x8000_0002, 1));
        assert!(super::parse("inotify wd:1 ino:2 sdev:3 mask:4 fhandle-bytes:8 fhandle-type:1 f_handle:00\n").is_none());
    }
}
