//! Pty pairs ([`PtyRecord`]): recreated in the restorer at their index before the other
//! descriptions are opened, with settings, window size, unread bytes in both directions,
//! packet, exclusive and lock state and the owner of `/dev/pts/N`; the session leader takes
//! its controlling terminal back and sets the foreground group once every process group
//! exists ([`take_terminal`]).
//!
//! The index: devpts hands out the lowest free index, so `/dev/ptmx` is opened until it gives
//! N (the masters that come before are closed again afterwards); N already in use on this
//! system means the pty cannot be restored, and its unit of trees is given up with that
//! reason.

use crate::plan::Plan;
use crate::tracee::Tracee;
use crate::{abi, Failures, RestoreError};
use seamless_image::records::tty::NCCS;
use seamless_image::records::{FileKind, PtyRecord, Termios};
use seamless_sys::chain;
use seamless_sys::tty as sys;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// The echo flags of `c_lflag`.
pub const ECHO_FLAGS: u32 =
    libc::ECHO | libc::ECHOE | libc::ECHOK | libc::ECHONL | libc::ECHOCTL | libc::ECHOPRT | libc::ECHOKE;

/// The settings under which saved unread input is handed to the line discipline again so it
/// ends up as it was: echo off (it was echoed when it first came); in non-canonical mode also
/// no signals and no input processing (it was processed already).
pub fn giving_termios(t: &sys::Termios2) -> sys::Termios2 {
    let mut g = *t;
    g.c_lflag &= !ECHO_FLAGS;
    if g.c_lflag & libc::ICANON == 0 {
        g.c_lflag &= !(libc::ISIG | libc::IEXTEN);
        g.c_iflag &= !(libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IUCLC
            | libc::PARMRK
            | libc::INPCK
            | libc::IGNBRK
            | libc::BRKINT
            | libc::IGNPAR);
    }
    g
}

/// The kernel structure of saved settings (validation proved `cc` has [`NCCS`] bytes).
pub fn termios2(t: &Termios) -> sys::Termios2 {
    let mut k = sys::Termios2 {
        c_iflag: t.iflag,
        c_oflag: t.oflag,
        c_cflag: t.cflag,
        c_lflag: t.lflag,
        c_line: t.line,
        c_cc: [0; NCCS],
        c_ispeed: t.ispeed,
        c_ospeed: t.ospeed,
    };
    for (d, s) in k.c_cc.iter_mut().zip(&t.cc) {
        *d = *s;
    }
    k
}

/// Why a restore of pty pairs failed.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// A system call on the pty failed.
    #[error("/dev/pts/{index}: {what}")]
    Sys {
        /// pts index.
        index: u32,
        /// Step.
        what: String,
        /// Failure.
        #[source]
        source: seamless_sys::SysError,
    },
    /// Opening or changing a path failed.
    #[error("/dev/pts/{index}: {what}")]
    Io {
        /// pts index.
        index: u32,
        /// Step.
        what: String,
        /// Failure.
        #[source]
        source: std::io::Error,
    },
    /// The index is taken on this system.
    #[error("/dev/pts/{index} is in use on this system (devpts gave index {got}): the pty cannot get its index back")]
    Busy {
        /// pts index.
        index: u32,
        /// What `/dev/ptmx` gave instead.
        got: u32,
    },
}

/// Our descriptors of the restored pairs.
#[derive(Debug, Default)]
pub struct Ptys {
    /// A slave of our own per pts index (for [`take_terminal`]).
    pub slaves: BTreeMap<u32, OwnedFd>,
}

fn open_tty(path: &str, flags: i32) -> std::io::Result<OwnedFd> {
    let acc = flags & libc::O_ACCMODE;
    let f = std::fs::OpenOptions::new()
        .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags(
            (flags & !(libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL))
                | libc::O_NOCTTY
                | libc::O_CLOEXEC,
        )
        .open(path)?;
    Ok(f.into())
}

