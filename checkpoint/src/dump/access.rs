//! Area flags the protection does not show (`VmFlags` of `/proc/PID/smaps`): whether a
//! shared file area without `PROT_WRITE` may become writable (`mw`: its file was opened for
//! writing), and memory locks (`lo`, `lf`). Written as [`VmaFlags`] (record kind 55). How
//! private areas are charged where their protection does not say it (`ac` without
//! `PROT_WRITE`, `nr`): [`VmaAccount`] (kind 48, ignorable).
//!
//! Locks are carried only where the kernel shows lock-on-fault (`lf`, probed once on one page
//! of the dumper); elsewhere locked memory is refused, its kind unknown.
//!
//! `mlockall(MCL_FUTURE)` sets a flag of the address space (future mappings are locked) that
//! no file of `/proc` shows; [`precheck`] refuses a process whose every area is locked, which is
//! what `mlockall` leaves and where that flag may well be set; areas locked one by one
//! (`mlock`, `mlock2`) with others unlocked are carried.

use super::DumpError;
use seamless_image::records::{AccountArea, FlaggedArea, MmRecord, VmaAccount, VmaFlags, VmaKind};

/// `(start, end, VmFlags line, kernel-placed)` of every area of a `smaps` text (the last
/// is true for `[vdso]`, `[vvar]` and `[vsyscall]`, which the new kernel places itself).
pub(super) fn areas(smaps: &str) -> Vec<(u64, u64, &str, bool)> {
    let mut out = Vec::new();
    let mut current: Option<(u64, u64, bool)> = None;
    for line in smaps.lines() {
        let range = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?)));
        if let Some(r) = range.filter(|_| !line.ends_with(':') && !line.starts_with(char::is_uppercase)) {
            let special = line.ends_with("[vdso]") || line.contains("[vvar") || line.ends_with("[vsyscall]");
            current = Some((r.0, r.1, special));
        } else if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some((start, end, special)) = current.take() {
                out.push((start, end, flags, special));
            }
        }
    }
    out
}

/// The text of `/proc/PID/smaps`, read once per process for [`vma_flags`] and
/// [`super::mm::vma_advice`] (the kernel walks every page table for it).
pub(super) fn read_smaps(pid: i32) -> Result<String, DumpError> {
    std::fs::read_to_string(format!("/proc/{pid}/smaps")).map_err(|e| DumpError::io(pid, "reading /proc/PID/smaps", e))
}

/// The flagged areas of `pid` among those of `mm` the restore maps, and the private ones
/// charged otherwise than their protection implies, from the text of `smaps`.
pub fn vma_flags(smaps: &str, mm: &MmRecord) -> (VmaFlags, VmaAccount) {
    (parse(smaps, mm), account(smaps, mm))
}

/// Whole private areas of `mm` that are charged without `PROT_WRITE` (`ac`) or writable and
/// not charged (`nr`).
fn account(smaps: &str, mm: &MmRecord) -> VmaAccount {
    let mut out = VmaAccount::default();
    for (start, end, line, _) in areas(smaps) {
        let whole = mm.vmas.iter().find(|v| {
            (v.start, v.end) == (start, end) && !v.shared && matches!(v.kind, VmaKind::Anon | VmaKind::File { .. })
        });
        let Some(v) = whole else { continue };
        let has = |flag: &str| line.split_whitespace().any(|w| w == flag);
        let writable = v.prot & 2 != 0;
        if !writable && has("ac") {
            out.charged.push(AccountArea { start, end });
        } else if writable && has("nr") && !has("ac") {
            out.uncharged.push(AccountArea { start, end });
        }
    }
    out
}

fn parse(smaps: &str, mm: &MmRecord) -> VmaFlags {
    let mut out = Vec::new();
    for (start, end, line, _) in areas(smaps) {
        let Some(v) = mm.vmas.iter().find(|v| {
            v.start <= start
                && end <= v.end
                && matches!(v.kind, VmaKind::Anon | VmaKind::File { .. } | VmaKind::SharedAnon { .. })
        }) else {
            continue;
        };
        let mut flags = VmaFlags::from_vmflags(line);
        let ro_shared_file =
            v.shared && v.prot & 2 == 0 && matches!(v.kind, VmaKind::File { .. }) && (v.start, v.end) == (start, end);
        if !ro_shared_file {
            flags &= !VmaFlags::MAY_WRITE;
        }
        if flags != 0 {
            out.push(FlaggedArea { start, end, flags });
        }
    }
    VmaFlags { areas: out }
}

