//! The early boot path of `seamless-init`, run as PID 1 of the initramfs:
//!
//! 1. mount /proc, /sys, /dev, /run and log to `/dev/kmsg`;
//! 2. load the modules listed in the initramfs;
//! 3. find the region and validate it ([`region::find_and_validate`]);
//! 4. for an upgrade image: prove the root filesystem is exactly as frozen
//!    ([`crate::handover::verify_root`]) before mounting it;
//! 5. mount the root filesystem and switch to it;
//! 6. restore the process trees there ([`crate::handover::restore`]), then execute the real init.
//!
//! The same binary also runs in two other roles (see [`crate::handover`] and the dracut
//! module): `seamless-init verify-root --device DEV` in a distribution's initramfs before it
//! mounts the root filesystem, and as `init=` PID 1 on the real root after that initramfs
//! switched to it, where it restores and then executes `seamless.init=` (default /sbin/init).
//!
//! Nothing here panics or exits: every failure is logged and the boot goes on, down to a
//! rescue shell when even the root filesystem cannot be mounted; should a bug panic anyway,
//! [`fallback`] logs it and goes on with the boot without restoring.
//!
//! The role is decided by [`role`], strictly: only PID 1 (of the initial pid namespace) boots,
//! only a process that is not PID 1 runs `verify-root`, and anything else prints the usage
//! and exits 2 without mounting or changing anything.

pub mod cmdline;
pub mod fallback;
pub mod kmsg;
pub mod modules;
pub mod mounts;
pub mod region;
pub mod root;

use crate::error::BootError;
use crate::handover;
use cmdline::BootParams;
use region::{RegionStatus, ValidRegion};
use seamless_image::upgrade::Upgrade;
use seamless_sys::chain;
use std::time::{Duration, Instant};

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Where `verify-root` leaves its verdict for the `init=` role.
pub const ROOT_VERDICT: &str = "/run/seamless/root-verdict";

/// What to do with a valid region once the root filesystem is mounted.
struct Pending {
    region: Box<ValidRegion>,
    upgrade: Upgrade,
}

/// Looks at a valid region: a test image is only logged; an upgrade image is returned for
/// restore if `root_ok` accepts the root filesystem, else refused (and consumed) with a report.
fn examine(mut valid: Box<ValidRegion>, root_ok: impl FnOnce(&Upgrade) -> Result<(), BootError>) -> Option<Pending> {
    log::info!("region {} valid: {}", valid.path.display(), valid.summary);
    let upgrade = match handover::upgrade_record(&mut valid.reader) {
        Ok(Some(u)) => u,
        Ok(None) => {
            log::info!("no upgrade record in {}: nothing to restore", valid.path.display());
            return None;
        }
        Err(e) => {
            log::error!(
                "region {}: upgrade record unreadable: {}; booting without restore",
                valid.path.display(),
                chain(&e)
            );
            return None;
        }
    };
    let running = read_trimmed("/proc/sys/kernel/osrelease");
    if let Err(e) = target_matches(&upgrade.target_release, &running) {
        log::error!("region {}: {e}; nothing is restored, the boot goes on", valid.path.display());
        let report = handover::refused(&mut valid, &upgrade, e.to_string());
        report.log();
        report.write();
        return None;
    }
    match root_ok(&upgrade) {
        Ok(()) => {
            log::info!("root filesystem is exactly as frozen by kernel {}", valid.reader.superblock().kernel_release);
            Some(Pending { region: valid, upgrade })
        }
        Err(e) => {
            let report = handover::refused(&mut valid, &upgrade, chain(&e).to_string());
            report.log();
            report.write();
            None
        }
    }
}

/// An image made for another kernel is not restored: `target` is the release the upgrade
/// recorded for the kernel it jumped to (empty when unknown, e.g. a same-kernel image),
/// `running` this kernel's.
fn target_matches(target: &str, running: &str) -> Result<(), BootError> {
    if target.is_empty() || target == running {
        return Ok(());
    }
    Err(BootError::OtherKernel { target: target.into(), running: running.into() })
}

