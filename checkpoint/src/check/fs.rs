//! Can every writable block-backed filesystem be frozen, so the new kernel needs no journal
//! replay?

use super::Verdict;

/// Filesystems whose kernel driver implements freezing.
const FREEZABLE: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "nilfs2", "gfs2", "reiserfs"];

/// A mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Mount point.
    pub target: String,
    /// Filesystem type.
    pub fstype: String,
    /// Source (device).
    pub source: String,
    /// Per-mount options (`rw`/`ro` first).
    pub options: String,
    /// Superblock options.
    pub super_options: String,
}

/// Parses `/proc/self/mountinfo`.
pub fn mounts() -> Vec<Mount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(" - ")?;
            let a: Vec<&str> = a.split(' ').collect();
            let b: Vec<&str> = b.split(' ').collect();
            Some(Mount {
                target: unescape(a.get(4)?),
                options: a.get(5)?.to_string(),
                fstype: b.first()?.to_string(),
                source: unescape(b.get(1)?),
                super_options: b.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Writable mounts backed by a block device: what must be frozen before the jump.
pub fn writable_block_mounts() -> Vec<Mount> {
    let mut seen = std::collections::HashSet::new();
    mounts()
        .into_iter()
        .filter(|m| m.source.starts_with("/dev/") && m.options.split(',').next() == Some("rw"))
        .filter(|m| seen.insert(m.source.clone()))
        .collect()
}

/// Verdicts on freezing.
pub fn check() -> Vec<Verdict> {
    let ms = writable_block_mounts();
    if ms.is_empty() {
        return vec![Verdict::ok("filesystems", "no writable block-backed filesystem")];
    }
    ms.iter()
        .map(|m| {
            let subject = format!("fs {}", m.target);
            if FREEZABLE.contains(&m.fstype.as_str()) {
                Verdict::ok(subject, format!("{} on {}: freezable", m.fstype, m.source))
            } else {
                Verdict::fail(
                    subject,
                    format!(
                        "{} on {} cannot be frozen: remount it read-only or unmount it before the upgrade",
                        m.fstype, m.source
                    ),
                )
            }
        })
        .collect()
}