/// Mounts devpts on `/dev/pts` when nothing is mounted there (as PID 1 after the jump, before
/// the system's own init does it), with the options systemd and Debian use.
fn ensure_devpts() -> Result<(), PtyError> {
    if std::path::Path::new("/dev/pts/ptmx").exists() {
        return Ok(());
    }
    std::fs::create_dir_all("/dev/pts").map_err(|e| PtyError::Io {
        index: 0,
        what: "creating /dev/pts".into(),
        source: e,
    })?;
    seamless_sys::mount::mount(
        "devpts",
        std::path::Path::new("/dev/pts"),
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("gid=5,mode=620,ptmxmode=000"),
    )
    .map_err(|e| PtyError::Sys { index: 0, what: "mounting devpts".into(), source: e })
}

/// Opens `/dev/ptmx` until it gives index `index`; the masters met on the way go to `spare`.
fn master_at(index: u32, spare: &mut Vec<OwnedFd>) -> Result<OwnedFd, PtyError> {
    loop {
        let m = open_tty("/dev/ptmx", libc::O_RDWR).map_err(|e| PtyError::Io {
            index,
            what: "opening /dev/ptmx".into(),
            source: e,
        })?;
        let got =
            sys::pts_index(m.as_raw_fd()).map_err(|e| PtyError::Sys { index, what: "TIOCGPTN".into(), source: e })?;
        match got.cmp(&index) {
            std::cmp::Ordering::Equal => return Ok(m),
            std::cmp::Ordering::Less => spare.push(m),
            std::cmp::Ordering::Greater => return Err(PtyError::Busy { index, got }),
        }
    }
}

/// Recreates pair `t`: returns our master and our slave, and opens the slave descriptions
/// of the plan into `by_id`.
fn create(
    plan: &Plan,
    t: &PtyRecord,
    spare: &mut Vec<OwnedFd>,
    by_id: &mut BTreeMap<u32, OwnedFd>,
) -> Result<(OwnedFd, OwnedFd), PtyError> {
    let index = t.index;
    let se = |what: &'static str| move |e| PtyError::Sys { index, what: what.into(), source: e };
    let path = format!("/dev/pts/{index}");
    let m = master_at(index, spare)?;
    let mr = m.as_raw_fd();
    sys::set_pts_locked(mr, false).map_err(se("unlock"))?;
    let s = open_tty(&path, libc::O_RDWR).map_err(|e| PtyError::Io {
        index,
        what: format!("opening {path}"),
        source: e,
    })?;
    let sr = s.as_raw_fd();
    let fin = termios2(&t.termios);
    sys::set_termios(sr, &giving_termios(&fin)).map_err(se("TCSETS2 (echo off)"))?;
    sys::simulate_input(sr, &t.input).map_err(se("TIOCSTI (unread input)"))?;
    sys::set_termios(sr, &fin).map_err(se("TCSETS2"))?;
    // A master's own settings are fixed (raw): its unread bytes go in as they were.
    sys::simulate_input(mr, &t.output).map_err(se("TIOCSTI (unread output)"))?;
    sys::set_winsize(sr, t.winsize).map_err(se("TIOCSWINSZ"))?;
    if t.packet {
        sys::set_packet_mode(mr, true).map_err(se("TIOCPKT"))?;
    }
    std::os::unix::fs::chown(&path, Some(t.uid), Some(t.gid)).map_err(|e| PtyError::Io {
        index,
        what: format!("chown {path}"),
        source: e,
    })?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(t.mode))
        .map_err(|e| PtyError::Io { index, what: format!("chmod {path}"), source: e })?;
    for d in plan.descs.values() {
        if matches!(&d.kind, FileKind::CharDev { path: p, .. } if *p == path) {
            let fd = open_tty(&path, abi::signed(d.flags)).map_err(|e| PtyError::Io {
                index,
                what: format!("opening {path} for file #{}", d.id),
                source: e,
            })?;
            by_id.insert(d.id, fd);
        }
    }
    if let Some(d) = plan.descs.get(&t.master) {
        seamless_sys::proc::set_status_flags(mr, abi::signed(d.flags)).map_err(se("fcntl(F_SETFL) of the master"))?;
    }
    if t.slave_exclusive {
        sys::set_exclusive(sr, true).map_err(se("TIOCEXCL (slave)"))?;
    }
    if t.master_exclusive {
        sys::set_exclusive(mr, true).map_err(se("TIOCEXCL (master)"))?;
    }
    if t.locked {
        sys::set_pts_locked(mr, true).map_err(se("lock"))?;
    }
    Ok((m, s))
}

