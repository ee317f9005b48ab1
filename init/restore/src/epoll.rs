//! epoll instances: created empty in the restorer (like every open file), then, once every
//! descriptor of the owning process is installed, each watch is re-added by an injected
//! `epoll_ctl(EPOLL_CTL_ADD)` in that process, with the descriptor number it was registered
//! with (the kernel keys watches by file *and* descriptor number, so a later `EPOLL_CTL_MOD` or
//! `DEL` by the process must find the same number).

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
            if !fds.fds.iter().any(|g| g.fd == it.tfd && g.desc == it.target) {
                return Err(RestoreError::Corrupt {
                    pid,
                    what: format!("epoll fd {} watches fd {} which is not file #{} here", f.fd, it.tfd, it.target),
                });
            }
            let a = c.scratch().put(c, &abi::epoll_event(it.events, it.data))?;
            c.call_for(
                format!("epoll fd {}: watching fd {} (events {:#x})", f.fd, it.tfd, it.events),
                "epoll_ctl(EPOLL_CTL_ADD)",
                libc::SYS_epoll_ctl,
                [abi::int(f.fd), abi::int(libc::EPOLL_CTL_ADD), abi::int(it.tfd), a, 0, 0],
            )?;
        }
    }
    Ok(())
}
