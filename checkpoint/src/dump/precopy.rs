//! Pre-copy: the memory of the trees is copied into the image while they still run, so that
//! the frozen dump only copies what changed since.
//!
//! Each pass pauses the trees for a moment ([`freeze::freeze_trees`], then detach): it reads
//! every area's pagemap, picks the pages that are new or whose soft-dirty bit (bit 55) is set,
//! and clears the soft-dirty bits (`4 > /proc/PID/clear_refs`) before the processes go on.
//! Reading and clearing in one pause matters: a write between an unpaused read and the clear
//! would be forgotten. The picked pages are then copied while the trees run; a page written
//! after the clear is soft-dirty again and is picked by the next pass, or by the frozen one.
//! Passes go on while the number of pages shrinks and is above the target.
//!
//! Pages go into the data area of the image without an index entry
//! ([`Writer::put_unindexed_pages`]); a page copied again is rewritten where it is. The frozen
//! dump ([`super::mm::dump_mm_with`]) reads the maps and the pagemap again and, for every page
//! it would save, keeps the copy only when the page's soft-dirty bit is clear and its frame
//! number is the one it had when it was copied (a page dropped with `MADV_DONTNEED` and read
//! again maps the zero page without being soft-dirty; a moved or swapped page changes frame);
//! every other page is copied then. Areas created, grown or moved meanwhile are soft-dirty as
//! a whole (the kernel flags new and expanded areas `VM_SOFTDIRTY`), areas gone are simply not
//! named by any entry. Only what is private to the process is pre-copied: anonymous areas and
//! the written pages of private file mappings (a soft-dirty bit is per page table entry, and a
//! shared page can be written through another mapping without it), so shared areas are
//! copied frozen. A huge page is soft-dirty as a whole.

use super::{freeze, mm, DumpError};
use seamless_image::records::{Vma, VmaKind};
use seamless_image::{Store, Writer, PAGE_SIZE};
use seamless_sys::chain;
use seamless_trace::memio::Mem;
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PAGE: u64 = PAGE_SIZE as u64;
/// Pagemap bit: the page was written since the soft-dirty bits were last cleared.
pub(crate) const PM_SOFT_DIRTY: u64 = 1 << 55;
/// Pagemap bits 0-54: frame number (swap type and offset for a swapped page).
const PM_FRAME: u64 = (1 << 55) - 1;
/// Frame recorded for a copy that must not be kept (its soft-dirty bit was cleared before the
/// copy was made again, or that copy failed).
const STALE: u64 = u64::MAX;
/// Pagemap entries read at a time.
const PM_BATCH: usize = 4096;

/// How far pre-copy goes.
#[derive(Debug, Clone)]
pub struct PreCopyOptions {
    /// Most passes (the first copies everything).
    pub max_passes: usize,
    /// Stop once a pass copied at most this many pages.
    pub target_pages: u64,
    /// Only processes with at least this much anonymous memory resident (`RssAnon`) when
    /// pre-copy starts are pre-copied; copying the others frozen costs less than their pauses.
    pub min_process_bytes: u64,
}

impl Default for PreCopyOptions {
    fn default() -> Self {
        Self { max_passes: 8, target_pages: 1024, min_process_bytes: 4 << 20 }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy)]
pub struct PassStats {
    /// Pages copied.
    pub pages: u64,
    /// How long the trees were paused to read and clear the soft-dirty bits.
    pub pause: Duration,
    /// How long the copy took (the trees running).
    pub copy: Duration,
    /// Processes seen.
    pub processes: usize,
}

/// Testing aid: with this variable set to `1`, pre-copy runs on a kernel without soft-dirty
/// tracking too, taking every page as written since (each pass and the frozen dump copy
/// everything again, over the earlier copies), and for processes of any size: the bookkeeping
/// is exercised, nothing is saved.
pub const UNTRACKED_ENV: &str = "SEAMLESS_PRE_COPY_UNTRACKED";

