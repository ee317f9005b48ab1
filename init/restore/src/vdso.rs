//! Placing the vDSO of a restored process.
//!
//! Same kernel (the saved `[vdso]` bytes equal the running kernel's): the child's own
//! `[vvar*]` and `[vdso]` mappings are moved with `mremap` to the saved addresses, keeping
//! their relative layout, so code and saved return addresses inside the vDSO stay valid.
//!
//! Different kernel (or forced with [`RestoreOptions::force_vdso_trampoline`]): the new
//! kernel's vvar+vdso block is moved next to the old address (within ±2 GiB) and, at the old
//! `[vdso]` address, a private copy of the OLD vDSO bytes is mapped in which every exported
//! function whose name the new vDSO also exports gets its first instruction replaced by a
//! `jmp rel32` into the new vDSO's function. Pointers the program cached (glibc resolves the
//! vDSO symbols once at start-up) therefore keep working and land in code that matches the
//! running kernel's data pages. The old `[vvar*]` ranges are kept as read-only anonymous
//! areas, so every area the program knew is still there at its old bounds; the kernel lets a
//! process have one `[vdso]`, so the names move to the new block (two or three areas more).

use crate::child::{find_gap, Child};
use crate::plan::ProcPlan;
use crate::tracee::Tracee;
use crate::{procfs, RestoreError, RestoreOptions};
use seamless_image::records::VmaKind;
use seamless_sys::arch;

/// One dynamic function symbol of a vDSO: name, offset from the image start, size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sym {
    /// Name.
    pub name: String,
    /// Offset from the start of the mapping.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o.checked_add(2)?)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o.checked_add(4)?)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o.checked_add(8)?)?.try_into().ok()?))
}
/// `base + i * size`, `None` on overflow.
fn table(base: usize, i: usize, size: usize) -> Option<usize> {
    base.checked_add(i.checked_mul(size)?)
}

/// Lists the function symbols of the `.dynsym` of an in-memory vDSO image. Any image (the
/// saved one comes from the region): `None` when it is not a well-formed ELF64 vDSO.
pub fn symbols(img: &[u8]) -> Option<Vec<Sym>> {
    if img.get(0..4)? != b"\x7fELF" || *img.get(4)? != 2 {
        return None;
    }
    let phoff = usize::try_from(u64_at(img, 0x20)?).ok()?;
    let shoff = usize::try_from(u64_at(img, 0x28)?).ok()?;
    let phnum = u16_at(img, 0x38)? as usize;
    let shnum = u16_at(img, 0x3c)? as usize;
    let mut base = None;
    for i in 0..phnum {
        let ph = table(phoff, i, 56)?;
        if u32_at(img, ph)? == 1 {
            base = Some(u64_at(img, ph.checked_add(16)?)?.wrapping_sub(u64_at(img, ph.checked_add(8)?)?));
            break;
        }
    }
    let base = base?;
    // Offset `field` of section header `i`.
    let sh = |i: usize, field: usize| table(shoff, i, 64)?.checked_add(field);
    for i in 0..shnum {
        if u32_at(img, sh(i, 4)?)? != 11 {
            continue;
        }
        let off = usize::try_from(u64_at(img, sh(i, 24)?)?).ok()?;
        let size = usize::try_from(u64_at(img, sh(i, 32)?)?).ok()?;
        let link = u32_at(img, sh(i, 40)?)? as usize;
        let str_off = usize::try_from(u64_at(img, sh(link, 24)?)?).ok()?;
        // A symbol table can never be larger than the image that holds it.
        let end_of_table = off.checked_add(size)?;
        if end_of_table > img.len() {
            return None;
        }
        let mut out = Vec::new();
        for s in (off..end_of_table).step_by(24) {
            let name_off = u32_at(img, s)? as usize;
            let info = *img.get(s.checked_add(4)?)?;
            let value = u64_at(img, s.checked_add(8)?)?;
            let sz = u64_at(img, s.checked_add(16)?)?;
            if info & 0xf != 2 || value == 0 {
                continue;
            }
            let start = str_off.checked_add(name_off)?;
            let end = start + img.get(start..)?.iter().position(|&c| c == 0)?;
            let name = String::from_utf8_lossy(&img[start..end]).into_owned();
            out.push(Sym { name, offset: value.wrapping_sub(base), size: sz });
        }
        return Some(out);
    }
    None
}

