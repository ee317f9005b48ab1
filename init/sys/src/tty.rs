//! Pseudo-terminals: the `ioctl(2)` requests of `ioctl_tty(2)` and `pty(7)` that the dump
//! reads a pty pair with and the restorer rebuilds it with.

use crate::error::check;
use crate::SysResult;
use std::os::fd::RawFd;

/// The kernel's `struct termios2` (`TCGETS2`): flags, line discipline, the 19 control
/// characters and both speeds.
pub type Termios2 = libc::termios2;

fn ioctl_int_out(fd: RawFd, req: libc::Ioctl, call: &'static str) -> SysResult<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the request writes one int through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fd, req, &mut v as *mut libc::c_int) };
    check(r.into(), call, || format!("fd {fd}"))?;
    Ok(v)
}

fn ioctl_int_in(fd: RawFd, req: libc::Ioctl, v: i32, call: &'static str) -> SysResult<()> {
    let v: libc::c_int = v;
    // SAFETY: the request reads one int through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fd, req, &v as *const libc::c_int) };
    check(r.into(), call, || format!("fd {fd} value {v}"))?;
    Ok(())
}

fn ioctl_none(fd: RawFd, req: libc::Ioctl, call: &'static str) -> SysResult<()> {
    // SAFETY: the request takes no argument (the third is ignored).
    let r = unsafe { libc::ioctl(fd, req, 0) };
    check(r.into(), call, || format!("fd {fd}"))?;
    Ok(())
}

/// `TIOCGPTN`: the index N of the pty whose master `fd` is (`/dev/pts/N`).
///
/// Man page: `pty(7)`, `ioctl_tty(2)` `TIOCGPTN`.
pub fn pts_index(fd: RawFd) -> SysResult<u32> {
    let mut v: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGPTN, &mut v as *mut libc::c_uint) };
    check(r.into(), "ioctl(TIOCGPTN)", || format!("fd {fd}"))?;
    Ok(v)
}

/// `TIOCGPTLCK`: whether the slave of master `fd` is locked (cannot be opened).
///
/// Man page: `ioctl_tty(2)`.
pub fn pts_locked(fd: RawFd) -> SysResult<bool> {
    Ok(ioctl_int_out(fd, libc::TIOCGPTLCK, "ioctl(TIOCGPTLCK)")? != 0)
}

/// `TIOCSPTLCK`: locks or unlocks the slave of master `fd`.
///
/// Man page: `ioctl_tty(2)`.
pub fn set_pts_locked(fd: RawFd, locked: bool) -> SysResult<()> {
    ioctl_int_in(fd, libc::TIOCSPTLCK, i32::from(locked), "ioctl(TIOCSPTLCK)")
}

/// `TIOCGPKT`: whether master `fd` is in packet mode.
///
/// Man page: `ioctl_tty(2)`.
pub fn packet_mode(fd: RawFd) -> SysResult<bool> {
    Ok(ioctl_int_out(fd, libc::TIOCGPKT, "ioctl(TIOCGPKT)")? != 0)
}

/// `TIOCPKT`: packet mode on or off on master `fd`.
///
/// Man page: `ioctl_tty(2)`.
pub fn set_packet_mode(fd: RawFd, on: bool) -> SysResult<()> {
    ioctl_int_in(fd, libc::TIOCPKT, i32::from(on), "ioctl(TIOCPKT)")
}

/// `TIOCGEXCL`: whether the terminal of `fd` (this side of a pty) is in exclusive mode.
///
/// Man page: `ioctl_tty(2)`.
pub fn exclusive(fd: RawFd) -> SysResult<bool> {
    Ok(ioctl_int_out(fd, libc::TIOCGEXCL, "ioctl(TIOCGEXCL)")? != 0)
}

/// `TIOCEXCL` / `TIOCNXCL`: exclusive mode on or off for the terminal of `fd`.
///
/// Man page: `ioctl_tty(2)`.
pub fn set_exclusive(fd: RawFd, on: bool) -> SysResult<()> {
    if on {
        ioctl_none(fd, libc::TIOCEXCL, "ioctl(TIOCEXCL)")
    } else {
        ioctl_none(fd, libc::TIOCNXCL, "ioctl(TIOCNXCL)")
    }
}