/// Whether the running kernel tracks soft-dirty bits (`CONFIG_MEM_SOFT_DIRTY`; without it
/// `clear_refs` accepts `4` and bit 55 stays clear whatever is written). Probed once on a page
/// of our own: written, cleared, clean, written again, dirty.
pub fn soft_dirty_tracked() -> bool {
    static TRACKED: OnceLock<bool> = OnceLock::new();
    *TRACKED.get_or_init(|| {
        let probe = || -> std::io::Result<bool> {
            let mut area = vec![0u8; 2 * PAGE_SIZE];
            let base = area.as_ptr() as u64;
            let at = (base.div_ceil(PAGE) * PAGE - base) as usize;
            let page = &mut area[at..at + PAGE_SIZE];
            let dirty = |page: &[u8]| -> std::io::Result<bool> {
                let mut e = [0u8; 8];
                std::fs::File::open("/proc/self/pagemap")?.read_exact_at(&mut e, page.as_ptr() as u64 / PAGE * 8)?;
                Ok(u64::from_le_bytes(e) & PM_SOFT_DIRTY != 0)
            };
            std::hint::black_box(&mut *page)[0] = 1;
            std::fs::write("/proc/self/clear_refs", "4")?;
            let clean = !dirty(page)?;
            std::hint::black_box(&mut *page)[1] = 2;
            Ok(clean && dirty(page)?)
        };
        probe().unwrap_or_else(|e| {
            log::debug!("soft-dirty probe: {e}");
            false
        })
    })
}

/// Contiguous pages copied to contiguous bytes of the image.
#[derive(Debug)]
struct Run {
    /// Virtual address of the first page.
    start: u64,
    /// Region offset of the first page.
    off: u64,
    /// CRC-32C of each page.
    crc: Vec<u32>,
    /// Frame number of each page when it was copied ([`STALE`]: copy again).
    frame: Vec<u64>,
}

impl Run {
    fn end(&self) -> u64 {
        self.start + self.crc.len() as u64 * PAGE
    }
}

/// The pages of one process copied so far.
#[derive(Debug, Default)]
pub struct Copied {
    /// Sorted by address, disjoint.
    runs: Vec<Run>,
    /// Soft-dirty bits mean something (else no copy is ever clean).
    tracked: bool,
}

/// Where a page's copy is: run and page index.
type Slot = (usize, usize);

impl Copied {
    fn find(&self, addr: u64) -> Option<Slot> {
        let r = self.runs.partition_point(|r| r.end() <= addr);
        let run = self.runs.get(r)?;
        (run.start <= addr).then(|| (r, ((addr - run.start) / PAGE) as usize))
    }

    /// Whether the copy of the page at `addr` may be kept, given its pagemap `entry` now.
    fn clean(&self, addr: u64, entry: u64) -> Option<Slot> {
        let slot = self.find(addr)?;
        if !self.tracked {
            return None;
        }
        let frame = self.runs[slot.0].frame[slot.1];
        let now = entry & PM_FRAME;
        // Without frame numbers (no CAP_SYS_ADMIN) a replaced page cannot be told apart.
        (entry & PM_SOFT_DIRTY == 0 && frame != STALE && now != 0 && frame == now).then_some(slot)
    }

    /// [`Copied::clean`], for the frozen dump.
    pub(crate) fn clean_at(&self, addr: u64, entry: u64) -> Option<Slot> {
        self.clean(addr, entry)
    }

    fn mark_stale(&mut self, addr: u64) {
        if let Some((r, i)) = self.find(addr) {
            self.runs[r].frame[i] = STALE;
        }
    }

    /// Region offset and CRC of the copy of the page at `addr`.
    pub(crate) fn copy_of(&self, addr: u64) -> Option<(u64, u32)> {
        let (r, i) = self.find(addr)?;
        let run = &self.runs[r];
        Some((run.off + i as u64 * PAGE, run.crc[i]))
    }

