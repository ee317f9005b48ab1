//! Re-warming the page cache on the new kernel: the hot set the old kernel recorded
//! ([`PageCache`]) is read back from disk while the processes are restored, by a few threads
//! (reads of different files overlap on the device), in the recorded order (device, inode),
//! until it is done or the operator's time budget is spent. A file whose inode, size or
//! modification time changed is skipped. Nothing here can fail the restore: problems are
//! counted and logged.

use seamless_image::upgrade::{CachedFile, PageCache};
use seamless_image::{Reader, RecordKind, Store};
use seamless_sys::chain;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes read per call.
const CHUNK: usize = 1 << 20;
/// Most reading threads.
const MAX_THREADS: usize = 4;

/// What one thread did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    files: u64,
    bytes: u64,
    skipped: u64,
    out_of_time: bool,
}

/// The outcome, for the report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Files in the recorded hot set.
    pub files_recorded: u64,
    /// Bytes in the recorded hot set.
    pub bytes_recorded: u64,
    /// Files read back (all their recorded ranges).
    pub files: u64,
    /// Bytes read back.
    pub bytes: u64,
    /// Files skipped: missing, changed, or unreadable.
    pub skipped: u64,
    /// Whether the budget ran out before everything was read.
    pub out_of_time: bool,
    /// From the start of the re-warm to its end (µs).
    pub micros: u64,
    /// The budget (ms).
    pub budget_ms: u64,
}

/// Re-warm threads at work.
#[derive(Debug)]
pub struct Rewarm {
    threads: Vec<JoinHandle<Tally>>,
    started: Instant,
    files_recorded: u64,
    bytes_recorded: u64,
    budget_ms: u64,
}

/// The image's hot set, if it has a valid one.
pub fn recorded<S: Store>(reader: &mut Reader<S>) -> Option<PageCache> {
    crate::handover::optional_record(reader, RecordKind::PAGE_CACHE, PageCache::check, "page cache", "not re-warming")
}

/// Starts reading `set` back.
pub fn start(set: PageCache) -> Rewarm {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(set.budget_ms);
    let (files_recorded, bytes_recorded, budget_ms) = (set.files.len() as u64, set.bytes(), set.budget_ms);
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(2, MAX_THREADS);
    let files = Arc::new(set.files);
    let next = Arc::new(AtomicUsize::new(0));
    let threads = (0..n.min(files.len()))
        .filter_map(|i| {
            let (files, next) = (files.clone(), next.clone());
            std::thread::Builder::new()
                .name(format!("rewarm-{i}"))
                .spawn(move || read_files(&files, &next, deadline))
                .map_err(|e| log::warn!("cannot start a re-warm thread: {}", chain(&e)))
                .ok()
        })
        .collect();
    Rewarm { threads, started, files_recorded, bytes_recorded, budget_ms }
}

impl Rewarm {
    /// Waits for the threads (they stop at the budget's end at the latest).
    pub fn finish(self) -> Summary {
        let mut s = Summary {
            files_recorded: self.files_recorded,
            bytes_recorded: self.bytes_recorded,
            budget_ms: self.budget_ms,
            ..Summary::default()
        };
        for t in self.threads {
            match t.join() {
                Ok(t) => {
                    s.files += t.files;
                    s.bytes += t.bytes;
                    s.skipped += t.skipped;
                    s.out_of_time |= t.out_of_time;
                }
                Err(_) => s.out_of_time = true,
            }
        }
        s.micros = self.started.elapsed().as_micros() as u64;
        s
    }
}

fn read_files(files: &[CachedFile], next: &AtomicUsize, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(f) = files.get(i) else { break };
        if Instant::now() >= deadline {
            tally.out_of_time = true;
            break;
        }
        match read_file(f, &mut buf, deadline) {
            Ok((bytes, complete)) => {
                tally.bytes += bytes;
                if complete {
                    tally.files += 1;
                } else {
                    tally.out_of_time = true;
                    break;
                }
            }
            Err(why) => {
                log::debug!("re-warm: {} skipped: {}", f.path, chain(&why));
                tally.skipped += 1;
            }
        }
    }
    tally
}

/// Why a cached file is not re-read.
#[derive(Debug, thiserror::Error)]
enum SkipReason {
    /// It cannot be opened or looked at.
    #[error("cannot open it")]
    Open(#[source] std::io::Error),
    /// It is not the file the old kernel had cached.
    #[error("changed since the old kernel recorded it")]
    Changed,
    /// A read failed.
    #[error("read at {at}")]
    Read {
        /// Offset.
        at: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Reads the recorded ranges of `f`; returns the bytes read and whether all were.
fn read_file(f: &CachedFile, buf: &mut [u8], deadline: Instant) -> Result<(u64, bool), SkipReason> {
    let open = |flags| std::fs::OpenOptions::new().read(true).custom_flags(flags).open(&f.path);
    let file = open(libc::O_NOATIME).or_else(|_| open(0)).map_err(SkipReason::Open)?;
    let m = file.metadata().map_err(SkipReason::Open)?;
    let mtime_ns = m.mtime() * 1_000_000_000 + m.mtime_nsec();
    if !m.is_file() || m.ino() != f.ino || m.len() != f.size || mtime_ns != f.mtime_ns {
        return Err(SkipReason::Changed);
    }
    let mut bytes = 0u64;
    for &(off, len) in &f.ranges {
        let end = (off + len).min(f.size);
        let mut at = off;
        while at < end {
            if Instant::now() >= deadline {
                return Ok((bytes, false));
            }
            let want = ((end - at) as usize).min(buf.len());
            match file.read_at(&mut buf[..want], at) {
                Ok(0) => break,
                Ok(n) => {
                    at += n as u64;
                    bytes += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(SkipReason::Read { at, source }),
            }
        }
    }
    Ok((bytes, true))
}
