//! `seamless inspect`: read an image from any store, verify every checksum and summarise it.

use seamless_image::{format_boot_id, open_any, ImageError, Reader, RecordKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// What an image holds and whether every part of it checks out.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The store that was read.
    pub store: String,
    /// Format version.
    pub format_version: u32,
    /// `complete` or `consumed`.
    pub state: String,
    /// Kernel that wrote the image.
    pub kernel_release: String,
    /// Boot id of the writing boot.
    pub boot_id: String,
    /// seamless release that wrote it.
    pub writer: String,
    /// Unix time the image was started.
    pub created: u64,
    /// Bytes used.
    pub used: u64,
    /// Number of index entries.
    pub entries: usize,
    /// Per owner (pid; 0 for image-wide records): what it has.
    pub owners: BTreeMap<u32, OwnerSummary>,
    /// Number of entries whose checksum failed.
    pub failed: usize,
    /// One line per failed entry, naming it.
    pub failures: Vec<String>,
}

/// What one owner (process) has in the image.
#[derive(Debug, Default, Serialize)]
pub struct OwnerSummary {
    /// Record count per kind name (page chunks and blobs included).
    pub kinds: BTreeMap<String, usize>,
    /// Bytes of page data.
    pub page_bytes: u64,
    /// Bytes of blobs.
    pub blob_bytes: u64,
    /// Human summaries of the records, as the record types describe themselves.
    pub details: Vec<String>,
}

/// Opens `path` (directory, block device, cpio archive or region file) and builds the report.
pub fn inspect(path: &Path, details: bool) -> Result<Report, ImageError> {
    let store = open_any(path)?;
    let mut r = Reader::open_for_inspect(store)?;
    let sb = r.superblock().clone();
    let checks = r.verify();
    let mut owners: BTreeMap<u32, OwnerSummary> = BTreeMap::new();
    let mut failures = Vec::new();
    for c in &checks {
        let e = c.entry;
        let o = owners.entry(e.owner).or_default();
        *o.kinds.entry(e.kind.to_string()).or_default() += 1;
        match e.kind {
            RecordKind::PAGE_CHUNK => o.page_bytes += e.len,
            RecordKind::BLOB => o.blob_bytes += e.len,
            _ => {}
        }
        if let Err(err) = &c.result {
            failures.push(err.to_string());
        } else if details && !e.kind.is_raw() {
            if let Ok(bytes) = r.record_bytes(c.index) {
                if let Some(line) = seamless_image::records::describe(e.kind, &bytes) {
                    o.details.push(line);
                }
            }
        }
    }
    Ok(Report {
        store: path.display().to_string(),
        format_version: sb.version,
        state: sb.state.to_string(),
        kernel_release: sb.kernel_release,
        boot_id: format_boot_id(&sb.boot_id),
        writer: sb.writer,
        created: sb.created,
        used: sb.used,
        entries: checks.len(),
        owners,
        failed: failures.len(),
        failures,
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "image      {}", self.store)?;
        writeln!(f, "format     version {}, {}", self.format_version, self.state)?;
        writeln!(f, "written by seamless {} on kernel {} (boot {})", self.writer, self.kernel_release, self.boot_id)?;
        writeln!(f, "size       {} bytes in {} entries", self.used, self.entries)?;
        for (owner, o) in &self.owners {
            let who = if *owner == 0 { "image".to_string() } else { format!("pid {owner}") };
            let kinds: Vec<String> = o.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            writeln!(
                f,
                "{who:<10} {}; {} bytes of pages, {} bytes of blobs",
                kinds.join(", "),
                o.page_bytes,
                o.blob_bytes
            )?;
            for d in &o.details {
                writeln!(f, "           {d}")?;
            }
        }
        if self.failures.is_empty() {
            writeln!(f, "checksums  all {} OK", self.entries)
        } else {
            writeln!(f, "checksums  {} of {} FAILED:", self.failed, self.entries)?;
            for line in &self.failures {
                writeln!(f, "  {line}")?;
            }
            Ok(())
        }
    }
}
