//! epoll instances: each watch (`tfd:` line of `/proc/PID/fdinfo/FD`: descriptor number, event
//! mask, user data, inode of the watched file) is mapped back to the open file description of
//! that descriptor in the process that holds the epoll (`kcmp(KCMP_EPOLL_TFD)`), or, when that
//! descriptor was closed while the file stays open elsewhere (the watch lives on), to a
//! description of the same file held by a dumped process. The restorer re-adds the watches
//! with injected `epoll_ctl` calls once every descriptor of that process is in place.

use super::files::FilePlan;
use super::DumpError;
use seamless_image::records::{EpollItem, EpollRecord, FileKind};

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
        // Watches registered under the same number are told apart by their rank (`toff`).
        let mut rank: std::collections::BTreeMap<i32, u32> = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("tfd:")) {
            let t = parse_tfd(line).ok_or_else(|| refuse(format!("cannot parse watch line {line:?}")))?;
            let toff = *rank.entry(t.tfd).and_modify(|r| *r += 1).or_insert(0);
            let same = |cp: i32, cfd: i32| {
                seamless_sys::proc::kcmp_epoll_tfd(cp, cfd, p.pid, p.fd, t.tfd, toff)
                    .map_err(|e| DumpError::sys(p.pid, format!("epoll fd {}: comparing watch {}", p.fd, t.tfd), e))
            };
            // Usually the descriptor it was registered with; else (that descriptor was closed,
            // the file lives on elsewhere) any descriptor of a dumped process holding the file.
            let here = table.fds.iter().find(|f| f.fd == t.tfd);
            let target = match here {
                Some(f) if same(p.pid, f.fd)? => f.desc,
                Some(_) => {
                    return Err(refuse(format!(
                        "watches a file registered as descriptor {} that was closed, and that number now holds another file: the watch cannot be added again under its number",
                        t.tfd
                    )))
                }
                None => {
                    let mut found = None;
                    'search: for (&cp, ct) in &plan.tables {
                        for f in &ct.fds {
                            if same(cp, f.fd)? {
                                found = Some(f.desc);
                                break 'search;
                            }
                        }
                    }
                    found.ok_or_else(|| {
                        refuse(format!(
                            "watches descriptor {} which is closed, and no dumped process holds its file (inode {})",
                            t.tfd, t.ino
                        ))
                    })?
                }
            };
            items.push(EpollItem { tfd: t.tfd, target, events: t.events, data: t.data });
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