/// `TIOCGSID`: the session whose controlling terminal the terminal of `fd` is (on a master,
/// its slave's); `None` when it is nobody's (`ENOTTY`).
///
/// Man page: `ioctl_tty(2)`.
pub fn session(fd: RawFd) -> SysResult<Option<i32>> {
    match ioctl_int_out(fd, libc::TIOCGSID, "ioctl(TIOCGSID)") {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.errno() == Some(libc::ENOTTY) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `TIOCGPGRP`: the foreground process group of the terminal of `fd` (on a master, its
/// slave's); 0 when it has none.
///
/// Man page: `ioctl_tty(2)`.
pub fn foreground(fd: RawFd) -> SysResult<i32> {
    ioctl_int_out(fd, libc::TIOCGPGRP, "ioctl(TIOCGPGRP)")
}

/// `TCGETS2`: the terminal's settings (on a master, its slave's: a master's own are fixed).
///
/// Man page: `ioctl_tty(2)` `TCGETS2`.
pub fn termios(fd: RawFd) -> SysResult<Termios2> {
    // SAFETY: termios2 is plain old data; all zeroes is a valid value.
    let mut t: Termios2 = unsafe { std::mem::zeroed() };
    // SAFETY: TCGETS2 writes one struct termios2 through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fd, libc::TCGETS2, &mut t as *mut Termios2) };
    check(r.into(), "ioctl(TCGETS2)", || format!("fd {fd}"))?;
    Ok(t)
}

/// `TCSETS2`: sets the terminal's settings at once (no drain, no flush).
///
/// Man page: `ioctl_tty(2)` `TCSETS2`.
pub fn set_termios(fd: RawFd, t: &Termios2) -> SysResult<()> {
    // SAFETY: TCSETS2 reads one struct termios2 through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fd, libc::TCSETS2, t as *const Termios2) };
    check(r.into(), "ioctl(TCSETS2)", || format!("fd {fd}"))?;
    Ok(())
}

/// `TIOCGWINSZ`: rows, columns, x and y pixels.
///
/// Man page: `ioctl_tty(2)` `TIOCGWINSZ`.
pub fn winsize(fd: RawFd) -> SysResult<[u16; 4]> {
    let mut w = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one struct winsize through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut w as *mut libc::winsize) };
    check(r.into(), "ioctl(TIOCGWINSZ)", || format!("fd {fd}"))?;
    Ok([w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel])
}

/// `TIOCSWINSZ`.
///
/// Man page: `ioctl_tty(2)` `TIOCSWINSZ`.
pub fn set_winsize(fd: RawFd, s: [u16; 4]) -> SysResult<()> {
    let w = libc::winsize { ws_row: s[0], ws_col: s[1], ws_xpixel: s[2], ws_ypixel: s[3] };
    // SAFETY: TIOCSWINSZ reads one struct winsize through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &w as *const libc::winsize) };
    check(r.into(), "ioctl(TIOCSWINSZ)", || format!("fd {fd}"))?;
    Ok(())
}

/// `TIOCSTI`: hands `bytes` to the line discipline of the terminal of `fd` as if they had
/// been received, one at a time and synchronously (needs `CAP_SYS_ADMIN` when the terminal
/// is not the caller's controlling terminal).
///
/// Man page: `ioctl_tty(2)` `TIOCSTI`.
pub fn simulate_input(fd: RawFd, bytes: &[u8]) -> SysResult<()> {
    for b in bytes {
        // SAFETY: TIOCSTI reads one byte through the pointer, which is valid.
        let r = unsafe { libc::ioctl(fd, libc::TIOCSTI, b as *const u8) };
        check(r.into(), "ioctl(TIOCSTI)", || format!("fd {fd}"))?;
    }
    Ok(())
}

/// `poll(2)` of one descriptor with a zero timeout: the returned events.
///
/// Man page: `poll(2)`.
pub fn poll_now(fd: RawFd, events: i16) -> SysResult<i16> {
    let mut p = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: `p` is one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    check(r.into(), "poll", || format!("fd {fd}"))?;
    Ok(p.revents)
}

/// `read(2)` into `buf`; `Ok(0)` also for `EAGAIN` (nothing to read now).
///
/// Man page: `read(2)`.
pub fn read_now(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    match check(r as libc::c_long, "read", || format!("fd {fd}")) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.errno() == Some(libc::EAGAIN) => Ok(0),
        Err(e) => Err(e),
    }
}

/// `TIOCSCTTY` (without stealing): the terminal of `fd` becomes the controlling terminal of
/// the caller, a session leader without one.
///
/// Man page: `ioctl_tty(2)` `TIOCSCTTY`.
pub fn make_controlling(fd: RawFd) -> SysResult<()> {
    ioctl_int_in_value(fd, libc::TIOCSCTTY, 0, "ioctl(TIOCSCTTY)")
}

fn ioctl_int_in_value(fd: RawFd, req: libc::Ioctl, v: libc::c_ulong, call: &'static str) -> SysResult<()> {
    // SAFETY: the request takes its argument by value, no pointer.
    let r = unsafe { libc::ioctl(fd, req, v) };
    check(r.into(), call, || format!("fd {fd}"))?;
    Ok(())
}
