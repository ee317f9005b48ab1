//! Can every writable block-backed filesystem be frozen, so the new kernel needs no journal
//! replay? The filesystems are the ones `seamless kexec --exec` and `seamless upgrade` freeze.

use super::Verdict;
use seamless_sys::chain;

/// Filesystems whose kernel driver implements freezing.
const FREEZABLE: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "nilfs2", "gfs2", "reiserfs"];

/// Verdicts on freezing.
pub fn check() -> Vec<Verdict> {
    let targets = match crate::kexec::current_freeze_targets() {
        Ok(t) => t,
        Err(e) => return vec![Verdict::fail("filesystems", chain(&e).to_string())],
    };
    if targets.is_empty() {
        return vec![Verdict::ok("filesystems", "no writable block-backed filesystem")];
    }
    targets
        .iter()
        .map(|t| {
            let subject = format!("fs {}", t.mountpoint.display());
            if FREEZABLE.contains(&t.fstype.as_str()) {
                Verdict::ok(subject, format!("{} on {}: freezable", t.fstype, t.source))
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
