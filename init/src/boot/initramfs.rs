//! The PID 1 role in the initramfs `seamless upgrade` prepared (`/init`): load the listed
//! modules, find and validate the region, prove the root filesystem is exactly as frozen
//! before mounting it, mount it and switch to it, restore there, then execute the real init.

use super::cmdline::BootParams;
use super::region::{self, RegionStatus};
use super::{examine, fallback, modules, ms, restore_pending, root, us};
use crate::handover;
use seamless_sys::chain;
use std::time::{Duration, Instant};

/// Runs the rest of the boot once the API filesystems, the log and the command line are set
/// up (by [`super::run`]). Never returns.
pub fn run(params: BootParams, args: Vec<String>, release: &str, start: Instant) -> ! {
    let init = params.init_path().to_string();
    let init_args: Vec<String> = args.into_iter().skip(1).collect();
    fallback::set(fallback::Fallback::MountRoot {
        params: Box::new(params.clone()),
        init: init.clone(),
        args: init_args.clone(),
    });

    let t = Instant::now();
    let report = modules::load_listed(release);
    let modules_t = t.elapsed();
    log::info!("loaded {} modules ({} already present) in {} ms", report.inserted, report.present, ms(modules_t));
    for f in &report.failed {
        log::warn!("module not loaded: {f}");
    }

    let t = Instant::now();
    let root_dev = params.root.clone().unwrap_or_default();
    let root_wait = Duration::from_millis(params.root_wait_ms);
    let pending = match region::find_and_validate(&params.region, Duration::from_millis(params.pmem_wait_ms)) {
        RegionStatus::Absent { looked } => {
            log::info!("no region found (looked at {})", looked.join(", "));
            None
        }
        RegionStatus::Invalid { path, check } => {
            log::error!("region {} rejected: {check}; booting without restore", path.display());
            None
        }
        RegionStatus::Valid(valid) => examine(valid, root_wait, |u, fs| {
            let dev = std::path::Path::new(&root_dev);
            handover::verify_root(u, dev, root_wait).and_then(|()| handover::verify_root_fs(fs, dev))
        }),
    };
    let region_t = t.elapsed();

    let t = Instant::now();
    if let Err(e) = root::mount_root(&params) {
        root::rescue(&chain(&e).to_string());
    }
    fallback::set(fallback::Fallback::SwitchRoot { init: init.clone(), args: init_args.clone() });
    let root_t = t.elapsed();
    if let Some(p) = pending {
        if let Err(e) = root::enter_new_root() {
            root::rescue(&chain(&e).to_string());
        }
        fallback::set(fallback::Fallback::Exec { init: init.clone(), args: init_args.clone() });
        let stages = vec![
            ("modules".to_string(), us(modules_t)),
            ("region+verify".to_string(), us(region_t)),
            ("mount-root".to_string(), us(root_t)),
        ];
        restore_pending(p, stages, root_wait);
        log::info!("handing over to {init} after {} ms", ms(start.elapsed()));
        let why = root::exec_init(&init, &init_args);
        root::rescue(&why)
    }
    log::info!(
        "handing over to {init} after {} ms (modules {} ms, region {} ms, root {} ms)",
        ms(start.elapsed()),
        ms(modules_t),
        ms(region_t),
        ms(root_t)
    );
    if let Err(e) = root::enter_new_root() {
        root::rescue(&chain(&e).to_string());
    }
    fallback::set(fallback::Fallback::Exec { init: init.clone(), args: init_args.clone() });
    let why = root::exec_init(&init, &init_args);
    root::rescue(&why)
}
