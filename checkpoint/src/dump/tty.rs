//! Pseudo-terminals and controlling terminals. A Unix98 pty pair is dumped when its master
//! (`/dev/ptmx`) is held by a dumped process: index, settings, window size, lock, packet and
//! exclusive modes, the session it is the controlling terminal of with its foreground group,
//! and the bytes not read yet in both directions. Those bytes are read out and handed back to
//! the line disciplines at once (`TIOCSTI`), so the dumped processes find their terminal as
//! it was whether they are killed or resumed. Refused, with the reason: a slave whose master
//! is outside the dump, a controlling terminal that is not such a pty (the dumper's own
//! terminal, a serial or virtual console), unread input that processing it again would
//! change, a pending packet-mode status byte, more unread bytes than a line discipline holds.

use super::{DumpError, Frozen};
use seamless_image::records::tty::{MAX_INPUT, MAX_OUTPUT, NCCS};
use seamless_image::records::{FileKind, PtyRecord, Termios};
use seamless_sys::tty as sys;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// Device major of `/dev/ptmx` (minor 2).
const TTYAUX_MAJOR: u64 = 5;
/// First device major of Unix98 pty slaves.
const PTS_MAJOR: u64 = 136;
/// Last device major of Unix98 pty slaves.
const PTS_MAJOR_LAST: u64 = 143;

/// The descriptors of one pty pair met while classifying descriptors.
#[derive(Debug, Default)]
pub struct PendingPty {
    /// The master: (pid, fd, description id).
    master: Option<(i32, i32, u32)>,
    /// Every slave description: (pid, fd, description id).
    slaves: Vec<(i32, i32, u32)>,
}

fn refuse(pid: i32, resource: String, reason: impl Into<String>) -> DumpError {
    DumpError::Unsupported { pid, resource, reason: reason.into() }
}

fn getfd(pid: i32, fd: i32) -> Result<OwnedFd, DumpError> {
    let sys = |what: &str, e| DumpError::sys(pid, format!("fd {fd}: {what}"), e);
    let pfd = seamless_sys::proc::pidfd_open(pid).map_err(|e| sys("pidfd_open", e))?;
    seamless_sys::proc::pidfd_getfd(&pfd, fd, pid).map_err(|e| sys("pidfd_getfd", e))
}

/// The pts index of a device number, if it is a Unix98 pty slave.
fn pts_index_of(rdev: u64) -> Option<u32> {
    let (major, minor) = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
    (PTS_MAJOR..=PTS_MAJOR_LAST).contains(&major).then(|| u32::try_from((major - PTS_MAJOR) * 256 + minor).ok())?
}

/// Classifies a character device descriptor that is one end of a pty; `None` when it is
/// not a pty.
pub fn classify(
    pid: i32,
    fd: i32,
    link: &str,
    md: &std::fs::Metadata,
    ptys: &mut BTreeMap<u32, PendingPty>,
    id: u32,
) -> Result<Option<FileKind>, DumpError> {
    let rdev = md.rdev();
    let resource = || format!("fd {fd} ({link})");
    if libc::major(rdev) as u64 == TTYAUX_MAJOR && libc::minor(rdev) == 2 {
        if link != "/dev/ptmx" {
            return Err(refuse(pid, resource(), "a pty master opened through another path than /dev/ptmx (a devpts instance of its own, e.g. a container's /dev/pts/ptmx) is not checkpointed: its index could not be given back"));
        }
        let m = getfd(pid, fd)?;
        let index = sys::pts_index(m.as_raw_fd()).map_err(|e| DumpError::sys(pid, format!("fd {fd}: pts index"), e))?;
        let p = ptys.entry(index).or_default();
        p.master = Some((pid, fd, id));
        return Ok(Some(FileKind::CharDev { path: link.into(), rdev }));
    }
    let Some(index) = pts_index_of(rdev) else { return Ok(None) };
    let main_devpts = std::fs::metadata("/dev/pts").map(|d| d.dev()).ok();
    if link != format!("/dev/pts/{index}") || main_devpts != Some(md.dev()) {
        return Err(refuse(pid, resource(), format!("pty slave {index} of another devpts instance than /dev/pts (a container's): its index could not be given back")));
    }
    ptys.entry(index).or_default().slaves.push((pid, fd, id));
    Ok(Some(FileKind::CharDev { path: link.into(), rdev }))
}

