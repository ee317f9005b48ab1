//! Running system calls inside a stopped, traced thread: load the call into the registers,
//! point the instruction pointer at a system-call instruction in the tracee ([`seamless_sys::arch`]), single-step over it, read the result register, and
//! put the original registers back afterwards. Used by dump (to read state only the task
//! itself can read) and by restore (to rebuild the task from the inside).

use crate::memio::Mem;
use seamless_sys::arch;
use seamless_sys::ptrace::{self, Regs, WaitStatus};
use seamless_sys::SysError;

/// Errors of an injected call.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// A ptrace or wait call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The thread did not come back to the expected stop.
    #[error("tid {tid}: unexpected stop while running injected syscall {nr}: {status:?}")]
    Unexpected {
        /// Thread.
        tid: i32,
        /// Syscall number.
        nr: u64,
        /// What waitpid reported.
        status: WaitStatus,
    },
    /// The table of a batch of calls could not be written or read back.
    #[error("tid {tid}: batch table of {calls} calls at {addr:#x}")]
    Table {
        /// Thread.
        tid: i32,
        /// Address of the table in the tracee.
        addr: u64,
        /// Calls in the batch.
        calls: usize,
        /// Failure of the memory access.
        #[source]
        source: std::io::Error,
    },
    /// The injected syscall returned an error.
    #[error("tid {tid}: injected syscall {name} failed")]
    Failed {
        /// Thread.
        tid: i32,
        /// Name of the syscall.
        name: &'static str,
        /// The errno.
        #[source]
        err: std::io::Error,
    },
}

/// A stopped thread we can run syscalls in.
#[derive(Debug)]
pub struct Remote {
    /// Thread id.
    pub tid: i32,
    /// Registers at the time the thread was taken over; put back by [`Remote::restore_regs`].
    pub saved: Regs,
    /// Address of a `syscall` instruction mapped executable in the tracee.
    pub syscall_ip: u64,
    /// Signals that arrived while injecting (to be delivered later).
    pub deferred_signals: Vec<i32>,
    /// Threads created by injected clones (reported by PTRACE_EVENT_CLONE).
    pub new_threads: Vec<i32>,
    /// Address of [`BATCH_CODE`] mapped executable in the tracee, when it is: then
    /// [`Remote::syscall_batch`] runs a whole batch in one resume, else call by call.
    pub batch_ip: Option<u64>,
}

/// The batch runner of this architecture ([`arch::BATCH_CODE`]).
pub const BATCH_CODE: &[u8] = arch::BATCH_CODE;

/// Bytes of one entry of a batch table: number, six arguments, result.
pub const BATCH_ENTRY: u64 = arch::BATCH_ENTRY;