/// Why the saved vDSO cannot be patched to jump into the running one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The saved (`saved`) or the running vDSO is not an ELF image with a `.dynsym`.
    #[error("cannot parse the {} vDSO", if *saved { "saved" } else { "running" })]
    Unparsable {
        /// Whether it is the saved one.
        saved: bool,
    },
    /// A function is too short for a 5-byte `jmp rel32`.
    #[error("vDSO function {name} is only {size} bytes long")]
    TooShort {
        /// The function.
        name: String,
        /// Its size.
        size: u64,
    },
    /// A symbol points outside the image.
    #[error("symbol {name} outside the vDSO image")]
    Outside {
        /// The symbol.
        name: String,
    },
    /// The new function is out of `jmp rel32` reach.
    #[error("{name} is out of the jump's reach ({} MiB) from the new vDSO", arch::JUMP_REACH >> 20)]
    TooFar {
        /// The function.
        name: String,
    },
}

/// Builds the patched copy of `old` whose exported functions jump to the same-named
/// functions of `new` mapped at `new_base`, the copy itself being mapped at `old_base`.
pub fn patch(old: &[u8], old_base: u64, new: &[u8], new_base: u64) -> Result<(Vec<u8>, usize), PatchError> {
    let olds = symbols(old).ok_or(PatchError::Unparsable { saved: true })?;
    let news = symbols(new).ok_or(PatchError::Unparsable { saved: false })?;
    let mut out = old.to_vec();
    let mut patched = 0;
    for s in &olds {
        let Some(n) = news.iter().find(|n| n.name == s.name) else { continue };
        if s.size != 0 && s.size < arch::JUMP_LEN as u64 {
            return Err(PatchError::TooShort { name: s.name.clone(), size: s.size });
        }
        let outside = || PatchError::Outside { name: s.name.clone() };
        let at = usize::try_from(s.offset).map_err(|_| outside())?;
        let slot = out.get_mut(at..at.checked_add(arch::JUMP_LEN).ok_or_else(outside)?).ok_or_else(outside)?;
        let from = old_base.wrapping_add(s.offset);
        let to = new_base.wrapping_add(n.offset);
        let jump = arch::jump(from, to).ok_or_else(|| PatchError::TooFar { name: s.name.clone() })?;
        slot.copy_from_slice(&jump);
        patched += 1;
    }
    Ok((out, patched))
}

/// Highest address a user mapping may end at ([`arch::USER_TOP`]).
const USER_TOP: u64 = arch::USER_TOP;

/// A free, 1 MiB-aligned range of `len` bytes as close as possible to `near` (below or
/// above, alternating), within half of [`arch::JUMP_REACH`] (1 GiB on x86-64) so that the
/// jump from the old vDSO reaches it.
/// The old vDSO usually sits just under the stack at the very top of the address space,
/// so searching only upwards is not enough.
fn gap_near(ranges: &[(u64, u64)], len: u64, near: u64) -> Option<u64> {
    const STEP: u64 = 1 << 20;
    let free = |a: u64| {
        a >= 0x1_0000_0000
            && a.checked_add(len).is_some_and(|e| e + 4096 <= USER_TOP)
            && !ranges.iter().any(|&(s, e)| a.saturating_sub(4096) < e && s < a + len + 4096)
    };
    let origin = near & !(STEP - 1);
    (1..=arch::JUMP_REACH / 2 / STEP).find_map(|i| {
        let below = origin.checked_sub(i * STEP).filter(|a| free(*a));
        below.or_else(|| origin.checked_add(i * STEP).filter(|a| free(*a)))
    })
}

fn special(name: &str) -> bool {
    name == "[vdso]" || name.starts_with("[vvar")
}

