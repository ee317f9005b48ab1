//! Threads: created by injected `clone3(CLONE_THREAD, set_tid)` in the leader, each then
//! gets its rseq area, robust list, clear_child_tid, alternate stack, name and credentials
//! by injection in itself, and finally its saved registers, XSAVE area and signal mask.
//! Syscalls interrupted by the freeze are restarted (`rax = orig_rax`, `rip -= 2`).

use crate::abi;
use crate::child::{wait_event_stop, Child};
use crate::inject::Remote;
use crate::plan::ProcPlan;
use crate::tracee::{Batch, Tracee};
use crate::RestoreError;
use seamless_image::records::{Aarch64Thread, Creds, SyscallState, ThreadRecord};
use seamless_sys::arch::{self, REGS_WORDS};
use seamless_sys::chain;
use seamless_sys::ptrace::Regs;

/// The legacy x87/SSE part of an XSAVE area (`struct user_fpregs_struct`), what
/// `PTRACE_SETFPREGS` loads when the full area is refused.
const FXSAVE_SIZE: usize = arch::FP_LEGACY_SIZE;

const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// Creates the non-leader threads with their saved tids; returns a [`Remote`] per thread
/// (leader excluded).
pub fn create_threads(c: &mut Child, p: &ProcPlan) -> Result<Vec<Remote>, RestoreError> {
    let mut out = Vec::new();
    for t in p.threads.iter().skip(1) {
        clone_thread(c, t.tid)?;
        wait_event_stop(t.tid)?;
        let _ = c.remote.new_threads.pop();
        let mut r = Remote::new(t.tid, c.tramp).map_err(|e| RestoreError::inject(t.tid, "take over new thread", e))?;
        r.batch_ip = c.remote.batch_ip;
        out.push(r);
    }
    Ok(out)
}

/// Creates thread `tid` in the process with an injected `clone3(CLONE_THREAD, set_tid)`.
pub fn clone_thread<T: Tracee + ?Sized>(c: &mut T, tid: i32) -> Result<(), RestoreError> {
    let pid = c.pid();
    let mut s = c.scratch();
    let tid_addr = s.put(c, &tid.to_le_bytes())?;
    let args = abi::CloneArgs { flags: THREAD_FLAGS, set_tid: tid_addr, set_tid_size: 1, ..Default::default() };
    let a = s.put_words(c, &args.words())?;
    let got = c.call_for(
        format!("creating thread {tid}"),
        "clone3(thread)",
        libc::SYS_clone3,
        [a, abi::CLONE_ARGS_SIZE, 0, 0, 0, 0],
    )?;
    if got != abi::int(tid) {
        return Err(RestoreError::Failed { pid, what: format!("thread {tid} created as {got}") });
    }
    Ok(())
}

/// Per-thread kernel state that only the thread can set for itself.
pub fn thread_state<T: Tracee + ?Sized>(r: &mut T, t: &ThreadRecord) -> Result<(), RestoreError> {
    let mut b = Batch::new();
    if let Some((area, len, sig)) = t.rseq {
        b.call("rseq", libc::SYS_rseq, [area, u64::from(len), 0, u64::from(sig), 0, 0]);
    }
    if let Some((head, len)) = t.robust_list {
        b.call("set_robust_list", libc::SYS_set_robust_list, [head, len, 0, 0, 0, 0]);
    }
    b.call("set_tid_address", libc::SYS_set_tid_address, [t.clear_child_tid, 0, 0, 0, 0, 0]);
    let (sp, flags, size) = t.altstack;
    let stack = if flags & libc::SS_DISABLE == 0 {
        abi::stack_t(sp, flags, size)
    } else {
        abi::stack_t(0, libc::SS_DISABLE, 0)
    };
    let mut s = r.scratch();
    let a = s.put_words(r, &stack)?;
    b.call("sigaltstack", libc::SYS_sigaltstack, [a, 0, 0, 0, 0, 0]);
    let name = s.put_str(r, &t.comm.chars().take(15).collect::<String>())?;
    b.call("prctl(PR_SET_NAME)", libc::SYS_prctl, [libc::PR_SET_NAME as u64, name, 0, 0, 0, 0]);
    r.run(&mut s, b).map(|_| ())
}

