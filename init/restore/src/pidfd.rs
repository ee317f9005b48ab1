//! pidfds ([`PidfdRecord`](seamless_image::records::PidfdRecord)): opened by the restorer with `pidfd_open(2)` once the tree is
//! forked (the processes have their pids then), before any descriptor is installed; the
//! placeholder descriptions are left alone by [`crate::files::open_all`].

use crate::plan::Plan;
use crate::{abi, Failures};
use seamless_sys::chain;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

/// Opens every pidfd of the plan into `by_id` (status flags from its description); one that
/// cannot be opened gives up its unit.
pub fn open_all(plan: &Plan, by_id: &mut BTreeMap<u32, OwnedFd>, fails: &mut Failures) {
    for p in plan.pidfds.values() {
        if fails.desc_failed(p.desc) {
            continue;
        }
        let flags = plan.descs.get(&p.desc).map(|d| d.flags).unwrap_or(0);
        let opened = seamless_sys::proc::pidfd_open(p.pid)
            .and_then(|fd| seamless_sys::proc::set_status_flags(fd.as_raw_fd(), abi::signed(flags)).map(|()| fd));
        match opened {
            Ok(fd) => {
                by_id.insert(p.desc, fd);
            }
            Err(e) => fails.fail_desc(p.desc, format!("pidfd of pid {}: {}", p.pid, chain(&e))),
        }
    }
}