    /// Pages with a copy (whatever its state).
    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|r| r.crc.len() as u64).sum()
    }
}

/// The result of pre-copy: the copies of each process, for the frozen dump.
#[derive(Debug, Default)]
pub struct PreCopy {
    procs: BTreeMap<i32, Copied>,
    tracked: bool,
    /// One entry per pass.
    pub passes: Vec<PassStats>,
}

impl PreCopy {
    /// Takes the copies of `pid` (none when it was not pre-copied).
    pub fn take(&mut self, pid: i32) -> Option<Copied> {
        self.procs.remove(&pid)
    }

    /// Pages copied over all passes.
    pub fn pages(&self) -> u64 {
        self.passes.iter().map(|p| p.pages).sum()
    }
}

/// Copies the memory of the trees rooted at `roots` into `w` while they run. A process that
/// exits meanwhile is forgotten; a pass that fails ends pre-copy (the frozen dump copies what
/// is left). Only an interruption or a failure to write the image is an error.
pub fn run<S: Store>(roots: &[i32], w: &mut Writer<S>, opts: &PreCopyOptions) -> Result<PreCopy, DumpError> {
    let mut pre = PreCopy::default();
    let tracked = soft_dirty_tracked();
    let testing = std::env::var(UNTRACKED_ENV).as_deref() == Ok("1");
    if !tracked && !testing {
        log::warn!(
            "pre-copy skipped: this kernel does not track soft-dirty pages (CONFIG_MEM_SOFT_DIRTY), so every page \
             is copied with the processes frozen"
        );
        return Ok(pre);
    }
    pre.tracked = tracked;
    let min = if testing { 0 } else { opts.min_process_bytes };
    let chosen: Vec<i32> =
        tree_pids(roots).into_iter().filter(|&pid| rss_anon(pid).is_some_and(|b| b >= min)).collect();
    if chosen.is_empty() {
        return Ok(pre);
    }
    let mut buf = vec![0u8; mm::CHUNK];
    let mut previous = u64::MAX;
    for pass in 0..opts.max_passes {
        crate::interrupt::check("pre-copy")?;
        let t = Instant::now();
        let plans = match pause_and_pick(&chosen, &mut pre) {
            Ok(p) => p,
            Err(DumpError::Interrupted(i)) => return Err(i.into()),
            Err(e) => {
                log::warn!("pre-copy pass {}: {}; the frozen dump copies the rest", pass + 1, chain(&e));
                break;
            }
        };
        let pause = t.elapsed();
        let t = Instant::now();
        let mut pages = 0;
        let mut full = false;
        let processes = plans.len();
        for (pid, want) in plans {
            let Some(copied) = pre.procs.get_mut(&pid) else { continue };
            let mem = match Mem::open(pid, false) {
                Ok(m) => m,
                Err(e) => {
                    log::debug!("pre-copy: pid {pid}: {e}; forgotten");
                    pre.procs.remove(&pid);
                    continue;
                }
            };
            match copy_pages(pid, &mem, w, copied, &want, &mut buf, false) {
                Ok(n) => pages += n,
                // The copies so far stay (their pages are marked stale where not copied
                // again); what does not fit now may still fit frozen, as copies replace.
                Err(DumpError::Image(e @ seamless_image::ImageError::NoSpace { .. })) => {
                    log::warn!("pre-copy stopped: {}; the frozen dump copies the rest", chain(&e));
                    full = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let stats = PassStats { pages, pause, copy: t.elapsed(), processes };
        log::info!(
            "pre-copy pass {}: {} MiB of {} process(es) in {:.1} ms, paused {:.1} ms",
            pass + 1,
            (pages * PAGE) >> 20,
            processes,
            stats.copy.as_secs_f64() * 1e3,
            pause.as_secs_f64() * 1e3
        );
        pre.passes.push(stats);
        if full || pages <= opts.target_pages || pages >= previous {
            break;
        }
        previous = pages;
    }
    Ok(pre)
}

/// The pages to copy of each process.
type Plans = Vec<(i32, Vec<Want>)>;

/// A page to copy: address, frame, whether only this process maps it (pagemap bit 56).
pub(crate) type Want = (u64, u64, bool);

/// The live processes of the trees rooted at `roots` (parents before children).
fn tree_pids(roots: &[i32]) -> Vec<i32> {
    let mut out = Vec::new();
    let mut queue: std::collections::VecDeque<i32> = roots.iter().copied().collect();
    while let Some(pid) = queue.pop_front() {
        if out.contains(&pid) {
            continue;
        }
        let Ok(stat) = seamless_trace::procfs::read_stat(pid) else { continue };
        if matches!(stat.state(), 'Z' | 'X') {
            continue;
        }
        out.push(pid);
        queue.extend(seamless_trace::procfs::children(pid).unwrap_or_default());
    }
    out
}

/// `RssAnon` of `/proc/PID/status` in bytes.
fn rss_anon(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb =
        text.lines().find_map(|l| l.strip_prefix("RssAnon:"))?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    Some(kb << 10)
}

/// One process held in ptrace stops (every thread seized and interrupted) until dropped.
struct Paused(Vec<i32>);

impl Drop for Paused {
    fn drop(&mut self) {
        for &t in &self.0 {
            let _ = seamless_sys::ptrace::detach(t, 0);
        }
    }
}

/// Seizes every thread of `pid`, again until no new one appeared (a thread can only be
/// created by one still running).
fn pause(pid: i32) -> Result<Paused, DumpError> {
    let mut paused = Paused(Vec::new());
    loop {
        let tids = seamless_trace::procfs::tids(pid).map_err(|e| DumpError::io(pid, "listing threads", e))?;
        let mut new = false;
        let fresh: Vec<i32> = tids.into_iter().filter(|t| !paused.0.contains(t)).collect();
        for t in fresh {
            match freeze::seize_one(t) {
                Ok(_) => {
                    paused.0.push(t);
                    new = true;
                }
                // Gone meanwhile.
                Err(e) if e.errno() == Some(libc::ESRCH) => {}
                Err(e) => return Err(DumpError::sys(pid, format!("pausing thread {t}"), e)),
            }
        }
        if !new {
            return Ok(paused);
        }
    }
}

/// Pauses each process in turn, picks its pages to copy and clears its soft-dirty bits. Only
/// private pages are pre-copied, which only the process's own threads write, so pausing the
/// process alone is enough. A process gone meanwhile is forgotten.
fn pause_and_pick(pids: &[i32], pre: &mut PreCopy) -> Result<Plans, DumpError> {
    let mut plans = Vec::new();
    for &pid in pids {
        crate::interrupt::check("pre-copy")?;
        let picked = pause(pid).and_then(|paused| {
            let copied = pre.procs.entry(pid).or_insert_with(|| Copied { runs: Vec::new(), tracked: pre.tracked });
            let want = pick(pid, copied);
            drop(paused);
            want
        });
        match picked {
            Ok(want) => plans.push((pid, want)),
            Err(e) => {
                log::debug!("pre-copy: {}; pid {pid} is dumped frozen only", chain(&e));
                pre.procs.remove(&pid);
            }
        }
    }
    Ok(plans)
}

/// The pages of `pid` to copy now: those a dump saves that have no clean
/// copy. Their copies, if any, are marked stale first; then the soft-dirty bits are cleared.
fn pick(pid: i32, copied: &mut Copied) -> Result<Vec<Want>, DumpError> {
    let maps = seamless_trace::procfs::read_maps(pid).map_err(|e| DumpError::io(pid, "reading maps", e))?;
    let sysv = super::sysv::attached_areas(pid)?;
    let pagemap =
        std::fs::File::open(format!("/proc/{pid}/pagemap")).map_err(|e| DumpError::io(pid, "opening pagemap", e))?;
    let mut want = Vec::new();
    let mut pm = vec![0u8; 8 * PM_BATCH];
    for m in maps.iter().filter(|m| !sysv.contains(&(m.start, m.end))) {
        let Ok(kind) = mm::kind_of(pid, m) else { continue };
        let private = match kind {
            VmaKind::Anon => !m.shared,
            VmaKind::File { .. } => !m.shared,
            _ => false,
        };
        if !private {
            continue;
        }
        let v = Vma {
            start: m.start,
            end: m.end,
            prot: m.prot,
            shared: m.shared,
            growsdown: false,
            kind,
            name: String::new(),
            saved_pages: 0,
        };
        for_each_entry(pid, &pagemap, m.start, m.end, &mut pm, |addr, entry| {
            if mm::wanted(&v, entry) && copied.clean(addr, entry).is_none() {
                copied.mark_stale(addr);
                want.push((addr, entry & PM_FRAME, entry & mm::PM_EXCLUSIVE != 0));
            }
        })?;
    }
    std::fs::write(format!("/proc/{pid}/clear_refs"), "4")
        .map_err(|e| DumpError::io(pid, "clearing the soft-dirty bits (/proc/PID/clear_refs)", e))?;
    Ok(want)
}

/// Calls `f(address, pagemap entry)` for every page of `start..end`.
pub(crate) fn for_each_entry(
    pid: i32,
    pagemap: &std::fs::File,
    start: u64,
    end: u64,
    pm: &mut [u8],
    mut f: impl FnMut(u64, u64),
) -> Result<(), DumpError> {
    let batch = pm.len() / 8;
    let mut addr = start;
    while addr < end {
        let n = (((end - addr) / PAGE) as usize).min(batch);
        pagemap
            .read_exact_at(&mut pm[..n * 8], addr / PAGE * 8)
            .map_err(|e| DumpError::io(pid, format!("reading pagemap at {addr:#x}"), e))?;
        for (k, e) in pm[..n * 8].chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(e);
            f(addr + k as u64 * PAGE, u64::from_le_bytes(b));
        }
        addr += n as u64 * PAGE;
    }
    Ok(())
}

/// Copies the pages `want` (ascending addresses, with their frames) of `pid` into `w`: over
/// their earlier copies where they have one, appended otherwise. With `strict` (the frozen
/// dump) a page that cannot be read is an error; otherwise its copy stays stale. Returns the
/// pages copied.
pub(crate) fn copy_pages<S: Store>(
    pid: i32,
    mem: &Mem,
    w: &mut Writer<S>,
    copied: &mut Copied,
    want: &[Want],
    buf: &mut [u8],
    strict: bool,
) -> Result<u64, DumpError> {
    let max = buf.len() / PAGE_SIZE;
    let mut added = Vec::new();
    let mut done = 0u64;
    let mut i = 0;
    while i < want.len() {
        // A group: consecutive pages, either all in one run or all without a copy.
        let (start, _, _) = want[i];
        let slot = copied.find(start);
        let mut unshared = want[i].2;
        let mut n = 1;
        while i + n < want.len() && n < max {
            let addr = start + n as u64 * PAGE;
            if want[i + n].0 != addr {
                break;
            }
            let next = copied.find(addr);
            let same = match (slot, next) {
                (Some((r, _)), Some((r2, _))) => r == r2,
                (None, None) => true,
                _ => false,
            };
            if !same {
                break;
            }
            unshared &= want[i + n].2;
            n += 1;
        }
        crate::interrupt::check("memory dump")?;
        let len = n * PAGE_SIZE;
        let data = &mut buf[..len];
        let read = if unshared { Mem::read_unshared } else { Mem::read };
        if let Err(e) = read(mem, start, data) {
            if strict {
                return Err(DumpError::io(pid, format!("reading memory {start:#x}+{len:#x}"), e));
            }
            log::debug!("pre-copy: pid {pid}: reading {start:#x}+{len:#x}: {e}; left to the frozen dump");
            i += n;
            continue;
        }
        let crcs: Vec<u32> = data.chunks_exact(PAGE_SIZE).map(crc32c::crc32c).collect();
        match slot {
            Some((r, k)) => {
                let run = &mut copied.runs[r];
                w.rewrite_pages(run.off + k as u64 * PAGE, data)?;
                for j in 0..n {
                    run.crc[k + j] = crcs[j];
                    run.frame[k + j] = want[i + j].1;
                }
            }
            None => {
                let off = w.put_unindexed_pages(data)?;
                let frame = want[i..i + n].iter().map(|&(_, f, _)| f).collect();
                added.push(Run { start, off, crc: crcs, frame });
            }
        }
        done += n as u64;
        i += n;
    }
    if !added.is_empty() {
        copied.runs.extend(added);
        copied.runs.sort_by_key(|r| r.start);
    }
    Ok(done)
}

/// CRC-32C of `a` followed by 4096 bytes whose CRC-32C is `b`: `shift(a) ^ b`, where `shift`
/// (linear over GF(2)) runs the CRC register over 4096 zero bytes; tabulated per byte of `a`.
pub(crate) fn crc_append_page(a: u32, b: u32) -> u32 {
    static TABLE: OnceLock<[[u32; 256]; 4]> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let zeros = [0u8; PAGE_SIZE];
        // The register after the zeros from state s: crc32c_append takes and returns it inverted.
        let shift = |s: u32| !crc32c::crc32c_append(!s, &zeros);
        let basis: Vec<u32> = (0..32).map(|bit| shift(1 << bit)).collect();
        let mut t = [[0u32; 256]; 4];
        for (byte, row) in t.iter_mut().enumerate() {
            for (v, cell) in row.iter_mut().enumerate() {
                *cell = (0..8).filter(|b| v >> b & 1 == 1).fold(0, |acc, b| acc ^ basis[byte * 8 + b]);
            }
        }
        t
    });
    let [a0, a1, a2, a3] = a.to_le_bytes();
    t[0][usize::from(a0)] ^ t[1][usize::from(a1)] ^ t[2][usize::from(a2)] ^ t[3][usize::from(a3)] ^ b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_crcs_combine_into_the_crc_of_the_whole() {
        let data: Vec<u8> = (0..5 * PAGE_SIZE).map(|i| (i * 7 + i / 4096) as u8).collect();
        let whole = crc32c::crc32c(&data);
        let mut pages = data.chunks_exact(PAGE_SIZE).map(crc32c::crc32c);
        let first = pages.next().unwrap();
        assert_eq!(pages.fold(first, crc_append_page), whole);
    }

    #[test]
    fn a_copy_is_kept_only_when_clean_with_the_same_frame() {
        let mut c = Copied {
            runs: vec![Run { start: 0x1000, off: 0x10000, crc: vec![1, 2, 3], frame: vec![10, 11, STALE] }],
            tracked: true,
        };
        assert_eq!(c.clean(0x1000, 10 | 1 << 63), Some((0, 0)));
        assert_eq!(c.clean(0x1000, 10 | PM_SOFT_DIRTY), None, "written since");
        assert_eq!(c.clean(0x2000, 12), None, "another frame (dropped and faulted in again)");
        assert_eq!(c.clean(0x3000, 12), None, "stale");
        assert_eq!(c.clean(0x4000, 12), None, "never copied");
        assert_eq!(c.clean(0x2000, 0), None, "no frame numbers");
        c.mark_stale(0x1000);
        assert_eq!(c.clean(0x1000, 10), None);
        assert_eq!(c.copy_of(0x3000), Some((0x12000, 3)));
        assert_eq!(c.copy_of(0x800), None);
        c.tracked = false;
        assert_eq!(c.clean(0x2000, 11), None, "without soft-dirty tracking nothing is clean");
    }
}
