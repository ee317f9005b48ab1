//! The restore stage of an upgrade, between "region validated" and "real init": prove the
//! root filesystem is exactly as frozen, mark the image consumed, restore the process trees
//! under the new root, write the report, wipe the process memory from the region.
//!
//! A process that cannot be restored never blocks the boot: it is named in the report and
//! the boot goes on.

use crate::boot::region::ValidRegion;
use crate::error::BootError;
use seamless_image::filesystems::{self, Filesystems, FsIdentity, FsVerifyError};
use seamless_image::upgrade::{read_identity, Upgrade};
use seamless_image::ImageError;
use seamless_image::{Reader, RecordKind, Store};
use seamless_restore::{plan, restore_plan, FailedTree, RestoreOptions};
use seamless_sys::chain;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the report for the new system goes.
pub const REPORT_DIR: &str = "/run/seamless";

/// The upgrade record of an image, if it is an upgrade image (test-pattern images have none).
pub fn upgrade_record<S: Store>(reader: &mut Reader<S>) -> Result<Option<Upgrade>, BootError> {
    Ok(reader.first_record(RecordKind::UPGRADE)?)
}

/// An optional image-wide record (written `IGNORABLE`: the restore goes on without it), if the
/// image has one that decodes and passes `check`; otherwise `None`, logged as `what` with what
/// that costs (`without`).
pub fn optional_record<S: Store, T: serde::de::DeserializeOwned>(
    reader: &mut Reader<S>,
    kind: RecordKind,
    check: impl FnOnce(&T) -> Result<(), seamless_image::upgrade::RecordProblem>,
    what: &str,
    without: &str,
) -> Option<T> {
    let rec = match reader.first_record::<T>(kind) {
        Ok(r) => r?,
        Err(e) => {
            log::warn!("{what} record unreadable ({}): {without}", chain(&e));
            return None;
        }
    };
    if let Err(e) = check(&rec) {
        log::warn!("{what} record refused ({e}): {without}");
        return None;
    }
    Some(rec)
}

