//! Rebuilding an address space inside the seized child: drop everything but the trampoline,
//! place the vDSO (see [`super::vdso`]), map every saved VMA at its address with its
//! protection, write the saved pages through `/proc/PID/mem`, then install the mm fields
//! (brk, argv/env areas, auxv, exe) with `PR_SET_MM_MAP`.

use super::child::{Child, TRAMP_LEN};
use super::plan::ProcPlan;
use super::{procfs, vdso, RestoreError, RestoreOptions};
use seamless_image::records::{FileId, VmaKind};
use seamless_image::{Reader, Store};
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
    plan: &super::plan::Plan,
    reader: &mut Reader<S>,
    fails: &mut super::Failures,
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
                    fails.fail_pid(p.rec.pid, e.to_string());
                    continue;
                };
                let e = sizes.entry(ino).or_insert((0, p.rec.pid));
                e.0 = e.0.max(end);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (ino, (len, user)) in sizes {
        match seamless_sys::proc::map_shared_anon(len as usize) {
            Ok(addr) => {
                out.insert(ino, SharedObj { addr, len });
            }
            Err(e) => fails.fail_pid(user, RestoreError::sys(user, format!("shared memory {ino}"), e).to_string()),
        }
    }
    if out.is_empty() {
        return out;
    }
    let me = match super::memio::Mem::open(std::process::id() as i32, true) {
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
                    fails.fail_pid(p.rec.pid, e.to_string());
                    break;
                }
                buf.resize(ch.len as usize, 0);
                let r = reader.read_pages(ch.index, &mut buf).map_err(RestoreError::Image).and_then(|()| {
                    me.write(obj.addr + at.unwrap_or(0), &buf)
                        .map_err(|e| RestoreError::io(p.rec.pid, "filling shared memory", e))
                });
                if let Err(e) = r {
                    fails.fail_pid(p.rec.pid, e.to_string());
                    break;
                }
            }
        }
    }
    out
}