/// Moves a block of mappings (in order) so that mapping `i` lands at `targets[i]`, going
/// through a temporary free area so that old and new ranges never overlap.
fn move_block(c: &mut Child, maps: &[(u64, u64)], targets: &[u64], avoid: &[(u64, u64)]) -> Result<(), RestoreError> {
    // Already there (a child forked from its restored parent inherits the placed vDSO).
    if maps.len() == targets.len() && maps.iter().zip(targets).all(|(m, t)| m.0 == *t) {
        return Ok(());
    }
    let lo = maps.iter().map(|m| m.0).min().unwrap_or(0);
    let hi = maps.iter().map(|m| m.1).max().unwrap_or(0);
    let mut ranges = avoid.to_vec();
    ranges.extend_from_slice(maps);
    for (m, t) in maps.iter().zip(targets) {
        ranges.push((*t, *t + (m.1 - m.0)));
    }
    let tmp = find_gap(&ranges, hi - lo, 0x2_0000_0000)
        .ok_or_else(|| RestoreError::Failed { pid: c.pid, what: "no room to move the vDSO".into() })?;
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    for m in maps {
        let len = m.1 - m.0;
        c.call("mremap(vdso)", libc::SYS_mremap, [m.0, len, len, flags, tmp + (m.0 - lo), 0])?;
    }
    for (m, t) in maps.iter().zip(targets) {
        let len = m.1 - m.0;
        c.call("mremap(vdso)", libc::SYS_mremap, [tmp + (m.0 - lo), len, len, flags, *t, 0])?;
    }
    Ok(())
}

