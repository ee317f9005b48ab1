//! Reading and writing another process's memory through `/proc/PID/mem` (works for a traced
//! process on read-only private pages as well).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

/// An open `/proc/PID/mem`.
#[derive(Debug)]
pub struct Mem {
    pid: i32,
    file: File,
}

impl Mem {
    /// Opens `/proc/PID/mem` for reading and, if `write`, writing.
    pub fn open(pid: i32, write: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(write).open(format!("/proc/{pid}/mem"))?;
        Ok(Self { pid, file })
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Reads exactly `buf.len()` bytes at `addr`. Not with `process_vm_readv`: it pins the
    /// pages, and pinning a page still shared copy-on-write with a forked child unshares it
    /// (a dump would double the memory of a process and its children).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.file.read_at(&mut buf[done..], addr + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("short read at {:#x}", addr + done as u64),
                ));
            }
            done += n;
        }
        Ok(())
    }

    /// [`Mem::read`] of pages each mapped only by this process (pagemap bit 56): with
    /// `process_vm_readv`, one copy instead of two (`/proc/PID/mem` goes through a page of
    /// the kernel's), as far as it goes, the rest (unreadable pages) through `/proc/PID/mem`.
    pub fn read_unshared(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match seamless_sys::vm::read(self.pid, addr + done as u64, &mut buf[done..]) {
                Ok(n) if n > 0 => done += n,
                _ => break,
            }
        }
        self.read(addr + done as u64, &mut buf[done..])
    }

    /// Writes all of `buf` at `addr`: with `process_vm_writev` (one copy) as far as it goes,
    /// the rest (pages the process itself cannot write, e.g. read-only) through
    /// `/proc/PID/mem`.
    pub fn write(&self, addr: u64, buf: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match seamless_sys::vm::write(self.pid, addr + done as u64, &buf[done..]) {
                Ok(n) if n > 0 => done += n,
                _ => break,
            }
        }
        while done < buf.len() {
            let n = self.file.write_at(&buf[done..], addr + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write at {:#x}", addr + done as u64),
                ));
            }
            done += n;
        }
        Ok(())
    }

    /// Reads one little-endian u64.
    pub fn read_u64(&self, addr: u64) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}
