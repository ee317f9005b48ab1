//! epoll instances: each watch (`tfd:` line of `/proc/PID/fdinfo/FD`: descriptor number, event
//! mask, user data, inode of the watched file) is mapped back to the open file description of
//! that descriptor in the process that holds the epoll. The restorer re-adds the watches with
//! injected `epoll_ctl` calls once every descriptor of that process is in place.

use super::files::FilePlan;
use super::DumpError;
use seamless_image::records::{EpollItem, EpollRecord, FileKind};
use std::os::unix::fs::MetadataExt;

/// An epoll description whose watches are resolved after every descriptor is classified.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    /// Process holding it.
    pub pid: i32,
    /// Its descriptor there.
    pub fd: i32,
    /// Description id.
    pub id: u32,
}

/// Placeholder kind until [`resolve`] fills the watches in.
pub fn placeholder(pid: i32) -> FileKind {
    FileKind::Epoll(EpollRecord { owner: pid, items: Vec::new() })
}

struct Tfd {
    tfd: i32,
    events: u32,
    data: u64,
    ino: u64,
}

fn parse_tfd(line: &str) -> Option<Tfd> {
    let mut it = line.split_whitespace();
    let mut t = Tfd { tfd: -1, events: 0, data: 0, ino: 0 };
    while let Some(k) = it.next() {
        match k {
            "tfd:" => t.tfd = it.next()?.parse().ok()?,
            "events:" => t.events = u32::from_str_radix(it.next()?, 16).ok()?,
            "data:" => t.data = u64::from_str_radix(it.next()?, 16).ok()?,
            _ => {
                if let Some(v) = k.strip_prefix("ino:") {
                    t.ino = u64::from_str_radix(v, 16).ok()?;
                }
            }
        }
    }
    (t.tfd >= 0).then_some(t)
}

/// Fills the watches of every pending epoll description.
pub fn resolve(pending: &[Pending], plan: &mut FilePlan) -> Result<(), DumpError> {
    for p in pending {
        let text = std::fs::read_to_string(format!("/proc/{}/fdinfo/{}", p.pid, p.fd))
            .map_err(|e| DumpError::io(p.pid, format!("reading fdinfo of epoll fd {}", p.fd), e))?;
        let refuse = |reason: String| DumpError::Unsupported {
            pid: p.pid,
            resource: format!("fd {} (anon_inode:[eventpoll])", p.fd),
            reason,
        };
        let table = plan.tables.get(&p.pid).cloned().unwrap_or_default();
        let mut items = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("tfd:")) {
            let t = parse_tfd(line).ok_or_else(|| refuse(format!("cannot parse watch line {line:?}")))?;
            let fd = table.fds.iter().find(|f| f.fd == t.tfd).ok_or_else(|| {
                refuse(format!("watches descriptor {} which is closed now (watch outlives its descriptor)", t.tfd))
            })?;
            let ino = std::fs::metadata(format!("/proc/{}/fd/{}", p.pid, t.tfd))
                .map_err(|e| DumpError::io(p.pid, format!("stat fd {}", t.tfd), e))?
                .ino();
            if ino != t.ino {
                return Err(refuse(format!(
                    "watch on descriptor {} refers to inode {}, but that descriptor is now inode {ino}",
                    t.tfd, t.ino
                )));
            }
            items.push(EpollItem { tfd: t.tfd, target: fd.desc, events: t.events, data: t.data });
        }
        let d = plan.descs.iter_mut().find(|d| d.id == p.id).ok_or_else(|| refuse("lost description".into()))?;
        d.kind = FileKind::Epoll(EpollRecord { owner: p.pid, items });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_watch_lines() {
        let t = parse_tfd("tfd:        5 events:       19 data:     feedface12345678  pos:0 ino:2a3 sdev:f").unwrap();
        assert_eq!((t.tfd, t.events, t.data, t.ino), (5, 0x19, 0xfeedface12345678, 0x2a3));
    }
}
