//! Can every writable block-backed filesystem be frozen, so the new kernel needs no journal
//! replay? The filesystems are the ones `seamless kexec --exec` and `seamless upgrade` freeze.
//! Those the preserved processes use are also recorded and verified on the new kernel before
//! they are mounted (record kind 50): each one's verdict says so, with its type and device,
//! and fails for a type without a clean-state verifier or a target that cannot verify it.

use super::Verdict;
use crate::kexec::FreezeTarget;
use crate::upgrade::crypt::CryptKey;
use seamless_image::crypt::KeyRef;
use seamless_image::filesystems::{self, FsState, VERIFIED_TYPES};
use seamless_image::RecordKind;
use seamless_sys::chain;

/// Filesystems whose kernel driver implements freezing.
const FREEZABLE: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "nilfs2", "gfs2", "reiserfs"];

/// Verdicts on freezing and verifying, for the trees rooted at `pids`; `target_kinds`: the
/// record kinds the target's seamless-init reads, when known; `crypt_keys`: the passphrases or
/// key files given for dm-crypt volumes whose key is in the kernel keyring.
pub fn check(
    pids: &[i32],
    target_kinds: Option<&[u16]>,
    crypt_keys: &[CryptKey],
    initrd: Option<&std::path::Path>,
) -> Vec<Verdict> {
    let targets = match crate::kexec::current_freeze_targets() {
        Ok(t) => t,
        Err(e) => return vec![Verdict::fail("filesystems", chain(&e).to_string())],
    };
    if targets.is_empty() {
        return vec![Verdict::ok("filesystems", "no writable block-backed filesystem")];
    }
    let used = crate::upgrade::filesystems::used_targets(&targets, pids);
    let needs_kind = used.iter().any(|t| t.mountpoint != std::path::Path::new("/") || !t.fstype.starts_with("ext"));
    let target_verifies = !needs_kind || target_kinds.is_none_or(|k| k.contains(&RecordKind::FILESYSTEMS.0));
    targets
        .iter()
        .map(|t| {
            let subject = format!("fs {}", t.mountpoint.display());
            let is_used = used.iter().any(|u| u.mountpoint == t.mountpoint);
            if is_used && FREEZABLE.contains(&t.fstype.as_str()) {
                verify_verdict(subject, t, target_verifies, target_kinds, crypt_keys, initrd)
            } else if FREEZABLE.contains(&t.fstype.as_str()) {
                Verdict::ok(
                    subject,
                    format!(
                        "{} on {}: freezable; not used by the preserved processes: frozen, not verified",
                        t.fstype, t.source
                    ),
                )
            } else {
                Verdict::fail(
                    subject,
                    format!(
                        "{} on {} cannot be frozen: remount it read-only or unmount it before the upgrade",
                        t.fstype, t.source
                    ),
                )
            }
        })
        .collect()
}

/// The verdict on a filesystem the preserved processes use: its type must have a verifier
/// whose markers can be read from its device now, and the target must verify it.
fn verify_verdict(
    subject: String,
    t: &FreezeTarget,
    target_verifies: bool,
    target_kinds: Option<&[u16]>,
    crypt_keys: &[CryptKey],
    initrd: Option<&std::path::Path>,
) -> Verdict {
    let dm = crate::upgrade::filesystems::dm_uuid(&t.source);
    let lv = if dm.is_empty() { String::new() } else { format!(" (device-mapper {dm})") };
    let what = format!("{} on {}{lv}, used by the preserved processes", t.fstype, t.source);
    if !VERIFIED_TYPES.contains(&t.fstype.as_str()) {
        return Verdict::fail(
            subject,
            format!(
                "{what}: {} has no clean-state verifier (only {}): move the data or leave the process out",
                t.fstype,
                VERIFIED_TYPES.join(", ")
            ),
        );
    }
    let mut unlock = String::new();
    for dev in crate::upgrade::crypt::devices(std::path::Path::new("/sys"), &t.source) {
        if target_kinds.is_some_and(|k| !k.contains(&RecordKind::CRYPT_VOLUMES.0)) {
            return Verdict::fail(
                subject,
                format!(
                    "{what}: on dm-crypt volume {}: the new initramfs's seamless-init cannot unlock it (it does not know record kind 51), so the new kernel would wait for its passphrase; update it",
                    dev.name
                ),
            );
        }
        if let Some(initrd) = initrd {
            let unlocks = super::initramfs::read(initrd)
                .map_err(|e| chain(&e).to_string())
                .and_then(|entries| super::initramfs::unlocks_crypt(&entries));
            if let Err(why) = unlocks {
                return Verdict::fail(subject, format!("{what}: on dm-crypt volume {}: {why}", dev.name));
            }
        }
        match crate::upgrade::crypt::read(&dev, crypt_keys) {
            Ok(v) => {
                let how = match v.key_ref {
                    KeyRef::Inline => "its key read from the live table".to_string(),
                    KeyRef::Keyring { .. } => {
                        "its key (in the kernel keyring) derived from the LUKS header with the given --crypt-key"
                            .to_string()
                    }
                };
                unlock.push_str(&format!(
                    "; on dm-crypt volume {} (LUKS{} {}), {how}: carried in the region (RAM only) and unlocked by seamless-init before the passphrase prompt",
                    v.name, v.luks_version, v.luks_uuid
                ));
            }
            Err(e) => return Verdict::fail(subject, format!("{what}: {}", chain(&e))),
        }
    }
    if !target_verifies {
        return Verdict::fail(
            subject,
            format!("{what}: the new initramfs's seamless-init cannot verify it (it does not know record kind 50); update it"),
        );
    }
    let mountpoint = t.mountpoint.display().to_string();
    match filesystems::read(&mountpoint, std::path::Path::new(&t.source), &dm, &t.fstype) {
        Ok(id) => {
            let by = match id.state {
                FsState::Ext { .. } => "the journal's recovery flag",
                FsState::Xfs { .. } => "the XFS log (unmount record or covered log, tail and head)",
                FsState::Btrfs { .. } => "the btrfs generation and log_root",
            };
            Verdict::ok(
                subject,
                format!("{what}: frozen, recorded and verified before it is mounted on the new kernel by {by} and the first MiB{unlock}"),
            )
        }
        Err(e) => Verdict::fail(subject, format!("{what}: its on-disk state cannot be read: {}", chain(&e))),
    }
}