/// The signal number of a raw siginfo (its first four bytes).
fn signo(pid: i32, tid: i32, info: &[u8]) -> Result<i32, RestoreError> {
    match info.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
        Some(b) if info.len() == seamless_image::validate::SIGINFO_SIZE => Ok(i32::from_le_bytes(b)),
        _ => Err(RestoreError::Corrupt {
            pid,
            what: format!(
                "thread {tid}: pending signal info of {} bytes, expected {}",
                info.len(),
                seamless_image::validate::SIGINFO_SIZE
            ),
        }),
    }
}

/// The POSIX timer a pending signal comes from (`si_code == SI_TIMER`, `si_timerid`).
pub fn timer_of_signal(info: &[u8]) -> Option<i32> {
    let word = |at: usize| info.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(i32::from_le_bytes);
    // si_code at 8; the union of fields starts at 16 on 64-bit, with the timer id first.
    (word(8)? == libc::SI_TIMER).then(|| word(16)).flatten()
}

/// Re-queues the thread's (and, for the leader, the process's) pending signals; they stay
/// pending because every signal is blocked until the final mask is set. A pending signal of one
/// of the process's POSIX timers (`timers`) is not queued here: that timer is armed to expire at
/// once instead ([`crate::process`]), so the kernel queues the timer's own signal, which later
/// expiries add to as overruns rather than as a second signal.
pub fn queue_pending<T: Tracee + ?Sized>(
    r: &mut T,
    t: &ThreadRecord,
    shared: &[Vec<u8>],
    timers: &[i32],
) -> Result<(), RestoreError> {
    let pid = r.pid();
    let own_timer = |info: &[u8]| timer_of_signal(info).is_some_and(|id| timers.contains(&id));
    for info in t.pending.iter().filter(|i| !own_timer(i)) {
        let sig = signo(pid, t.tid, info)?;
        let a = r.scratch().put(r, info)?;
        let args = [abi::int(pid), abi::int(t.tid), abi::int(sig), a, 0, 0];
        r.call("rt_tgsigqueueinfo", libc::SYS_rt_tgsigqueueinfo, args)?;
    }
    for info in shared.iter().filter(|i| !own_timer(i)) {
        let sig = signo(pid, t.tid, info)?;
        let a = r.scratch().put(r, info)?;
        r.call("rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo, [abi::int(pid), abi::int(sig), a, 0, 0, 0])?;
    }
    Ok(())
}

const SECBIT_KEEP_CAPS: u32 = 1 << 4;
const SECBIT_NO_CAP_AMBIENT_RAISE: u32 = 1 << 6;
const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: u32 = 1 << 7;

/// The highest capability number `PR_CAPBSET_DROP` is tried with (the kernel refuses those
/// past the last it knows, which ends the loop earlier).
const CAP_BITS: u64 = 64;

/// Sets the credentials of one thread (last, as they may drop the privileges the other
/// steps need): bounding set, groups, gids, securebits (with `SECBIT_KEEP_CAPS` across the
/// uid change when the saved set has capabilities), then uids, the capability sets, the
/// ambient set (then `SECBIT_NO_CAP_AMBIENT_RAISE`, if recorded) and `no_new_privs`.
pub fn set_creds<T: Tracee + ?Sized>(r: &mut T, cr: &Creds) -> Result<(), RestoreError> {
    for cap in 0..CAP_BITS {
        if cr.cap_bnd & (1 << cap) == 0 {
            let res =
                r.syscall("prctl(PR_CAPBSET_DROP)", libc::SYS_prctl, [libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0, 0]);
            if res.is_err() {
                break; // past the last capability the kernel knows
            }
        }
    }
    let groups: Vec<u8> = cr.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let mut s = r.scratch();
    // One batch: each call as before, in order, the first failure ends it.
    let mut b = Batch::new();
    let a = s.put(r, &groups)?;
    b.call("setgroups", libc::SYS_setgroups, [cr.groups.len() as u64, a, 0, 0, 0, 0]);
    let [rgid, egid, sgid, fsgid] = cr.gids.map(u64::from);
    b.call("setresgid", libc::SYS_setresgid, [rgid, egid, sgid, 0, 0, 0]);
    b.call("setfsgid", libc::SYS_setfsgid, [fsgid, 0, 0, 0, 0, 0]);
    let keep = cr.cap_prm != 0 && cr.uids[1] != 0;
    // Securebits while still privileged (PR_SET_SECUREBITS needs CAP_SETPCAP): keeping the
    // capabilities across the uid change through SECBIT_KEEP_CAPS, and without
    // SECBIT_NO_CAP_AMBIENT_RAISE until the ambient set is raised.
    let bits = cr.securebits.unwrap_or(0);
    let no_raise =
        if cr.cap_amb != 0 { bits & (SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED) } else { 0 };
    let first_bits = (bits & !no_raise) | if keep { SECBIT_KEEP_CAPS } else { 0 };
    if first_bits != 0 {
        b.call_for(
            format!("securebits {first_bits:#x}"),
            "prctl(PR_SET_SECUREBITS)",
            libc::SYS_prctl,
            [libc::PR_SET_SECUREBITS as u64, u64::from(first_bits), 0, 0, 0, 0],
        );
    }
    let [ruid, euid, suid, fsuid] = cr.uids.map(u64::from);
    b.call("setresuid", libc::SYS_setresuid, [ruid, euid, suid, 0, 0, 0]);
    b.call("setfsuid", libc::SYS_setfsuid, [fsuid, 0, 0, 0, 0, 0]);
    let hdr = s.put(r, &abi::cap_header())?;
    let data = s.put(r, &abi::cap_data(cr.cap_eff, cr.cap_prm, cr.cap_inh))?;
    b.call("capset", libc::SYS_capset, [hdr, data, 0, 0, 0, 0]);
    if keep && bits & SECBIT_KEEP_CAPS == 0 {
        b.call("prctl(PR_SET_KEEPCAPS)", libc::SYS_prctl, [libc::PR_SET_KEEPCAPS as u64, 0, 0, 0, 0, 0]);
    }
    for cap in (0..CAP_BITS).filter(|c| cr.cap_amb & (1 << c) != 0) {
        b.call_for(
            format!("raising ambient capability {cap}"),
            "prctl(PR_CAP_AMBIENT)",
            libc::SYS_prctl,
            [libc::PR_CAP_AMBIENT as u64, libc::PR_CAP_AMBIENT_RAISE as u64, cap, 0, 0, 0],
        );
    }
    if no_raise != 0 {
        b.call_for(
            format!("securebits {bits:#x}"),
            "prctl(PR_SET_SECUREBITS)",
            libc::SYS_prctl,
            [libc::PR_SET_SECUREBITS as u64, u64::from(bits), 0, 0, 0, 0],
        );
    }
    if cr.no_new_privs {
        b.call("prctl(PR_SET_NO_NEW_PRIVS)", libc::SYS_prctl, [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0]);
    }
    r.run(&mut s, b).map(|_| ())
}

/// Why a thread's saved registers cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegsError {
    /// Not a `user_regs_struct`.
    #[error("thread {tid}: {words} register words saved, expected {REGS_WORDS}")]
    Words {
        /// Thread.
        tid: i32,
        /// Words saved.
        words: usize,
    },
    /// `rip` too low to step back over a `syscall` instruction.
    #[error("thread {tid}: rip {rip:#x} cannot be moved back to restart a syscall")]
    Restart {
        /// Thread.
        tid: i32,
        /// The saved instruction pointer.
        rip: u64,
    },
    /// The thread's state was saved on another architecture.
    #[error("thread {tid}: CPU state saved on {image}, this restorer runs on {running}")]
    Architecture {
        /// Thread.
        tid: i32,
        /// The architecture of the saved state.
        image: &'static str,
        /// This build's ([`arch::NAME`]).
        running: &'static str,
    },
    /// The aarch64 records do not have the layout of `user_pt_regs`/`user_fpsimd_state`.
    #[error("thread {tid}: aarch64 registers or FP/SIMD state of the wrong length")]
    Aarch64Layout {
        /// Thread.
        tid: i32,
    },
}