/// One process mapping shared object `ino`, as (ino, pid).
fn plan_user(plan: &super::plan::Plan, ino: u64) -> Option<(u64, i32)> {
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

/// Replaces the child's address space with the saved one.
pub fn restore_mm<S: Store>(
    c: &mut Child,
    p: &ProcPlan,
    reader: &mut Reader<S>,
    opts: &RestoreOptions,
    shm: &BTreeMap<u64, SharedObj>,
) -> Result<(), RestoreError> {
    let pid = c.pid;
    // rseq inherited from the restorer points into memory about to vanish: unregister it.
    let rs = seamless_sys::ptrace::get_rseq(pid).map_err(|e| RestoreError::sys(pid, "rseq configuration", e))?;
    if rs.pointer != 0 {
        c.call("rseq(unregister)", libc::SYS_rseq, [rs.pointer, u64::from(rs.size), 1, u64::from(rs.signature), 0, 0])?;
    }
    // 1. Drop every mapping but the trampoline and the kernel's special ones.
    let current = procfs::read_maps(pid).map_err(|e| RestoreError::io(pid, "reading maps", e))?;
    for m in &current {
        if m.start == c.tramp || m.name == "[vsyscall]" || m.name == "[vdso]" || m.name.starts_with("[vvar") {
            continue;
        }
        c.call("munmap", libc::SYS_munmap, [m.start, m.len(), 0, 0, 0, 0])?;
    }
    // 2. The vDSO.
    vdso::place(c, p, opts)?;
    // 3. Every saved area.
    let mut opened: BTreeMap<String, u64> = BTreeMap::new();
    let mut shm_fds = Vec::new();
    for v in &p.mm.vmas {
        let len = v.end.saturating_sub(v.start);
        let (mut flags, fd, off) = match &v.kind {
            VmaKind::Vdso | VmaKind::Vvar | VmaKind::Vsyscall => continue,
            VmaKind::Anon => (libc::MAP_ANONYMOUS, u64::MAX, 0),
            VmaKind::SharedAnon { ino, offset } => {
                let obj = shm
                    .get(ino)
                    .ok_or_else(|| RestoreError::Corrupt { pid, what: format!("no shared memory object {ino}") })?;
                let path = format!("/proc/{}/map_files/{:x}-{:x}", std::process::id(), obj.addr, obj.addr + obj.len);
                let fd = c.open(&path, libc::O_RDWR | libc::O_CLOEXEC, 0)?;
                shm_fds.push(fd);
                (0, fd, *offset)
            }
            VmaKind::File { file, offset } => {
                let fd = match opened.get(&file.path) {
                    Some(&fd) => fd,
                    None => {
                        verify_file(pid, file)?;
                        let acc = if v.shared && v.prot & 2 != 0 { libc::O_RDWR } else { libc::O_RDONLY };
                        let fd = c.open(&file.path, acc | libc::O_CLOEXEC, 0)?;
                        opened.insert(file.path.clone(), fd);
                        fd
                    }
                };
                (0, fd, *offset)
            }
        };
        flags |= if v.shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE };
        if v.growsdown {
            flags |= libc::MAP_GROWSDOWN;
        }
        flags |= libc::MAP_FIXED_NOREPLACE;
        // Shared anonymous memory is filled through a writable mapping, then protected.
        // Areas whose saved pages /proc/PID/mem cannot write (PROT_NONE) are filled writable first.
        let fill_prot = if v.saved_pages > 0 && v.prot & 1 == 0 { v.prot | 3 } else { v.prot };
        let got = c.call("mmap", libc::SYS_mmap, [v.start, len, u64::from(fill_prot), flags as u64, fd, off]).map_err(
            |e| RestoreError::Failed { pid, what: format!("mapping {:#x}-{:#x} ({}): {e}", v.start, v.end, v.name) },
        )?;
        if got != v.start {
            return Err(RestoreError::Failed {
                pid,
                what: format!("mapping {:#x}-{:#x} landed at {got:#x}", v.start, v.end),
            });
        }
        if fill_prot != v.prot {
            // Protected again after the pages are in.
            log::trace!("pid {pid}: area {:#x} filled writable", v.start);
        }
    }
    for fd in shm_fds {
        c.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    }
    for (_, fd) in opened {
        c.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    }
    // 4. Pages. With transparent huge pages on, writing one page of a sparse anonymous area
    // would fault in a whole 2 MiB page and turn holes into zero-filled memory; so THP is off
    // for this mm while the pages go in, and back on after.
    const PR_SET_THP_DISABLE: u64 = 41;
    c.call("prctl(PR_SET_THP_DISABLE, 1)", libc::SYS_prctl, [PR_SET_THP_DISABLE, 1, 0, 0, 0, 0])?;
    let mut buf = Vec::new();
    let in_shm =
        |a: u64| p.mm.vmas.iter().any(|v| matches!(v.kind, VmaKind::SharedAnon { .. }) && v.start <= a && a < v.end);
    for ch in p.chunks.iter().filter(|ch| !in_shm(ch.vaddr)) {
        buf.resize(ch.len as usize, 0);
        reader.read_pages(ch.index, &mut buf).map_err(RestoreError::Image)?;
        c.mem
            .write(ch.vaddr, &buf)
            .map_err(|e| RestoreError::io(pid, format!("writing pages at {:#x}+{:#x}", ch.vaddr, ch.len), e))?;
    }
    c.call("prctl(PR_SET_THP_DISABLE, 0)", libc::SYS_prctl, [PR_SET_THP_DISABLE, 0, 0, 0, 0, 0])?;
    for v in p.mm.vmas.iter().filter(|v| v.saved_pages > 0 && v.prot & 1 == 0) {
        c.call("mprotect", libc::SYS_mprotect, [v.start, v.end.saturating_sub(v.start), u64::from(v.prot), 0, 0, 0])?;
    }
    // 5. mm fields, auxv, exe.
    set_mm_map(c, p)?;
    let _ = TRAMP_LEN;
    Ok(())
}

fn set_mm_map(c: &mut Child, p: &ProcPlan) -> Result<(), RestoreError> {
    let m = &p.rec.mm;
    let exe_fd = c.open(&p.rec.exe, libc::O_RDONLY | libc::O_CLOEXEC, 0)?;
    let mut auxv = p.rec.auxv.clone();
    auxv.truncate(2 * 46);
    let auxv_addr = c.put_words(4096, &auxv)?;
    let mut words = vec![
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
        auxv_addr,
    ];
    words.push((auxv.len() as u64 * 8) | (exe_fd << 32));
    let a = c.put_words(0, &words)?;
    let r = c.call(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        [libc::PR_SET_MM as u64, libc::PR_SET_MM_MAP as u64, a, 104, 0, 0],
    );
    c.call("close", libc::SYS_close, [exe_fd, 0, 0, 0, 0, 0])?;
    r.map(|_| ())
}
