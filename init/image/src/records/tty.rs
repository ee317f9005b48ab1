//! Pseudo-terminals (Unix98 `/dev/ptmx` + `/dev/pts/N`). Their open file descriptions stay
//! [`FileKind::CharDev`](super::FileKind::CharDev) descriptions (`/dev/ptmx` for the master,
//! `/dev/pts/N` for each slave description); the pair itself, with the session it is the
//! controlling terminal of, is a [`PtyRecord`] (kind [`super::PTY`]), without which a reader
//! would reopen the paths and get a new, empty terminal: the kind is not ignorable.

use serde::{Deserialize, Serialize};

/// Number of control characters in the kernel's `struct termios2`.
pub const NCCS: usize = 19;

/// Most bytes kept of a pty's unread input (a line discipline holds at most 4095).
pub const MAX_INPUT: usize = 4095;

/// Most bytes kept of a pty's unread output (what the master's line discipline holds).
pub const MAX_OUTPUT: usize = 4095;

/// The kernel's `struct termios2` of a terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Termios {
    /// `c_iflag`.
    pub iflag: u32,
    /// `c_oflag`.
    pub oflag: u32,
    /// `c_cflag`.
    pub cflag: u32,
    /// `c_lflag`.
    pub lflag: u32,
    /// `c_line` (line discipline; 0 = N_TTY, the only one restored).
    pub line: u8,
    /// `c_cc`, exactly [`NCCS`] bytes.
    pub cc: Vec<u8>,
    /// `c_ispeed`.
    pub ispeed: u32,
    /// `c_ospeed`.
    pub ospeed: u32,
}

/// One pty pair: stored under [`super::PTY`], owner 0, tag = the index N of `/dev/pts/N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PtyRecord {
    /// N of `/dev/pts/N`, restored as the same N.
    pub index: u32,
    /// The master's description (a `/dev/ptmx` character device description).
    pub master: u32,
    /// The slave's settings.
    pub termios: Termios,
    /// Owner of `/dev/pts/N`.
    pub uid: u32,
    /// Group of `/dev/pts/N`.
    pub gid: u32,
    /// Permission bits of `/dev/pts/N`.
    pub mode: u32,
    /// Window size: rows, columns, x pixels, y pixels.
    pub winsize: [u16; 4],
    /// `TIOCSPTLCK`: the slave is locked.
    pub locked: bool,
    /// `TIOCPKT`: the master is in packet mode.
    pub packet: bool,
    /// `TIOCEXCL` on the master.
    pub master_exclusive: bool,
    /// `TIOCEXCL` on the slave.
    pub slave_exclusive: bool,
    /// The session (its leader's pid) this pty is the controlling terminal of; 0 for none.
    pub session: i32,
    /// Its foreground process group (0 when it is no session's terminal).
    pub foreground: i32,
    /// Bytes written to the master that the slave side has not read (what its line
    /// discipline holds, after input processing), oldest first.
    pub input: Vec<u8>,
    /// Bytes written to the slave that the master side has not read (after output
    /// processing), oldest first.
    pub output: Vec<u8>,
}

impl PtyRecord {
    /// What makes no sense in this record on its own, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.index >= 1 << 20 {
            return Some(format!("pts index {} out of range", self.index));
        }
        if self.termios.cc.len() != NCCS {
            return Some(format!("{} control characters, not {NCCS}", self.termios.cc.len()));
        }
        if self.termios.line != 0 {
            return Some(format!("line discipline {} is not N_TTY", self.termios.line));
        }
        if self.input.len() > MAX_INPUT {
            return Some(format!("{} bytes of input, more than {MAX_INPUT}", self.input.len()));
        }
        if self.output.len() > MAX_OUTPUT {
            return Some(format!("{} bytes of output, more than {MAX_OUTPUT}", self.output.len()));
        }
        if self.mode & !0o7777 != 0 {
            return Some(format!("mode {:#o} has more than permission bits", self.mode));
        }
        if self.session < 0 || self.foreground < 0 || (self.session == 0) != (self.foreground == 0) {
            return Some(format!("session {} with foreground group {}", self.session, self.foreground));
        }
        None
    }
}
