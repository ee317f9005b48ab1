//! The early boot path of `seamless-init`, run as PID 1 of the initramfs:
//!
//! 1. mount /proc, /sys, /dev, /run and log to `/dev/kmsg`;
//! 2. load the modules listed in the initramfs;
//! 3. find the region and validate it ([`region::find_and_validate`]);
//! 4. [`restore_hook`]: the restore stage, between "region validated" and "switch root";
//! 5. mount the root filesystem, switch to it and execute the real init.
//!
//! Nothing here panics or exits: every failure is logged and the boot goes on, down to a
//! rescue shell when even the root filesystem cannot be mounted.

pub mod cmdline;
pub mod kmsg;
pub mod modules;
pub mod mounts;
pub mod region;
pub mod root;

use cmdline::BootParams;
use region::{RegionStatus, ValidRegion};
use std::time::{Duration, Instant};

/// What the restore stage did with a valid region.
#[derive(Debug)]
pub enum RestoreOutcome {
    /// Nothing was restored; the region is left as found.
    NotWired,
}

/// The restore stage: called with a validated region after the modules are loaded and before
/// the root switch. The restore of process trees is plugged in here; until then the region
/// is left untouched (not marked consumed).
pub fn restore_hook(region: &mut ValidRegion) -> RestoreOutcome {
    log::info!("restore stage not wired yet: region {} left as found", region.path.display());
    RestoreOutcome::NotWired
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Runs the whole early boot. Never returns.
pub fn run() -> ! {
    let start = Instant::now();
    kmsg::init(false);
    let mount_failures = mounts::mount_api_filesystems();
    let kmsg_error = kmsg::attach().err();
    let uptime = read_trimmed("/proc/uptime");
    let uptime = uptime.split(' ').next().unwrap_or("?");
    let release = read_trimmed("/proc/sys/kernel/osrelease");
    let (params, warnings) = BootParams::parse(&read_trimmed("/proc/cmdline"));
    kmsg::set_debug(params.debug);
    log::info!("started on kernel {release}, {uptime} s after kernel start");
    if let Some(e) = kmsg_error {
        log::warn!("/dev/kmsg unavailable ({e}); logging to the console");
    }
    for f in mount_failures {
        log::error!("early mount failed: {f}");
    }
    for w in warnings {
        log::warn!("{w}");
    }

    let t = Instant::now();
    let report = modules::load_listed(&release);
    let modules_ms = ms(t.elapsed());
    log::info!("loaded {} modules ({} already present) in {modules_ms} ms", report.inserted, report.present);
    for f in &report.failed {
        log::warn!("module not loaded: {f}");
    }

    let t = Instant::now();
    match region::find_and_validate(&params.region, Duration::from_millis(params.pmem_wait_ms)) {
        RegionStatus::Absent { looked } => log::info!("no region found (looked at {})", looked.join(", ")),
        RegionStatus::Invalid { path, check } => {
            log::error!("region {} rejected: {check}; booting without restore", path.display())
        }
        RegionStatus::Valid(mut valid) => {
            log::info!("region {} valid: {}", valid.path.display(), valid.summary);
            let outcome = restore_hook(&mut valid);
            log::debug!("restore stage: {outcome:?}");
        }
    }
    let region_ms = ms(t.elapsed());

    let t = Instant::now();
    if let Err(why) = root::mount_root(&params) {
        root::rescue(&why);
    }
    let root_ms = ms(t.elapsed());
    let init = params.init_path().to_string();
    let args: Vec<String> = std::env::args().skip(1).collect();
    log::info!(
        "handing over to {init} after {} ms (modules {modules_ms} ms, region {region_ms} ms, root {root_ms} ms)",
        ms(start.elapsed())
    );
    let why = root::switch_root(&init, &args);
    root::rescue(&why)
}