fn to_record(t: &sys::Termios2) -> Termios {
    Termios {
        iflag: t.c_iflag,
        oflag: t.c_oflag,
        cflag: t.c_cflag,
        lflag: t.c_lflag,
        line: t.c_line,
        cc: t.c_cc[..NCCS].to_vec(),
        ispeed: t.c_ispeed,
        ospeed: t.c_ospeed,
    }
}

/// Why unread canonical-mode input `data` would not come back the same when handed to the
/// line discipline again under settings `t` (with echo off), if it would not.
pub fn reprocess_problem(t: &Termios, data: &[u8]) -> Option<String> {
    let special = [
        libc::VINTR,
        libc::VQUIT,
        libc::VERASE,
        libc::VKILL,
        libc::VEOF,
        libc::VEOL,
        libc::VEOL2,
        libc::VSTART,
        libc::VSTOP,
        libc::VSUSP,
        libc::VREPRINT,
        libc::VWERASE,
        libc::VLNEXT,
        libc::VDISCARD,
    ];
    let canonical = t.lflag & libc::ICANON != 0;
    for &b in data {
        let control = (b < 0x20 && b != b'\n') || b == 0x7f || b == 0xff;
        let is_special = special.iter().any(|&i| t.cc.get(i).is_some_and(|&c| c != 0 && c == b));
        if canonical && (control || is_special) {
            return Some(format!(
                "unread canonical-mode input holds byte {b:#04x}, a control or special character that the line discipline would act on again"
            ));
        }
        let flow = t.iflag & libc::IXON != 0
            && [libc::VSTART, libc::VSTOP].iter().any(|&i| t.cc.get(i).is_some_and(|&c| c != 0 && c == b));
        if !canonical && flow {
            return Some(format!("unread input holds the flow-control character {b:#04x} (IXON is on)"));
        }
    }
    None
}

/// Reads what the master has not read (the slave's output) and hands it back.
fn take_output(pid: i32, m: &OwnedFd, packet: bool) -> Result<Vec<u8>, DumpError> {
    let raw = m.as_raw_fd();
    let sys = |what: &str, e| DumpError::sys(pid, format!("pty master: {what}"), e);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let ev = sys::poll_now(raw, libc::POLLIN).map_err(|e| sys("poll", e))?;
        if ev & libc::POLLIN == 0 {
            break;
        }
        let n = match sys::read_now(raw, &mut buf) {
            Ok(n) => n,
            // The slave is closed and nothing is left.
            Err(e) if e.errno() == Some(libc::EIO) => break,
            Err(e) => return Err(sys("read", e)),
        };
        if n == 0 {
            break;
        }
        let data = if packet { &buf[1..n] } else { &buf[..n] };
        out.extend_from_slice(data);
        if out.len() > MAX_OUTPUT {
            break;
        }
    }
    // Back where it was, whatever follows.
    sys::simulate_input(raw, &out).map_err(|e| sys("TIOCSTI (giving the unread output back)", e))?;
    Ok(out)
}

