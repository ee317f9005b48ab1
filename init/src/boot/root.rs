//! Mounting the real root filesystem, switching to it and executing the real init. When the
//! root cannot be mounted: a rescue shell if the initramfs has one, else a clear message,
//! forever (PID 1 must not exit).

use super::cmdline::BootParams;
use crate::error::BootError;
use seamless_sys::chain;
use seamless_sys::mount::{chroot, device_of, mount, move_mount, umount, MNT_DETACH, MS_RDONLY};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the root filesystem is mounted before the switch.
pub const NEW_ROOT: &str = "/newroot";

/// Block filesystem types the kernel knows (`/proc/filesystems` without `nodev`).
fn block_filesystems() -> Vec<String> {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| {
            s.lines()
                .filter(|l| !l.starts_with("nodev"))
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for the root device and mounts it on [`NEW_ROOT`].
pub fn mount_root(p: &BootParams) -> Result<(), BootError> {
    let dev = p.root.as_deref().ok_or(BootError::NoRoot)?;
    if !dev.starts_with('/') {
        return Err(BootError::RootSpec(dev.to_string()));
    }
    let start = Instant::now();
    while !Path::new(dev).exists() {
        if start.elapsed() >= Duration::from_millis(p.root_wait_ms) {
            return Err(BootError::DeviceTimeout { device: dev.into(), ms: p.root_wait_ms });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let waited = start.elapsed();
    let _ = std::fs::create_dir_all(NEW_ROOT);
    let flags = if p.read_only { MS_RDONLY } else { 0 };
    let types = match &p.rootfstype {
        Some(t) => t.split(',').map(String::from).collect(),
        None => block_filesystems(),
    };
    let mut errors = Vec::new();
    for t in &types {
        match mount(dev, Path::new(NEW_ROOT), Some(t), flags, p.rootflags.as_deref()) {
            Ok(()) => {
                log::info!(
                    "mounted {dev} ({t}, {}) on {NEW_ROOT} after waiting {} ms for the device",
                    if p.read_only { "ro" } else { "rw" },
                    waited.as_millis()
                );
                return Ok(());
            }
            Err(e) => errors.push((t.clone(), e.source)),
        }
    }
    Err(BootError::Mount { device: dev.to_string(), tried: errors })
}

/// Whether `/` is the initramfs (rootfs, ramfs or tmpfs), so deleting its files is right.
pub fn root_is_initramfs() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.split(' ').nth(4) == Some("/")).and_then(|l| {
                l.split(" - ")
                    .nth(1)
                    .and_then(|rest| rest.split(' ').next())
                    .map(|t| matches!(t, "rootfs" | "ramfs" | "tmpfs"))
            })
        })
        .unwrap_or(false)
}

/// Deletes everything under `dir` that lives on device `dev` (the initramfs), without
/// crossing into other filesystems, so its memory is given back.
fn delete_tree(dir: &Path, dev: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if device_of(&path).ok() != Some(dev) {
            continue;
        }
        if meta.is_dir() {
            delete_tree(&path, dev);
            let _ = std::fs::remove_dir(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Moves the API filesystems into the new root (or detaches them), frees the initramfs and
/// makes [`NEW_ROOT`] the root and working directory.
pub fn enter_new_root() -> Result<(), BootError> {
    let new_root = Path::new(NEW_ROOT);
    for api in ["/dev", "/proc", "/sys", "/run"] {
        let target = new_root.join(&api[1..]);
        let moved = target.is_dir() && move_mount(Path::new(api), &target).is_ok();
        if !moved {
            let _ = umount(Path::new(api), MNT_DETACH);
        }
    }
    if root_is_initramfs() {
        match device_of(Path::new("/")) {
            Ok(dev) => delete_tree(Path::new("/"), dev),
            Err(e) => log::warn!("not freeing the initramfs: {}", chain(&e)),
        }
    }
    let switched = (|| -> Result<(), BootError> {
        std::env::set_current_dir(new_root).map_err(|e| BootError::path("chdir", NEW_ROOT, e))?;
        move_mount(Path::new("."), Path::new("/"))?;
        chroot(Path::new("."))?;
        std::env::set_current_dir("/").map_err(|e| BootError::path("chdir", "/", e))
    })();
    switched.map_err(|e| BootError::SwitchRoot(NEW_ROOT, Box::new(e)))
}

/// Executes the real init (falling back to the usual places). Returns only on failure.
pub fn exec_init(init: &str, args: &[String]) -> String {
    let mut tried = Vec::new();
    for candidate in [init, "/sbin/init", "/etc/init", "/bin/init", "/bin/sh"] {
        if tried.iter().any(|(c, _)| c == candidate) {
            continue;
        }
        let err = std::process::Command::new(candidate).arg0(candidate).args(args).exec();
        log::error!("executing {candidate} failed: {}", chain(&err));
        tried.push((candidate.to_string(), chain(&err).to_string()));
    }
    let list: Vec<String> = tried.iter().map(|(c, e)| format!("{c}: {e}")).collect();
    format!("no init could be executed ({})", list.join("; "))
}

/// [`enter_new_root`] then [`exec_init`]. Returns only on failure.
pub fn switch_root(init: &str, args: &[String]) -> String {
    match enter_new_root() {
        Ok(()) => exec_init(init, args),
        Err(e) => chain(&e).to_string(),
    }
}

/// Never returns: runs `/bin/sh` from the initramfs if there is one, else repeats `why`.
pub fn rescue(why: &str) -> ! {
    log::error!("cannot boot: {why}");
    if Path::new("/bin/sh").exists() {
        log::error!("starting the rescue shell /bin/sh of the initramfs");
        let err = std::process::Command::new("/bin/sh").arg0("sh").exec();
        log::error!("rescue shell failed: {}", chain(&err));
    }
    loop {
        log::error!("no root filesystem and no rescue shell (/bin/sh) in the initramfs; the system is halted: {why}");
        std::thread::sleep(Duration::from_secs(60));
    }
}