/// Restores (already inside the real root), logs/writes the report, and puts restored
/// services back into their systemd units ([`crate::units`]).
fn restore_pending(mut p: Pending, stages: Vec<(String, u64)>) {
    let report = handover::restore(&mut p.region, &p.upgrade, stages);
    report.log();
    report.write();
    crate::units::adopt(&report.restored);
}

/// What `seamless-init --help` prints.
pub const USAGE: &str = "\
usage: seamless-init                             as PID 1 only (see below)
       seamless-init verify-root --device DEV    from an initramfs hook, before the root is mounted
       seamless-init --image-formats             the image formats this build reads, and exit
       seamless-init --help                      this text

seamless-init restores the processes of a `seamless upgrade` on the new kernel, then executes
the real init. It runs as PID 1 in two ways: as /init of the initramfs `seamless upgrade`
prepares, or as init=/usr/lib/seamless/seamless-init on the real root after a distribution
initramfs (with the seamless dracut module or mkinitcpio hook) switched to it; the real init
is then seamless.init= (default /sbin/init). It logs to the kernel log and writes
/run/seamless/report.json.

Started any other way it prints this text, exits with status 2 and changes nothing.
";

/// The roles of `seamless-init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// PID 1: the initramfs `/init`, or the `init=` hand-over on the real root (told apart
    /// by what `/` is, once /proc is mounted).
    Boot,
    /// `verify-root`, run by an initramfs hook (never PID 1).
    VerifyRoot,
    /// `--image-formats` (never PID 1): print what this build reads
    /// ([`seamless_image::compat::Formats::to_text`]), exit 0. `seamless check` runs the
    /// target initramfs's seamless-init this way.
    ImageFormats,
    /// Anything else, `--help` included: print the usage, exit 2.
    Usage,
}

/// The pid namespace inode of the initial namespace (`PROC_PID_INIT_INO`).
const INIT_PID_NS: &str = "pid:[4026531836]";

/// The role for a process with pid `pid`, arguments `args` (argv\[0\] first) and pid
/// namespace link `pid_ns` (`None` when /proc is not mounted, as early in an initramfs).
/// PID 1 of another pid namespace (a container) is not the machine's init.
pub fn role(pid: u32, args: &[String], pid_ns: Option<&str>) -> Role {
    if pid == 1 && pid_ns.is_none_or(|ns| ns == INIT_PID_NS) {
        return Role::Boot;
    }
    match args.get(1).map(String::as_str) {
        Some("verify-root") if pid != 1 => Role::VerifyRoot,
        Some("--image-formats") if pid != 1 && args.len() == 2 => Role::ImageFormats,
        _ => Role::Usage,
    }
}

/// Runs `seamless-init` in the role its environment calls for. Never returns as PID 1.
pub fn run() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let pid_ns = std::fs::read_link("/proc/self/ns/pid").ok().map(|l| l.to_string_lossy().into_owned());
    match role(std::process::id(), &args, pid_ns.as_deref()) {
        Role::Boot => {}
        Role::VerifyRoot => std::process::exit(verify_root_command(args.get(2..).unwrap_or_default())),
        Role::ImageFormats => {
            use std::io::Write;
            let text = seamless_image::compat::Formats::this_build(env!("CARGO_PKG_VERSION")).to_text();
            let written = std::io::stdout().write_all(text.as_bytes()).and_then(|()| std::io::stdout().flush());
            std::process::exit(if written.is_ok() { 0 } else { 1 })
        }
        Role::Usage => {
            use std::io::Write;
            let _ = std::io::stderr().write_all(USAGE.as_bytes());
            std::process::exit(2)
        }
    }
    fallback::install();
    fallback::set(fallback::Fallback::Exec { init: "/sbin/init".into(), args: args.iter().skip(1).cloned().collect() });
    if args.iter().skip(1).any(|a| a == "--help" || a == "-h") {
        // PID 1 must not exit: the usage goes to the console and the boot goes on.
        eprint!("{USAGE}");
    }
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
        log::warn!("/dev/kmsg unavailable ({}); logging to the console", chain(&e));
    }
    for f in mount_failures {
        log::error!("early mount failed: {f}");
    }
    for w in warnings {
        log::warn!("{w}");
    }
    if !root::root_is_initramfs() {
        run_on_real_root(&params, start)
    }
    let init = params.init_path().to_string();
    let init_args: Vec<String> = args.into_iter().skip(1).collect();
    fallback::set(fallback::Fallback::MountRoot {
        params: Box::new(params.clone()),
        init: init.clone(),
        args: init_args.clone(),
    });

    let t = Instant::now();
    let report = modules::load_listed(&release);
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
        RegionStatus::Valid(valid) => {
            examine(valid, |u| handover::verify_root(u, std::path::Path::new(&root_dev), root_wait))
        }
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
        restore_pending(p, stages);
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

