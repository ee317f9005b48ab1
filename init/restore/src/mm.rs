//! Rebuilding an address space inside the seized child: drop everything but the trampoline,
//! place the vDSO (see [`crate::vdso`]), map every saved VMA at its address with its
//! protection, write the saved pages through `/proc/PID/mem`, then install the mm fields
//! (brk, argv/env areas, auxv, exe) with `PR_SET_MM_MAP`.

use crate::abi;
use crate::child::Child;
use crate::plan::ProcPlan;
use crate::tracee::{Batch, Tracee};
use crate::{procfs, vdso, RestoreError, RestoreOptions};
use seamless_image::records::{FileId, Vma, VmaAccount, VmaFlags, VmaKind};
use seamless_image::{Reader, Store};
use seamless_sys::chain;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

/// A shared anonymous object recreated in the restorer: address and length of our mapping.
#[derive(Debug, Clone, Copy)]
pub struct SharedObj {
    /// Where the restorer mapped it.
    pub addr: u64,
    /// Its size.
    pub len: u64,
}

/// Recreates each shared anonymous object of the image as a `MAP_SHARED|MAP_ANONYMOUS`
/// mapping of the restorer, filled with the pages every process saved of it; children map
/// the very same object through `/proc/<restorer>/map_files`, so they share it again (and it
/// still shows as `/dev/zero (deleted)`). An object that cannot be recreated gives up the
/// unit of its users.
pub fn prepare_shared<S: Store>(
    plan: &crate::plan::Plan,
    reader: &mut Reader<S>,
    fails: &mut crate::Failures,
) -> BTreeMap<u64, SharedObj> {
    // Size of each object, and one of its users (they are all in the same unit).
    let mut sizes: BTreeMap<u64, (u64, i32)> = BTreeMap::new();
    for p in plan.procs.values() {
        for v in &p.mm.vmas {
            if let VmaKind::SharedAnon { ino, offset } = v.kind {
                let Some(end) = v.end.checked_sub(v.start).and_then(|len| offset.checked_add(len)) else {
                    let e = RestoreError::Corrupt {
                        pid: p.rec.pid,
                        what: format!("shared memory area {:#x}-{:#x} at offset {offset:#x}", v.start, v.end),
                    };
                    fails.fail_pid(p.rec.pid, chain(&e).to_string());
                    continue;
                };
                let e = sizes.entry(ino).or_insert((0, p.rec.pid));
                e.0 = e.0.max(end);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (ino, (len, user)) in sizes {
        match seamless_sys::proc::map_shared_anon(seamless_image::usize_of(len)) {
            Ok(addr) => {
                out.insert(ino, SharedObj { addr, len });
            }
            Err(e) => fails.fail_pid(user, RestoreError::sys(user, format!("shared memory {ino}"), e).to_string()),
        }
    }
    if out.is_empty() {
        return out;
    }
    let me = match crate::memio::Mem::open(seamless_sys::proc::own_pid(), true) {
        Ok(me) => me,
        Err(e) => {
            let why = RestoreError::io(0, "opening /proc/self/mem", e).to_string();
            for (_, user) in out.keys().filter_map(|ino| plan_user(plan, *ino)) {
                fails.fail_pid(user, why.clone());
            }
            return out;
        }
    };
    let mut buf = Vec::new();
    for p in plan.procs.values() {
        if fails.pid_failed(p.rec.pid) {
            continue;
        }
        for v in &p.mm.vmas {
            let VmaKind::SharedAnon { ino, offset } = v.kind else { continue };
            let Some(&obj) = out.get(&ino) else { continue };
            for ch in p.chunks.iter().filter(|ch| v.start <= ch.vaddr && ch.vaddr < v.end) {
                // Only ever inside our mapping of the object (validation refuses such chunks).
                let at = offset.checked_add(ch.vaddr - v.start);
                if ch.vaddr.checked_add(ch.len).is_none_or(|e| e > v.end)
                    || at.and_then(|a| a.checked_add(ch.len)).is_none_or(|e| e > obj.len)
                {
                    let e = RestoreError::Corrupt {
                        pid: p.rec.pid,
                        what: format!(
                            "page chunk {:#x}+{:#x} runs past its shared memory area {:#x}-{:#x}",
                            ch.vaddr, ch.len, v.start, v.end
                        ),
                    };
                    fails.fail_pid(p.rec.pid, chain(&e).to_string());
                    break;
                }
                buf.resize(seamless_image::usize_of(ch.len), 0);
                let r = reader.read_pages(ch.index, &mut buf).map_err(RestoreError::Image).and_then(|()| {
                    me.write(obj.addr + at.unwrap_or(0), &buf)
                        .map_err(|e| RestoreError::io(p.rec.pid, "filling shared memory", e))
                });
                if let Err(e) = r {
                    fails.fail_pid(p.rec.pid, chain(&e).to_string());
                    break;
                }
            }
        }
    }
    out
}

/// One process mapping shared object `ino`, as (ino, pid).
fn plan_user(plan: &crate::plan::Plan, ino: u64) -> Option<(u64, i32)> {
    plan.procs.values().find_map(|p| {
        p.mm.vmas
            .iter()
            .any(|v| matches!(v.kind, VmaKind::SharedAnon { ino: i, .. } if i == ino))
            .then_some((ino, p.rec.pid))
    })
}

/// Checks that a mapped file is still the one that was dumped.
pub fn verify_file(pid: i32, f: &FileId) -> Result<(), RestoreError> {
    let md = std::fs::metadata(&f.path).map_err(|e| RestoreError::io(pid, format!("mapped file {}", f.path), e))?;
    let mtime_ns = i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec());
    // A file on tmpfs that the old kernel carried over (`init/src/tmpfs.rs`) is a new inode
    // with the recorded size and modification time (to the nanosecond).
    let recreated = md.ino() != f.ino
        && md.size() == f.size
        && mtime_ns == f.mtime_ns
        && std::fs::File::open(&f.path).is_ok_and(|file| seamless_sys::pagecache::on_disk(&file).is_ok_and(|d| !d));
    if recreated {
        log::info!("pid {pid}: {} is on tmpfs, recreated (inode {}, was {}): accepted", f.path, md.ino(), f.ino);
    } else if md.ino() != f.ino || md.size() != f.size || mtime_ns != f.mtime_ns {
        return Err(RestoreError::FileChanged {
            pid,
            path: f.path.clone(),
            detail: format!(
                "dumped inode {} size {} mtime {}ns, now inode {} size {} mtime {}ns",
                f.ino,
                f.size,
                f.mtime_ns,
                md.ino(),
                md.size(),
                mtime_ns
            ),
        });
    }
    if md.dev() != f.dev {
        log::warn!(
            "pid {pid}: {} is on device {:#x}, was {:#x} (same inode, size and mtime; accepted)",
            f.path,
            md.dev(),
            f.dev
        );
    }
    Ok(())
}

/// `PROT_READ | PROT_WRITE`: what an area is mapped with while its pages are written.
const FILL_PROT: u32 = (libc::PROT_READ | libc::PROT_WRITE) as u32;

/// Whether `v` has saved pages that `/proc/PID/mem` cannot write with its own protection.
fn fill_writable(v: &Vma) -> bool {
    v.saved_pages > 0 && v.prot & libc::PROT_READ as u32 == 0
}

/// Replaces the child's address space with the saved one.
pub fn restore_mm<S: Store>(
    c: &mut Child,
    p: &ProcPlan,
    reader: &mut Reader<S>,
    opts: &RestoreOptions,
    shm: &BTreeMap<u64, SharedObj>,
    inh: &crate::cow::Inherited,
) -> Result<(), RestoreError> {
    let pid = c.pid;
    // rseq inherited from the restorer points into memory about to vanish: unregister it.
    let rs = seamless_sys::ptrace::get_rseq(pid).map_err(|e| RestoreError::sys(pid, "rseq configuration", e))?;
    if rs.pointer != 0 {
        c.call("rseq(unregister)", libc::SYS_rseq, [rs.pointer, u64::from(rs.size), 1, u64::from(rs.signature), 0, 0])?;
    }
    // 1. Drop every mapping but the trampoline, the kernel's special ones and the areas a
    // child forked from its parent keeps (`inh`, see crate::cow).
    let current = procfs::read_maps(pid).map_err(|e| RestoreError::io(pid, "reading maps", e))?;
    let mut unmap = Batch::new();
    for m in &current {
        if m.start == c.tramp || m.name == "[vsyscall]" || m.name == "[vdso]" || m.name.starts_with("[vvar") {
            continue;
        }
        for (a, b) in crate::cow::subtract(m.start, m.end, &inh.areas) {
            unmap.call("munmap", libc::SYS_munmap, [a, b - a, 0, 0, 0, 0]);
        }
    }
    let mut s = c.scratch();
    c.run(&mut s, unmap)?;
    // 2. The vDSO.
    vdso::place(c, p, opts)?;
    // 3. Every saved area (but the kept ones).
    map_areas(c, p, shm, &inh.areas)?;
    // The areas' madvise state (MADV_NOHUGEPAGE, MADV_DONTFORK, ...) before their pages go
    // in: without MADV_NOHUGEPAGE khugepaged would later collapse a sparse area's few pages
    // into huge pages and fill its holes.
    for a in &p.advice {
        for advice in seamless_image::records::VmaAdvice::madvise_values(a.flags) {
            c.call("madvise", libc::SYS_madvise, [a.start, a.end - a.start, u64::from(advice), 0, 0, 0])?;
        }
    }
    // 4. Pages. With transparent huge pages on, writing one page of a sparse anonymous area
    // would fault in a whole 2 MiB page and turn holes into zero-filled memory; so THP is off
    // for this mm while the pages go in, and back on after.
    const PR_SET_THP_DISABLE: u64 = libc::PR_SET_THP_DISABLE as u64;
    c.call("prctl(PR_SET_THP_DISABLE, 1)", libc::SYS_prctl, [PR_SET_THP_DISABLE, 1, 0, 0, 0, 0])?;
    let mut buf = Vec::new();
    let in_shm =
        |a: u64| p.mm.vmas.iter().any(|v| matches!(v.kind, VmaKind::SharedAnon { .. }) && v.start <= a && a < v.end);
    for ch in p.chunks.iter().filter(|ch| !in_shm(ch.vaddr)) {
        buf.resize(seamless_image::usize_of(ch.len), 0);
        reader.read_pages(ch.index, &mut buf).map_err(RestoreError::Image)?;
        // Pages still shared with the parent stay as inherited (the same bytes).
        for (a, b) in crate::cow::subtract(ch.vaddr, ch.vaddr.saturating_add(ch.len), &inh.shared) {
            let off = seamless_image::usize_of(a - ch.vaddr);
            c.write_mem(a, &buf[off..off + seamless_image::usize_of(b - a)])
                .map_err(|e| RestoreError::io(pid, format!("writing pages at {a:#x}+{:#x}", b - a), e))?;
        }
    }
    // Inherited pages of the kept areas that the child did not have go.
    if !inh.areas.is_empty() {
        let mut had: Vec<(u64, u64)> = p.chunks.iter().map(|ch| (ch.vaddr, ch.vaddr.saturating_add(ch.len))).collect();
        had.extend(inh.shared.iter().copied());
        had.sort_unstable();
        const MADV_DONTNEED: u64 = libc::MADV_DONTNEED as u64;
        for &(s, e) in &inh.areas {
            for (a, b) in crate::cow::subtract(s, e, &had) {
                c.call("madvise(MADV_DONTNEED)", libc::SYS_madvise, [a, b - a, MADV_DONTNEED, 0, 0, 0])?;
            }
        }
    }
    c.call("prctl(PR_SET_THP_DISABLE, 0)", libc::SYS_prctl, [PR_SET_THP_DISABLE, 0, 0, 0, 0, 0])?;
    for v in p.mm.vmas.iter().filter(|v| fill_writable(v)) {
        c.call("mprotect", libc::SYS_mprotect, [v.start, v.end.saturating_sub(v.start), u64::from(v.prot), 0, 0, 0])?;
    }
    // Memory locks once the pages are in (a lock-on-fault area keeps its holes).
    lock_areas(c, p)?;
    // 5. mm fields, auxv, exe.
    set_mm_map(c, p, inh.same_exe && !inh.areas.is_empty())
}

/// The record-55 flags of the area `v` (0 when it has none).
fn flags_of(p: &ProcPlan, v: &Vma) -> u32 {
    p.vma_flags.iter().filter(|a| v.start <= a.start && a.end <= v.end).fold(0, |f, a| f | a.flags)
}

/// Locks the areas that were locked: `mlock2` with `MLOCK_ONFAULT` for those locked on fault.
pub fn lock_areas<T: Tracee + ?Sized>(c: &mut T, p: &ProcPlan) -> Result<(), RestoreError> {
    const MLOCK_ONFAULT: u64 = 1;
    for a in p.vma_flags.iter().filter(|a| a.flags & VmaFlags::LOCKED != 0) {
        let onfault = if a.flags & VmaFlags::LOCK_ONFAULT != 0 { MLOCK_ONFAULT } else { 0 };
        let what = format!("locking {:#x}-{:#x}", a.start, a.end);
        c.call_for(what, "mlock2", libc::SYS_mlock2, [a.start, a.end - a.start, onfault, 0, 0, 0])?;
    }
    Ok(())
}

/// Maps every saved area of `p` at its address (`MAP_FIXED_NOREPLACE`, so nothing already
/// there is clobbered): anonymous memory, files (each opened once in the process, after
/// [`verify_file`]) and shared anonymous objects (through the restorer's mapping of them). An
/// area whose saved pages `/proc/PID/mem` could not write (no `PROT_READ`) is mapped readable
/// and writable; [`restore_mm`] protects it after the pages are in.
pub fn map_areas<T: Tracee + ?Sized>(
    c: &mut T,
    p: &ProcPlan,
    shm: &BTreeMap<u64, SharedObj>,
    keep: &[(u64, u64)],
) -> Result<(), RestoreError> {
    let pid = c.pid();
    // First what every area maps: the descriptors to open (each file checked first) ...
    enum Backing {
        Anon,
        Fd(usize),
    }
    let mut opens: Vec<(String, i32)> = Vec::new();
    let mut file_fd: BTreeMap<(String, i32), usize> = BTreeMap::new();
    let mut shm_opens = Vec::new();
    let mut areas = Vec::new();
    for v in p.mm.vmas.iter().filter(|v| !keep.contains(&(v.start, v.end))) {
        let (backing, off) = match &v.kind {
            VmaKind::Vdso | VmaKind::Vvar | VmaKind::Vsyscall => continue,
            VmaKind::Anon => (Backing::Anon, 0),
            VmaKind::SharedAnon { ino, offset } => {
                let obj = shm
                    .get(ino)
                    .ok_or_else(|| RestoreError::Corrupt { pid, what: format!("no shared memory object {ino}") })?;
                let path = format!("/proc/{}/map_files/{:x}-{:x}", std::process::id(), obj.addr, obj.addr + obj.len);
                opens.push((path, libc::O_RDWR | libc::O_CLOEXEC));
                shm_opens.push(opens.len() - 1);
                (Backing::Fd(opens.len() - 1), *offset)
            }
            VmaKind::File { file, offset } => {
                // Opened once per file and access mode. A shared area may write when it is
                // writable or its file was opened for writing (`mw`, record kind 55): its file
                // is opened O_RDWR, else O_RDONLY (a read-only descriptor would make the mmap
                // of a shared writable area fail, whatever other area of the file came first).
                let may_write = v.prot & 2 != 0 || flags_of(p, v) & VmaFlags::MAY_WRITE != 0;
                let acc = if v.shared && may_write { libc::O_RDWR } else { libc::O_RDONLY };
                let i = match file_fd.get(&(file.path.clone(), acc)) {
                    Some(&i) => i,
                    None => {
                        // A memfd of the image: the restorer's (`crate::objects`).
                        let memfd = crate::objects::memfd_path(file);
                        if memfd.is_none() {
                            verify_file(pid, file)?;
                        }
                        opens.push((memfd.unwrap_or_else(|| file.path.clone()), acc | libc::O_CLOEXEC));
                        file_fd.insert((file.path.clone(), acc), opens.len() - 1);
                        opens.len() - 1
                    }
                };
                (Backing::Fd(i), *offset)
            }
        };
        areas.push((v, backing, off));
    }
    // ... opened in batches (their paths in scratch) ...
    let mut fds = Vec::with_capacity(opens.len());
    for group in opens.chunks(OPENS_PER_BATCH) {
        let mut s = c.scratch();
        let mut b = Batch::new();
        for (path, flags) in group {
            let a = s.put_str(c, path)?;
            let args = [abi::int(libc::AT_FDCWD), a, abi::int(*flags), 0, 0, 0];
            b.call_for(format!("open {path}"), "openat", libc::SYS_openat, args);
        }
        fds.extend(c.run(&mut s, b)?);
    }
    // ... then every area mapped, and the descriptors closed, in one more.
    let mut b = Batch::new();
    let mut charged_areas = Vec::new();
    for (v, backing, off) in &areas {
        let len = v.end.saturating_sub(v.start);
        let (mut flags, fd) = match backing {
            Backing::Anon => (libc::MAP_ANONYMOUS, u64::MAX),
            Backing::Fd(i) => (0, fds[*i]),
        };
        flags |= if v.shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE };
        if v.growsdown {
            flags |= libc::MAP_GROWSDOWN;
        }
        flags |= libc::MAP_FIXED_NOREPLACE;
        // Writable private areas mapped MAP_NORESERVE are not charged (record kind 48).
        if VmaAccount::lists(&p.account.uncharged, v.start, v.end) {
            flags |= libc::MAP_NORESERVE;
        }
        // Shared anonymous memory is filled through a writable mapping, then protected.
        // Areas whose saved pages /proc/PID/mem cannot write (PROT_NONE) are filled writable first.
        let fill_prot = if fill_writable(v) { v.prot | FILL_PROT } else { v.prot };
        // A read-only private area that was writable once is charged (`ac`): mapped writable,
        // which charges it, and protected right after (the charge stays). Without the charge
        // the kernel would merge it with a read-only neighbour (a library's RELRO pages with
        // its read-only data before them).
        let charged = VmaAccount::lists(&p.account.charged, v.start, v.end);
        let map_prot = if charged { fill_prot | libc::PROT_WRITE as u32 } else { fill_prot };
        let what = format!("mapping {:#x}-{:#x} ({})", v.start, v.end, v.name);
        b.call_for(what, "mmap", libc::SYS_mmap, [v.start, len, u64::from(map_prot), abi::int(flags), fd, *off]);
        if map_prot != fill_prot {
            charged_areas.push((v.start, len, fill_prot));
        }
        if fill_prot != v.prot {
            // Protected again after the pages are in.
            log::trace!("pid {pid}: area {:#x} filled writable", v.start);
        }
    }
    let mapped = areas.len();
    // The charged ones protected right after their mapping (the charge stays).
    for &(start, len, prot) in &charged_areas {
        b.call("mprotect(charged)", libc::SYS_mprotect, [start, len, u64::from(prot), 0, 0, 0]);
    }
    for &i in &shm_opens {
        b.call("close", libc::SYS_close, [fds[i], 0, 0, 0, 0, 0]);
    }
    for &i in file_fd.values() {
        b.call("close", libc::SYS_close, [fds[i], 0, 0, 0, 0, 0]);
    }
    let mut s = c.scratch();
    let got = c.run(&mut s, b)?;
    for ((v, _, _), &at) in areas.iter().zip(&got[..mapped]) {
        if at != v.start {
            return Err(RestoreError::Failed {
                pid,
                what: format!("mapping {:#x}-{:#x} landed at {at:#x}", v.start, v.end),
            });
        }
    }
    Ok(())
}

/// Descriptors opened by one batch of [`map_areas`] (their paths, up to `PATH_MAX` each, share
/// its scratch).
const OPENS_PER_BATCH: usize = 8;

/// `PR_SET_MM_MAP` with the saved fields; `keep_exe` leaves the executable as it is (a child
/// forked from its restored parent has it already).
fn set_mm_map<T: Tracee + ?Sized>(c: &mut T, p: &ProcPlan, keep_exe: bool) -> Result<(), RestoreError> {
    let m = &p.rec.mm;
    // An executable that is a memfd or deleted file is the restorer's recreation of it.
    let exe = p
        .exe_object
        .and_then(|e| {
            let id =
                seamless_image::records::FileId { path: String::new(), dev: e.dev, ino: e.ino, size: 0, mtime_ns: 0 };
            crate::objects::memfd_path(&id)
        })
        .unwrap_or_else(|| p.rec.exe.clone());
    let exe_fd = if keep_exe { u64::from(u32::MAX) } else { c.open(&exe, libc::O_RDONLY | libc::O_CLOEXEC, 0)? };
    let mut auxv = p.rec.auxv.clone();
    auxv.truncate(abi::AUXV_MAX_WORDS);
    let mut s = c.scratch();
    let auxv_addr = s.put_words(c, &auxv)?;
    let fields = [
        m.start_code,
        m.end_code,
        m.start_data,
        m.end_data,
        m.start_brk,
        m.brk,
        m.start_stack,
        m.arg_start,
        m.arg_end,
        m.env_start,
        m.env_end,
    ];
    // Both fit in 32 bits: the vector is truncated above, a descriptor number is an int.
    let auxv_size = u32::try_from(auxv.len() * 8).unwrap_or(u32::MAX);
    let exe = u32::try_from(exe_fd).unwrap_or(u32::MAX);
    let map = abi::prctl_mm_map(fields, auxv_addr, auxv_size, exe);
    let a = s.put_words(c, &map)?;
    let r = c.call(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        [libc::PR_SET_MM as u64, libc::PR_SET_MM_MAP as u64, a, abi::PRCTL_MM_MAP_SIZE, 0, 0],
    );
    if !keep_exe {
        c.call("close", libc::SYS_close, [exe_fd, 0, 0, 0, 0, 0])?;
    }
    r.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::sample_proc;
    use crate::tracee::fake::Recorder;

    fn vma(start: u64, pages: u64, prot: u32, kind: VmaKind, saved_pages: u64) -> Vma {
        Vma {
            start,
            end: start + pages * 4096,
            prot,
            shared: false,
            growsdown: false,
            kind,
            name: String::new(),
            saved_pages,
        }
    }

    fn file_id(path: &std::path::Path) -> FileId {
        let md = std::fs::metadata(path).unwrap();
        FileId {
            path: path.to_str().unwrap().into(),
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
        }
    }

    /// Every area at its own address and no other (`MAP_FIXED_NOREPLACE`), vDSO pages left to
    /// [`vdso::place`], a file opened once for its two areas and closed after, and an area
    /// without `PROT_READ` whose pages were saved mapped writable for the page copy.
    #[test]
    fn areas_are_mapped_at_their_addresses_with_their_backing() {
        let path = std::env::temp_dir().join(format!("seamless-restore-mm-{}", std::process::id()));
        std::fs::write(&path, [0u8; 8192]).unwrap();
        let file = VmaKind::File { file: file_id(&path), offset: 0 };
        let mut p = sample_proc(42, 1, 42, &[]);
        p.mm.vmas = vec![
            vma(0x40_0000, 1, 5, file.clone(), 0),
            vma(0x40_1000, 1, 1, VmaKind::File { file: file_id(&path), offset: 4096 }, 0),
            vma(0x60_0000, 4, 3, VmaKind::Anon, 2),
            vma(0x70_0000, 1, 0, VmaKind::Anon, 1),
            vma(0x7fff_f000, 2, 1, VmaKind::Vvar, 0),
            vma(0x7fff_f000 + 0x2000, 1, 5, VmaKind::Vdso, 0),
        ];
        let mut t = Recorder::new(42);
        let r = map_areas(&mut t, &p, &BTreeMap::new(), &[]);
        std::fs::remove_file(&path).unwrap();
        r.unwrap();
        let maps = t.named("mmap");
        let got: Vec<(u64, u64, u64)> = maps.iter().map(|c| (c.args[0], c.args[1], c.args[2])).collect();
        assert_eq!(got, [(0x40_0000, 4096, 5), (0x40_1000, 4096, 1), (0x60_0000, 4 * 4096, 3), (0x70_0000, 4096, 3)]);
        let fixed = libc::MAP_FIXED_NOREPLACE as u64;
        assert!(maps.iter().all(|c| c.args[3] & fixed == fixed && c.args[3] & libc::MAP_PRIVATE as u64 != 0));
        let anon = libc::MAP_ANONYMOUS as u64;
        assert_eq!(maps.iter().map(|c| c.args[3] & anon != 0).collect::<Vec<_>>(), [false, false, true, true]);
        let opens = t.named("openat");
        assert_eq!(opens.len(), 1, "one open for both areas of the file");
        assert_eq!(opens[0].mem(opens[0].args[1], path.as_os_str().len()), path.as_os_str().as_encoded_bytes());
        let fd = maps[0].args[4];
        assert_eq!((maps[1].args[4], maps[1].args[5]), (fd, 4096));
        assert_eq!(t.names().last(), Some(&"close"));
        assert_eq!(t.named("close")[0].args[0], fd);
    }

    /// A private area of a file before a shared writable one: the shared one gets a
    /// read-write descriptor of its own (a read-only one would make its mmap fail).
    #[test]
    fn a_shared_writable_area_gets_a_read_write_descriptor() {
        let path = std::env::temp_dir().join(format!("seamless-restore-mm-rw-{}", std::process::id()));
        std::fs::write(&path, [0u8; 8192]).unwrap();
        let mut p = sample_proc(42, 1, 42, &[]);
        let mut shared = vma(0x50_0000, 2, 3, VmaKind::File { file: file_id(&path), offset: 0 }, 0);
        shared.shared = true;
        p.mm.vmas = vec![vma(0x40_0000, 2, 3, VmaKind::File { file: file_id(&path), offset: 0 }, 0), shared];
        let mut t = Recorder::new(42);
        let r = map_areas(&mut t, &p, &BTreeMap::new(), &[]);
        std::fs::remove_file(&path).unwrap();
        r.unwrap();
        let opens = t.named("openat");
        let modes: Vec<u64> = opens.iter().map(|c| c.args[2] & libc::O_ACCMODE as u64).collect();
        assert_eq!(modes, [libc::O_RDONLY as u64, libc::O_RDWR as u64]);
        let maps = t.named("mmap");
        assert_ne!(maps[0].args[4], maps[1].args[4], "each area with its own descriptor");
    }

    /// A read-only shared area whose file was opened for writing gets an O_RDWR descriptor
    /// (it may be made writable again), one without the flag an O_RDONLY one; locked areas
    /// are locked with their kind.
    #[test]
    fn may_write_areas_open_their_file_read_write_and_locked_areas_are_locked() {
        use seamless_image::records::FlaggedArea;
        let path = std::env::temp_dir().join(format!("seamless-restore-mm-mw-{}", std::process::id()));
        std::fs::write(&path, [0u8; 8192]).unwrap();
        let mut p = sample_proc(42, 1, 42, &[]);
        let mut a = vma(0x40_0000, 1, 1, VmaKind::File { file: file_id(&path), offset: 0 }, 0);
        a.shared = true;
        let mut b = vma(0x40_1000, 1, 1, VmaKind::File { file: file_id(&path), offset: 4096 }, 0);
        b.shared = true;
        p.mm.vmas = vec![a, b, vma(0x60_0000, 4, 3, VmaKind::Anon, 1)];
        p.vma_flags = vec![
            FlaggedArea { start: 0x40_0000, end: 0x40_1000, flags: VmaFlags::MAY_WRITE },
            FlaggedArea { start: 0x60_0000, end: 0x60_4000, flags: VmaFlags::LOCKED | VmaFlags::LOCK_ONFAULT },
        ];
        let mut t = Recorder::new(42);
        let r = map_areas(&mut t, &p, &BTreeMap::new(), &[]).and_then(|()| lock_areas(&mut t, &p));
        std::fs::remove_file(&path).unwrap();
        r.unwrap();
        let acc: Vec<u64> = t.named("openat").iter().map(|c| c.args[2] & libc::O_ACCMODE as u64).collect();
        assert_eq!(acc, [libc::O_RDWR as u64, libc::O_RDONLY as u64]);
        let locks: Vec<[u64; 3]> = t.named("mlock2").iter().map(|c| [c.args[0], c.args[1], c.args[2]]).collect();
        assert_eq!(locks, [[0x60_0000, 0x4000, 1]]);
    }

    #[test]
    fn a_mapped_file_that_changed_is_refused() {
        let path = std::env::temp_dir().join(format!("seamless-restore-mm-changed-{}", std::process::id()));
        std::fs::write(&path, [0u8; 4096]).unwrap();
        let mut id = file_id(&path);
        id.size += 1;
        let mut p = sample_proc(42, 1, 42, &[]);
        p.mm.vmas = vec![vma(0x40_0000, 1, 5, VmaKind::File { file: id, offset: 0 }, 0)];
        let mut t = Recorder::new(42);
        let e = map_areas(&mut t, &p, &BTreeMap::new(), &[]).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(e, RestoreError::FileChanged { pid: 42, .. }), "{e}");
        assert!(t.calls().is_empty(), "nothing opened or mapped");
    }

    /// `struct prctl_mm_map`: the eleven addresses, then the auxv copy's address, its size in
    /// bytes and the exe descriptor.
    #[test]
    fn mm_map_points_at_a_copy_of_the_auxv_and_the_exe() {
        let mut p = sample_proc(42, 1, 42, &[]);
        p.rec.exe = "/bin/sh".into();
        p.rec.mm.start_code = 0x40_0000;
        p.rec.mm.env_end = 0x7ffe_0000;
        p.rec.auxv = vec![6, 4096, 0, 0];
        let mut t = Recorder::new(42);
        set_mm_map(&mut t, &p, false).unwrap();
        assert_eq!(t.names(), ["openat", "prctl(PR_SET_MM_MAP)", "close"]);
        let exe = 101;
        let c = t.named("prctl(PR_SET_MM_MAP)")[0];
        assert_eq!(c.args[3], abi::PRCTL_MM_MAP_SIZE);
        let w = c.words(c.args[2], 13);
        assert_eq!((w[0], w[10]), (0x40_0000, 0x7ffe_0000));
        assert_eq!(c.words(w[11], 4), [6, 4096, 0, 0]);
        assert_eq!(w[12], 32 | exe << 32);
    }
}
