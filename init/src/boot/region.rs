//! Finding and validating the preserved region.
//!
//! Candidates, in order: the file `/seamless/region.img` (a cpio store appended to this
//! initramfs), the file `/run/seamless/region.img` (the same image, carried past a
//! distribution initramfs's switch_root by `seamless-init verify-root`) and every `/dev/pmem*`
//! device carrying the seamless magic. A candidate is valid
//! when its superblock and index check out ([`Reader::open`]), every entry matches its checksum,
//! and, for a test-pattern image, every page chunk matches the pattern.

use super::cmdline::RegionChoice;
use crate::error::BootError;
use seamless_image::pattern::{self, Pattern};
use seamless_image::{pmem_devices, FileStore, Reader, RecordKind, Store};
use seamless_sys::chain;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a region appended to the initramfs lands.
pub const INITRAMFS_REGION: &str = "/seamless/region.img";

/// Where `verify-root` copies [`INITRAMFS_REGION`] so that it survives the switch to the real
/// root (a distribution initramfs deletes its own files but moves `/run` into the real root).
pub const CARRIED_REGION: &str = "/run/seamless/region.img";

/// A region that passed every check, ready for the restore stage.
pub struct ValidRegion {
    /// The device or file holding it.
    pub path: PathBuf,
    /// The open, validated image.
    pub reader: Reader<Box<dyn Store>>,
    /// A one-line description for the log.
    pub summary: String,
}

impl std::fmt::Debug for ValidRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidRegion").field("path", &self.path).field("summary", &self.summary).finish_non_exhaustive()
    }
}

/// The outcome of the region search.
#[derive(Debug)]
pub enum RegionStatus {
    /// Nothing that looks like a region; `looked` lists what was examined.
    Absent {
        /// What was examined.
        looked: Vec<String>,
    },
    /// A region was found and every check passed.
    Valid(Box<ValidRegion>),
    /// A region was found but a check failed; `check` names it.
    Invalid {
        /// The device or file.
        path: PathBuf,
        /// The failed check.
        check: String,
    },
}

/// Whether the firmware memory map announces legacy persistent memory (`memmap=X!Y`), in
/// which case `/dev/pmem*` devices are worth waiting for.
fn firmware_has_pmem() -> bool {
    std::fs::read_to_string("/proc/iomem").map(|s| s.contains("Persistent Memory")).unwrap_or(false)
}

/// Waits up to `wait` for at least one `/dev/pmem*` node when the firmware map has
/// persistent memory. Returns the devices present.
pub fn wait_for_pmem(wait: Duration) -> Vec<PathBuf> {
    if !firmware_has_pmem() {
        return pmem_devices();
    }
    let start = Instant::now();
    loop {
        let found = pmem_devices();
        if !found.is_empty() || start.elapsed() >= wait {
            if found.is_empty() {
                log::warn!(
                    "firmware map has persistent memory but no /dev/pmem* appeared within {} ms",
                    wait.as_millis()
                );
            }
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Validates the region in `store`: superblock and index, every entry's checksum, and the
/// pattern of a test image. Returns the open reader and a summary, or the failed check.
pub fn validate(store: Box<dyn Store>, path: &Path) -> Result<ValidRegion, BootError> {
    let mut reader = Reader::open(store)?;
    reader.verify_all()?;
    let sb = reader.superblock().clone();
    let mut summary = format!(
        "{} entries, {} bytes, written by kernel {} (seamless {})",
        sb.entry_count, sb.used, sb.kernel_release, sb.writer
    );
    let patterns: Vec<u32> = reader.find(RecordKind::PATTERN).map(|(i, _)| i).collect();
    for idx in patterns {
        let p: Pattern = reader.record(idx)?;
        let chunks: Vec<(u32, u64, u64)> =
            reader.find(RecordKind::PAGE_CHUNK).map(|(i, e)| (i, e.tag, e.len)).collect();
        let mut buf = Vec::new();
        let mut want = Vec::new();
        let mut bytes = 0u64;
        for &(i, tag, len) in &chunks {
            buf.resize(len as usize, 0);
            want.resize(len as usize, 0);
            reader.read_pages(i, &mut buf)?;
            pattern::fill(p.seed, tag, &mut want);
            if buf != want {
                return Err(BootError::Pattern(format!(
                    "entry {i} (page-chunk, tag {tag:#x}) does not match test pattern seed {:#x}",
                    p.seed
                )));
            }
            bytes += len;
        }
        if chunks.len() as u64 != u64::from(p.chunks) || bytes != p.bytes {
            return Err(BootError::Pattern(format!(
                "test pattern record announces {} chunks / {} bytes, the image holds {} / {bytes}",
                p.chunks,
                p.bytes,
                chunks.len()
            )));
        }
        summary
            .push_str(&format!(", test pattern seed {:#x} verified over {} chunks ({bytes} bytes)", p.seed, p.chunks));
    }
    Ok(ValidRegion { path: path.to_path_buf(), reader, summary })
}

fn open_and_validate(path: &Path) -> RegionStatus {
    use std::os::unix::fs::FileTypeExt;
    // A block device must be root's and not writable by others; the initramfs file was
    // unpacked by the kernel itself.
    let is_block = std::fs::metadata(path).map(|m| m.file_type().is_block_device()).unwrap_or(false);
    let opened = if is_block { FileStore::open_trusted(path, true) } else { FileStore::open_file(path, true) };
    let store: Box<dyn Store> = match opened {
        Ok(s) => Box::new(s),
        Err(e) => return RegionStatus::Invalid { path: path.to_path_buf(), check: chain(&e).to_string() },
    };
    match validate(store, path) {
        Ok(v) => RegionStatus::Valid(Box::new(v)),
        Err(e) => RegionStatus::Invalid { path: path.to_path_buf(), check: chain(&e).to_string() },
    }
}

/// Looks for a region as `choice` says and validates the first one found.
pub fn find_and_validate(choice: &RegionChoice, pmem_wait: Duration) -> RegionStatus {
    match choice {
        RegionChoice::Off => RegionStatus::Absent { looked: vec!["nothing (seamless.region=off)".into()] },
        RegionChoice::Path(p) => {
            let path = Path::new(p);
            if path.starts_with("/dev/pmem") {
                wait_for_pmem(pmem_wait);
            }
            if !path.exists() {
                return RegionStatus::Absent { looked: vec![format!("{p} (does not exist)")] };
            }
            open_and_validate(path)
        }
        RegionChoice::Auto => {
            let mut looked = Vec::new();
            let initramfs = Path::new(INITRAMFS_REGION);
            if initramfs.exists() {
                return open_and_validate(initramfs);
            }
            looked.push(format!("{INITRAMFS_REGION} (absent)"));
            let carried = Path::new(CARRIED_REGION);
            if carried.exists() {
                return open_and_validate(carried);
            }
            looked.push(format!("{CARRIED_REGION} (absent)"));
            let devices = wait_for_pmem(pmem_wait);
            if devices.is_empty() {
                looked.push("/dev/pmem* (none)".into());
            }
            let with_magic = seamless_image::discover_pmem();
            for d in &devices {
                if !with_magic.contains(d) {
                    looked.push(format!("{} (no seamless magic)", d.display()));
                }
            }
            match with_magic.split_first() {
                None => RegionStatus::Absent { looked },
                Some((first, rest)) => {
                    for other in rest {
                        log::warn!("also found a region on {}; only {} is used", other.display(), first.display());
                    }
                    open_and_validate(first)
                }
            }
        }
    }
}
