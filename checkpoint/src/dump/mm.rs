//! Address spaces: VMAs from `/proc/PID/maps` (+ `map_files` for the identity of mapped
//! files), present pages from `/proc/PID/pagemap`, contents from `/proc/PID/mem`, written as
//! page chunks of up to [`CHUNK`] bytes of contiguous pages.

use super::DumpError;
use seamless_image::records::{AdvisedArea, FileId, MmRecord, Vma, VmaAdvice, VmaKind};
use seamless_image::{Store, Writer, PAGE_SIZE};
use seamless_trace::memio::Mem;
use seamless_trace::procfs::{self, MapLine};
use std::os::unix::fs::{FileExt, MetadataExt};

/// Largest page chunk written (bytes).
pub const CHUNK: usize = 4 << 20;

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;
/// Mapped by this process only (safe to read with `process_vm_readv`, see
/// [`Mem::read_unshared`]).
pub(super) const PM_EXCLUSIVE: u64 = 1 << 56;

pub(super) fn kind_of(pid: i32, m: &MapLine) -> Result<VmaKind, DumpError> {
    Ok(match m.name.as_str() {
        "[vdso]" => VmaKind::Vdso,
        "[vsyscall]" => VmaKind::Vsyscall,
        n if n.starts_with("[vvar") => VmaKind::Vvar,
        "" if m.shared => VmaKind::SharedAnon { ino: m.ino, offset: m.offset },
        n if m.shared && (n.starts_with("/dev/zero") || n.starts_with("/memfd:seamless-shm")) => {
            VmaKind::SharedAnon { ino: m.ino, offset: m.offset }
        }
        "" | "[heap]" | "[stack]" => VmaKind::Anon,
        n if n.starts_with("[anon:") || n.starts_with("[stack:") => VmaKind::Anon,
        n if n.starts_with("/dev/zero") && m.shared => VmaKind::Anon,
        n if super::fanotify::aio_ring(n).is_some() => {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("mapping {:#x}-{:#x} ({n})", m.start, m.end),
                reason: super::fanotify::aio_ring(n).unwrap_or_default().into(),
            })
        }
        n if n.starts_with('/') && m.ino != 0 => {
            // A memfd's or deleted regular file's mapping names the object saved by
            // `super::objects` (a deleted file of another type is refused here).
            let mf = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
            let deleted_file = std::fs::metadata(&mf).is_ok_and(|md| md.nlink() == 0 && md.file_type().is_file());
            if n.ends_with(" (deleted)") && !super::objects::is_memfd_mapping(n) && !deleted_file {
                return Err(DumpError::Unsupported {
                    pid,
                    resource: format!("mapping {:#x}-{:#x} ({n})", m.start, m.end),
                    reason: "mapping of a deleted file that is not a regular file (or was relinked)".into(),
                });
            }
            let mf = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
            let md = std::fs::metadata(&mf).map_err(|e| DumpError::io(pid, format!("stat {mf}"), e))?;
            let mtime_ns = i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec());
            VmaKind::File {
                file: FileId { path: n.to_string(), dev: md.dev(), ino: md.ino(), size: md.size(), mtime_ns },
                offset: m.offset,
            }
        }
        n if n.starts_with("/dev/zero") && m.shared => VmaKind::Anon,
        n => {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("mapping {:#x}-{:#x} ({n})", m.start, m.end),
                reason: "special mapping (SysV shm, memfd, device, ...) is not checkpointed yet".into(),
            })
        }
    })
}

/// Refuses mappings that cannot be restored, before anything is written.
pub fn precheck(pid: i32) -> Result<(), DumpError> {
    let maps = procfs::read_maps(pid).map_err(|e| DumpError::io(pid, "reading maps", e))?;
    let sysv = super::sysv::attached_areas(pid)?;
    for m in maps.iter().filter(|m| !sysv.contains(&(m.start, m.end))) {
        kind_of(pid, m)?;
    }
    Ok(())
}

/// Whether page `entry` (a pagemap word) of area `v` must be saved.
pub(super) fn wanted(v: &Vma, entry: u64) -> bool {
    let present = entry & PM_PRESENT != 0;
    let swapped = entry & PM_SWAP != 0;
    match v.kind {
        VmaKind::Anon | VmaKind::SharedAnon { .. } => present || swapped,
        // Private file mapping: only pages that became anonymous (written, COW'd).
        VmaKind::File { .. } if !v.shared => swapped || (present && entry & PM_FILE == 0),
        _ => false,
    }
}

