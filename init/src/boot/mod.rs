//! The boot of `seamless-init`, one module per role:
//!
//! - [`initramfs`]: PID 1 of the initramfs `seamless upgrade` prepared: load the listed
//!   modules, find and validate the region ([`region::find_and_validate`]), prove the root
//!   filesystem is exactly as frozen ([`crate::handover::verify_root`]) before mounting it,
//!   mount it and switch to it, restore the process trees there
//!   ([`crate::handover::restore`]), then execute the real init;
//! - [`real_root`]: PID 1 as `init=` on the real root, after a distribution's initramfs
//!   verified and mounted it: restore, then execute `seamless.init=` (default /sbin/init);
//! - [`verify_root`]: `seamless-init verify-root --device DEV`, run by that initramfs's hook
//!   before it mounts the root filesystem;
//! - `seamless-init unlock` ([`crate::crypt::run_role`]): run by that initramfs's hook before
//!   its cryptsetup asks for passphrases, unlocks the upgrade's dm-crypt volumes.
//!
//! This module decides the role ([`role`]), strictly: only PID 1 (of the initial pid
//! namespace) boots, only a process that is not PID 1 runs `verify-root`, and anything else
//! prints the usage and exits 2 without mounting or changing anything. Both PID 1 roles start
//! the same way here ([`run`]: API filesystems, the kernel log, the command line) and share the
//! look at a valid region (`examine`).
//!
//! Nothing here panics or exits: every failure is logged and the boot goes on, down to a
//! rescue shell when even the root filesystem cannot be mounted; should a bug panic anyway,
//! [`fallback`] logs it and goes on with the boot without restoring.

pub mod cmdline;
pub mod fallback;
pub mod initramfs;
pub mod kmsg;
pub mod modules;
pub mod mounts;
pub mod real_root;
pub mod region;
pub mod root;
pub mod verify_root;

use crate::error::BootError;
use crate::handover;
use cmdline::BootParams;
use region::ValidRegion;
use seamless_image::filesystems::Filesystems;
use seamless_image::upgrade::Upgrade;
use seamless_sys::chain;
use std::time::{Duration, Instant};

pub(crate) fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

pub(crate) fn ms(d: Duration) -> u128 {
    d.as_millis()
}

pub(crate) fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Where `verify-root` leaves its verdict for the `init=` role.
pub const ROOT_VERDICT: &str = "/run/seamless/root-verdict";

/// What to do with a valid region once the root filesystem is mounted.
pub(crate) struct Pending {
    pub(crate) region: Box<ValidRegion>,
    pub(crate) upgrade: Upgrade,
    /// The filesystems the preserved processes use (record kind 50), if the image has them.
    pub(crate) filesystems: Option<Filesystems>,
}

/// Looks at a valid region: a test image is only logged; an upgrade image is returned for
/// restore if `root_ok` accepts the root filesystem (given the filesystems record, whose root
/// entry it verifies too), else refused (and consumed) with a report.
pub(crate) fn examine(
    mut valid: Box<ValidRegion>,
    wait: Duration,
    root_ok: impl FnOnce(&Upgrade, Option<&Filesystems>) -> Result<(), BootError>,
) -> Option<Pending> {
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
    let running = seamless_sys::kernel_release();
    if let Err(e) = target_matches(&upgrade.target_release, &running) {
        log::error!("region {}: {e}; nothing is restored, the boot goes on", valid.path.display());
        let report = handover::refused(&mut valid, &upgrade, e.to_string());
        report.log();
        report.write();
        return None;
    }
    let filesystems = match handover::filesystems_record(&mut valid.reader) {
        Ok(f) => f,
        Err(e) => {
            let report = handover::refused(&mut valid, &upgrade, chain(&e).to_string());
            report.log();
            report.write();
            return None;
        }
    };
    // dm-crypt volumes: unlocked here when no initramfs hook did it (seamless-init as /init),
    // verified again when one did (its verdict must be ok).
    let crypt_verdict = read_trimmed(crate::crypt::CRYPT_VERDICT);
    let unlocked = if crypt_verdict.starts_with("refused") {
        Err(BootError::Crypt(crypt_verdict.trim_start_matches("refused: ").to_string()))
    } else {
        crate::crypt::unlock(&mut valid.reader, wait)
    };
    match unlocked {
        Ok(lines) => {
            for l in lines {
                log::info!("dm-crypt volume {l}");
            }
        }
        Err(e) => {
            let report = handover::refused(&mut valid, &upgrade, chain(&e).to_string());
            report.log();
            report.write();
            return None;
        }
    }
    match root_ok(&upgrade, filesystems.as_ref()) {
        Ok(()) => {
            log::info!("root filesystem is exactly as frozen by kernel {}", valid.reader.superblock().kernel_release);
            Some(Pending { region: valid, upgrade, filesystems })
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
pub(crate) fn target_matches(target: &str, running: &str) -> Result<(), BootError> {
    if target.is_empty() || target == running {
        return Ok(());
    }
    Err(BootError::OtherKernel { target: target.into(), running: running.into() })
}

/// Restores (already inside the real root), logs/writes the report, and puts restored
/// services back into their systemd units ([`crate::units`]). First every other filesystem
/// the preserved processes use is verified, before the real system mounts it (waiting up to
/// `wait` for each device) and mounted where it was ([`handover::mount_filesystems`]): one
/// that differs or cannot be mounted restores nothing, with the report naming it.
pub(crate) fn restore_pending(mut p: Pending, mut stages: Vec<(String, u64)>, wait: Duration) {
    if let Some(fs) = &p.filesystems {
        let t = Instant::now();
        if let Err(e) = handover::verify_filesystems(fs, wait).and_then(|()| handover::mount_filesystems(fs, wait)) {
            let report = handover::refused(&mut p.region, &p.upgrade, chain(&e).to_string());
            report.log();
            report.write();
            return;
        }
        stages.push(("verify-fs".to_string(), us(t.elapsed())));
    }
    let report = handover::restore(&mut p.region, &p.upgrade, stages);
    report.log();
    report.write();
    crate::units::adopt(&report.restored);
}

/// What `seamless-init --help` prints.
pub const USAGE: &str = "\
usage: seamless-init                             as PID 1 only (see below)
       seamless-init verify-root --device DEV    from an initramfs hook, before the root is mounted
       seamless-init unlock                      from an initramfs hook, before its cryptsetup asks
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
    /// `unlock`, run by an initramfs hook before its cryptsetup (never PID 1).
    Unlock,
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
        Some("unlock") if pid != 1 && args.len() == 2 => Role::Unlock,
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
        Role::VerifyRoot => std::process::exit(verify_root::run(args.get(2..).unwrap_or_default())),
        Role::Unlock => std::process::exit(crate::crypt::run_role()),
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
    let release = seamless_sys::kernel_release();
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
        real_root::run(&params, start)
    }
    initramfs::run(params, args, &release, start)
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
