//! Unlocking the dm-crypt volumes of an upgrade (record kind 51,
//! [`seamless_image::crypt::CryptVolumes`]) before the distribution's initramfs would ask for
//! their passphrase: each volume's device is found by its LUKS header's UUID, every header is
//! compared (UUID, version, sequence id) before anything is unlocked, then each mapping is
//! made with the name, UUID and table it had (`DM_DEV_CREATE`, `DM_TABLE_LOAD`, resume), the
//! key given as before: inline, or as a `logon` key added to this thread's keyring and
//! invalidated as soon as the table is loaded. The keys are then overwritten with zeros in
//! the region ([`seamless_image::Reader::rewrite_record`]) and in memory.
//!
//! The distribution's own cryptsetup then finds the mapping present and does not ask
//! (initramfs-tools' `cryptroot` skips a crypttab entry whose mapping exists; dracut's
//! `systemd-cryptsetup` and `cryptroot-ask` do too). Any difference, or any failure, unlocks
//! nothing: the mappings this call made are removed again, the normal prompt runs, and the
//! reason is logged and returned (the restore is refused with it).
//!
//! Idempotent: called again (the `init=` role after the initramfs's `unlock`), it verifies the
//! headers once more and accepts mappings that exist with the recorded device-mapper UUID.

use crate::error::BootError;
use seamless_image::crypt::{self, CryptVolume, CryptVolumes, KeyRef};
use seamless_image::{Reader, RecordKind, Store};
use seamless_sys::{chain, dm, keyring};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the `unlock` role leaves its verdict for the later roles (`ok ...` or `refused: ...`).
pub const CRYPT_VERDICT: &str = "/run/seamless/crypt-verdict";