/// The `madvise` state of the areas of `mm` (the `VmFlags` of `/proc/PID/smaps`, read once by
/// `access::read_smaps`), for the areas that have some.
pub fn vma_advice(smaps: &str, mm: &MmRecord) -> VmaAdvice {
    let mut areas = Vec::new();
    for (start, end, flags, _) in super::access::areas(smaps) {
        let flags = VmaAdvice::from_vmflags(flags);
        // Only areas the restore maps itself: not the kernel's [vdso], [vvar] (which the
        // kernel marks "dd") and [vsyscall], which the new kernel places.
        let restored = mm.vmas.iter().any(|v| {
            v.start <= start
                && end <= v.end
                && matches!(v.kind, VmaKind::Anon | VmaKind::File { .. } | VmaKind::SharedAnon { .. })
        });
        if flags != 0 && restored {
            areas.push(AdvisedArea { start, end, flags });
        }
    }
    VmaAdvice { areas }
}

/// Dumps the address space of `pid`; returns the record and the number of pages written.
pub fn dump_mm<S: Store>(pid: i32, w: &mut Writer<S>) -> Result<(MmRecord, u64), DumpError> {
    dump_mm_with(pid, w, None)
}

/// [`dump_mm`], keeping the clean pages of `pre` (what [`super::precopy`] copied while the
/// process ran) and copying only the others.
pub fn dump_mm_with<S: Store>(
    pid: i32,
    w: &mut Writer<S>,
    mut pre: Option<super::precopy::Copied>,
) -> Result<(MmRecord, u64), DumpError> {
    let maps = procfs::read_maps(pid).map_err(|e| DumpError::io(pid, "reading maps", e))?;
    let pagemap =
        std::fs::File::open(format!("/proc/{pid}/pagemap")).map_err(|e| DumpError::io(pid, "opening pagemap", e))?;
    let mem = Mem::open(pid, false).map_err(|e| DumpError::io(pid, "opening /proc/PID/mem", e))?;
    let mut rec = MmRecord::default();
    let mut total = 0u64;
    // Grown to the longest run actually read (at most CHUNK): zeroing 4 MiB for every process
    // was 16 % of the dump of 100 small processes.
    let mut buf = Vec::new();
    // System V attachments are in their own record (`super::sysv`).
    let sysv = super::sysv::attached_areas(pid)?;
    for m in maps.iter().filter(|m| !sysv.contains(&(m.start, m.end))) {
        let kind = kind_of(pid, m)?;
        let mut v = Vma {
            start: m.start,
            end: m.end,
            prot: m.prot,
            shared: m.shared,
            growsdown: m.name == "[stack]",
            kind,
            name: m.name.clone(),
            saved_pages: 0,
        };
        if v.kind == VmaKind::Vdso {
            let mut b = vec![0u8; m.len() as usize];
            mem.read(m.start, &mut b)
                .map_err(|e| DumpError::io(pid, format!("reading [vdso] at {:#x}", m.start), e))?;
            rec.vdso = b;
        }
        let skip = matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar | VmaKind::Vsyscall);
        if let (false, Some(copied)) = (skip, pre.as_mut()) {
            buf.resize(CHUNK, 0);
            v.saved_pages = save_precopied(pid, &mem, &pagemap, w, &v, copied, &mut buf)?;
        } else if !skip {
            let npages = (m.len() / PAGE_SIZE as u64) as usize;
            let mut run_start: Option<u64> = None;
            let mut run_len = 0usize;
            let mut run_unshared = true;
            let mut pm = vec![0u8; 8 * 512];
            let mut i = 0usize;
            while i < npages {
                let n = (npages - i).min(512);
                let off = (m.start / PAGE_SIZE as u64 + i as u64) * 8;
                pagemap
                    .read_exact_at(&mut pm[..n * 8], off)
                    .map_err(|e| DumpError::io(pid, format!("reading pagemap at {:#x}", m.start), e))?;
                for k in 0..n {
                    let mut e = [0u8; 8];
                    e.copy_from_slice(&pm[k * 8..k * 8 + 8]);
                    let entry = u64::from_le_bytes(e);
                    let addr = m.start + ((i + k) * PAGE_SIZE) as u64;
                    if wanted(&v, entry) {
                        if run_start.is_none() {
                            run_start = Some(addr);
                            run_len = 0;
                            run_unshared = true;
                        }
                        run_len += 1;
                        run_unshared &= entry & PM_EXCLUSIVE != 0;
                        if run_len * PAGE_SIZE == CHUNK {
                            let s = run_start.take().unwrap_or(addr);
                            v.saved_pages += flush(pid, &mem, w, &mut buf, s, run_len, run_unshared)?;
                        }
                    } else if let Some(s) = run_start.take() {
                        v.saved_pages += flush(pid, &mem, w, &mut buf, s, run_len, run_unshared)?;
                    }
                }
                i += n;
            }
            if let Some(s) = run_start.take() {
                v.saved_pages += flush(pid, &mem, w, &mut buf, s, run_len, run_unshared)?;
            }
        }
        total += v.saved_pages;
        rec.vmas.push(v);
    }
    Ok((rec, total))
}