/// Recreates every pty pair of the plan (lowest index first), putting the master and slave
/// descriptions into `by_id`; a pair that cannot be recreated gives up its unit.
pub fn open_all(plan: &Plan, by_id: &mut BTreeMap<u32, OwnedFd>, fails: &mut Failures) -> Ptys {
    let mut out = Ptys::default();
    if plan.ptys.is_empty() {
        return out;
    }
    if let Err(e) = ensure_devpts() {
        for t in plan.ptys.values() {
            fails.fail_desc(t.master, chain(&e).to_string());
        }
        return out;
    }
    let mut spare = Vec::new();
    for t in plan.ptys.values() {
        if fails.desc_failed(t.master) {
            continue;
        }
        match create(plan, t, &mut spare, by_id) {
            Ok((m, s)) => {
                by_id.insert(t.master, m);
                out.slaves.insert(t.index, s);
            }
            Err(e) => fails.fail_desc(t.master, chain(&e).to_string()),
        }
    }
    out
}

impl Ptys {
    /// Our slave descriptor of each session's controlling terminal, by session.
    pub fn by_session(&self, plan: &Plan) -> BTreeMap<i32, i32> {
        plan.ptys
            .values()
            .filter(|t| t.session != 0)
            .filter_map(|t| Some((t.session, self.slaves.get(&t.index)?.as_raw_fd())))
            .collect()
    }
}

/// In the session leader of pair `t`, which took the pty as its controlling terminal when it
/// was forked ([`crate::tree::create_tree`]), once every process group exists: sets the
/// foreground process group (`TIOCSPGRP` on a duplicate of our slave `ours`; it fails when
/// the pty is not the caller's controlling terminal).
pub fn take_terminal<T: Tracee + ?Sized>(c: &mut T, t: &PtyRecord, ours: i32) -> Result<(), RestoreError> {
    let n = c.fd_from_restorer(ours)?;
    let r = (|| {
        let mut s = c.scratch();
        let a = s.put(c, &t.foreground.to_ne_bytes())?;
        c.call("ioctl(TIOCSPGRP)", libc::SYS_ioctl, [n, libc::TIOCSPGRP, a, 0, 0, 0])
    })();
    c.call("close", libc::SYS_close, [n, 0, 0, 0, 0, 0])?;
    r.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracee::fake::Recorder;

    #[test]
    fn the_leader_sets_the_foreground_group_through_a_duplicate_of_our_slave() {
        let mut c = Recorder::new(42);
        let t = PtyRecord { index: 3, session: 42, foreground: 50, ..PtyRecord::default() };
        take_terminal(&mut c, &t, 9).unwrap();
        let calls = c.calls();
        let names: Vec<_> = calls.iter().map(|c| c.name).collect();
        assert_eq!(names, ["pidfd_open", "pidfd_getfd", "close", "ioctl(TIOCSPGRP)", "close"]);
        let set = &calls[3];
        assert_eq!(set.args[1], libc::TIOCSPGRP);
        assert_eq!(set.mem(set.args[2], 4), 50i32.to_ne_bytes());
    }

    #[test]
    fn input_goes_back_without_echo_and_raw_input_unprocessed() {
        let mut t: sys::Termios2 = termios2(&Termios { cc: vec![0; NCCS], ..Termios::default() });
        t.c_lflag = libc::ICANON | libc::ECHO | libc::ISIG;
        t.c_iflag = libc::ICRNL;
        let g = giving_termios(&t);
        assert_eq!(g.c_lflag, libc::ICANON | libc::ISIG);
        assert_eq!(g.c_iflag, libc::ICRNL);
        t.c_lflag = libc::ECHO | libc::ISIG;
        let g = giving_termios(&t);
        assert_eq!((g.c_lflag, g.c_iflag), (0, 0));
    }
}