/// Waits up to `wait` for `device` to appear, then compares its on-disk identity with the one
/// recorded before the jump. `Err` says why the processes must not be restored.
pub fn verify_root(upgrade: &Upgrade, device: &Path, wait: Duration) -> Result<(), BootError> {
    let Some(recorded) = &upgrade.root else {
        return Err(BootError::NoRootIdentity);
    };
    let start = Instant::now();
    while !device.exists() {
        if start.elapsed() >= wait {
            return Err(BootError::DeviceTimeout { device: device.into(), ms: wait.as_millis() as u64 });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let now = read_identity(device, &recorded.fstype, &recorded.options)?;
    recorded.verify(&now).map_err(BootError::RootChanged)
}

/// The filesystems record of an image, checked field by field; `None` when the image has
/// none (an ext2/3/4 root alone, verified through the upgrade record). It is not ignorable: a
/// record that does not decode or check refuses the restore.
pub fn filesystems_record<S: Store>(reader: &mut Reader<S>) -> Result<Option<Filesystems>, BootError> {
    let rec: Option<Filesystems> =
        reader.first_record(RecordKind::FILESYSTEMS).map_err(|e| BootError::FsRecord(chain(&e).to_string()))?;
    if let Some(r) = &rec {
        r.check().map_err(|e| BootError::FsRecord(e.to_string()))?;
    }
    Ok(rec)
}

/// The root's entry of the filesystems record, compared with `device` (before the root is
/// mounted; the caller waited for the device).
pub fn verify_root_fs(fs: Option<&Filesystems>, device: &Path) -> Result<(), BootError> {
    let Some(root) = fs.and_then(Filesystems::root) else { return Ok(()) };
    verify_fs(root, device)
}

fn verify_fs(recorded: &FsIdentity, device: &Path) -> Result<(), BootError> {
    let dm = dm_uuid_of(device);
    let now = filesystems::read(&recorded.mountpoint, device, &dm, &recorded.fstype).map_err(|source| {
        BootError::FsChanged(FsVerifyError::Read { mountpoint: recorded.mountpoint.clone(), source })
    })?;
    recorded.verify(&now).map_err(|m| BootError::FsChanged(FsVerifyError::Mismatch(m)))?;
    log::info!("filesystem {} is exactly as frozen ({})", recorded.mountpoint, now.summary());
    Ok(())
}

/// The device-mapper UUID of block device `dev`, empty when it is none.
fn dm_uuid_of(dev: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(dev) else { return String::new() };
    let rdev = m.rdev();
    let (ma, mi) = (((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff), (rdev & 0xff) | ((rdev >> 12) & !0xff));
    std::fs::read_to_string(format!("/sys/dev/block/{ma}:{mi}/dm/uuid"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The device of a recorded filesystem on this kernel: the recorded path when it exists (and,
/// for a device-mapper device, has its UUID), else the device-mapper device with the recorded
/// UUID (`/sys/class/block/*/dm/uuid`, as `/dev/dm-N`), waiting up to `wait` for it.
fn find_device(f: &FsIdentity, wait: Duration) -> Result<std::path::PathBuf, BootError> {
    let start = Instant::now();
    loop {
        let recorded = Path::new(&f.device);
        if recorded.exists() && (f.dm_uuid.is_empty() || dm_uuid_of(recorded) == f.dm_uuid) {
            return Ok(recorded.to_path_buf());
        }
        if !f.dm_uuid.is_empty() {
            for e in std::fs::read_dir("/sys/class/block").into_iter().flatten().flatten() {
                let uuid = std::fs::read_to_string(e.path().join("dm/uuid")).unwrap_or_default();
                let dev = Path::new("/dev").join(e.file_name());
                if uuid.trim() == f.dm_uuid && dev.exists() {
                    return Ok(dev);
                }
            }
        }
        if start.elapsed() >= wait {
            // A recorded path that exists but is another device: verified (and refused) as is.
            if recorded.exists() {
                return Ok(recorded.to_path_buf());
            }
            return Err(BootError::FsDeviceTimeout {
                mountpoint: f.mountpoint.clone(),
                device: f.device.clone(),
                dm_uuid: f.dm_uuid.clone(),
                ms: wait.as_millis() as u64,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every recorded filesystem but the root (verified before it was mounted), before the real
/// system mounts them: found by device path or device-mapper UUID and compared with what was
/// frozen. `Err` names the first that differs: nothing may be restored then.
pub fn verify_filesystems(fs: &Filesystems, wait: Duration) -> Result<(), BootError> {
    for f in fs.filesystems.iter().filter(|f| f.mountpoint != "/") {
        let dev = find_device(f, wait)?;
        verify_fs(f, &dev)?;
    }
    Ok(())
}

/// Mounts every recorded filesystem but the root where it was mounted, outermost first, with
/// its recorded options, unless something is mounted there already: the restored processes
/// hold files and directories on them. Runs after [`verify_filesystems`] and before the
/// restore; the real system's own mounts of them then find them mounted. `Err` names the
/// first that cannot be mounted (nothing may be restored then).
pub fn mount_filesystems(fs: &Filesystems, wait: Duration) -> Result<Vec<String>, BootError> {
    use seamless_sys::mount::{mount, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_RELATIME};
    let mut done = Vec::new();
    for f in fs.filesystems.iter().rev().filter(|f| f.mountpoint != "/") {
        let escaped = f.mountpoint.replace(' ', "\\040");
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(escaped.as_str()));
        if mounted {
            log::info!("filesystem {} is mounted already", f.mountpoint);
            continue;
        }
        let dev = find_device(f, wait)?;
        let mut flags = 0;
        for o in f.mount_options.split(',') {
            flags |= match o {
                "ro" => MS_RDONLY,
                "nosuid" => MS_NOSUID,
                "nodev" => MS_NODEV,
                "noexec" => MS_NOEXEC,
                "relatime" => MS_RELATIME,
                _ => 0,
            };
        }
        let data: Vec<&str> = f.fs_options.split(',').filter(|o| !o.is_empty() && *o != "rw" && *o != "ro").collect();
        let data = data.join(",");
        let dev_s = dev.display().to_string();
        let target = Path::new(&f.mountpoint);
        let first = mount(&dev_s, target, Some(&f.fstype), flags, Some(&data));
        match first {
            Ok(()) => {}
            Err(e) if !data.is_empty() => {
                log::warn!("mounting {} with {data:?}: {}; trying without these options", f.mountpoint, chain(&e));
                mount(&dev_s, target, Some(&f.fstype), flags, None)?;
            }
            Err(e) => return Err(e.into()),
        }
        log::info!("mounted {} ({}, {dev_s}) for the restored processes", f.mountpoint, f.fstype);
        done.push(f.mountpoint.clone());
    }
    Ok(done)
}

/// What the restore stage did, for the log and `/run/seamless/report.json`.
#[derive(Debug, Default)]
pub struct Report {
    /// Kernel that wrote the image.
    pub from_kernel: String,
    /// Kernel running now.
    pub to_kernel: String,
    /// Checkpoint stages (name, µs) recorded by the old kernel.
    pub checkpoint_stages: Vec<(String, u64)>,
    /// Restore-side stages (name, µs).
    pub restore_stages: Vec<(String, u64)>,
    /// Restored pids.
    pub restored: Vec<i32>,
    /// Pids that could not be restored, with the reason.
    pub failed: Vec<(i32, String)>,
    /// The trees that were not restored (their roots, all their pids, the reason).
    pub failed_trees: Vec<FailedTree>,
    /// Wall-clock time from the jump on the old kernel to the end of restore, if known.
    pub blackout_ms: Option<u64>,
    /// Why nothing was restored, if so.
    pub refused: Option<String>,
    /// The page cache re-warm, if the image recorded a hot set, and for how long (µs) it ran
    /// while the processes were being restored.
    pub rewarm: Option<(crate::page_cache::Summary, u64)>,
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Report {
    /// The report as JSON (hand-written: the initramfs carries no JSON library).
    pub fn to_json(&self) -> String {
        let stages = |v: &[(String, u64)]| {
            v.iter()
                .map(|(n, us)| format!("{{\"name\":{},\"micros\":{us}}}", json_str(n)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let restored: Vec<String> = self.restored.iter().map(|p| p.to_string()).collect();
        let failed: Vec<String> =
            self.failed.iter().map(|(p, r)| format!("{{\"pid\":{p},\"reason\":{}}}", json_str(r))).collect();
        let pids = |v: &[i32]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
        let trees: Vec<String> = self
            .failed_trees
            .iter()
            .map(|t| {
                format!(
                    "{{\"roots\":[{}],\"pids\":[{}],\"reason\":{}}}",
                    pids(&t.roots),
                    pids(&t.pids),
                    json_str(&t.reason)
                )
            })
            .collect();
        let rewarm = match &self.rewarm {
            Some((w, overlap)) => format!(
                "{{\"files_recorded\":{},\"bytes_recorded\":{},\"files\":{},\"bytes\":{},\"skipped\":{},\"out_of_time\":{},\"micros\":{},\"overlap_micros\":{overlap},\"budget_ms\":{}}}",
                w.files_recorded, w.bytes_recorded, w.files, w.bytes, w.skipped, w.out_of_time, w.micros, w.budget_ms
            ),
            None => "null".into(),
        };
        format!(
            "{{\"from_kernel\":{},\"to_kernel\":{},\"checkpoint_stages\":[{}],\"restore_stages\":[{}],\"restored\":[{}],\"failed\":[{}],\"failed_trees\":[{}],\"blackout_ms\":{},\"rewarm\":{rewarm},\"refused\":{}}}\n",
            json_str(&self.from_kernel),
            json_str(&self.to_kernel),
            stages(&self.checkpoint_stages),
            stages(&self.restore_stages),
            restored.join(","),
            failed.join(","),
            trees.join(","),
            self.blackout_ms.map(|b| b.to_string()).unwrap_or_else(|| "null".into()),
            self.refused.as_deref().map(json_str).unwrap_or_else(|| "null".into()),
        )
    }

    /// Logs the whole breakdown, one line per stage.
    pub fn log(&self) {
        log::info!("upgrade {} -> {}", self.from_kernel, self.to_kernel);
        for (n, us) in &self.checkpoint_stages {
            log::info!("  old kernel  {n:<16} {:>9.1} ms", *us as f64 / 1000.0);
        }
        for (n, us) in &self.restore_stages {
            log::info!("  new kernel  {n:<16} {:>9.1} ms", *us as f64 / 1000.0);
        }
        if let Some(b) = self.blackout_ms {
            log::info!("  processes stopped for {b} ms (jump to end of restore, wall clock)");
        }
        if let Some((w, overlap)) = &self.rewarm {
            log::info!(
                "  page cache re-warmed: {} of {} file(s), {} of {} MiB in {:.1} ms ({:.1} ms of it during restore){}{}",
                w.files,
                w.files_recorded,
                w.bytes >> 20,
                w.bytes_recorded >> 20,
                w.micros as f64 / 1000.0,
                *overlap as f64 / 1000.0,
                if w.skipped > 0 { format!(", {} changed or missing file(s) skipped", w.skipped) } else { String::new() },
                if w.out_of_time { format!(", stopped at the {} ms budget", w.budget_ms) } else { String::new() },
            );
        }
        log::info!("restored {} process(es): {:?}", self.restored.len(), self.restored);
        for t in &self.failed_trees {
            log::error!(
                "tree of pid {:?} was not restored (none of its pids {:?} runs; the other trees go on): {}",
                t.roots,
                t.pids,
                t.reason
            );
        }
        for (pid, why) in &self.failed {
            log::error!("pid {pid} was not restored: {why}");
        }
        if let Some(r) = &self.refused {
            log::error!("nothing restored: {r}");
        }
    }

    /// Writes `/run/seamless/report.json` (in whatever root is current).
    pub fn write(&self) {
        let dir = Path::new(REPORT_DIR);
        // Mode 0700 / 0600, created under a temporary name and renamed: never written
        // through a link someone planted.
        let res = seamless_image::private_dir(dir)
            .and_then(|_| seamless_image::create_private(&dir.join("report.json")))
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, self.to_json().as_bytes()).map_err(|e| ImageError::Io {
                    op: "write",
                    store: format!("{REPORT_DIR}/report.json"),
                    source: e,
                })
            });
        if let Err(e) = res {
            log::warn!("cannot write {REPORT_DIR}/report.json: {}", chain(&e));
        }
    }
}

/// Makes the processes created from now on see CLOCK_MONOTONIC and CLOCK_BOOTTIME continue
/// from the old kernel's values (plus the wall-clock time the jump took) instead of jumping
/// back to this kernel's boot, through a time namespace with offsets. Returns the caller's
/// own time namespace, to go back to before the real init starts; `None` if the old clocks
/// were not recorded or the kernel has no time namespaces (then the clocks do jump).
fn continue_clocks(upgrade: &Upgrade) -> Option<std::fs::File> {
    use seamless_sys::timens;
    if upgrade.jump_monotonic_ns <= 0 {
        return None;
    }
    let now_real = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as i64;
    let gap = now_real.saturating_sub(upgrade.jump_realtime_ns as i64).max(0);
    let (mono, boot) = match (timens::monotonic_ns(), timens::boottime_ns()) {
        (Ok(m), Ok(b)) => (m, b),
        _ => return None,
    };
    let own = match timens::current_time_ns() {
        Ok(f) => f,
        Err(e) => {
            log::warn!("no time namespaces ({}): restored processes will see CLOCK_MONOTONIC restart", chain(&e));
            return None;
        }
    };
    // Saturating: the recorded clocks come from the image.
    let mono_off = upgrade.jump_monotonic_ns.saturating_add(gap).saturating_sub(mono);
    let boot_off = upgrade.jump_boottime_ns.saturating_add(gap).saturating_sub(boot);
    match timens::unshare_with_offsets(mono_off, boot_off) {
        Ok(()) => {
            log::info!(
                "restored processes' clocks continue the old kernel's: monotonic {:+} ms, boottime {:+} ms",
                mono_off / 1_000_000,
                boot_off / 1_000_000
            );
            Some(own)
        }
        Err(e) => {
            log::warn!(
                "cannot set up a time namespace ({}): restored processes will see CLOCK_MONOTONIC restart",
                chain(&e)
            );
            let _ = timens::enter_time_ns(&own);
            None
        }
    }
}

/// A report for an image that was not restored.
pub fn refused(region: &mut ValidRegion, upgrade: &Upgrade, why: String) -> Report {
    // The image can never become valid again: consume it so no later boot tries.
    if let Err(e) = region.reader.mark_consumed() {
        log::warn!("cannot mark the region consumed: {}", chain(&e));
    }
    Report {
        from_kernel: region.reader.superblock().kernel_release.clone(),
        to_kernel: seamless_sys::kernel_release(),
        checkpoint_stages: upgrade.stages.iter().map(|s| (s.name.clone(), s.micros)).collect(),
        refused: Some(why),
        ..Default::default()
    }
}

/// Restores the trees of `region` in the current root (the caller has switched to the real
/// root filesystem). Marks the image consumed first, wipes its data after.
pub fn restore(region: &mut ValidRegion, upgrade: &Upgrade, boot_stages: Vec<(String, u64)>) -> Report {
    let mut report = Report {
        from_kernel: region.reader.superblock().kernel_release.clone(),
        to_kernel: seamless_sys::kernel_release(),
        checkpoint_stages: upgrade.stages.iter().map(|s| (s.name.clone(), s.micros)).collect(),
        restore_stages: boot_stages,
        ..Default::default()
    };
    if let Err(e) = region.reader.mark_consumed() {
        report.refused = Some(format!(
            "cannot mark the image consumed ({}); not restoring, so it is never restored twice",
            chain(&e)
        ));
        return report;
    }
    // Every record is validated before anything changes (network, clocks, processes).
    let t = Instant::now();
    let plan = match plan::load(&mut region.reader) {
        Ok(p) => p,
        Err(e) => {
            report.refused = Some(chain(&e).to_string());
            return report;
        }
    };
    report.restore_stages.push(("validate".into(), t.elapsed().as_micros() as u64));
    let t = Instant::now();
    if let Some(rec) = crate::tmpfs::recorded(&mut region.reader) {
        let s = crate::tmpfs::recreate(&rec, &mut region.reader);
        log::info!(
            "tmpfs: {} entr(ies) recreated ({} KiB), {} mount(s) made, {} already there, {} failed",
            s.created,
            s.bytes >> 10,
            s.mounted,
            s.existing,
            s.failed
        );
    }
    report.restore_stages.push(("tmpfs".into(), t.elapsed().as_micros() as u64));
    // The page cache is read back while the processes are restored.
    let rewarm = crate::page_cache::recorded(&mut region.reader).map(crate::page_cache::start);
    let t = Instant::now();
    let (changed, problems) = crate::sysctl::apply(&upgrade.sysctls);
    log::info!("{changed} of {} recorded sysctls set to the old kernel's values", upgrade.sysctls.len());
    for problem in problems {
        log::warn!("{problem}");
    }
    report.restore_stages.push(("sysctls".into(), t.elapsed().as_micros() as u64));
    // The lock goes on before any link comes up: until the restore has repaired them, no
    // segment of a preserved connection is answered (a reset) or accepted.
    let t = Instant::now();
    let lock = plan.lock();
    if let Some((lock, listeners)) = &lock {
        if let Err(e) = seamless_restore::netlock::install_with(lock, listeners) {
            log::warn!("network lock: {}; the preserved connections are repaired without it", chain(&e));
        }
    }
    report.restore_stages.push(("netlock".into(), t.elapsed().as_micros() as u64));
    let t = Instant::now();
    for problem in crate::network::configure(upgrade) {
        log::warn!("network: {problem}");
    }
    report.restore_stages.push(("network".into(), t.elapsed().as_micros() as u64));
    let t = Instant::now();
    let own_clocks = continue_clocks(upgrade);
    match restore_plan(&plan, &mut region.reader, &RestoreOptions::from_env()) {
        Ok(r) => {
            report.restored = r.restored;
            report.failed = r.failed;
            report.failed_trees = r.failed_trees;
        }
        Err(e) => report.refused = Some(chain(&e).to_string()),
    }
    if let Some((lock, _)) = &lock {
        // restore_plan lifted it after the repair; this covers any way it did not get there.
        seamless_restore::netlock::lift_logged(&lock.table, "after the restore");
    }
    let restored_at = Instant::now();
    let restored_wall = std::time::SystemTime::now();
    report.restore_stages.push(("restore".into(), t.elapsed().as_micros() as u64));
    if let Some(w) = rewarm {
        // Joined before going back to the initial time namespace: setns(CLONE_NEWTIME) needs a
        // single-threaded caller.
        let summary = w.finish();
        let after = restored_at.elapsed().as_micros() as u64;
        report.restore_stages.push(("rewarm-wait".into(), after));
        report.rewarm = Some((summary.clone(), summary.micros.saturating_sub(after)));
    }
    if let Some(ns) = own_clocks {
        // The real init and everything it starts live on the new kernel's clocks.
        if let Err(e) = seamless_sys::timens::enter_time_ns(&ns) {
            log::error!("cannot return to the initial time namespace: {}", chain(&e));
        }
    }
    let now_ns = restored_wall.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    if upgrade.jump_realtime_ns > 0 && now_ns > upgrade.jump_realtime_ns {
        report.blackout_ms = Some((now_ns - upgrade.jump_realtime_ns) / 1_000_000);
    }
    let t = Instant::now();
    if let Err(e) = region.reader.wipe_data() {
        log::warn!("cannot wipe the process memory from the region: {}", chain(&e));
    }
    report.restore_stages.push(("wipe".into(), t.elapsed().as_micros() as u64));
    report
}

#[cfg(test)]
mod tests {
    use super::{FailedTree, Report};

    #[test]
    fn report_names_failed_trees() {
        let r = Report {
            restored: vec![30010],
            failed: vec![(30005, "its tree was not restored: \"socket\" refused".into())],
            failed_trees: vec![FailedTree { roots: vec![30005], pids: vec![30005, 30006], reason: "a \"b\"".into() }],
            ..Default::default()
        };
        let json = r.to_json();
        assert!(json.contains("\"restored\":[30010]"), "{json}");
        assert!(
            json.contains("\"failed_trees\":[{\"roots\":[30005],\"pids\":[30005,30006],\"reason\":\"a \\\"b\\\"\"}]"),
            "{json}"
        );
        assert!(json.ends_with("\"refused\":null}\n"), "{json}");
    }
}
