//! Running system calls inside a stopped, traced thread: load the call into the registers,
//! point `rip` at a `syscall` instruction in the tracee, single-step over it, read `rax`, and
//! put the original registers back afterwards. Used by dump (to read state only the task
//! itself can read) and by restore (to rebuild the task from the inside).

use crate::memio::Mem;
use seamless_sys::ptrace::{
    self, Regs, WaitStatus, REG_ORIG_RAX, REG_R10, REG_R8, REG_R9, REG_RAX, REG_RDI, REG_RDX, REG_RIP, REG_RSI,
};
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
        })
    }

    /// Runs one syscall; returns the raw `rax` (negative errno on failure).
    pub fn syscall_raw(&mut self, nr: u64, args: [u64; 6]) -> Result<i64, InjectError> {
        let mut r = self.saved;
        r[REG_RAX] = nr;
        r[REG_ORIG_RAX] = u64::MAX;
        r[REG_RDI] = args[0];
        r[REG_RSI] = args[1];
        r[REG_RDX] = args[2];
        r[REG_R10] = args[3];
        r[REG_R8] = args[4];
        r[REG_R9] = args[5];
        r[REG_RIP] = self.syscall_ip;
        ptrace::set_regs(self.tid, &r)?;
        loop {
            ptrace::singlestep(self.tid)?;
            let (_, st) = ptrace::wait(self.tid)?;
            match st {
                WaitStatus::Stopped { sig: libc::SIGTRAP, event: 0 } => {
                    let after = ptrace::get_regs(self.tid)?;
                    if after[REG_RIP] == self.syscall_ip + 2 {
                        return Ok(after[REG_RAX] as i64);
                    }
                    if after[REG_RIP] != self.syscall_ip {
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
                    if now[REG_RIP] == self.syscall_ip + 2 {
                        return Ok(now[REG_RAX] as i64);
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
        let mut rip = self.saved[REG_RIP];
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
            rip = self.saved[REG_RIP];
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

/// Finds a `syscall` instruction (0f 05) inside the `[vdso]` of `pid`.
pub fn find_syscall_insn(pid: i32) -> std::io::Result<u64> {
    let maps = crate::procfs::read_maps(pid)?;
    let vdso = maps
        .iter()
        .find(|m| m.name == "[vdso]")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("pid {pid} has no [vdso]")))?;
    let mem = Mem::open(pid, false)?;
    let mut buf = vec![0u8; vdso.len() as usize];
    mem.read(vdso.start, &mut buf)?;
    buf.windows(2).position(|w| w == [0x0f, 0x05]).map(|i| vdso.start + i as u64).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("no syscall instruction in the vdso of pid {pid}"))
    })
}
