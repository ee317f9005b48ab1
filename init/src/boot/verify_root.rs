//! The `verify-root` role, run by an initramfs hook before the root filesystem is mounted:
//! compare the root with the identity recorded before the jump and leave the verdict for the
//! `init=` role ([`super::real_root`]).

use super::cmdline::BootParams;
use super::region::{self, RegionStatus};
use super::{kmsg, read_trimmed, target_matches, ROOT_VERDICT};
use crate::error::BootError;
use crate::handover;
use seamless_sys::chain;
use std::time::Duration;

/// `seamless-init verify-root --device DEV | --device-from-cmdline`: run by an initramfs hook
/// (or, in a systemd initramfs, a unit) before the root filesystem is mounted. Writes the
/// verdict to [`ROOT_VERDICT`]; an image appended to the initramfs is copied to
/// [`region::CARRIED_REGION`] so that the `init=` role finds it after the switch. Exit 0 when
/// the root is fine or there is nothing to restore, 1 when a restore is refused.
pub fn run(args: &[String]) -> i32 {
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
            Ok(Some(u)) => match target_matches(&u.target_release, &seamless_sys::kernel_release())
                .and_then(|()| {
                    handover::verify_root(&u, std::path::Path::new(dev), Duration::from_millis(params.root_wait_ms))
                })
                .and_then(|()| handover::filesystems_record(&mut valid.reader))
                .and_then(|fs| handover::verify_root_fs(fs.as_ref(), std::path::Path::new(dev)))
            {
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
    let copied =
        seamless_image::private_dir(std::path::Path::new("/run/seamless")).map_err(BootError::from).and_then(|_| {
            let mut to = seamless_image::create_private(std::path::Path::new(region::CARRIED_REGION))?;
            let mut from = std::fs::File::open(path).map_err(|e| BootError::path("opening", path, e))?;
            std::io::copy(&mut from, &mut to).map_err(|e| BootError::path("copying to", region::CARRIED_REGION, e))
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
                "refused: cannot copy the image {} ({size} bytes) to {}: {}; /run must have room for it (or use a memmap= region)",
                path.display(),
                region::CARRIED_REGION,
                chain(&e)
            )
        }
    }
}
