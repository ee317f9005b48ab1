//! The operations restore performs on a process it rebuilds, as a trait: injected system
//! calls, writes and reads of its memory, and the registers of its stopped threads.
//!
//! [`crate::child::Child`] (the thread-group leader) and [`InThread`] (another thread of the
//! same process) implement it over ptrace; the logic that decides *which* calls to make, in
//! which order and with which structures ([`crate::threads`], [`crate::epoll`],
//! [`crate::files::install`], [`crate::mm`], [`crate::process`]) is written against the trait,
//! so unit tests drive it with the recording fake of `fake` (test builds only) without root or
//! a live tracee.

use crate::RestoreError;
use seamless_sys::ptrace::{self, Regs};
use seamless_sys::SysError;
use seamless_trace::inject::{BatchCall, BatchResult, InjectError, Remote, BATCH_ENTRY};
use seamless_trace::memio::Mem;
use seamless_trace::scratch::Bump;

/// A stopped, traced process (one of its threads runs the injected calls).
pub trait Tracee {
    /// The process being rebuilt (its thread-group id).
    fn pid(&self) -> i32;
    /// Runs system call `nr` in the thread; a negative return is [`InjectError::Failed`].
    fn syscall(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, InjectError>;
    /// Writes `bytes` at `addr` of the process's memory.
    fn write_mem(&mut self, addr: u64, bytes: &[u8]) -> std::io::Result<()>;
    /// Reads `buf.len()` bytes at `addr` of the process's memory.
    fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// The scratch area mapped in the process: start and length.
    fn scratch_area(&self) -> (u64, u64);
    /// Loads the user registers of stopped thread `tid` (ptrace unless overridden).
    fn set_regs(&mut self, tid: i32, regs: &Regs) -> Result<(), SysError> {
        ptrace::set_regs(tid, regs)
    }
    /// Loads the XSAVE area of stopped thread `tid`.
    fn set_fpstate(&mut self, tid: i32, state: &[u8]) -> Result<(), SysError> {
        seamless_sys::arch::write_fpstate(tid, state)
    }
    /// Loads the x87/SSE state (the legacy 512-byte FXSAVE area) of stopped thread `tid`.
    fn set_fpstate_legacy(&mut self, tid: i32, state: &[u8]) -> Result<(), SysError> {
        seamless_sys::arch::write_fpstate_legacy(tid, state)
    }
    /// Sets the signal mask of stopped thread `tid`.
    fn set_sigmask(&mut self, tid: i32, mask: u64) -> Result<(), SysError> {
        ptrace::set_sigmask(tid, mask)
    }

    /// Runs `calls` in order up to the first that fails, with the table of the batch at
    /// `table` (`calls.len() * BATCH_ENTRY` bytes of scratch); one call after the other
    /// unless overridden (a process under ptrace runs them in one resume:
    /// [`Remote::syscall_batch`]).
    fn syscall_batch(&mut self, table: u64, calls: &[BatchCall]) -> Result<BatchResult, InjectError> {
        let _ = table;
        let mut out = BatchResult { done: Vec::with_capacity(calls.len()), failed: None };
        for (i, &(name, nr, args)) in calls.iter().enumerate() {
            match self.syscall(name, nr, args) {
                Ok(v) => out.done.push(v),
                Err(e @ InjectError::Failed { .. }) => {
                    out.failed = Some((i, e));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Runs the calls of `batch` in order (see [`Tracee::syscall_batch`]), its table taken
    /// from `s`; returns their results. A failure names the process and the step of the call
    /// that failed, as [`Tracee::call_for`] does; the calls after it are not run.
    fn run(&mut self, s: &mut Scratch, batch: Batch) -> Result<Vec<u64>, RestoreError> {
        let pid = self.pid();
        if batch.steps.is_empty() {
            return Ok(Vec::new());
        }
        // One table, reused by each part of a long batch.
        let per = batch.steps.len().min(BATCH_CALLS);
        let table = s.reserve(pid, per * seamless_image::usize_of(BATCH_ENTRY))?;
        let mut out = Vec::with_capacity(batch.steps.len());
        for (k, part) in batch.steps.chunks(BATCH_CALLS).enumerate() {
            let calls: Vec<BatchCall> = part.iter().map(|st| (st.name, st.nr, st.args)).collect();
            let what = |i: usize| part[i].what.clone().unwrap_or_else(|| part[i].name.to_string());
            match self.syscall_batch(table, &calls) {
                Ok(r) => out.extend(r.all().map_err(|(i, e)| RestoreError::inject(pid, what(i), e))?),
                Err(e) => {
                    let at = k * BATCH_CALLS;
                    let what = format!("calls {at} to {} of a batch, from {} on", at + calls.len(), calls[0].0);
                    return Err(RestoreError::inject(pid, what, e));
                }
            }
        }
        Ok(out)
    }

    /// Runs a system call; a failure names the process and the call.
    fn call(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, RestoreError> {
        let pid = self.pid();
        self.syscall(name, nr, args).map_err(|e| RestoreError::inject(pid, name, e))
    }

    /// Runs a system call for step `what` (which names the resource: fd, address, signal);
    /// a failure names the process and the step.
    fn call_for(&mut self, what: String, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, RestoreError> {
        let pid = self.pid();
        self.syscall(name, nr, args).map_err(|e| RestoreError::inject(pid, what, e))
    }

    /// A fresh allocator over the whole scratch area: the pieces of one step. Whatever an
    /// earlier `Scratch` put there may be overwritten from now on.
    fn scratch(&self) -> Scratch {
        let (start, len) = self.scratch_area();
        Scratch { bump: Bump::new(start, len) }
    }

    /// Opens `path` inside the process (`openat(2)` relative to its working directory, which
    /// callers never rely on: recorded paths are absolute); returns its descriptor.
    fn open(&mut self, path: &str, flags: i32, mode: u32) -> Result<u64, RestoreError> {
        let mut s = self.scratch();
        let a = s.put_str(self, path)?;
        let pid = self.pid();
        self.syscall(
            "openat",
            libc::SYS_openat,
            [crate::abi::int(libc::AT_FDCWD), a, crate::abi::int(flags), u64::from(mode), 0, 0],
        )
        .map_err(|e| RestoreError::inject(pid, format!("open {path}"), e))
    }

    /// Gives the process a duplicate of the restorer's descriptor `ours` (`pidfd_open(2)` on
    /// the restorer, `pidfd_getfd(2)`); returns its number there.
    fn fd_from_restorer(&mut self, ours: i32) -> Result<u64, RestoreError> {
        let me = u64::from(std::process::id());
        let pfd = self.call("pidfd_open", libc::SYS_pidfd_open, [me, 0, 0, 0, 0, 0])?;
        let r = self.call("pidfd_getfd", libc::SYS_pidfd_getfd, [pfd, crate::abi::int(ours), 0, 0, 0, 0]);
        self.call("close", libc::SYS_close, [pfd, 0, 0, 0, 0, 0])?;
        r
    }
}

/// Calls per batch table: a longer [`Batch`] runs in parts of this many (the table of one
/// part is 8 KiB of scratch).
pub const BATCH_CALLS: usize = 128;

/// System calls gathered to run together ([`Tracee::run`]), each with the step it serves.
#[derive(Debug, Default)]
pub struct Batch {
    steps: Vec<Step>,
}

#[derive(Debug)]
struct Step {
    what: Option<String>,
    name: &'static str,
    nr: i64,
    args: [u64; 6],
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a call; a failure names the call (as [`Tracee::call`]).
    pub fn call(&mut self, name: &'static str, nr: i64, args: [u64; 6]) {
        self.steps.push(Step { what: None, name, nr, args });
    }
    /// Adds a call for step `what`; a failure names the step (as [`Tracee::call_for`]).
    pub fn call_for(&mut self, what: String, name: &'static str, nr: i64, args: [u64; 6]) {
        self.steps.push(Step { what: Some(what), name, nr, args });
    }
    /// Calls gathered.
    pub fn len(&self) -> usize {
        self.steps.len()
    }
    /// Whether no call was gathered.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The pieces of scratch memory of one step, handed out by a bump allocator and written into
/// the tracee.
#[derive(Debug)]
pub struct Scratch {
    bump: Bump,
}

impl Scratch {
    /// Writes `bytes` into a fresh piece; returns its address.
    pub fn put<T: Tracee + ?Sized>(&mut self, t: &mut T, bytes: &[u8]) -> Result<u64, RestoreError> {
        let a = self.reserve(t.pid(), bytes.len())?;
        t.write_mem(a, bytes).map_err(|e| RestoreError::io(t.pid(), format!("writing scratch memory at {a:#x}"), e))?;
        Ok(a)
    }

    /// Writes 64-bit words into a fresh piece; returns its address.
    pub fn put_words<T: Tracee + ?Sized>(&mut self, t: &mut T, words: &[u64]) -> Result<u64, RestoreError> {
        self.put(t, &crate::abi::word_bytes(words))
    }

    /// Writes `s` NUL-terminated into a fresh piece; returns its address.
    pub fn put_str<T: Tracee + ?Sized>(&mut self, t: &mut T, s: &str) -> Result<u64, RestoreError> {
        let mut b = Vec::with_capacity(s.len() + 1);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        self.put(t, &b)
    }

    /// A fresh piece of `len` bytes left as it is (for what the kernel writes).
    pub fn reserve(&mut self, pid: i32, len: usize) -> Result<u64, RestoreError> {
        let left = self.bump.left();
        self.bump.alloc(len as u64).ok_or_else(|| RestoreError::Failed {
            pid,
            what: format!("scratch memory full: {len} bytes asked, {left} left (the trampoline mapping is too small)"),
        })
    }
}

/// Another thread of a process whose leader is a [`crate::child::Child`]: its injected calls
/// run in that thread, memory and scratch are the process's.
#[derive(Debug)]
pub struct InThread<'a> {
    pub(crate) pid: i32,
    pub(crate) remote: &'a mut Remote,
    pub(crate) mem: &'a Mem,
    pub(crate) area: (u64, u64),
}

/// A process under ptrace as its parts: the thread its calls run in, the process's memory
/// and its scratch area. Every such process is a [`Tracee`].
pub trait Ptraced {
    /// The process.
    fn traced_pid(&self) -> i32;
    /// The thread the injected calls run in.
    fn remote(&mut self) -> &mut Remote;
    /// The process's memory.
    fn mem(&self) -> &Mem;
    /// Its scratch area: start and length.
    fn area(&self) -> (u64, u64);
    /// The thread and the memory at once (for a batch, which writes its table).
    fn parts(&mut self) -> (&mut Remote, &Mem);
}

impl<P: Ptraced> Tracee for P {
    fn pid(&self) -> i32 {
        self.traced_pid()
    }
    fn syscall(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, InjectError> {
        self.remote().syscall(name, nr, args)
    }
    fn write_mem(&mut self, addr: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.mem().write(addr, bytes)
    }
    fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.mem().read(addr, buf)
    }
    fn scratch_area(&self) -> (u64, u64) {
        self.area()
    }
    fn syscall_batch(&mut self, table: u64, calls: &[BatchCall]) -> Result<BatchResult, InjectError> {
        let (remote, mem) = self.parts();
        remote.syscall_batch(mem, table, calls)
    }
}

impl Ptraced for InThread<'_> {
    fn traced_pid(&self) -> i32 {
        self.pid
    }
    fn remote(&mut self) -> &mut Remote {
        self.remote
    }
    fn mem(&self) -> &Mem {
        self.mem
    }
    fn area(&self) -> (u64, u64) {
        self.area
    }
    fn parts(&mut self) -> (&mut Remote, &Mem) {
        (self.remote, self.mem)
    }
}

/// A recording fake of [`Tracee`] for unit tests: every call, memory write and register load
/// is logged in order, memory is a sparse byte map, and system calls answer like a kernel
/// would for the restorer's purposes (see [`fake::Recorder::syscall`](Tracee::syscall)).
#[cfg(test)]
pub mod fake {
    use super::Tracee;
    use seamless_sys::ptrace::Regs;
    use seamless_sys::SysError;
    use seamless_trace::inject::InjectError;
    use std::collections::BTreeMap;

    /// One injected system call, with the memory as it was when it ran.
    #[derive(Debug, Clone)]
    pub struct Call {
        /// Its name as the restorer gave it.
        pub name: &'static str,
        /// Number.
        pub nr: i64,
        /// Arguments.
        pub args: [u64; 6],
        mem: BTreeMap<u64, u8>,
    }

    impl Call {
        /// `len` bytes of the tracee's memory at `addr` when the call ran (unwritten bytes 0).
        pub fn mem(&self, addr: u64, len: usize) -> Vec<u8> {
            (addr..addr + len as u64).map(|a| self.mem.get(&a).copied().unwrap_or(0)).collect()
        }
        /// The `n` 64-bit words at `addr` when the call ran.
        pub fn words(&self, addr: u64, n: usize) -> Vec<u64> {
            self.mem(addr, n * 8).chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
        }
    }

    /// What happened to the fake tracee, in order.
    #[derive(Debug, Clone)]
    pub enum Event {
        /// A system call.
        Call(Call),
        /// Registers loaded into a thread.
        Regs(i32, Regs),
        /// XSAVE area loaded.
        Xstate(i32, usize),
        /// FXSAVE area loaded.
        Fpregs(i32, usize),
        /// Signal mask set.
        Sigmask(i32, u64),
    }

    /// The fake.
    #[derive(Debug)]
    pub struct Recorder {
        /// The process it stands for.
        pub pid: i32,
        /// Everything done to it.
        pub events: Vec<Event>,
        /// Calls (by name) that fail, with their errno.
        pub fail: Vec<(&'static str, i32)>,
        /// Whether loading the XSAVE area fails (as on a CPU without the saved features).
        pub refuse_xstate: bool,
        mem: BTreeMap<u64, u8>,
        next_fd: u64,
    }

    /// Where the fake's scratch area lies.
    pub const SCRATCH: (u64, u64) = (0x7f00_0000_1000, 15 * 4096);

    impl Recorder {
        /// A fake of process `pid`.
        pub fn new(pid: i32) -> Self {
            Self { pid, events: Vec::new(), fail: Vec::new(), refuse_xstate: false, mem: BTreeMap::new(), next_fd: 100 }
        }
        /// The system calls made, in order.
        pub fn calls(&self) -> Vec<&Call> {
            self.events.iter().filter_map(|e| if let Event::Call(c) = e { Some(c) } else { None }).collect()
        }
        /// The names of the system calls made, in order.
        pub fn names(&self) -> Vec<&'static str> {
            self.calls().iter().map(|c| c.name).collect()
        }
        /// The calls named `name`.
        pub fn named(&self, name: &str) -> Vec<&Call> {
            self.calls().into_iter().filter(|c| c.name == name).collect()
        }
        fn fd(&mut self) -> u64 {
            self.next_fd += 1;
            self.next_fd
        }
        fn read_u64(&self, addr: u64) -> u64 {
            let b: Vec<u8> = (addr..addr + 8).map(|a| self.mem.get(&a).copied().unwrap_or(0)).collect();
            u64::from_le_bytes(b.try_into().unwrap())
        }
    }

    impl Tracee for Recorder {
        fn pid(&self) -> i32 {
            self.pid
        }
        /// Answers: `mmap` and `shmat` return their address hint, calls that make a descriptor a new
        /// number from 101 on, `clone3` the first wanted tid of its `set_tid`, every other
        /// call 0; a call listed in `fail` fails with its errno.
        fn syscall(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, InjectError> {
            self.events.push(Event::Call(Call { name, nr, args, mem: self.mem.clone() }));
            if let Some(&(_, errno)) = self.fail.iter().find(|(n, _)| *n == name) {
                let err = std::io::Error::from_raw_os_error(errno);
                return Err(InjectError::Failed { tid: self.pid, name, err });
            }
            Ok(match nr {
                libc::SYS_mmap => args[0],
                libc::SYS_shmat => args[1],
                libc::SYS_openat | libc::SYS_pidfd_open | libc::SYS_pidfd_getfd => self.fd(),
                libc::SYS_fcntl if args[1] == libc::F_DUPFD_CLOEXEC as u64 => args[2].max(self.fd()),
                libc::SYS_clone3 => self.read_u64(self.read_u64(args[0] + 64)) & 0xffff_ffff,
                _ => 0,
            })
        }
        fn write_mem(&mut self, addr: u64, bytes: &[u8]) -> std::io::Result<()> {
            for (a, b) in (addr..).zip(bytes) {
                self.mem.insert(a, *b);
            }
            Ok(())
        }
        fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
            for (a, b) in (addr..).zip(buf.iter_mut()) {
                *b = self.mem.get(&a).copied().unwrap_or(0);
            }
            Ok(())
        }
        fn scratch_area(&self) -> (u64, u64) {
            SCRATCH
        }
        fn set_regs(&mut self, tid: i32, regs: &Regs) -> Result<(), SysError> {
            self.events.push(Event::Regs(tid, *regs));
            Ok(())
        }
        fn set_fpstate(&mut self, tid: i32, xstate: &[u8]) -> Result<(), SysError> {
            if self.refuse_xstate {
                let err = std::io::Error::from_raw_os_error(libc::EINVAL);
                return Err(SysError::new("ptrace(PTRACE_SETREGSET, NT_X86_XSTATE)", format!("tid {tid}"), err));
            }
            self.events.push(Event::Xstate(tid, xstate.len()));
            Ok(())
        }
        fn set_fpstate_legacy(&mut self, tid: i32, fxsave: &[u8]) -> Result<(), SysError> {
            self.events.push(Event::Fpregs(tid, fxsave.len()));
            Ok(())
        }
        fn set_sigmask(&mut self, tid: i32, mask: u64) -> Result<(), SysError> {
            self.events.push(Event::Sigmask(tid, mask));
            Ok(())
        }
    }
}
