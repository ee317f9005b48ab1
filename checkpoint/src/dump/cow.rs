//! Copy-on-write sharing between a forked child and its parent: the pages of the child's
//! private anonymous areas that are, at the dump, the very same physical page as the parent's
//! at the same address (`/proc/PID/pagemap` frame numbers, readable by root). The restore can
//! then fork the child from the restored parent and leave those pages inherited, so memory is
//! not multiplied by the number of children (record [`CowShared`]).

use super::DumpError;
use seamless_image::records::{CowShared, MmRecord, VmaKind};
use seamless_image::PAGE_SIZE;
use seamless_trace::procfs;
use std::os::unix::fs::FileExt;

const PM_PRESENT: u64 = 1 << 63;
/// The page is mapped by this process only (Linux 4.2+): then it cannot be shared.
const PM_EXCLUSIVE: u64 = 1 << 56;
const PM_PFN: u64 = (1 << 55) - 1;

/// The private anonymous areas of `pid` as `/proc/PID/maps` shows them.
fn private_anon(pid: i32) -> Result<Vec<(u64, u64)>, DumpError> {
    let maps = procfs::read_maps(pid).map_err(|e| DumpError::io(pid, "reading maps", e))?;
    Ok(maps
        .iter()
        .filter(|m| !m.shared)
        .filter(|m| {
            matches!(m.name.as_str(), "" | "[heap]" | "[stack]")
                || m.name.starts_with("[anon:")
                || m.name.starts_with("[stack:")
        })
        .map(|m| (m.start, m.end))
        .collect())
}

fn open_pagemap(pid: i32) -> Result<std::fs::File, DumpError> {
    std::fs::File::open(format!("/proc/{pid}/pagemap")).map_err(|e| DumpError::io(pid, "opening pagemap", e))
}

/// Reads the pagemap words of `pages` pages from `start`.
fn words(pid: i32, f: &std::fs::File, start: u64, pages: usize, buf: &mut Vec<u8>) -> Result<Vec<u64>, DumpError> {
    buf.resize(pages * 8, 0);
    f.read_exact_at(buf, start / PAGE_SIZE as u64 * 8)
        .map_err(|e| DumpError::io(pid, format!("reading pagemap at {start:#x}"), e))?;
    Ok(buf.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
}

/// Whether two pagemap words name the same physical page, present in both and mapped by more
/// than one process. Without the frame numbers (not root: they read as 0) nothing is shared.
pub fn same_page(a: u64, b: u64) -> bool {
    a & PM_PRESENT != 0
        && b & PM_PRESENT != 0
        && a & PM_PFN != 0
        && a & PM_PFN == b & PM_PFN
        && a & PM_EXCLUSIVE == 0
        && b & PM_EXCLUSIVE == 0
}

/// The pages of `child` (whose areas are `mm`) shared copy-on-write with `parent`, or `None`
/// when there are none. Both processes are frozen.
pub fn shared_with_parent(child: i32, parent: i32, mm: &MmRecord) -> Result<Option<CowShared>, DumpError> {
    let theirs = private_anon(parent)?;
    let (cf, pf) = (open_pagemap(child)?, open_pagemap(parent)?);
    let (mut cb, mut pb) = (Vec::new(), Vec::new());
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for v in mm.vmas.iter().filter(|v| v.kind == VmaKind::Anon && !v.shared) {
        for &(ps, pe) in &theirs {
            let (a, b) = (v.start.max(ps), v.end.min(pe));
            // Ranges never reach across an area boundary of either process (the record says
            // each lies inside one private anonymous area of both): a run starts anew here.
            let first = ranges.len();
            let mut at = a;
            while at < b {
                crate::interrupt::check("copy-on-write scan")?;
                let n = usize::try_from(((b - at) / PAGE_SIZE as u64).min(512)).unwrap_or(512);
                let cw = words(child, &cf, at, n, &mut cb)?;
                let pw = words(parent, &pf, at, n, &mut pb)?;
                for (k, (&x, &y)) in cw.iter().zip(pw.iter()).enumerate() {
                    if !same_page(x, y) {
                        continue;
                    }
                    let page = at + (k * PAGE_SIZE) as u64;
                    let in_run = ranges.len() > first;
                    match ranges.last_mut() {
                        Some(last) if in_run && last.1 == page => last.1 = page + PAGE_SIZE as u64,
                        _ => ranges.push((page, page + PAGE_SIZE as u64)),
                    }
                }
                at += (n * PAGE_SIZE) as u64;
            }
        }
    }
    // Areas come in address order, so the ranges do (touching ones of two areas stay two).
    ranges.sort_unstable();
    Ok((!ranges.is_empty()).then_some(CowShared { parent, ranges }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_page_needs_a_present_shared_frame_in_both() {
        let p = |pfn: u64| PM_PRESENT | pfn;
        assert!(same_page(p(0x1234), p(0x1234)));
        assert!(!same_page(p(0x1234), p(0x1235)));
        assert!(!same_page(p(0x1234) | PM_EXCLUSIVE, p(0x1234)));
        assert!(!same_page(0x1234, p(0x1234)), "not present");
        assert!(!same_page(p(0), p(0)), "frame numbers hidden");
    }
}