/// Puts a usable vDSO where the process expects it (see the module docs).
pub fn place(c: &mut Child, p: &ProcPlan, opts: &RestoreOptions) -> Result<(), RestoreError> {
    let pid = c.pid;
    let maps = procfs::read_maps(pid).map_err(|e| RestoreError::io(pid, "reading maps", e))?;
    let cur: Vec<_> = maps.iter().filter(|m| special(&m.name)).cloned().collect();
    let saved: Vec<_> = p.mm.vmas.iter().filter(|v| matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar)).collect();
    let Some(cur_vdso) = cur.iter().find(|m| m.name == "[vdso]") else {
        return Err(RestoreError::Failed { pid, what: "the restorer has no [vdso]".into() });
    };
    let mut cur_bytes = vec![0u8; seamless_image::usize_of(cur_vdso.len())];
    c.mem.read(cur_vdso.start, &mut cur_bytes).map_err(|e| RestoreError::io(pid, "reading the current vDSO", e))?;
    let Some(old_vdso) = saved.iter().find(|v| v.kind == VmaKind::Vdso) else {
        // The process had no vDSO: drop ours.
        for m in &cur {
            c.call("munmap(vdso)", libc::SYS_munmap, [m.start, m.len(), 0, 0, 0, 0])?;
        }
        return Ok(());
    };
    let same_layout = saved.len() == cur.len()
        && saved.iter().all(|v| cur.iter().any(|m| m.name == v.name && m.len() == v.end.saturating_sub(v.start)));
    let avoid: Vec<(u64, u64)> =
        p.mm.vmas
            .iter()
            .filter(|v| !matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar))
            .map(|v| (v.start, v.end))
            // System V segments are attached after the vDSO is placed: their ranges are taken.
            .chain(p.shm_attach.iter().map(|a| (a.start, a.end)))
            .chain(std::iter::once((c.tramp, c.tramp + crate::child::TRAMP_LEN)))
            .collect();
    if !opts.force_vdso_trampoline && same_layout && cur_bytes == p.mm.vdso {
        let block: Vec<(u64, u64)> = cur.iter().map(|m| (m.start, m.end)).collect();
        let targets: Vec<u64> =
            cur.iter().map(|m| saved.iter().find(|v| v.name == m.name).map(|v| v.start).unwrap_or(m.start)).collect();
        log::debug!("pid {pid}: same vDSO, moving it to {:#x}", old_vdso.start);
        return move_block(c, &block, &targets, &avoid);
    }
    // Different vDSO: new block near the old address, patched old copy at the old address.
    let lo = cur.iter().map(|m| m.start).min().unwrap_or(0);
    let hi = cur.iter().map(|m| m.end).max().unwrap_or(0);
    let mut ranges = avoid.clone();
    ranges.extend(saved.iter().map(|v| (v.start, v.end)));
    let base = gap_near(&ranges, hi - lo, old_vdso.start)
        .ok_or_else(|| RestoreError::Failed { pid, what: "no room near the old vDSO for the new one".into() })?;
    let block: Vec<(u64, u64)> = cur.iter().map(|m| (m.start, m.end)).collect();
    let targets: Vec<u64> = cur.iter().map(|m| base + (m.start - lo)).collect();
    move_block(c, &block, &targets, &avoid)?;
    let new_vdso = base + (cur_vdso.start - lo);
    let (bytes, n) = patch(&p.mm.vdso, old_vdso.start, &cur_bytes, new_vdso)
        .map_err(|e| RestoreError::Failed { pid, what: format!("vDSO trampoline: {e}") })?;
    let len = old_vdso.end.saturating_sub(old_vdso.start);
    c.call(
        "mmap(old vdso)",
        libc::SYS_mmap,
        [
            old_vdso.start,
            len,
            (libc::PROT_READ | libc::PROT_EXEC) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
            u64::MAX,
            0,
        ],
    )?;
    c.mem
        .write(old_vdso.start, &bytes[..bytes.len().min(seamless_image::usize_of(len))])
        .map_err(|e| RestoreError::io(pid, "writing the vDSO trampoline", e))?;
    // The old data pages' ranges stay mapped too (read-only zero pages: nothing reads them, the
    // patched functions use the new vDSO's data), so that the areas a program saw before are all
    // still there at the same bounds, as CRIU's vDSO proxy keeps them. Like the kernel's own they
    // are left out of core dumps; neighbouring ones differ in one more harmless flag (wiped on
    // fork: they hold zeros anyway) so that the kernel does not merge them into one area.
    for (i, v) in saved.iter().filter(|v| v.kind == VmaKind::Vvar).enumerate() {
        let len = v.end.saturating_sub(v.start);
        c.call(
            "mmap(old vvar)",
            libc::SYS_mmap,
            [
                v.start,
                len,
                libc::PROT_READ as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
                u64::MAX,
                0,
            ],
        )?;
        c.call("madvise(old vvar, DONTDUMP)", libc::SYS_madvise, [v.start, len, libc::MADV_DONTDUMP as u64, 0, 0, 0])?;
        if i % 2 == 1 {
            c.call(
                "madvise(old vvar, WIPEONFORK)",
                libc::SYS_madvise,
                [v.start, len, libc::MADV_WIPEONFORK as u64, 0, 0, 0],
            )?;
        }
    }
    log::info!(
        "pid {pid}: vDSO differs; {n} functions at {:#x} redirected to the new vDSO at {new_vdso:#x}",
        old_vdso.start
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_of_a_bad_saved_vdso_is_none_not_a_panic() {
        assert_eq!(symbols(b"\x7fELF"), None);
        assert_eq!(symbols(b""), None);
        let mut img = vec![0u8; 128];
        img[..5].copy_from_slice(b"\x7fELF\x02");
        // Program and section header tables at the end of the address space.
        img[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        img[0x28..0x30].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        img[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        img[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(symbols(&img), None);
        for len in 0..img.len() {
            let _ = symbols(&img[..len]);
        }
        assert!(patch(b"\x7fELF", 0x7000_0000, &img, 0x7000_1000).is_err());
    }

    #[test]
    fn gap_near_the_top_of_the_address_space() {
        // A vDSO right under the stack, as on a 6.1 kernel: the gap must be found below it.
        let vdso = 0x7fff_f7fc_1000;
        let ranges = [(0x7fff_f7fb_d000, 0x7fff_f7fc_3000), (0x7fff_fffd_e000, 0x7fff_ffff_f000)];
        let at = gap_near(&ranges, 0x6000, vdso).expect("a gap");
        assert!(at < vdso && vdso - at < (1 << 30), "{at:#x}");
        assert!(ranges.iter().all(|&(s, e)| at + 0x6000 <= s || at >= e));
    }

    #[test]
    fn gap_near_skips_occupied_space() {
        let ranges = [(0x7000_0000_0000, 0x7000_2000_0000)];
        let at = gap_near(&ranges, 0x6000, 0x7000_1000_0000).expect("a gap");
        assert!(at + 0x6000 + 4096 <= 0x7000_0000_0000 || at >= 0x7000_2000_0000 + 4096, "{at:#x}");
    }
}
