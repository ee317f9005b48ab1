//! epoll instances: created empty in the restorer (like every open file), then, once every
//! descriptor of the owning process is installed, each watch is re-added by an injected
//! `epoll_ctl(EPOLL_CTL_ADD)` in that process, with the descriptor number it was registered
//! with (the kernel keys watches by file *and* descriptor number, so a later `EPOLL_CTL_MOD` or
//! `DEL` by the process must find the same number). A watch whose descriptor had been closed
//! (the file staying open through another descriptor, so the watch lived on) is added through
//! a descriptor of its file placed at that number for the call and closed again.

use crate::abi;
use crate::tracee::Tracee;
use crate::RestoreError;
use seamless_image::records::{EpollRecord, FdTable};
use std::collections::BTreeMap;

/// Adds the watches of every epoll description owned by `c` that `fds` installs.
pub fn add_watches<T: Tracee + ?Sized>(
    c: &mut T,
    fds: &FdTable,
    epolls: &BTreeMap<u32, EpollRecord>,
    restorer_fd: &dyn Fn(u32) -> Option<i32>,
) -> Result<(), RestoreError> {
    let pid = c.pid();
    for f in &fds.fds {
        let Some(ep) = epolls.get(&f.desc) else { continue };
        if ep.owner != pid {
            continue;
        }
        // Only once per description (it may sit at several numbers of the owner).
        if fds.fds.iter().any(|g| g.desc == f.desc && g.fd < f.fd) {
            continue;
        }
        for it in &ep.items {
            let at_number = fds.fds.iter().find(|g| g.fd == it.tfd);
            // A watch whose descriptor was closed (its file open elsewhere) is added through a
            // descriptor of the same file placed at its number for the call, then closed.
            let temporary = match at_number {
                Some(g) if g.desc == it.target => None,
                Some(_) => {
                    return Err(RestoreError::Corrupt {
                        pid,
                        what: format!("epoll fd {} watches fd {} which is not file #{} here", f.fd, it.tfd, it.target),
                    })
                }
                None => {
                    let src = match fds.fds.iter().find(|g| g.desc == it.target) {
                        Some(g) => abi::int(g.fd),
                        None => {
                            let ours = restorer_fd(it.target).ok_or_else(|| RestoreError::Corrupt {
                                pid,
                                what: format!("epoll fd {} watches file #{}, which is not open", f.fd, it.target),
                            })?;
                            c.fd_from_restorer(ours)?
                        }
                    };
                    c.call("dup3", libc::SYS_dup3, [src, abi::int(it.tfd), 0, 0, 0, 0])?;
                    let own = !fds.fds.iter().any(|g| abi::int(g.fd) == src);
                    Some((abi::int(it.tfd), own.then_some(src)))
                }
            };
            let a = c.scratch().put(c, &abi::epoll_event(it.events, it.data))?;
            c.call_for(
                format!("epoll fd {}: watching fd {} (events {:#x})", f.fd, it.tfd, it.events),
                "epoll_ctl(EPOLL_CTL_ADD)",
                libc::SYS_epoll_ctl,
                [abi::int(f.fd), abi::int(libc::EPOLL_CTL_ADD), abi::int(it.tfd), a, 0, 0],
            )?;
            if let Some((tmp, extra)) = temporary {
                c.call("close", libc::SYS_close, [tmp, 0, 0, 0, 0, 0])?;
                if let Some(x) = extra {
                    c.call("close", libc::SYS_close, [x, 0, 0, 0, 0, 0])?;
                }
            }
        }
    }
    Ok(())
}