/// Refuses locked memory whose kind cannot be known: every area the restore maps is locked
/// (what `mlockall(MCL_CURRENT)` leaves; whether `MCL_FUTURE` was given too, so that later
/// mappings are locked, `/proc` does not show). Called only when `VmLck` is not 0.
pub fn precheck(pid: i32) -> Result<(), DumpError> {
    // A kernel that does not show lock-on-fault (`lf`) shows an `mlock2(MLOCK_ONFAULT)` area
    // as plainly locked: locking it again would fault in its every page.
    static SHOWN: std::sync::OnceLock<Result<bool, String>> = std::sync::OnceLock::new();
    let shown = SHOWN.get_or_init(|| {
        seamless_sys::proc::smaps_shows_lock_onfault().map_err(|e| seamless_sys::chain(&e).to_string())
    });
    match shown {
        Ok(true) => {}
        Ok(false) => {
            return Err(DumpError::Unsupported {
                pid,
                resource: "locked memory".into(),
                reason: "this kernel's smaps does not show lock-on-fault (lf), so mlock and mlock2(MLOCK_ONFAULT) areas cannot be told apart".into(),
            })
        }
        Err(e) => {
            return Err(DumpError::Unsupported {
                pid,
                resource: "locked memory".into(),
                reason: format!("cannot tell whether this kernel shows lock-on-fault: {e}"),
            })
        }
    }
    if all_locked(&read_smaps(pid)?) {
        return Err(DumpError::Unsupported {
            pid,
            resource: "locked memory (every area locked)".into(),
            reason: "looks like mlockall(): whether MCL_FUTURE locks the process's future mappings cannot be seen from outside, so restore could not give it back exactly".into(),
        });
    }
    Ok(())
}

/// Refuses processes of the trees that share one descriptor table without being threads of
/// one process (`clone(CLONE_FILES)` without `CLONE_VM`): restore gives each process its own
/// table, so a descriptor one of them opened or closed afterwards would no longer appear in
/// the other. Only processes with the same number of descriptors are compared (`kcmp`).
pub fn separate_fd_tables(pids: &[i32]) -> Result<(), DumpError> {
    let mut by_count: std::collections::BTreeMap<usize, Vec<i32>> = std::collections::BTreeMap::new();
    for &pid in pids {
        let n = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map_err(|e| DumpError::io(pid, "listing /proc/PID/fd", e))?
            .count();
        by_count.entry(n).or_default().push(pid);
    }
    for same in by_count.values().filter(|v| v.len() > 1) {
        for (i, &a) in same.iter().enumerate() {
            for &b in &same[i + 1..] {
                if seamless_sys::proc::kcmp_files(a, b)
                    .map_err(|e| DumpError::sys(a, format!("comparing descriptor tables with pid {b}"), e))?
                {
                    return Err(DumpError::Unsupported {
                        pid: a,
                        resource: format!("descriptor table (shared with pid {b})"),
                        reason: "shares its descriptor table with another process (clone with CLONE_FILES): restore would give each its own table".into(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Whether every area of `smaps` that the restore maps is locked.
fn all_locked(smaps: &str) -> bool {
    let restored: Vec<&str> = areas(smaps).into_iter().filter(|a| !a.3).map(|a| a.2).collect();
    !restored.is_empty() && restored.iter().all(|f| VmaFlags::from_vmflags(f) & VmaFlags::LOCKED != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use seamless_image::records::{FileId, Vma};

    fn vma(start: u64, end: u64, prot: u32, shared: bool, file: bool) -> Vma {
        let kind = if file {
            VmaKind::File { file: FileId { path: "/f".into(), dev: 1, ino: 2, size: 4096, mtime_ns: 0 }, offset: 0 }
        } else {
            VmaKind::Anon
        };
        Vma { start, end, prot, shared, growsdown: false, kind, name: String::new(), saved_pages: 0 }
    }

    #[test]
    fn locks_and_may_write_of_read_only_shared_file_areas() {
        let smaps =
            "00400000-00401000 r--s 00000000 fe:01 12 /f\nSize:                  4 kB\nVmFlags: rd sh mr mw me\n\
                     00401000-00402000 rw-s 00000000 fe:01 12 /f\nVmFlags: rd wr sh mr mw me\n\
                     00402000-00403000 r--s 00000000 fe:01 12 /f\nVmFlags: rd mr me\n\
                     7f0000000000-7f0000004000 rw-p 00000000 00:00 0 \nVmFlags: rd wr mr mw me lo ac\n\
                     7f0000004000-7f0000008000 rw-p 00000000 00:00 0 \nVmFlags: rd wr mr mw me lo lf ac\n\
                     7ffff7fc1000-7ffff7fc5000 r--p 00000000 00:00 0    [vvar]\nVmFlags: rd mr pf io de dd sd lo\n";
        let mm = MmRecord {
            vmas: vec![
                vma(0x40_0000, 0x40_1000, 1, true, true),
                vma(0x40_1000, 0x40_2000, 3, true, true),
                vma(0x40_2000, 0x40_3000, 1, true, true),
                vma(0x7f00_0000_0000, 0x7f00_0000_4000, 3, false, false),
                vma(0x7f00_0000_4000, 0x7f00_0000_8000, 3, false, false),
            ],
            vdso: Vec::new(),
        };
        let got: Vec<(u64, u32)> = parse(smaps, &mm).areas.iter().map(|a| (a.start, a.flags)).collect();
        assert_eq!(
            got,
            [
                (0x40_0000, VmaFlags::MAY_WRITE),
                (0x7f00_0000_0000, VmaFlags::LOCKED),
                (0x7f00_0000_4000, VmaFlags::LOCKED | VmaFlags::LOCK_ONFAULT)
            ]
        );
        assert!(!all_locked(smaps), "some areas are not locked");
        let locked = "7f0000000000-7f0000004000 rw-p 00000000 00:00 0 \nVmFlags: rd wr mr mw me lo ac\n\
                      7ffff7fc1000-7ffff7fc5000 r-xp 00000000 00:00 0    [vdso]\nVmFlags: rd ex mr mw me de sd\n";
        assert!(all_locked(locked), "every area but the vDSO");
    }
}
