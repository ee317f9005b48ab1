//! A process under reconstruction: seized, with a trampoline (`syscall; int3`) and scratch
//! pages mapped at an address free in both the current and the target layout.

use crate::inject::{self, Remote};
use crate::memio::Mem;
use crate::procfs;
use crate::RestoreError;
use seamless_image::records::Vma;
use seamless_sys::ptrace::{self, WaitStatus};

/// Trampoline + scratch size (bytes): page 0 holds the code, the rest is scratch.
pub const TRAMP_LEN: u64 = 16 * 4096;
/// Offset of the scratch area from the trampoline start.
pub const SCRATCH_OFF: u64 = 4096;

/// A seized process being rebuilt.
#[derive(Debug)]
pub struct Child {
    /// Its pid.
    pub pid: i32,
    /// Syscalls run in the thread-group leader.
    pub remote: Remote,
    /// Trampoline start (0 until created).
    pub tramp: u64,
    /// Memory access.
    pub mem: Mem,
}

/// Seizes a helper waiting in `pause()` and stops it.
pub fn seize(tid: i32) -> Result<(), RestoreError> {
    let e = |what: &str, err| RestoreError::sys(tid, what, err);
    ptrace::seize(tid, ptrace::O_TRACECLONE | ptrace::O_EXITKILL).map_err(|x| e("seize", x))?;
    ptrace::interrupt(tid).map_err(|x| e("interrupt", x))?;
    wait_event_stop(tid)
}

/// Waits until `tid` reports `PTRACE_EVENT_STOP`.
pub fn wait_event_stop(tid: i32) -> Result<(), RestoreError> {
    loop {
        let (_, st) = ptrace::wait(tid).map_err(|x| RestoreError::sys(tid, "wait", x))?;
        match st {
            WaitStatus::Stopped { event: ptrace::EVENT_STOP, .. } => return Ok(()),
            WaitStatus::Stopped { sig, .. } => {
                log::debug!("tid {tid}: signal {sig} suppressed while stopping");
                ptrace::cont(tid, 0).map_err(|x| RestoreError::sys(tid, "cont", x))?;
            }
            other => {
                return Err(RestoreError::Failed {
                    pid: tid,
                    what: format!("process ended while being stopped: {other:?}"),
                })
            }
        }
    }
}

fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b + blen && b < a + alen
}

/// Finds `len` free bytes (plus a guard page each side) outside every range given, scanning
/// from `from` upwards in 1 MiB steps.
pub fn find_gap(ranges: &[(u64, u64)], len: u64, from: u64) -> Option<u64> {
    let mut a = from;
    while a < 0x7fff_0000_0000 {
        if !ranges.iter().any(|&(s, e)| overlaps(a - 4096, len + 8192, s, e - s)) {
            return Some(a);
        }
        a += 1 << 20;
    }
    None
}

impl Child {
    /// Takes over the seized process and maps the trampoline at an address that neither its
    /// current mappings nor `target` use.
    pub fn new(pid: i32, target: &[Vma]) -> Result<Self, RestoreError> {
        let ip =
            inject::find_syscall_insn(pid).map_err(|e| RestoreError::io(pid, "finding a syscall instruction", e))?;
        let remote = Remote::new(pid, ip).map_err(|e| RestoreError::inject(pid, "take over", e))?;
        let mem = Mem::open(pid, true).map_err(|e| RestoreError::io(pid, "opening /proc/PID/mem", e))?;
        let mut c = Child { pid, remote, tramp: 0, mem };
        let mut ranges: Vec<(u64, u64)> = target.iter().map(|v| (v.start, v.end)).collect();
        for m in procfs::read_maps(pid).map_err(|e| RestoreError::io(pid, "reading maps", e))? {
            ranges.push((m.start, m.end));
        }
        let at = find_gap(&ranges, TRAMP_LEN, 0x1_0000_0000)
            .ok_or_else(|| RestoreError::Failed { pid, what: "no free address for the trampoline".into() })?;
        let got = c.call(
            "mmap(trampoline)",
            libc::SYS_mmap,
            [
                at,
                TRAMP_LEN,
                (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
                u64::MAX,
                0,
            ],
        )?;
        // syscall; int3; int3
        c.mem.write(got, &[0x0f, 0x05, 0xcc, 0xcc]).map_err(|e| RestoreError::io(pid, "writing the trampoline", e))?;
        c.tramp = got;
        c.remote.syscall_ip = got;
        Ok(c)
    }

    /// Moves the leader's [`Remote`] out (to use it alongside `&self`); put it back in `remote`.
    pub fn take_remote(&mut self) -> Remote {
        let placeholder = Remote {
            tid: self.pid,
            saved: self.remote.saved,
            syscall_ip: self.tramp,
            deferred_signals: Vec::new(),
            new_threads: Vec::new(),
        };
        std::mem::replace(&mut self.remote, placeholder)
    }

    /// Gives the child a duplicate of the restorer's descriptor `ours`; returns its number.
    pub fn fd_from_restorer(&mut self, ours: i32) -> Result<u64, RestoreError> {
        let me = std::process::id() as u64;
        let pfd = self.call("pidfd_open", libc::SYS_pidfd_open, [me, 0, 0, 0, 0, 0])?;
        let r = self.call("pidfd_getfd", libc::SYS_pidfd_getfd, [pfd, ours as u64, 0, 0, 0, 0]);
        self.call("close", libc::SYS_close, [pfd, 0, 0, 0, 0, 0])?;
        r
    }

    /// Runs a syscall in the leader.
    pub fn call(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64, RestoreError> {
        let pid = self.pid;
        self.remote.syscall(name, nr, args).map_err(|e| RestoreError::inject(pid, name, e))
    }

    /// Address of scratch byte `off`.
    pub fn scratch(&self, off: u64) -> u64 {
        self.tramp + SCRATCH_OFF + off
    }

    /// Writes bytes into scratch at `off`; returns their address.
    pub fn put(&self, off: u64, bytes: &[u8]) -> Result<u64, RestoreError> {
        if off + bytes.len() as u64 > TRAMP_LEN - SCRATCH_OFF {
            return Err(RestoreError::Failed {
                pid: self.pid,
                what: format!("scratch overflow ({} bytes at {off})", bytes.len()),
            });
        }
        let a = self.scratch(off);
        self.mem.write(a, bytes).map_err(|e| RestoreError::io(self.pid, "writing scratch", e))?;
        Ok(a)
    }

    /// Writes a NUL-terminated string into scratch at `off`.
    pub fn put_str(&self, off: u64, s: &str) -> Result<u64, RestoreError> {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.put(off, &b)
    }

    /// Writes u64 words into scratch at `off`.
    pub fn put_words(&self, off: u64, words: &[u64]) -> Result<u64, RestoreError> {
        let b: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.put(off, &b)
    }

    /// Opens `path` inside the child; returns the child's descriptor.
    pub fn open(&mut self, path: &str, flags: i32, mode: u32) -> Result<u64, RestoreError> {
        let a = self.put_str(0, path)?;
        let pid = self.pid;
        self.remote
            .syscall("openat", libc::SYS_openat, [libc::AT_FDCWD as u64, a, flags as u64, u64::from(mode), 0, 0])
            .map_err(|e| RestoreError::inject(pid, &format!("open {path}"), e))
    }
}
