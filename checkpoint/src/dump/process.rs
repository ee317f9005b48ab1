//! Per-process state: identity, credentials and layout from `/proc`, and what only the task
//! itself can report, read by injecting syscalls into its stopped leader with a scratch
//! mapping (sigactions, interval timers, brk, prctl values).

use super::freeze::FrozenProc;
use super::DumpError;
use seamless_image::records::{Creds, ITimer, MmFields, PosixTimer, ProcState, ProcessRecord, SigAction};
use seamless_sys::chain;
use seamless_sys::ptrace;
use seamless_trace::inject::{self, BatchCall, Remote, BATCH_ENTRY};
use seamless_trace::memio::Mem;
use seamless_trace::procfs::{self, status_get};

/// Size of the scratch mapping used for injected calls: a page for the callers' structures,
/// two for what the calls of a batch write ([`OUT_OFF`]), four for a batch table and the batch
/// runner in the last page.
pub const SCRATCH: u64 = 8 * 4096;
/// Offset of the area the calls of a batch write their results to (8 KiB).
pub const OUT_OFF: u64 = 4096;
/// Bytes at [`OUT_OFF`].
pub const OUT_LEN: u64 = 2 * 4096;
/// Offset of the batch table.
const TABLE_OFF: u64 = 3 * 4096;
/// Calls in one batch table (the rest of a longer batch goes in the next).
const TABLE_CALLS: usize = (4 * 4096 / BATCH_ENTRY) as usize;
/// Offset of the batch runner.
const CODE_OFF: u64 = 7 * 4096;

/// An injected anonymous scratch page in a stopped process, unmapped by [`Scratch::release`].
///
/// While a thread runs injected calls every signal is blocked in it (so that none is dequeued
/// and lost, or handled, in the middle); the crate-private `finish` hands it back: registers and signal mask
/// as they were, single-stepping disarmed ([`Remote::finish`]). Dropping a
/// `Scratch` on an error path does the same (best effort), so a failed dump never detaches
/// from a thread whose registers point into injected code.
#[derive(Debug)]
pub struct Scratch {
    /// The thread syscalls run in.
    pub remote: Remote,
    /// Address of the scratch page.
    pub addr: u64,
    /// Memory access.
    pub mem: Mem,
    pid: i32,
    /// The signal mask of the thread taken over, put back when it is handed back.
    mask: u64,
    released: bool,
}

