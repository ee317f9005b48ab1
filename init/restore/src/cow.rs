//! Copy-on-write sharing between a parent and its forked child, restored: instead of forking
//! such a child from the restorer's helper tree ([`crate::tree`]) and writing every one of its
//! pages, the restorer forks it by an injected `clone3(set_tid)` from the parent right after
//! the parent's address space is rebuilt, so the child inherits the parent's private anonymous
//! areas with their pages still shared. The child's rebuild then keeps those areas, leaves the
//! pages the dump found shared (record `cow-shared`) as inherited, writes its own pages over
//! the rest and drops the inherited pages it did not have.
//!
//! Only a child that can be made this way exactly is: a live process that is not a tree root,
//! has no children of its own in the image (its helper would have had to fork them) and is in
//! its parent's session or leads its own. Any other child is restored as before, with its own
//! copy of every page (same contents, more memory).

use crate::abi;
use crate::child::{self, Child};
use crate::plan::{Plan, ProcPlan};
use crate::tracee::Tracee;
use crate::RestoreError;
use seamless_image::records::{VmaAdvice, VmaKind};

/// What a child forked from its parent keeps of what it inherited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inherited {
    /// Areas `[start, end)` of the child kept as inherited (exactly areas of its own layout).
    pub areas: Vec<(u64, u64)>,
    /// Pages within them left as inherited (shared with the parent), ascending.
    pub shared: Vec<(u64, u64)>,
    /// The executable inherited from the parent is the child's own: `PR_SET_MM_MAP` leaves it
    /// (the kernel refuses to replace an executable that is still mapped).
    pub same_exe: bool,
}

/// Whether `pid` is forked from its restored parent (see the module documentation).
pub fn forked_from_parent(plan: &Plan, pid: i32) -> bool {
    let Some(p) = plan.procs.get(&pid) else { return false };
    let Some(c) = &p.cow else { return false };
    let Some(parent) = plan.procs.get(&c.parent) else { return false };
    !p.is_zombie()
        && !parent.is_zombie()
        && p.rec.ppid == c.parent
        && plan.children_of(pid).is_empty()
        && (p.rec.sid == parent.rec.sid || p.rec.sid == pid)
        && !inherited(plan, p).areas.is_empty()
        // pidfds are opened before any process is rebuilt: their targets must exist by then.
        && !plan.pidfds.values().any(|f| f.pid == pid)
        && !plan.descs.values().any(|d| crate::files::proc_file_of(plan, d) == Some(pid))
        // Unix messages carrying its credentials are queued again before any process is
        // rebuilt (`crate::unix`).
        && !plan.unix_queues.values().flatten().any(|m| m.creds.is_some_and(|c| c.0 == pid))
        // Other processes join its group or session when the tree is made, before any
        // process is rebuilt (a zombie joins its group before it exits): it must exist by then.
        && !plan.procs.values().any(|q| q.rec.pid != pid && (q.rec.pgid == pid || q.rec.sid == pid))
        // A fork would carry the parent's System V attachments into the child.
        && p.shm_attach.is_empty()
        && parent.shm_attach.is_empty()
}

/// The children of `parent` that are forked from it.
pub fn children(plan: &Plan, parent: i32) -> Vec<i32> {
    plan.children_of(parent).into_iter().filter(|&c| forked_from_parent(plan, c)).collect()
}

/// `[start, end)` without the `holes` (ascending, disjoint), as ascending pieces.
pub fn subtract(start: u64, end: u64, holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    for &(a, b) in holes.iter().filter(|(a, b)| *a < end && *b > start) {
        if a > at {
            out.push((at, a));
        }
        at = at.max(b);
    }
    if at < end {
        out.push((at, end));
    }
    out
}

/// The areas of `p` kept from its parent and the pages in them left shared: each a private
/// anonymous, readable area of `p` that the parent has too, with the same bounds and
/// protection, not `MADV_DONTFORK` or `MADV_WIPEONFORK` in the parent (a child does not
/// inherit those pages), holding some page the dump found shared.
pub fn inherited(plan: &Plan, p: &ProcPlan) -> Inherited {
    let Some(c) = &p.cow else { return Inherited::default() };
    let Some(parent) = plan.procs.get(&c.parent) else { return Inherited::default() };
    let not_inherited = |s: u64, e: u64| {
        parent
            .advice
            .iter()
            .any(|a| a.start < e && s < a.end && a.flags & (VmaAdvice::DONTFORK | VmaAdvice::WIPEONFORK) != 0)
    };
    let mut out = Inherited::default();
    for v in &p.mm.vmas {
        let same = parent.mm.vmas.iter().any(|q| {
            q.kind == VmaKind::Anon
                && !q.shared
                && (q.start, q.end, q.prot, q.growsdown) == (v.start, v.end, v.prot, v.growsdown)
        });
        let keep = v.kind == VmaKind::Anon
            && !v.shared
            && v.prot & libc::PROT_READ as u32 != 0
            && same
            && !not_inherited(v.start, v.end);
        if !keep {
            continue;
        }
        let shared: Vec<(u64, u64)> = c
            .ranges
            .iter()
            .filter(|(a, b)| *a < v.end && *b > v.start)
            .map(|&(a, b)| (a.max(v.start), b.min(v.end)))
            .collect();
        if !shared.is_empty() {
            out.areas.push((v.start, v.end));
            out.shared.extend(shared);
        }
    }
    out.areas.sort_unstable();
    out.shared.sort_unstable();
    out.same_exe = parent.rec.exe == p.rec.exe && parent.exe_object == p.exe_object;
    out
}