/// One call of a batch: its name (for errors), number and arguments.
pub type BatchCall = (&'static str, i64, [u64; 6]);

/// The outcome of [`Remote::syscall_batch`]: the results of the calls that succeeded, in
/// order, and the first failure (the call's index and error), if one failed; the calls after a
/// failure are not run.
#[derive(Debug)]
pub struct BatchResult {
    /// Results of the calls that ran and succeeded.
    pub done: Vec<u64>,
    /// The call that failed: its index in the batch and the error.
    pub failed: Option<(usize, InjectError)>,
}

impl BatchResult {
    /// The results of every call, or the first failure (its index and error).
    pub fn all(self) -> Result<Vec<u64>, (usize, InjectError)> {
        match self.failed {
            None => Ok(self.done),
            Some(f) => Err(f),
        }
    }
}

/// The table bytes of `calls`, results zeroed.
pub fn batch_table(calls: &[BatchCall]) -> Vec<u8> {
    let mut t = Vec::with_capacity(calls.len() * BATCH_ENTRY as usize);
    for (_, nr, args) in calls {
        t.extend_from_slice(&nr.to_le_bytes());
        for a in args {
            t.extend_from_slice(&a.to_le_bytes());
        }
        t.extend_from_slice(&0u64.to_le_bytes());
    }
    t
}

fn failed_call(tid: i32, name: &'static str, raw: i64) -> Option<InjectError> {
    (-4095..0).contains(&raw).then(|| InjectError::Failed {
        tid,
        name,
        err: std::io::Error::from_raw_os_error(-raw as i32),
    })
}

impl Remote {
    /// Takes over a thread that is in a ptrace stop.
    pub fn new(tid: i32, syscall_ip: u64) -> Result<Self, InjectError> {
        Ok(Self {
            tid,
            saved: ptrace::get_regs(tid)?,
            syscall_ip,
            deferred_signals: Vec::new(),
            new_threads: Vec::new(),
            batch_ip: None,
        })
    }

    /// Runs `calls` in order, stopping at the first that fails: in one resume through the
    /// batch runner ([`BATCH_CODE`], at [`Remote::batch_ip`]) with the table written at
    /// `table` (`calls.len() * BATCH_ENTRY` bytes of writable tracee memory, through `mem`),
    /// or, without a runner, one injected call after the other. Signals that arrive meanwhile
    /// are kept for later as for single calls. A call that clones (`clone3`) belongs in a
    /// single call, whose trap stops are handled one by one.
    pub fn syscall_batch(&mut self, mem: &Mem, table: u64, calls: &[BatchCall]) -> Result<BatchResult, InjectError> {
        let mut out = BatchResult { done: Vec::with_capacity(calls.len()), failed: None };
        let Some(code) = self.batch_ip.filter(|_| calls.len() > 1) else {
            for (i, &(name, nr, args)) in calls.iter().enumerate() {
                let raw = self.syscall_raw(nr as u64, args)?;
                if let Some(e) = failed_call(self.tid, name, raw) {
                    out.failed = Some((i, e));
                    break;
                }
                out.done.push(raw as u64);
            }
            return Ok(out);
        };
        let tid = self.tid;
        let table_err = |source| InjectError::Table { tid, addr: table, calls: calls.len(), source };
        let bytes = batch_table(calls);
        mem.write(table, &bytes).map_err(table_err)?;
        let end = table + bytes.len() as u64;
        let mut r = self.saved;
        arch::load_batch(&mut r, code, table, end);
        ptrace::set_regs(tid, &r)?;
        ptrace::cont(tid, 0)?;
        let stop = arch::batch_stop_ip(code);
        let after = loop {
            let (_, st) = ptrace::wait(tid)?;
            match st {
                WaitStatus::Stopped { sig: libc::SIGTRAP, event: 0 } => {
                    let now = ptrace::get_regs(tid)?;
                    if arch::ip(&now) == stop {
                        break now;
                    }
                    return Err(InjectError::Unexpected { tid, nr: u64::MAX, status: st });
                }
                WaitStatus::Stopped { event: ptrace::EVENT_CLONE, .. } => {
                    self.new_threads.push(ptrace::event_msg(tid)? as i32);
                    ptrace::cont(tid, 0)?;
                }
                WaitStatus::Stopped { event: ptrace::EVENT_STOP, .. } => ptrace::cont(tid, 0)?,
                // A fault in the runner: never resumed into it again.
                WaitStatus::Stopped { sig: libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE, event: 0 } => {
                    return Err(InjectError::Unexpected { tid, nr: u64::MAX, status: st })
                }
                WaitStatus::Stopped { sig, event: 0 } => {
                    // A real signal: kept for later, suppressed now (an interrupted call restarts).
                    self.deferred_signals.push(sig);
                    ptrace::cont(tid, 0)?;
                }
                other => return Err(InjectError::Unexpected { tid, nr: u64::MAX, status: other }),
            }
        };
        let cursor = arch::batch_cursor(&after);
        let ran = cursor.saturating_sub(table) / BATCH_ENTRY;
        if cursor > end || cursor < table || ran == 0 {
            return Err(InjectError::Unexpected {
                tid,
                nr: u64::MAX,
                status: WaitStatus::Stopped { sig: libc::SIGTRAP, event: 0 },
            });
        }
        let mut back = vec![0u8; bytes.len()];
        mem.read(table, &mut back[..(ran * BATCH_ENTRY) as usize]).map_err(table_err)?;
        for (i, ((name, _, _), entry)) in
            calls.iter().zip(back.chunks_exact(BATCH_ENTRY as usize)).enumerate().take(ran as usize)
        {
            let raw = i64::from_le_bytes(entry[56..64].try_into().unwrap_or([0; 8]));
            if let Some(e) = failed_call(tid, name, raw) {
                out.failed = Some((i, e));
                break;
            }
            out.done.push(raw as u64);
        }
        Ok(out)
    }

    /// Runs one syscall; returns the raw result register (negative errno on failure).
    pub fn syscall_raw(&mut self, nr: u64, args: [u64; 6]) -> Result<i64, InjectError> {
        let mut r = self.saved;
        arch::load_syscall(&mut r, self.syscall_ip, nr, args);
        ptrace::set_regs(self.tid, &r)?;
        let after_insn = self.syscall_ip + arch::SYSCALL_INSN.len() as u64;
        loop {
            ptrace::singlestep(self.tid)?;
            let (_, st) = ptrace::wait(self.tid)?;
            match st {
                WaitStatus::Stopped { sig: libc::SIGTRAP, event: 0 } => {
                    let after = ptrace::get_regs(self.tid)?;
                    if arch::ip(&after) == after_insn {
                        return Ok(arch::ret(&after));
                    }
                    if arch::ip(&after) != self.syscall_ip {
                        return Err(InjectError::Unexpected { tid: self.tid, nr, status: st });
                    }
                }
                WaitStatus::Stopped { event: ptrace::EVENT_CLONE, .. } => {
                    let child = ptrace::event_msg(self.tid)? as i32;
                    self.new_threads.push(child);
                }
                WaitStatus::Stopped { event: ptrace::EVENT_STOP, .. } => {}
                WaitStatus::Stopped { sig, event: 0 } => {
                    // A real signal arrived before the instruction ran: keep it for later.
                    self.deferred_signals.push(sig);
                    let now = ptrace::get_regs(self.tid)?;
                    if arch::ip(&now) == after_insn {
                        return Ok(arch::ret(&now));
                    }
                }
                other => return Err(InjectError::Unexpected { tid: self.tid, nr, status: other }),
            }
        }
    }

    /// Runs one syscall and turns a negative return into an error.
    pub fn syscall(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, InjectError> {
        let r = self.syscall_raw(nr as u64, args)?;
        if (-4095..0).contains(&r) {
            return Err(InjectError::Failed { tid: self.tid, name, err: std::io::Error::from_raw_os_error(-r as i32) });
        }
        Ok(r as u64)
    }

    /// Puts the registers saved at take-over back.
    pub fn restore_regs(&self) -> Result<(), InjectError> {
        ptrace::set_regs(self.tid, &self.saved)?;
        Ok(())
    }

    /// Single-steps the thread's own code until its instruction pointer is outside `range`
    /// (at most `max_steps` instructions); the registers reached become the saved ones.
    /// Returns whether it got out. Call [`Remote::finish`] afterwards.
    pub fn step_out_of(&mut self, range: std::ops::Range<u64>, max_steps: usize) -> Result<bool, InjectError> {
        let mut rip = arch::ip(&self.saved);
        let mut steps = 0;
        while range.contains(&rip) && steps < max_steps {
            ptrace::singlestep(self.tid)?;
            let (_, st) = ptrace::wait(self.tid)?;
            match st {
                WaitStatus::Stopped { sig: libc::SIGTRAP, event: 0 }
                | WaitStatus::Stopped { event: ptrace::EVENT_STOP, .. } => {}
                WaitStatus::Stopped { event: 0, sig } => self.deferred_signals.push(sig),
                WaitStatus::Stopped { event: ptrace::EVENT_CLONE, .. } => {
                    self.new_threads.push(ptrace::event_msg(self.tid)? as i32)
                }
                WaitStatus::Stopped { .. } => {}
                other => return Err(InjectError::Unexpected { tid: self.tid, nr: u64::MAX, status: other }),
            }
            self.saved = ptrace::get_regs(self.tid)?;
            rip = arch::ip(&self.saved);
            steps += 1;
        }
        Ok(!range.contains(&rip))
    }

    /// Puts the saved registers back and leaves the thread in a plain `PTRACE_EVENT_STOP`
    /// with single-stepping disarmed, so that it is safe to lose the tracer at any moment
    /// from here on: the kernel keeps the trap flag (and the syscall-exit trap) of
    /// `PTRACE_SINGLESTEP` armed until the next resume request, and a tracer that dies
    /// without one (SIGKILL, crash) would leave the thread to die of SIGTRAP. A resume from
    /// the single-step stop with a pending `PTRACE_INTERRUPT` disarms it and stops again
    /// before any user code runs.
    pub fn finish(&mut self) -> Result<(), InjectError> {
        ptrace::set_regs(self.tid, &self.saved)?;
        ptrace::interrupt(self.tid)?;
        ptrace::cont(self.tid, 0)?;
        loop {
            let (_, st) = ptrace::wait(self.tid)?;
            match st {
                WaitStatus::Stopped { event: ptrace::EVENT_STOP, .. } => return Ok(()),
                WaitStatus::Stopped { sig, event: 0 } => {
                    // A real signal: keep it for later (re-queued by the caller) and go on.
                    self.deferred_signals.push(sig);
                    ptrace::cont(self.tid, 0)?;
                }
                WaitStatus::Stopped { .. } => ptrace::cont(self.tid, 0)?,
                other => return Err(InjectError::Unexpected { tid: self.tid, nr: u64::MAX, status: other }),
            }
        }
    }
}

/// Finds a system-call instruction ([`arch::SYSCALL_INSN`]) inside the `[vdso]` of `pid`.
pub fn find_syscall_insn(pid: i32) -> std::io::Result<u64> {
    find_syscall_insn_in(pid, &crate::procfs::read_maps(pid)?)
}

/// [`find_syscall_insn`] with the areas of `pid` already read from `/proc/PID/maps`.
pub fn find_syscall_insn_in(pid: i32, maps: &[crate::procfs::MapLine]) -> std::io::Result<u64> {
    let vdso = maps
        .iter()
        .find(|m| m.name == "[vdso]")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("pid {pid} has no [vdso]")))?;
    let mem = Mem::open(pid, false)?;
    let mut buf = vec![0u8; vdso.len() as usize];
    mem.read(vdso.start, &mut buf)?;
    arch::find_syscall_insn(&buf).map(|i| vdso.start + i as u64).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("no syscall instruction in the vdso of pid {pid}"))
    })
}
