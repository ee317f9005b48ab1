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

    /// Reads exactly `buf.len()` bytes at `addr`.
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

    /// Writes all of `buf` at `addr`.
    pub fn write(&self, addr: u64, buf: &[u8]) -> io::Result<()> {
        let mut done = 0;
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