/// Forks `pid` from the rebuilt parent `c` with an injected `clone3(CLONE_PTRACE, set_tid)`:
/// the child is traced by us from its first instruction and stops before running any (a
/// seized tracee's `CLONE_PTRACE` child starts in a trap stop), with every signal blocked.
pub fn fork(c: &mut Child, pid: i32) -> Result<(), RestoreError> {
    let parent = c.pid;
    let mut s = c.scratch();
    let tid_addr = s.put(c, &pid.to_le_bytes())?;
    let args = abi::CloneArgs {
        flags: libc::CLONE_PTRACE as u64,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tid_addr,
        set_tid_size: 1,
        ..Default::default()
    };
    let a = s.put_words(c, &args.words())?;
    let got = c.call_for(
        format!("forking child {pid} (copy-on-write)"),
        "clone3(fork)",
        libc::SYS_clone3,
        [a, abi::CLONE_ARGS_SIZE, 0, 0, 0, 0],
    )?;
    if got != abi::int(pid) {
        return Err(RestoreError::Failed { pid: parent, what: format!("child {pid} forked as {got}") });
    }
    child::wait_event_stop(pid)?;
    seamless_sys::ptrace::set_sigmask(pid, !0).map_err(|e| RestoreError::sys(pid, "block signals", e))
}

/// Puts a forked child in its own session or process group, as the helper tree would have.
/// (A group elsewhere in the session is joined with the others, once every leader exists.)
pub fn join_session<T: Tracee + ?Sized>(c: &mut T, p: &ProcPlan) -> Result<(), RestoreError> {
    let pid = p.rec.pid;
    if p.rec.sid == pid {
        c.call("setsid", libc::SYS_setsid, [0; 6])?;
    } else if p.rec.pgid == pid {
        c.call("setpgid", libc::SYS_setpgid, [0, 0, 0, 0, 0, 0])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::sample_proc;
    use seamless_image::records::{AdvisedArea, CowShared, Vma};

    fn anon(start: u64, end: u64, prot: u32) -> Vma {
        Vma {
            start,
            end,
            prot,
            shared: false,
            growsdown: false,
            kind: VmaKind::Anon,
            name: String::new(),
            saved_pages: 0,
        }
    }

    fn family() -> Plan {
        let mut plan = Plan::default();
        let mut parent = sample_proc(10, 1, 10, &[]);
        parent.mm.vmas =
            vec![anon(0x10_0000, 0x20_0000, 3), anon(0x30_0000, 0x31_0000, 3), anon(0x40_0000, 0x41_0000, 0)];
        let mut kid = sample_proc(11, 10, 10, &[]);
        kid.rec.sid = 10;
        kid.mm.vmas = vec![anon(0x10_0000, 0x20_0000, 3), anon(0x30_0000, 0x30_8000, 3), anon(0x40_0000, 0x41_0000, 0)];
        kid.cow = Some(CowShared {
            parent: 10,
            ranges: vec![(0x10_0000, 0x10_4000), (0x1f_f000, 0x30_1000), (0x40_0000, 0x40_1000)],
        });
        plan.procs.insert(10, parent);
        plan.procs.insert(11, kid);
        plan
    }

    #[test]
    fn only_identical_readable_areas_are_kept() {
        let plan = family();
        let inh = inherited(&plan, &plan.procs[&11]);
        // The second area changed its bounds in the child, the third is not readable.
        assert_eq!(inh.areas, [(0x10_0000, 0x20_0000)]);
        assert_eq!(inh.shared, [(0x10_0000, 0x10_4000), (0x1f_f000, 0x20_0000)]);
        assert!(forked_from_parent(&plan, 11));
        assert!(!forked_from_parent(&plan, 10), "the root has no record");
        assert_eq!(children(&plan, 10), [11]);
    }

    #[test]
    fn dontfork_areas_children_and_other_sessions_are_not_forked() {
        let mut plan = family();
        plan.procs.get_mut(&10).unwrap().advice =
            vec![AdvisedArea { start: 0x10_0000, end: 0x10_1000, flags: VmaAdvice::DONTFORK }];
        assert!(!forked_from_parent(&plan, 11));
        let mut plan = family();
        plan.procs.insert(12, sample_proc(12, 11, 10, &[]));
        assert!(!forked_from_parent(&plan, 11), "a child with children of its own");
        let mut plan = family();
        plan.procs.get_mut(&11).unwrap().rec.sid = 5;
        assert!(!forked_from_parent(&plan, 11), "another session");
    }

    #[test]
    fn subtract_leaves_the_pieces_between_holes() {
        assert_eq!(subtract(0, 100, &[(10, 20), (30, 40)]), [(0, 10), (20, 30), (40, 100)]);
        assert_eq!(subtract(0, 100, &[(0, 100)]), []);
        assert_eq!(subtract(50, 60, &[(0, 55)]), [(55, 60)]);
        assert_eq!(subtract(0, 10, &[]), [(0, 10)]);
    }
}
