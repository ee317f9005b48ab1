//! A process under reconstruction: seized, with a trampoline (the system-call instruction and
//! a trap: `syscall; int3` on x86-64, `svc #0; brk #0` on aarch64) and scratch
//! pages mapped at an address free in both the current and the target layout.

use crate::inject::{self, Remote};
use crate::memio::Mem;
use crate::procfs;
use crate::tracee::{InThread, Ptraced, Tracee};
use crate::RestoreError;
use seamless_image::records::Vma;
use seamless_sys::ptrace::{self, WaitStatus};

/// Trampoline + scratch size (bytes): page 0 holds the code, the rest is scratch
/// ([`Tracee::scratch`]).
pub const TRAMP_LEN: u64 = 16 * 4096;
/// The trampoline's code ([`seamless_sys::arch::TRAMPOLINE`]; an injected call stops on the
/// trap after it).
pub const TRAMPOLINE: &[u8] = seamless_sys::arch::TRAMPOLINE;
/// Offset of the batch runner ([`inject::BATCH_CODE`]) in the trampoline page.
pub const BATCH_OFF: usize = 64;
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
        // One read of the maps for the syscall instruction and the trampoline's gap.
        let maps = procfs::read_maps(pid).map_err(|e| RestoreError::io(pid, "reading maps", e))?;
        let ip = inject::find_syscall_insn_in(pid, &maps)
            .map_err(|e| RestoreError::io(pid, "finding a syscall instruction", e))?;
        let remote = Remote::new(pid, ip).map_err(|e| RestoreError::inject(pid, "take over", e))?;
        let mem = Mem::open(pid, true).map_err(|e| RestoreError::io(pid, "opening /proc/PID/mem", e))?;
        let mut c = Child { pid, remote, tramp: 0, mem };
        let mut ranges: Vec<(u64, u64)> = target.iter().map(|v| (v.start, v.end)).collect();
        ranges.extend(maps.iter().map(|m| (m.start, m.end)));
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
        let mut code = vec![seamless_sys::arch::TRAP_FILL; BATCH_OFF + inject::BATCH_CODE.len()];
        code[..TRAMPOLINE.len()].copy_from_slice(TRAMPOLINE);
        code[BATCH_OFF..].copy_from_slice(inject::BATCH_CODE);
        c.mem.write(got, &code).map_err(|e| RestoreError::io(pid, "writing the trampoline", e))?;
        c.tramp = got;
        c.remote.syscall_ip = got;
        c.remote.batch_ip = Some(got + BATCH_OFF as u64);
        Ok(c)
    }

    /// The thread `r` of this process as a [`Tracee`]: calls run in it, memory and scratch are
    /// the process's.
    pub fn thread<'a>(&'a self, r: &'a mut Remote) -> InThread<'a> {
        InThread { pid: self.pid, remote: r, mem: &self.mem, area: self.scratch_area() }
    }
}

impl Ptraced for Child {
    fn traced_pid(&self) -> i32 {
        self.pid
    }
    fn remote(&mut self) -> &mut Remote {
        &mut self.remote
    }
    fn mem(&self) -> &Mem {
        &self.mem
    }
    fn area(&self) -> (u64, u64) {
        (self.tramp + SCRATCH_OFF, TRAMP_LEN - SCRATCH_OFF)
    }
    fn parts(&mut self) -> (&mut Remote, &Mem) {
        (&mut self.remote, &self.mem)
    }
}