/// Saves the pages of area `v` that a dump saves: the clean copies of `copied` as they are,
/// the others copied now (over their stale copies where they have one); then one page chunk
/// entry per run of pages contiguous in memory and in the image. Returns the pages saved.
fn save_precopied<S: Store>(
    pid: i32,
    mem: &Mem,
    pagemap: &std::fs::File,
    w: &mut Writer<S>,
    v: &Vma,
    copied: &mut super::precopy::Copied,
    buf: &mut [u8],
) -> Result<u64, DumpError> {
    use super::precopy::{copy_pages, crc_append_page, for_each_entry};
    let mut saved = Vec::new();
    let mut want = Vec::new();
    let mut pm = vec![0u8; 8 * 4096];
    // Only private pages are pre-copied (see `super::precopy`).
    let private = !v.shared && matches!(v.kind, VmaKind::Anon | VmaKind::File { .. });
    for_each_entry(pid, pagemap, v.start, v.end, &mut pm, |addr, entry| {
        if wanted(v, entry) {
            saved.push(addr);
            if !private || copied.clean_at(addr, entry).is_none() {
                want.push((addr, entry & ((1 << 55) - 1), entry & PM_EXCLUSIVE != 0));
            }
        }
    })?;
    copy_pages(pid, mem, w, copied, &want, buf, true)?;
    // Entries: runs of pages contiguous in memory and in the image, at most CHUNK bytes.
    let max = (CHUNK / PAGE_SIZE) as u64;
    let mut run: Option<(u64, u64, u64, u32)> = None; // (vaddr, offset, pages, crc)
    for &addr in &saved {
        let Some((off, crc)) = copied.copy_of(addr) else {
            return Err(DumpError::io(
                pid,
                format!("pre-copied page at {addr:#x}"),
                std::io::Error::other("no copy after the frozen pass"),
            ));
        };
        run = match run {
            Some((va, o, n, c)) if va + n * PAGE_SIZE as u64 == addr && o + n * PAGE_SIZE as u64 == off && n < max => {
                Some((va, o, n + 1, crc_append_page(c, crc)))
            }
            other => {
                if let Some((va, o, n, c)) = other {
                    w.put_pages_entry(pid as u32, va, o, n as usize * PAGE_SIZE, c)?;
                }
                Some((addr, off, 1, crc))
            }
        };
    }
    if let Some((va, o, n, c)) = run {
        w.put_pages_entry(pid as u32, va, o, n as usize * PAGE_SIZE, c)?;
    }
    Ok(saved.len() as u64)
}

fn flush<S: Store>(
    pid: i32,
    mem: &Mem,
    w: &mut Writer<S>,
    buf: &mut Vec<u8>,
    start: u64,
    pages: usize,
    unshared: bool,
) -> Result<u64, DumpError> {
    crate::interrupt::check("memory dump")?;
    let len = pages * PAGE_SIZE;
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let read = if unshared { Mem::read_unshared } else { Mem::read };
    read(mem, start, &mut buf[..len])
        .map_err(|e| DumpError::io(pid, format!("reading memory {start:#x}+{len:#x}"), e))?;
    w.put_pages(pid as u32, start, &buf[..len])?;
    Ok(pages as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_comes_from_the_vmflags_of_each_area() {
        let smaps = "00400000-00401000 r-xp 00000000 fe:01 12 /usr/bin/x\nSize:                  4 kB\nVmFlags: rd ex mr mw me\n\
                     7f0000000000-7f0000400000 rw-p 00000000 00:00 0 \nSize:               4096 kB\nTHPeligible:    0\nVmFlags: rd wr mr mw me ac nh\n\
                     7f0000400000-7f0000401000 rw-p 00000000 00:00 0 \nVmFlags: rd wr mr mw me ac dd wf\n\
                     7ffff7fc1000-7ffff7fc5000 r--p 00000000 00:00 0    [vvar]\nVmFlags: rd mr pf io de dd sd\n";
        let vma = |start, end| Vma {
            start,
            end,
            prot: 3,
            shared: false,
            growsdown: false,
            kind: VmaKind::Anon,
            name: String::new(),
            saved_pages: 0,
        };
        let mm = MmRecord {
            vmas: vec![
                vma(0x40_0000, 0x40_1000),
                vma(0x7f00_0000_0000, 0x7f00_0040_1000),
                Vma { kind: VmaKind::Vvar, ..vma(0x7fff_f7fc_1000, 0x7fff_f7fc_5000) },
            ],
            vdso: Vec::new(),
        };
        assert_eq!(
            vma_advice(smaps, &mm).areas,
            vec![
                AdvisedArea { start: 0x7f00_0000_0000, end: 0x7f00_0040_0000, flags: VmaAdvice::NOHUGEPAGE },
                AdvisedArea {
                    start: 0x7f00_0040_0000,
                    end: 0x7f00_0040_1000,
                    flags: VmaAdvice::DONTDUMP | VmaAdvice::WIPEONFORK
                },
            ]
        );
    }
}