/// The block device holding the LUKS header with `uuid`, waiting up to `wait` for it:
/// `(path, major, minor, size in sectors)`.
fn find_luks(uuid: &str, wait: Duration) -> Result<(PathBuf, u64, u64, u64, crypt::LuksHeader), String> {
    let start = Instant::now();
    loop {
        let mut found = Vec::new();
        for e in std::fs::read_dir("/sys/class/block").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let size: u64 =
                std::fs::read_to_string(e.path().join("size")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            if size < 8 || name.starts_with("sr") || name.starts_with("fd") {
                continue;
            }
            let dev = PathBuf::from("/dev").join(&name);
            let Ok(Some(h)) = crypt::read_header(&dev) else { continue };
            if h.uuid.eq_ignore_ascii_case(uuid) {
                let devno = std::fs::read_to_string(e.path().join("dev")).unwrap_or_default();
                let (ma, mi) = devno.trim().split_once(':').unwrap_or(("", ""));
                if let (Ok(ma), Ok(mi)) = (ma.parse(), mi.parse()) {
                    found.push((dev, ma, mi, size, h));
                }
            }
        }
        match found.len() {
            1 => return Ok(found.remove(0)),
            0 => {}
            _ => {
                let names: Vec<String> = found.iter().map(|f| f.0.display().to_string()).collect();
                return Err(format!("LUKS UUID {uuid} is on {} devices ({})", names.len(), names.join(", ")));
            }
        }
        if start.elapsed() >= wait {
            return Err(format!("no device with LUKS UUID {uuid} appeared within {} ms", wait.as_millis()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What was found for one volume before anything is unlocked.
struct Found {
    device: PathBuf,
    devno: (u64, u64),
    present: bool,
}

/// Checks volume `v` against what this kernel has: the mapping's name (free, or taken by a
/// mapping with the recorded UUID) and the device with its header.
fn verify(v: &CryptVolume, wait: Duration) -> Result<Found, String> {
    let existing = dm::info(&v.name).map_err(|e| format!("{}", chain(&e)))?;
    if let Some(i) = &existing {
        if i.uuid != v.dm_uuid {
            return Err(format!(
                "a device-mapper device {} exists with UUID {:?}, not {:?}",
                v.name, i.uuid, v.dm_uuid
            ));
        }
    }
    let (device, ma, mi, size, h) = find_luks(&v.luks_uuid, wait)?;
    if h.version != v.luks_version || h.seqid != v.header_seqid {
        return Err(format!(
            "the LUKS header on {} changed: LUKS{} sequence {} (recorded LUKS{} sequence {})",
            device.display(),
            h.version,
            h.seqid,
            v.luks_version,
            v.header_seqid
        ));
    }
    if v.data_offset.checked_add(v.length).is_none_or(|end| end > size) {
        return Err(format!(
            "{} has {size} sectors; the mapping needs {} from sector {}",
            device.display(),
            v.length,
            v.data_offset
        ));
    }
    if existing.is_none() && v.wiped() {
        return Err("its key was wiped from the region already, and no mapping exists".into());
    }
    Ok(Found { device, devno: (ma, mi), present: existing.is_some() })
}

/// Makes the mapping of `v` on `f.devno`; on failure nothing of it is left.
fn make(v: &CryptVolume, f: &Found) -> Result<(), String> {
    let line = v.table_line(f.devno);
    let key_id = match &v.key_ref {
        KeyRef::Inline => None,
        KeyRef::Keyring { key_type, description } => {
            if key_type != "logon" && key_type != "user" {
                return Err(format!("keyring key type {key_type} is not supported"));
            }
            let secret = seamless_sys::secret::Secret::copy_of(&v.key);
            Some(keyring::add_logon_key(description, &secret).map_err(|e| format!("{}", chain(&e)))?)
        }
    };
    let drop_key = |id: Option<i32>| {
        if let Some(id) = id {
            if let Err(e) = keyring::invalidate(id) {
                log::warn!("dm-crypt volume {}: invalidating key {id}: {}", v.name, chain(&e));
            }
        }
    };
    if let Err(e) = dm::create(&v.name, &v.dm_uuid) {
        drop_key(key_id);
        return Err(format!("{}", chain(&e)));
    }
    let target = dm::Target { start: 0, length: v.length, kind: "crypt".into(), params: line };
    let loaded = dm::load(&v.name, std::slice::from_ref(&target), v.read_only);
    drop(target);
    // dm-crypt took its copy of the key while the table was loaded.
    drop_key(key_id);
    let live = loaded.and_then(|()| dm::resume(&v.name));
    if let Err(e) = live {
        if let Err(r) = dm::remove(&v.name) {
            log::error!("dm-crypt volume {}: removing the half-made mapping: {}", v.name, chain(&r));
        }
        return Err(format!("{}", chain(&e)));
    }
    Ok(())
}

/// Waits up to 3 s for udev's `/dev/mapper/NAME`, and makes the link itself otherwise (an
/// initramfs without device-mapper's udev rules).
fn mapper_link(name: &str) {
    let link = PathBuf::from("/dev/mapper").join(name);
    let start = Instant::now();
    while !link.exists() && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if link.exists() {
        return;
    }
    if let Ok(Some(i)) = dm::info(name) {
        let (ma, mi) = i.major_minor();
        let target = std::fs::read_link(format!("/sys/dev/block/{ma}:{mi}"))
            .ok()
            .and_then(|p| p.file_name().map(|n| PathBuf::from("..").join(n)));
        if let Some(t) = target {
            let _ = std::fs::create_dir_all("/dev/mapper");
            match std::os::unix::fs::symlink(&t, &link) {
                Ok(()) => log::info!("made {} -> {}", link.display(), t.display()),
                Err(e) => log::warn!("cannot make {}: {e}", link.display()),
            }
        }
    }
}

/// Unlocks every volume of the image's record kind 51 that is not unlocked yet (see the
/// module documentation); returns a line per volume. `Ok(empty)` when the image has none.
/// The keys are wiped in the region whatever the outcome.
pub fn unlock<S: Store>(reader: &mut Reader<S>, wait: Duration) -> Result<Vec<String>, BootError> {
    let Some((index, _)) = reader.find(RecordKind::CRYPT_VOLUMES).next() else { return Ok(Vec::new()) };
    let rec: CryptVolumes = reader.secret_record(index).map_err(|e| BootError::Crypt(chain(&e).to_string()))?;
    let result = unlock_all(&rec, wait);
    if rec.volumes.iter().any(|v| !v.wiped()) {
        match reader.rewrite_record(index, &rec.wiped_bytes()) {
            Ok(()) => log::info!("dm-crypt keys wiped from the region"),
            Err(e) => log::error!("cannot wipe the dm-crypt keys from the region: {}", chain(&e)),
        }
    }
    drop(rec);
    result.map_err(BootError::Crypt)
}

fn unlock_all(rec: &CryptVolumes, wait: Duration) -> Result<Vec<String>, String> {
    rec.check().map_err(|e| format!("the dm-crypt record is refused: {e}"))?;
    let mut found = Vec::with_capacity(rec.volumes.len());
    for v in &rec.volumes {
        found.push(
            verify(v, wait)
                .map_err(|e| format!("dm-crypt volume {} (LUKS {}): {e}; nothing unlocked", v.name, v.luks_uuid))?,
        );
    }
    let mut made: Vec<&str> = Vec::new();
    let mut lines = Vec::new();
    for (v, f) in rec.volumes.iter().zip(&found) {
        if f.present {
            lines.push(format!(
                "{} present already (LUKS{} {} on {})",
                v.name,
                v.luks_version,
                v.luks_uuid,
                f.device.display()
            ));
            continue;
        }
        if let Err(e) = make(v, f) {
            for m in made.iter().rev() {
                if let Err(r) = dm::remove(m) {
                    log::error!("dm-crypt volume {m}: removing it again: {}", chain(&r));
                }
            }
            return Err(format!("dm-crypt volume {} on {}: {e}; nothing unlocked", v.name, f.device.display()));
        }
        made.push(&v.name);
        mapper_link(&v.name);
        lines.push(format!(
            "{} unlocked (LUKS{} {} on {}, {})",
            v.name,
            v.luks_version,
            v.luks_uuid,
            f.device.display(),
            v.cipher
        ));
    }
    Ok(lines)
}

/// The `unlock` role, run by an initramfs hook before the distribution's cryptsetup (the
/// initramfs-tools `local-top` script): finds the region, checks it is for this kernel,
/// unlocks, and leaves the verdict in [`CRYPT_VERDICT`]. Always exits 0: the boot goes on
/// (with the prompt when nothing was unlocked).
pub fn run_role() -> i32 {
    use crate::boot::cmdline::BootParams;
    use crate::boot::region::{self, RegionStatus};
    crate::boot::kmsg::init(false);
    let _ = crate::boot::kmsg::attach();
    let (params, _) = BootParams::parse(&crate::boot::read_trimmed("/proc/cmdline"));
    let mut valid = match region::find_and_validate(&params.region, Duration::from_millis(params.pmem_wait_ms)) {
        RegionStatus::Valid(v) => v,
        _ => return 0,
    };
    if valid.reader.find(RecordKind::CRYPT_VOLUMES).next().is_none() {
        return 0;
    }
    let verdict = match crate::handover::upgrade_record(&mut valid.reader) {
        Ok(Some(u)) => match crate::boot::target_matches(&u.target_release, &seamless_sys::kernel_release()) {
            Ok(()) => match unlock(&mut valid.reader, Duration::from_millis(params.root_wait_ms)) {
                Ok(lines) => {
                    for l in &lines {
                        log::info!("dm-crypt volume {l}");
                    }
                    format!("ok {}", lines.join("; "))
                }
                Err(e) => format!("refused: {}", chain(&e)),
            },
            Err(e) => format!("refused: {}", chain(&e)),
        },
        Ok(None) => return 0,
        Err(e) => format!("refused: upgrade record unreadable: {}", chain(&e)),
    };
    if !verdict.starts_with("ok") {
        log::error!("unlock: {verdict}; the distribution's prompt runs");
    }
    let written = seamless_image::private_dir(std::path::Path::new(crate::handover::REPORT_DIR))
        .and_then(|_| seamless_image::create_private(std::path::Path::new(CRYPT_VERDICT)))
        .map_err(BootError::from)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, format!("{verdict}\n").as_bytes())
                .map_err(|e| BootError::path("writing", CRYPT_VERDICT, e))
        });
    if let Err(e) = written {
        log::error!("cannot write {CRYPT_VERDICT}: {}", chain(&e));
    }
    0
}