/// The `init=` role on the real root, after a distribution's initramfs mounted it: restore
/// if the initramfs hook verified the root filesystem, then execute `seamless.init=`.
fn run_on_real_root(params: &BootParams, start: Instant) -> ! {
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
            let pending = examine(valid, |_| {
                if verdict.starts_with("ok") {
                    Ok(())
                } else if verdict.is_empty() {
                    Err(BootError::Verdict(format!("no verdict in {ROOT_VERDICT}: the initramfs did not check the root filesystem before mounting it (install the seamless dracut module or mkinitcpio hook)")))
                } else {
                    Err(BootError::Verdict(verdict.trim().to_string()))
                }
            });
            if let Some(p) = pending {
                restore_pending(p, vec![("region".to_string(), us(t.elapsed()))]);
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

/// `seamless-init verify-root --device DEV | --device-from-cmdline`: run by an initramfs hook
/// (or, in a systemd initramfs, a unit) before the root filesystem is mounted. Writes the
/// verdict to [`ROOT_VERDICT`]; an image appended to the initramfs is copied to
/// [`region::CARRIED_REGION`] so that the `init=` role finds it after the switch. Exit 0 when
/// the root is fine or there is nothing to restore, 1 when a restore is refused.
fn verify_root_command(args: &[String]) -> i32 {
    kmsg::init(false);
    let _ = kmsg::attach();
    let (params, _) = BootParams::parse(&read_trimmed("/proc/cmdline"));
    let given = args.iter().position(|a| a == "--device").and_then(|i| args.get(i + 1)).cloned();
    let dev = match given {
        Some(d) => d,
        None if args.iter().any(|a| a == "--device-from-cmdline") => match params.root_device_path() {
            Some(d) => d,
            None => {
                log::info!(
                    "verify-root: root={} names no local block device; nothing to verify",
                    params.root.as_deref().unwrap_or("(none)")
                );
                return 0;
            }
        },
        None => {
            eprintln!("usage: seamless-init verify-root --device DEV | --device-from-cmdline");
            return 2;
        }
    };
    let dev = &dev;
    let verdict = match region::find_and_validate(&params.region, Duration::from_millis(params.pmem_wait_ms)) {
        RegionStatus::Absent { .. } => return 0,
        RegionStatus::Invalid { path, check } => format!("refused: region {} rejected: {check}", path.display()),
        RegionStatus::Valid(mut valid) => match handover::upgrade_record(&mut valid.reader) {
            Ok(None) => return 0,
            Err(e) => format!("refused: upgrade record unreadable: {}", chain(&e)),
            Ok(Some(u)) => match target_matches(&u.target_release, &read_trimmed("/proc/sys/kernel/osrelease"))
                .and_then(|()| {
                    handover::verify_root(&u, std::path::Path::new(dev), Duration::from_millis(params.root_wait_ms))
                }) {
                Ok(()) => carry(&valid.path),
                Err(e) => format!("refused: {}", chain(&e)),
            },
        },
    };
    let written = seamless_image::private_dir(std::path::Path::new("/run/seamless"))
        .and_then(|_| seamless_image::create_private(std::path::Path::new(ROOT_VERDICT)))
        .map_err(BootError::from)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, format!("{verdict}\n").as_bytes())
                .map_err(|e| BootError::path("writing", ROOT_VERDICT, e))
        });
    if let Err(e) = written {
        log::error!("cannot write {ROOT_VERDICT}: {}", chain(&e));
    }
    if verdict.starts_with("ok") {
        log::info!("verify-root {dev}: {verdict}");
        0
    } else {
        log::error!("verify-root {dev}: {verdict}");
        1
    }
}