/// The saved register words and FP state of a thread in the layout of this build's
/// architecture layer: the thread record's own (x86-64) or its aarch64 records.
pub fn saved_state(t: &ThreadRecord, a64: Option<&Aarch64Thread>) -> Result<(Vec<u64>, Vec<u8>), RegsError> {
    let image = if a64.is_some() { "aarch64" } else { "x86_64" };
    if image != arch::NAME {
        return Err(RegsError::Architecture { tid: t.tid, image, running: arch::NAME });
    }
    match a64 {
        Some(a) => match (a.arch_words(), a.arch_fp()) {
            (Some(w), Some(f)) => Ok((w, f)),
            _ => Err(RegsError::Aarch64Layout { tid: t.tid }),
        },
        None => Ok((t.regs.clone(), t.xstate.clone())),
    }
}

/// The registers a thread resumes with: the saved ones (`words`, from [`saved_state`]), with
/// an interrupted syscall set up to run again.
pub fn final_regs(t: &ThreadRecord, words: &[u64]) -> Result<Regs, RegsError> {
    if words.len() != REGS_WORDS {
        return Err(RegsError::Words { tid: t.tid, words: words.len() });
    }
    let mut r = [0u64; REGS_WORDS];
    r.copy_from_slice(words);
    if let SyscallState::Restart { nr, .. } = t.syscall {
        if !arch::restart_syscall(&mut r, nr) {
            return Err(RegsError::Restart { tid: t.tid, rip: arch::ip(&r) });
        }
    }
    arch::forget_syscall(&mut r);
    Ok(r)
}