impl Scratch {
    /// Maps a scratch page in the process of `tid`, running syscalls in `tid`.
    pub fn new(pid: i32, tid: i32) -> Result<Self, DumpError> {
        let ip = inject::find_syscall_insn(pid).map_err(|e| DumpError::io(pid, "finding a syscall instruction", e))?;
        let (mut remote, mask) = take_over(pid, tid, ip)?;
        let map = |remote: &mut Remote, prot: i32| {
            remote.syscall(
                "mmap",
                libc::SYS_mmap,
                [0, SCRATCH, prot as u64, (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64, u64::MAX, 0],
            )
        };
        // Executable too for the batch runner; where the process may not have such memory
        // (PR_SET_MDWE), a plain one and call after call.
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let (mapped, runner) = match map(&mut remote, rw | libc::PROT_EXEC) {
            Ok(a) => (Ok(a), true),
            Err(_) => (map(&mut remote, rw), false),
        };
        let addr = match mapped {
            Ok(a) => a,
            Err(e) => {
                hand_back(pid, &mut remote, mask);
                return Err(DumpError::inject(pid, "mapping a scratch page", e));
            }
        };
        let mem = Mem::open(pid, true).and_then(|mem| {
            if runner {
                mem.write(addr + CODE_OFF, inject::BATCH_CODE)?;
                remote.batch_ip = Some(addr + CODE_OFF);
            }
            Ok(mem)
        });
        match mem {
            Ok(mem) => Ok(Self { remote, addr, mem, pid, mask, released: false }),
            Err(e) => {
                let _ = remote.syscall("munmap", libc::SYS_munmap, [addr, SCRATCH, 0, 0, 0, 0]);
                hand_back(pid, &mut remote, mask);
                Err(DumpError::io(pid, "opening /proc/PID/mem", e))
            }
        }
    }

    /// Uses another thread of the same process for the next calls.
    pub fn switch_thread(&mut self, pid: i32, tid: i32) -> Result<(), DumpError> {
        finish(pid, &mut self.remote, self.mask)?;
        let (ip, runner) = (self.remote.syscall_ip, self.remote.batch_ip);
        (self.remote, self.mask) = take_over(pid, tid, ip)?;
        self.remote.batch_ip = runner;
        Ok(())
    }

    /// Runs `calls` in order, in batches of one resume each where the runner is mapped
    /// ([`Remote::syscall_batch`]); returns their results. The first failure ends it and
    /// names the process and the call.
    pub fn batch(&mut self, pid: i32, calls: &[BatchCall]) -> Result<Vec<u64>, DumpError> {
        let mut out = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(TABLE_CALLS) {
            let r = self.remote.syscall_batch(&self.mem, self.addr + TABLE_OFF, chunk).map_err(|e| {
                DumpError::inject(pid, format!("a batch of {} calls from {} on", chunk.len(), chunk[0].0), e)
            })?;
            match r.all() {
                Ok(v) => out.extend(v),
                Err((i, e)) => return Err(DumpError::inject(pid, chunk[i].0, e)),
            }
        }
        Ok(out)
    }

    /// Runs a syscall; errors name the process.
    pub fn call(&mut self, pid: i32, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, DumpError> {
        self.remote.syscall(name, nr, args).map_err(|e| DumpError::inject(pid, name, e))
    }

    /// Reads `n` u64 words from the scratch page at `off`.
    pub fn words(&self, pid: i32, off: u64, n: usize) -> Result<Vec<u64>, DumpError> {
        let mut b = vec![0u8; n * 8];
        self.mem.read(self.addr + off, &mut b).map_err(|e| DumpError::io(pid, "reading scratch", e))?;
        Ok(b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
    }

    /// Unmaps the page and hands the thread back (registers, single-step, signals).
    pub fn release(mut self, pid: i32) -> Result<(), DumpError> {
        let addr = self.addr;
        self.released = true;
        let unmapped = self.call(pid, "munmap", libc::SYS_munmap, [addr, SCRATCH, 0, 0, 0, 0]);
        let finished = finish(pid, &mut self.remote, self.mask);
        unmapped.and(finished).map(|_| ())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (pid, addr) = (self.pid, self.addr);
        if let Err(e) = self.remote.syscall("munmap", libc::SYS_munmap, [addr, SCRATCH, 0, 0, 0, 0]) {
            log::warn!("pid {pid}: scratch page at {addr:#x} left mapped: {}", chain(&e));
        }
        hand_back(pid, &mut self.remote, self.mask);
    }
}

/// Takes over a stopped thread for injected calls: its registers are saved and every
/// signal is blocked in it until [`finish`]; returns the thread's own signal mask.
pub(crate) fn take_over(pid: i32, tid: i32, syscall_ip: u64) -> Result<(Remote, u64), DumpError> {
    let remote =
        Remote::new(tid, syscall_ip).map_err(|e| DumpError::inject(pid, format!("taking over thread {tid}"), e))?;
    let mask = ptrace::get_sigmask(tid).map_err(|e| DumpError::sys(pid, format!("sigmask of thread {tid}"), e))?;
    ptrace::set_sigmask(tid, !0).map_err(|e| DumpError::sys(pid, format!("blocking signals in thread {tid}"), e))?;
    Ok((remote, mask))
}

/// Hands a thread back: [`Remote::finish`] (registers, single-stepping disarmed), its signal
/// mask, and the few signals that cannot be blocked and arrived meanwhile queued again.
pub(crate) fn finish(pid: i32, remote: &mut Remote, mask: u64) -> Result<(), DumpError> {
    remote.finish().map_err(|e| DumpError::inject(pid, "handing the thread back", e))?;
    ptrace::set_sigmask(remote.tid, mask)
        .map_err(|e| DumpError::sys(pid, format!("signal mask of thread {}", remote.tid), e))?;
    for sig in std::mem::take(&mut remote.deferred_signals) {
        seamless_sys::proc::tgkill(pid, remote.tid, sig).map_err(|e| DumpError::sys(pid, "re-queueing a signal", e))?;
    }
    Ok(())
}

/// [`finish`] on an error path: failures are only logged.
fn hand_back(pid: i32, remote: &mut Remote, mask: u64) {
    if let Err(e) = finish(pid, remote, mask) {
        log::error!("pid {pid}: thread {} may not resume cleanly: {}", remote.tid, chain(&e));
    }
}

fn ids(v: Option<&str>) -> [u32; 4] {
    let mut out = [0u32; 4];
    for (i, x) in v.unwrap_or("").split_whitespace().take(4).enumerate() {
        out[i] = x.parse().unwrap_or(0);
    }
    out
}

fn hex(v: Option<&str>) -> u64 {
    u64::from_str_radix(v.unwrap_or("0"), 16).unwrap_or(0)
}

fn link(pid: i32, what: &str) -> Result<String, DumpError> {
    std::fs::read_link(format!("/proc/{pid}/{what}"))
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| DumpError::io(pid, format!("readlink /proc/PID/{what}"), e))
}

/// Builds the process record (injecting into live processes).
pub fn process_record(p: &FrozenProc) -> Result<ProcessRecord, DumpError> {
    let pid = p.pid;
    let stat = procfs::read_stat(pid).map_err(|e| DumpError::io(pid, "reading stat", e))?;
    let mut rec = ProcessRecord {
        pid,
        ppid: stat.field(4) as i32,
        pgid: stat.field(5) as i32,
        sid: stat.field(6) as i32,
        comm: stat.comm.clone(),
        tids: p.tids.clone(),
        umask: 0o022,
        dumpable: 1,
        exit_signal: stat.field(38) as i32,
        nice: stat.field(19) as i32,
        ..ProcessRecord::default()
    };
    if let Some(status) = p.zombie {
        rec.state = ProcState::Zombie { status };
        return Ok(rec);
    }
    let st = procfs::read_status(pid).map_err(|e| DumpError::io(pid, "reading status", e))?;
    rec.creds = Creds {
        uids: ids(status_get(&st, "Uid")),
        gids: ids(status_get(&st, "Gid")),
        groups: status_get(&st, "Groups").unwrap_or("").split_whitespace().filter_map(|g| g.parse().ok()).collect(),
        cap_eff: hex(status_get(&st, "CapEff")),
        cap_prm: hex(status_get(&st, "CapPrm")),
        cap_inh: hex(status_get(&st, "CapInh")),
        cap_bnd: hex(status_get(&st, "CapBnd")),
        cap_amb: hex(status_get(&st, "CapAmb")),
        securebits: None,
        no_new_privs: status_get(&st, "NoNewPrivs") == Some("1"),
    };
    rec.umask = u32::from_str_radix(status_get(&st, "Umask").unwrap_or("0022"), 8).unwrap_or(0o022);
    rec.cwd = link(pid, "cwd")?;
    rec.root = link(pid, "root")?;
    rec.exe = link(pid, "exe")?;
    rec.personality =
        u32::from_str_radix(std::fs::read_to_string(format!("/proc/{pid}/personality")).unwrap_or_default().trim(), 16)
            .unwrap_or(0);
    let auxv = std::fs::read(format!("/proc/{pid}/auxv")).map_err(|e| DumpError::io(pid, "reading auxv", e))?;
    rec.auxv = auxv.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
    rec.mm = MmFields {
        start_code: stat.ufield(26),
        end_code: stat.ufield(27),
        start_stack: stat.ufield(28),
        start_data: stat.ufield(45),
        end_data: stat.ufield(46),
        start_brk: stat.ufield(47),
        brk: 0,
        arg_start: stat.ufield(48),
        arg_end: stat.ufield(49),
        env_start: stat.ufield(50),
        env_end: stat.ufield(51),
    };
    rec.rlimits = rlimits(pid)?;
    for info in
        seamless_sys::ptrace::peek_siginfo(pid, true).map_err(|e| DumpError::sys(pid, "peeking shared signals", e))?
    {
        rec.shared_pending.push(info.to_vec());
    }

    let mut s = Scratch::new(pid, pid)?;
    // One batch; each call writes what it reads to a slot of its own at OUT_OFF.
    let out = s.addr + OUT_OFF;
    let sigs: Vec<u64> =
        (1..=64u64).filter(|&sig| sig != libc::SIGKILL as u64 && sig != libc::SIGSTOP as u64).collect();
    let mut calls: Vec<BatchCall> = vec![("brk", libc::SYS_brk, [0; 6])];
    let n = sigs.len() as u64;
    for (i, &sig) in (0u64..).zip(&sigs) {
        calls.push(("rt_sigaction", libc::SYS_rt_sigaction, [sig, 0, out + i * 32, 8, 0, 0]));
    }
    let timers_at = out + n * 32;
    for which in 0..3u64 {
        calls.push(("getitimer", libc::SYS_getitimer, [which, timers_at + which * 32, 0, 0, 0, 0]));
    }
    let ints = timers_at + 3 * 32;
    calls.push(("prctl(PR_GET_DUMPABLE)", libc::SYS_prctl, [libc::PR_GET_DUMPABLE as u64, 0, 0, 0, 0, 0]));
    calls.push(("prctl(PR_GET_SECUREBITS)", libc::SYS_prctl, [libc::PR_GET_SECUREBITS as u64, 0, 0, 0, 0, 0]));
    calls.push((
        "prctl(PR_GET_CHILD_SUBREAPER)",
        libc::SYS_prctl,
        [libc::PR_GET_CHILD_SUBREAPER as u64, ints, 0, 0, 0, 0],
    ));
    calls.push(("prctl(PR_GET_PDEATHSIG)", libc::SYS_prctl, [libc::PR_GET_PDEATHSIG as u64, ints + 8, 0, 0, 0, 0]));
    let res = s.batch(pid, &calls)?;
    let w = s.words(pid, OUT_OFF, (n as usize + 3) * 4 + 2)?;
    rec.mm.brk = res[0];
    for (&sig, w) in sigs.iter().zip(w.chunks_exact(4)) {
        if w[0] != 0 || w[1] != 0 || w[3] != 0 {
            rec.sigactions.push(SigAction { sig: sig as u8, handler: w[0], flags: w[1], restorer: w[2], mask: w[3] });
        }
    }
    let us = |sec: u64, usec: u64| sec * 1_000_000 + usec;
    for (which, w) in (0u8..).zip(w[n as usize * 4..].chunks_exact(4).take(3)) {
        if w[2] != 0 || w[3] != 0 {
            rec.itimers.push(ITimer { which, interval_us: us(w[0], w[1]), value_us: us(w[2], w[3]) });
        }
    }
    let k = calls.len();
    rec.dumpable = res[k - 4] as u32;
    rec.creds.securebits = Some(res[k - 3] as u32);
    let ints = &w[(n as usize + 3) * 4..];
    rec.child_subreaper = ints[0] as u32 != 0;
    rec.pdeath_signal = ints[1] as u32;
    rec.posix_timers = parse_timers(pid)?;
    // Each timer's value to a slot of its own, as many per batch as fit.
    let per = (OUT_LEN / 32) as usize;
    for group in rec.posix_timers.chunks_mut(per) {
        let calls: Vec<BatchCall> = (0u64..)
            .zip(group.iter())
            .map(|(i, t)| ("timer_gettime", libc::SYS_timer_gettime, [t.id as u64, out + i * 32, 0, 0, 0, 0]))
            .collect();
        s.batch(pid, &calls)?;
        let w = s.words(pid, OUT_OFF, group.len() * 4)?;
        for (t, w) in group.iter_mut().zip(w.chunks_exact(4)) {
            t.interval_ns = w[0] * 1_000_000_000 + w[1];
            t.next_ns = w[2] * 1_000_000_000 + w[3];
        }
    }
    s.release(pid)?;
    Ok(rec)
}

/// Reads and parses `/proc/PID/timers`.
pub(crate) fn parse_timers(pid: i32) -> Result<Vec<PosixTimer>, DumpError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/timers"))
        .map_err(|e| DumpError::io(pid, "reading /proc/PID/timers", e))?;
    Ok(parse_timers_text(&text))
}

/// Parses the text of `/proc/PID/timers`.
fn parse_timers_text(text: &str) -> Vec<PosixTimer> {
    let mut out: Vec<PosixTimer> = Vec::new();
    for l in text.lines() {
        let Some((k, v)) = l.split_once(':') else { continue };
        let v = v.trim();
        if k == "ID" {
            out.push(PosixTimer { id: v.parse().unwrap_or(0), ..Default::default() });
            continue;
        }
        let Some(t) = out.last_mut() else { continue };
        match k {
            "signal" => {
                let (sig, val) = v.split_once('/').unwrap_or((v, "0"));
                t.signo = sig.parse().unwrap_or(0);
                t.value = u64::from_str_radix(val, 16).unwrap_or(0);
            }
            // `HOW/pid.N` or `HOW/tid.N`: HOW is the notification without SIGEV_THREAD_ID
            // (signal, none, thread), `tid` says SIGEV_THREAD_ID is set and N is that thread
            // (glibc's SIGEV_THREAD timers are SIGEV_SIGNAL|SIGEV_THREAD_ID aimed at its helper
            // thread). A kernel-level SIGEV_THREAD (2) is refused by the pre-check.
            "notify" => {
                let (how, who) = v.split_once('/').unwrap_or((v, ""));
                let thread_id = who.starts_with("tid");
                t.notify = match (how, thread_id) {
                    ("none", _) => libc::SIGEV_NONE,
                    (_, true) => libc::SIGEV_THREAD_ID,
                    ("thread", false) => libc::SIGEV_THREAD,
                    _ => libc::SIGEV_SIGNAL,
                };
                t.tid = if thread_id { who.rsplit('.').next().and_then(|x| x.parse().ok()).unwrap_or(0) } else { 0 };
            }
            "ClockID" => t.clock = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    out
}

/// The 16 resource limits (soft, hard), in `RLIMIT_*` order. `prlimit` on another process
/// needs matching ids or CAP_SYS_RESOURCE (which containers often drop); `/proc/PID/limits`
/// needs neither and says the same.
fn rlimits(pid: i32) -> Result<Vec<(u64, u64)>, DumpError> {
    match (0..16u32).map(|r| seamless_sys::proc::getrlimit_of(pid, r)).collect::<Result<Vec<_>, _>>() {
        Ok(v) => Ok(v),
        Err(e) if e.errno() == Some(libc::EPERM) => {
            let text = std::fs::read_to_string(format!("/proc/{pid}/limits"))
                .map_err(|e| DumpError::io(pid, "reading /proc/PID/limits", e))?;
            parse_limits(&text)
                .ok_or_else(|| DumpError::BadTarget { pid, reason: "cannot parse /proc/PID/limits".into() })
        }
        Err(e) => Err(DumpError::sys(pid, "prlimit", e)),
    }
}

/// Parses `/proc/PID/limits`: a header, then one line per limit in `RLIMIT_*` order, the name
/// in a 26-column field, then soft and hard values (`unlimited` or a number).
fn parse_limits(text: &str) -> Option<Vec<(u64, u64)>> {
    let value = |w: &str| if w == "unlimited" { Some(u64::MAX) } else { w.parse().ok() };
    let v: Option<Vec<(u64, u64)>> = text
        .lines()
        .skip(1)
        .map(|l| {
            let mut w = l.get(26..)?.split_whitespace();
            Some((value(w.next()?)?, value(w.next()?)?))
        })
        .collect();
    v.filter(|v| v.len() == 16)
}

#[cfg(test)]
mod limits_tests {
    #[test]
    fn parses_proc_limits() {
        let text = std::fs::read_to_string("/proc/self/limits").unwrap();
        let v = super::parse_limits(&text).expect("16 limits");
        let own = seamless_sys::proc::getrlimit_of(seamless_sys::proc::own_pid(), libc::RLIMIT_NOFILE).unwrap();
        assert_eq!(v[libc::RLIMIT_NOFILE as usize], own);
        assert!(super::parse_limits("header only\n").is_none());
    }
}

#[cfg(test)]
mod timers_tests {
    /// The three notification forms of `/proc/PID/timers` (`fs/proc/base.c`, `show_timer`).
    #[test]
    fn parses_notify_forms() {
        let text = "ID: 2\nsignal: 32/0000557b7d9a9520\nnotify: signal/tid.16624\nClockID: 1\n\
                    ID: 1\nsignal: 10/0000000000001234\nnotify: signal/pid.16622\nClockID: 0\n\
                    ID: 0\nsignal: 0/0000000000000000\nnotify: none/pid.16622\nClockID: 1\n\
                    ID: 3\nsignal: 12/0000000000000000\nnotify: thread/pid.16622\nClockID: 1\n";
        let t = super::parse_timers_text(text);
        assert_eq!(t.len(), 4);
        assert_eq!((t[0].id, t[0].signo, t[0].notify, t[0].tid, t[0].clock), (2, 32, libc::SIGEV_THREAD_ID, 16624, 1));
        assert_eq!(t[0].value, 0x557b7d9a9520);
        assert_eq!((t[1].id, t[1].signo, t[1].notify, t[1].tid, t[1].value), (1, 10, libc::SIGEV_SIGNAL, 0, 0x1234));
        assert_eq!((t[2].notify, t[2].tid), (libc::SIGEV_NONE, 0));
        assert_eq!((t[3].notify, t[3].tid), (libc::SIGEV_THREAD, 0));
    }
}