/// After a positive verdict: an image appended to the initramfs would be deleted with it at
/// the switch to the real root, so it is copied into `/run/seamless/`, which the
/// distribution's initramfs moves into the real root. Returns the verdict line.
fn carry(path: &std::path::Path) -> String {
    if path != std::path::Path::new(region::INITRAMFS_REGION) {
        return format!("ok {}", path.display());
    }
    // It holds process memory: a private directory and file, never written through a link.
    let copied = seamless_image::private_dir(std::path::Path::new("/run/seamless"))
        .map_err(|e| std::io::Error::other(chain(&e).to_string()))
        .and_then(|_| {
            let mut to = seamless_image::create_private(std::path::Path::new(region::CARRIED_REGION))
                .map_err(|e| std::io::Error::other(chain(&e).to_string()))?;
            std::io::copy(&mut std::fs::File::open(path)?, &mut to)
        });
    match copied {
        Ok(bytes) => {
            log::info!("carried {} ({bytes} bytes) to {} for the switch", path.display(), region::CARRIED_REGION);
            format!("ok {}", region::CARRIED_REGION)
        }
        Err(e) => {
            let _ = std::fs::remove_file(region::CARRIED_REGION);
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            format!(
                "refused: cannot copy the image {} ({size} bytes) to {}: {e}; /run must have room for it (or use a memmap= region)",
                path.display(),
                region::CARRIED_REGION
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        std::iter::once("seamless-init").chain(a.iter().copied()).map(String::from).collect()
    }

    #[test]
    fn only_pid_1_of_the_initial_namespace_boots() {
        let init_ns = Some(INIT_PID_NS);
        assert_eq!(role(1, &args(&[]), None), Role::Boot);
        assert_eq!(role(1, &args(&["ro", "quiet"]), init_ns), Role::Boot);
        // The kernel passes unknown command-line words to init: PID 1 never leaves its role.
        assert_eq!(role(1, &args(&["verify-root"]), init_ns), Role::Boot);
        assert_eq!(role(1, &args(&["--help"]), None), Role::Boot);
        assert_eq!(role(1, &args(&[]), Some("pid:[4026532301]")), Role::Usage);
        assert_eq!(role(4321, &args(&[]), init_ns), Role::Usage);
        assert_eq!(role(4321, &args(&["--help"]), init_ns), Role::Usage);
        assert_eq!(role(4321, &args(&["-h"]), init_ns), Role::Usage);
        assert_eq!(role(4321, &args(&["/sbin/init"]), init_ns), Role::Usage);
        assert_eq!(role(4321, &args(&["verify-root", "--device", "/dev/vda"]), init_ns), Role::VerifyRoot);
        assert_eq!(role(4321, &args(&["--image-formats"]), init_ns), Role::ImageFormats);
        assert_eq!(role(4321, &args(&["--image-formats", "x"]), init_ns), Role::Usage);
        assert_eq!(role(1, &args(&["--image-formats"]), init_ns), Role::Boot);
    }

    #[test]
    fn image_for_another_kernel_is_refused() {
        assert!(target_matches("", "6.12.12-amd64").is_ok(), "same-kernel images name no target");
        assert!(target_matches("6.12.12-amd64", "6.12.12-amd64").is_ok());
        let why = target_matches("6.12.12-amd64", "6.1.0-31-amd64").unwrap_err().to_string();
        assert!(why.contains("6.12.12-amd64") && why.contains("6.1.0-31-amd64"), "{why}");
    }
}