/// Loads the final registers, extended state and signal mask into a stopped thread (`a64`:
/// its aarch64 records, in an aarch64 image).
pub fn load_thread<T: Tracee + ?Sized>(
    c: &mut T,
    t: &ThreadRecord,
    a64: Option<&Aarch64Thread>,
) -> Result<(), RestoreError> {
    let pid = c.pid();
    let corrupt = |e: RegsError| RestoreError::Corrupt { pid, what: e.to_string() };
    let (words, fp) = saved_state(t, a64).map_err(corrupt)?;
    let regs = final_regs(t, &words).map_err(corrupt)?;
    c.set_regs(t.tid, &regs).map_err(|e| RestoreError::sys(pid, format!("registers of thread {}", t.tid), e))?;
    if let Err(e) = c.set_fpstate(t.tid, &fp) {
        log::warn!("pid {pid} thread {}: full FP state refused ({}); restoring the legacy part only", t.tid, chain(&e));
        let n = fp.len().min(FXSAVE_SIZE);
        c.set_fpstate_legacy(t.tid, &fp[..n])
            .map_err(|e| RestoreError::sys(pid, format!("FP state of thread {}", t.tid), e))?;
    }
    c.set_sigmask(t.tid, t.sigmask)
        .map_err(|e| RestoreError::sys(pid, format!("signal mask of thread {}", t.tid), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracee::fake::{Event, Recorder};

    fn creds(uid: u32, cap_prm: u64) -> Creds {
        Creds {
            uids: [uid, uid, uid, uid],
            gids: [100, 101, 102, 103],
            groups: vec![7, 8],
            cap_eff: cap_prm,
            cap_prm,
            cap_inh: 0,
            cap_bnd: !0 ^ (1 << 3),
            cap_amb: 0,
            securebits: None,
            no_new_privs: true,
        }
    }

    /// Groups and gids before the uids (dropping root forbids them after), capabilities kept
    /// across the uid change only when there are any to keep, capset after the uids, and the
    /// version-3 header with the 64-bit sets split into two 32-bit words.
    #[test]
    fn credentials_go_in_the_order_that_keeps_the_privileges_they_need() {
        let mut t = Recorder::new(42);
        set_creds(&mut t, &creds(1000, 1 << 33 | 1 << 12)).unwrap();
        let names = t.names();
        assert_eq!(
            names,
            [
                "prctl(PR_CAPBSET_DROP)",
                "setgroups",
                "setresgid",
                "setfsgid",
                "prctl(PR_SET_SECUREBITS)",
                "setresuid",
                "setfsuid",
                "capset",
                "prctl(PR_SET_KEEPCAPS)",
                "prctl(PR_SET_NO_NEW_PRIVS)",
            ]
        );
        let calls = t.calls();
        assert_eq!(calls[0].args[1], 3, "only the capability missing from the bounding set is dropped");
        let groups = calls[1];
        assert_eq!(groups.args[0], 2);
        assert_eq!(groups.mem(groups.args[1], 8), [7, 0, 0, 0, 8, 0, 0, 0]);
        assert_eq!(calls[2].args[..3], [100, 101, 102]);
        assert_eq!(calls[3].args[0], 103);
        assert_eq!((calls[4].args[1], calls[8].args[1]), (1 << 4, 0), "keepcaps on, then off");
        assert_eq!(calls[5].args[..3], [1000, 1000, 1000]);
        let capset = calls[7];
        assert_eq!(capset.mem(capset.args[0], 8), crate::abi::cap_header());
        let data = capset.mem(capset.args[1], 24);
        let words: Vec<u32> = data.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(words, [1 << 12, 1 << 12, 0, 1 << 1, 1 << 1, 0]);
        // The header and the data do not overlap (each has its own piece of scratch).
        assert!(capset.args[1] >= capset.args[0] + 8);
    }

    #[test]
    fn root_without_capabilities_to_keep_skips_keepcaps() {
        let mut t = Recorder::new(42);
        let mut c = creds(0, 0);
        c.no_new_privs = false;
        set_creds(&mut t, &c).unwrap();
        assert!(!t.names().contains(&"prctl(PR_SET_KEEPCAPS)"));
        assert!(!t.names().contains(&"prctl(PR_SET_SECUREBITS)"));
        assert_eq!(t.names().last(), Some(&"capset"));
    }

    /// Recorded securebits go on before the uid change (they need CAP_SETPCAP), keep-caps
    /// stays on when recorded, the ambient set is raised after capset and
    /// SECBIT_NO_CAP_AMBIENT_RAISE only after that.
    #[test]
    fn securebits_and_the_ambient_set_are_restored_in_an_order_that_works() {
        let mut t = Recorder::new(42);
        let mut c = creds(1000, 1 << 12);
        c.cap_inh = 1 << 12;
        c.cap_amb = 1 << 12;
        c.no_new_privs = false;
        c.securebits = Some(SECBIT_KEEP_CAPS | SECBIT_NO_CAP_AMBIENT_RAISE | 1);
        set_creds(&mut t, &c).unwrap();
        assert_eq!(
            t.names()[4..],
            [
                "prctl(PR_SET_SECUREBITS)",
                "setresuid",
                "setfsuid",
                "capset",
                "prctl(PR_CAP_AMBIENT)",
                "prctl(PR_SET_SECUREBITS)"
            ]
        );
        let calls = t.calls();
        assert_eq!(calls[4].args[1], u64::from(SECBIT_KEEP_CAPS | 1));
        assert_eq!(calls[8].args[1..3], [libc::PR_CAP_AMBIENT_RAISE as u64, 12]);
        assert_eq!(calls[9].args[1], u64::from(SECBIT_KEEP_CAPS | SECBIT_NO_CAP_AMBIENT_RAISE | 1));
    }

    #[test]
    fn a_failed_setresuid_stops_before_the_capabilities() {
        let mut t = Recorder::new(42);
        t.fail.push(("setresuid", libc::EPERM));
        let e = set_creds(&mut t, &creds(1000, 0)).unwrap_err();
        assert!(e.to_string().contains("setresuid"), "{e}");
        assert!(!t.names().contains(&"capset"));
    }

    fn thread(tid: i32) -> ThreadRecord {
        ThreadRecord {
            tid,
            regs: vec![0; REGS_WORDS],
            xstate: vec![0; 1024],
            sigmask: 0x5,
            pending: Vec::new(),
            syscall: SyscallState::None,
            rseq: None,
            robust_list: None,
            clear_child_tid: 0,
            altstack: (0, libc::SS_DISABLE, 0),
            comm: "a-very-long-thread-name".into(),
        }
    }

    #[test]
    fn thread_state_disables_the_altstack_and_truncates_the_name() {
        let mut t = Recorder::new(42);
        thread_state(&mut t, &thread(43)).unwrap();
        let alt = t.named("sigaltstack")[0];
        assert_eq!(alt.words(alt.args[0], 3), [0, libc::SS_DISABLE as u64, 0]);
        let name = t.named("prctl(PR_SET_NAME)")[0];
        assert_eq!(name.mem(name.args[1], 16), b"a-very-long-thr\0");
    }

    #[test]
    fn clone_args_carry_the_wanted_tid() {
        let mut t = Recorder::new(42);
        clone_thread(&mut t, 4711).unwrap();
        let c = t.named("clone3(thread)")[0];
        assert_eq!(c.args[1], crate::abi::CLONE_ARGS_SIZE);
        let w = c.words(c.args[0], 11);
        assert_eq!(w[0], THREAD_FLAGS);
        assert_eq!(w[9], 1, "one level of set_tid");
        assert_eq!(c.mem(w[8], 4), 4711i32.to_le_bytes());
    }

    /// An interrupted system call is set up to run again; the XSAVE area falls back to the
    /// legacy FP state when the CPU refuses it; the mask is set last.
    /// A thread saved on the other architecture is refused, naming both, before any register
    /// is written.
    #[test]
    fn a_thread_of_another_architecture_is_refused() {
        let mut t = Recorder::new(42);
        let mut rec = thread(43);
        let words = vec![0u64; seamless_image::records::aarch64::ARCH_REGS_WORDS];
        let a64 = Aarch64Thread::from_arch(43, &words, &[0; seamless_image::records::aarch64::FPSIMD_BYTES]).unwrap();
        // On x86-64 an aarch64 thread; on aarch64 an x86-64 one.
        let other = (arch::NAME == "x86_64").then_some(&a64);
        if other.is_none() {
            rec.regs = vec![0; 27];
        }
        let e = load_thread(&mut t, &rec, other).unwrap_err().to_string();
        let image = if other.is_some() { "aarch64" } else { "x86_64" };
        assert!(e.contains(&format!("saved on {image}, this restorer runs on {}", arch::NAME)), "{e}");
        assert!(t.events.is_empty(), "nothing loaded: {:?}", t.events);
    }

    #[test]
    fn registers_of_an_interrupted_syscall_restart_it() {
        let mut t = Recorder::new(42);
        t.refuse_xstate = true;
        let mut rec = thread(43);
        let mut saved: Regs = [0; REGS_WORDS];
        arch::set_ip(&mut saved, 0x40_1004);
        // The state where this architecture's image keeps it.
        let a64 = (arch::NAME == "aarch64")
            .then(|| Aarch64Thread::from_arch(43, &saved, &vec![0; arch::FP_LEGACY_SIZE]))
            .flatten();
        if a64.is_some() {
            rec.regs.clear();
            rec.xstate.clear();
        } else {
            rec.regs = saved.to_vec();
        }
        rec.syscall = SyscallState::Restart { nr: 35, code: -512 };
        load_thread(&mut t, &rec, a64.as_ref()).unwrap();
        let Event::Regs(43, regs) = t.events[0] else { panic!("{:?}", t.events) };
        assert_eq!(arch::ip(&regs), 0x40_1004 - arch::SYSCALL_INSN.len() as u64, "back on the syscall instruction");
        assert_eq!(arch::syscall_no(&regs), -1, "not in a syscall for the kernel");
        let mut want = saved;
        assert!(arch::restart_syscall(&mut want, 35));
        arch::forget_syscall(&mut want);
        assert_eq!(regs, want, "the number loaded where the architecture takes it");
        assert!(matches!(t.events[1], Event::Fpregs(43, FXSAVE_SIZE)));
        assert!(matches!(t.events[2], Event::Sigmask(43, 0x5)));
    }

    #[test]
    fn a_timer_signal_names_its_timer() {
        let mut info = vec![0u8; 128];
        info[0..4].copy_from_slice(&10i32.to_le_bytes());
        info[8..12].copy_from_slice(&libc::SI_TIMER.to_le_bytes());
        info[16..20].copy_from_slice(&7i32.to_le_bytes());
        assert_eq!(timer_of_signal(&info), Some(7));
        info[8..12].copy_from_slice(&libc::SI_QUEUE.to_le_bytes());
        assert_eq!(timer_of_signal(&info), None);
        assert_eq!(timer_of_signal(&info[..10]), None);
    }

    /// The recorded signal of a timer of the process is not queued (the timer expires at once
    /// and the kernel queues its own); other pending signals are.
    #[test]
    fn a_pending_timer_signal_is_left_to_the_timer() {
        let mut t = Recorder::new(42);
        let mut rec = thread(42);
        let mut timer_sig = vec![0u8; 128];
        timer_sig[0..4].copy_from_slice(&14i32.to_le_bytes());
        timer_sig[8..12].copy_from_slice(&libc::SI_TIMER.to_le_bytes());
        timer_sig[16..20].copy_from_slice(&3i32.to_le_bytes());
        let mut user_sig = vec![0u8; 128];
        user_sig[0..4].copy_from_slice(&10i32.to_le_bytes());
        rec.pending = vec![timer_sig.clone(), user_sig.clone()];
        queue_pending(&mut t, &rec, &[timer_sig], &[3]).unwrap();
        let sent: Vec<(&str, u64)> = t.calls().iter().map(|c| (c.name, c.args[2])).collect();
        assert_eq!(sent, [("rt_tgsigqueueinfo", 10)]);
    }
}