/// Reads what the slave has not read (the master's input) through a slave of our own and
/// hands it back to the line discipline with the same settings, echo off.
fn take_input(pid: i32, index: u32, m: &OwnedFd, locked: bool) -> Result<Vec<u8>, DumpError> {
    let sys = |what: &str, e| DumpError::sys(pid, format!("pty {index}: {what}"), e);
    if locked {
        sys::set_pts_locked(m.as_raw_fd(), false).map_err(|e| sys("unlock", e))?;
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(format!("/dev/pts/{index}"));
    if locked {
        sys::set_pts_locked(m.as_raw_fd(), true).map_err(|e| sys("lock again", e))?;
    }
    let s = opened.map_err(|e| DumpError::io(pid, format!("opening /dev/pts/{index}"), e))?;
    let raw = s.as_raw_fd();
    let t0 = sys::termios(raw).map_err(|e| sys("TCGETS2", e))?;
    let mut reading = t0;
    reading.c_lflag &= !(libc::ICANON | libc::ISIG | libc::IEXTEN | seamless_restore::tty::ECHO_FLAGS);
    reading.c_cc[libc::VMIN] = 0;
    reading.c_cc[libc::VTIME] = 0;
    sys::set_termios(raw, &reading).map_err(|e| sys("TCSETS2 (raw, to read)", e))?;
    let mut data = Vec::new();
    let mut buf = vec![0u8; 4096];
    let read = loop {
        match sys::read_now(raw, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => break Err(sys("read", e)),
        }
        if data.len() > MAX_INPUT {
            break Ok(());
        }
    };
    let giving = seamless_restore::tty::giving_termios(&t0);
    // The bytes go back even when they will be refused: the process keeps its input.
    let back = sys::set_termios(raw, &giving)
        .and_then(|()| sys::simulate_input(raw, &data))
        .map_err(|e| sys("TIOCSTI (giving the unread input back)", e));
    sys::set_termios(raw, &t0).map_err(|e| sys("TCSETS2 (settings back)", e))?;
    read?;
    back?;
    Ok(data)
}

/// Refuses a pty of the dump that a process outside the dump holds open or has as its
/// controlling terminal: the restored pair would be a new one, and that process would keep the
/// old, hung-up end.
fn outside_users(frozen: &Frozen, ptys: &BTreeMap<u32, PendingPty>) -> Result<(), DumpError> {
    let ours: std::collections::BTreeSet<i32> = frozen.procs().iter().map(|p| p.pid).collect();
    let mine = seamless_sys::proc::own_pid();
    let wanted: BTreeMap<String, u32> =
        ptys.iter().filter(|(_, p)| p.master.is_some()).map(|(&i, _)| (format!("/dev/pts/{i}"), i)).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let Ok(dir) = std::fs::read_dir("/proc") else { return Ok(()) };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if ours.contains(&pid) || pid == mine {
            continue;
        }
        let blame = |index: u32, how: &str| {
            let (mpid, mfd, _) = ptys[&index].master.unwrap_or((0, -1, 0));
            refuse(mpid, format!("fd {mfd} (/dev/ptmx, pts {index})"), format!("pid {pid}, outside the dump, {how} /dev/pts/{index}: restored, the pty would be a new one and that process would keep the old end; dump it too"))
        };
        if let Ok(st) = seamless_trace::procfs::read_stat(pid) {
            let tty = st.ufield(7);
            let (major, minor) = ((tty >> 8) & 0xfff, (tty & 0xff) | ((tty >> 12) & 0xfff00));
            if let Some(i) = pts_index_of(libc::makedev(major as u32, minor as u32)) {
                if tty != 0 && ptys.get(&i).is_some_and(|p| p.master.is_some()) {
                    return Err(blame(i, "has as its controlling terminal"));
                }
            }
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for f in fds.flatten() {
            if let Ok(l) = std::fs::read_link(f.path()) {
                if let Some(&i) = l.to_str().and_then(|l| wanted.get(l)) {
                    return Err(blame(i, "holds"));
                }
            }
        }
    }
    Ok(())
}

/// After every descriptor is classified: the controlling terminals of the processes, then
/// each pty pair's state (`read_queues`: also its unread bytes, read out and handed back).
pub fn finish(
    frozen: &Frozen,
    ptys: &BTreeMap<u32, PendingPty>,
    read_queues: bool,
) -> Result<Vec<PtyRecord>, DumpError> {
    let live: Vec<i32> = frozen.procs().iter().filter(|p| p.zombie.is_none()).map(|p| p.pid).collect();
    let mut pgid_sid = BTreeMap::new();
    let mut ctty = BTreeMap::new();
    let ppid: BTreeMap<i32, i32> = frozen.procs().iter().map(|p| (p.pid, p.ppid)).collect();
    for &pid in &live {
        let st = seamless_trace::procfs::read_stat(pid).map_err(|e| DumpError::io(pid, "reading /proc/PID/stat", e))?;
        let (pgid, sid, tty) = (st.field(5), st.field(6), st.ufield(7));
        pgid_sid.insert(pid, (pgid, sid));
        ctty.insert(pid, tty);
        if tty == 0 {
            continue;
        }
        // new_encode_dev: minor's low byte, major, then the minor's upper bits.
        let (major, minor) = ((tty >> 8) & 0xfff, (tty & 0xff) | ((tty >> 12) & 0xfff00));
        let resource = format!("controlling terminal (device {major}:{minor})");
        let Some(index) = pts_index_of(libc::makedev(major as u32, minor as u32)) else {
            return Err(refuse(pid, resource, "its controlling terminal is not a pty (a serial or virtual console, or the dumper's own terminal line): it cannot be given back after the restore; start the service without a controlling terminal (setsid, output redirected)"));
        };
        if ptys.get(&index).is_none_or(|p| p.master.is_none()) {
            return Err(refuse(pid, format!("controlling terminal /dev/pts/{index}"), "its master is held by no dumped process (a terminal emulator, sshd or multiplexer outside the dump, e.g. the dumper's own terminal): the terminal cannot be recreated; dump the process holding the master too, or start the service without a controlling terminal"));
        }
        // Restored processes inherit the terminal from their session leader, which takes it
        // before forking: each must descend from it in the dump.
        let mut up = pid;
        while i64::from(up) != sid {
            match ppid.get(&up) {
                Some(&pp) => up = pp,
                None => return Err(refuse(pid, format!("controlling terminal /dev/pts/{index}"), format!("the process does not descend from its session leader {sid} in the dump (it was reparented): restored, it would not inherit the terminal"))),
            }
        }
    }
    outside_users(frozen, ptys)?;
    let mut out = Vec::new();
    for (&index, p) in ptys {
        let Some((mpid, mfd, master)) = p.master else {
            let (pid, fd, _) = p.slaves[0];
            return Err(refuse(pid, format!("fd {fd} (/dev/pts/{index})"), "the pty's master is held by no dumped process (a terminal emulator, sshd or multiplexer outside the dump): the terminal cannot be recreated"));
        };
        let res = || format!("fd {mfd} (/dev/ptmx, pts {index})");
        let sys = |what: &str, e| DumpError::sys(mpid, format!("pty {index}: {what}"), e);
        let m = getfd(mpid, mfd)?;
        let raw = m.as_raw_fd();
        let t = sys::termios(raw).map_err(|e| sys("TCGETS2", e))?;
        if t.c_line != 0 {
            return Err(refuse(mpid, res(), format!("line discipline {} (only N_TTY is restored)", t.c_line)));
        }
        let winsize = sys::winsize(raw).map_err(|e| sys("TIOCGWINSZ", e))?;
        let locked = sys::pts_locked(raw).map_err(|e| sys("TIOCGPTLCK", e))?;
        let packet = sys::packet_mode(raw).map_err(|e| sys("TIOCGPKT", e))?;
        let master_exclusive = sys::exclusive(raw).map_err(|e| sys("TIOCGEXCL", e))?;
        let slave_exclusive = match p.slaves.first() {
            Some(&(spid, sfd, _)) => {
                let s = getfd(spid, sfd)?;
                sys::exclusive(s.as_raw_fd()).map_err(|e| sys("TIOCGEXCL (slave)", e))?
            }
            None => false,
        };
        let (session, foreground) = match sys::session(raw).map_err(|e| sys("TIOCGSID", e))? {
            None => (0, 0),
            Some(sid) => {
                let fg = sys::foreground(raw).map_err(|e| sys("TIOCGPGRP", e))?;
                if pgid_sid.get(&sid).is_none_or(|&(_, s)| i64::from(sid) != s) {
                    return Err(refuse(mpid, res(), format!("it is the controlling terminal of session {sid}, whose leader is not a live dumped process")));
                }
                if !pgid_sid.values().any(|&(g, s)| g == i64::from(fg) && s == i64::from(sid)) {
                    return Err(refuse(
                        mpid,
                        res(),
                        format!("its foreground process group {fg} has no live dumped process in session {sid}"),
                    ));
                }
                // Every process of the session has the terminal (none dropped it with TIOCNOTTY).
                let want = ctty.get(&sid).copied().unwrap_or(0);
                if let Some((&pid, _)) =
                    pgid_sid.iter().find(|(p, &(_, s))| s == i64::from(sid) && ctty.get(p).copied() != Some(want))
                {
                    return Err(refuse(pid, format!("session {sid}"), format!("the process has no controlling terminal (or another one) while its session has /dev/pts/{index}: restored, it would inherit the terminal from its session leader")));
                }
                (sid, fg)
            }
        };
        let node = std::fs::metadata(format!("/dev/pts/{index}"))
            .map_err(|e| DumpError::io(mpid, format!("stat /dev/pts/{index}"), e))?;
        if packet && sys::poll_now(raw, libc::POLLPRI).map_err(|e| sys("poll", e))? & libc::POLLPRI != 0 {
            return Err(refuse(mpid, res(), "a packet-mode status change (TIOCPKT) the master has not read yet"));
        }
        let termios = to_record(&t);
        let (input, output) = if read_queues {
            let output = take_output(mpid, &m, packet)?;
            let input = take_input(mpid, index, &m, locked)?;
            (input, output)
        } else {
            (Vec::new(), Vec::new())
        };
        if output.len() > MAX_OUTPUT {
            return Err(refuse(mpid, res(), format!("more than {MAX_OUTPUT} bytes of output the master has not read")));
        }
        if input.len() > MAX_INPUT {
            return Err(refuse(mpid, res(), format!("more than {MAX_INPUT} bytes of input the slave has not read")));
        }
        if let Some(why) = reprocess_problem(&termios, &input) {
            return Err(refuse(mpid, res(), why));
        }
        out.push(PtyRecord {
            index,
            master,
            termios,
            uid: node.uid(),
            gid: node.gid(),
            mode: node.mode() & 0o7777,
            winsize,
            locked,
            packet,
            master_exclusive,
            slave_exclusive,
            session,
            foreground,
            input,
            output,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn termios(lflag: u32, iflag: u32) -> Termios {
        let mut cc = vec![0u8; NCCS];
        cc[libc::VINTR] = 3;
        cc[libc::VERASE] = 0x7f;
        cc[libc::VSTART] = 0x11;
        cc[libc::VSTOP] = 0x13;
        cc[libc::VEOL] = b'#';
        Termios { lflag, iflag, cc, ..Termios::default() }
    }

    #[test]
    fn canonical_input_with_special_characters_is_refused() {
        let t = termios(libc::ICANON, 0);
        assert_eq!(reprocess_problem(&t, b"plain line\npartial"), None);
        assert!(reprocess_problem(&t, b"tab\there").is_some());
        assert!(reprocess_problem(&t, b"a#b").is_some(), "VEOL is special");
        let raw = termios(0, libc::IXON);
        assert_eq!(reprocess_problem(&raw, b"\x03\x7f\x00any"), None);
        assert!(reprocess_problem(&raw, b"\x13").is_some());
    }

    #[test]
    fn pts_device_numbers_give_the_index() {
        assert_eq!(pts_index_of(libc::makedev(136, 3)), Some(3));
        assert_eq!(pts_index_of(libc::makedev(136, 300)), Some(300));
        assert_eq!(pts_index_of(libc::makedev(137, 1)), Some(257));
        assert_eq!(pts_index_of(libc::makedev(4, 1)), None);
    }
}
