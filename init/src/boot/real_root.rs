//! The `init=` role on the real root: a distribution's initramfs (dracut, mkinitcpio,
//! initramfs-tools with the seamless hook) verified the root with `seamless-init verify-root`
//! and switched to it; restore if the verdict allows, then execute `seamless.init=`.

use super::cmdline::BootParams;
use super::region::{self, RegionStatus};
use super::{examine, fallback, ms, restore_pending, root, us, ROOT_VERDICT};
use crate::error::BootError;
use seamless_sys::chain;
use std::time::{Duration, Instant};

/// The `init=` role on the real root, after a distribution's initramfs mounted it: restore
/// if the initramfs hook verified the root filesystem, then execute `seamless.init=`.
pub fn run(params: &BootParams, start: Instant) -> ! {
    let init = params.real_init.clone().unwrap_or_else(|| "/sbin/init".into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    fallback::set(fallback::Fallback::Exec { init: init.clone(), args: args.clone() });
    let verdict = std::fs::read_to_string(ROOT_VERDICT).unwrap_or_default();
    let t = Instant::now();
    match region::find_and_validate(&params.region, Duration::from_millis(params.pmem_wait_ms)) {
        RegionStatus::Absent { looked } => log::info!("no region found (looked at {})", looked.join(", ")),
        RegionStatus::Invalid { path, check } => {
            log::error!("region {} rejected: {check}; booting without restore", path.display())
        }
        RegionStatus::Valid(valid) => {
            let carried = valid.path == std::path::Path::new(region::CARRIED_REGION);
            let pending = examine(valid, Duration::from_millis(params.root_wait_ms), |_, _| {
                if verdict.starts_with("ok") {
                    Ok(())
                } else if verdict.is_empty() {
                    Err(BootError::Verdict(format!("no verdict in {ROOT_VERDICT}: the initramfs did not check the root filesystem before mounting it (install the seamless dracut module or mkinitcpio hook)")))
                } else {
                    Err(BootError::Verdict(verdict.trim().to_string()))
                }
            });
            if let Some(p) = pending {
                restore_pending(
                    p,
                    vec![("region".to_string(), us(t.elapsed()))],
                    Duration::from_millis(params.root_wait_ms),
                );
            }
            if carried {
                // The copy lives in RAM (tmpfs /run); it is consumed now and only costs memory.
                if let Err(e) = std::fs::remove_file(region::CARRIED_REGION) {
                    log::warn!("cannot remove {}: {}; delete it to free its memory", region::CARRIED_REGION, chain(&e));
                }
            }
        }
    }
    log::info!("handing over to {init} after {} ms", ms(start.elapsed()));
    let why = root::exec_init(&init, &args);
    root::rescue(&why)
}
