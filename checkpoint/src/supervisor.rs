//! The supervisor split: `seamless dump`, `upgrade` and `kexec --exec` do their work in a
//! worker child while the process the operator started (the pid a shell, systemd or an SSH
//! session knows) only waits for it, so that nothing that can happen to either one leaves
//! the machine worse off:
//!
//! - SIGINT, SIGTERM, SIGHUP or SIGQUIT to either process: the supervisor forwards it, the
//!   worker sees it at its next [`crate::interrupt::check`] and rolls back on its ordinary
//!   error path (processes resumed untouched, filesystems thawed, kernel unloaded, image
//!   left invalid) and says so.
//! - SIGKILL of the supervisor: the worker gets SIGHUP as its parent-death signal and rolls
//!   back the same way.
//! - SIGKILL or a crash of the worker: the kernel detaches the traced threads (which the
//!   worker keeps, between injected calls, with their own registers and single-stepping
//!   disarmed); the supervisor undoes what the worker's journal says is still outstanding:
//!   it takes the sockets the worker put into TCP repair mode out of it again, lifts the
//!   network lock the worker installed, thaws the filesystems the worker froze, unloads the
//!   kernel it loaded, and invalidates an image it completed.
//!
//! The journal is a pipe from the worker to the supervisor, one line per [`Undo`] event.
//! Outside a supervised run (library use, tests) [`note`] does nothing.

use crate::interrupt;
use seamless_sys::chain;
use seamless_sys::ptrace::{self, WaitStatus};
use seamless_sys::signal::{self, Fork, SigSet};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

/// One event of the worker's undo journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// A filesystem was frozen (by `FIFREEZE`).
    Frozen(PathBuf),
    /// ... and thawed again.
    Thawed(PathBuf),
    /// A kernel was loaded for kexec where none was loaded before.
    KernelLoaded,
    /// ... and unloaded again.
    KernelUnloaded,
    /// An image was completed in this region device.
    RegionImage(PathBuf),
    /// An image was completed in this cpio archive.
    CpioImage(PathBuf),
    /// The completed image was invalidated again.
    ImageInvalidated,
    /// The network lock table of this name was installed.
    NetLocked(String),
    /// ... and lifted again, or handed over to the restore (the dumped processes were killed).
    NetReleased(String),
    /// The TCP socket `ino` at descriptor `fd` of `pid` was put into repair mode; `reuse` is
    /// the `SO_REUSEADDR` value to put back when it leaves it.
    TcpRepair {
        /// Process.
        pid: i32,
        /// Its descriptor.
        fd: i32,
        /// Socket inode (the descriptor must still name it).
        ino: u64,
        /// `SO_REUSEADDR` before.
        reuse: i32,
    },
    /// Every socket left repair mode again (or its process was killed).
    TcpRepairLeft,
}

impl Undo {
    fn encode(&self) -> String {
        let p = |tag: &str, path: &Path| format!("{tag} {}\n", path.display());
        match self {
            Undo::Frozen(m) => p("frozen", m),
            Undo::Thawed(m) => p("thawed", m),
            Undo::KernelLoaded => "loaded\n".into(),
            Undo::KernelUnloaded => "unloaded\n".into(),
            Undo::RegionImage(d) => p("region-image", d),
            Undo::CpioImage(f) => p("cpio-image", f),
            Undo::ImageInvalidated => "invalidated\n".into(),
            Undo::NetLocked(t) => format!("net-locked {t}\n"),
            Undo::NetReleased(t) => format!("net-released {t}\n"),
            Undo::TcpRepair { pid, fd, ino, reuse } => format!("tcp-repair {pid} {fd} {ino} {reuse}\n"),
            Undo::TcpRepairLeft => "tcp-repair-left\n".into(),
        }
    }

    fn decode(line: &str) -> Option<Self> {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        Some(match tag {
            "frozen" => Undo::Frozen(rest.into()),
            "thawed" => Undo::Thawed(rest.into()),
            "loaded" => Undo::KernelLoaded,
            "unloaded" => Undo::KernelUnloaded,
            "region-image" => Undo::RegionImage(rest.into()),
            "cpio-image" => Undo::CpioImage(rest.into()),
            "invalidated" => Undo::ImageInvalidated,
            "net-locked" => Undo::NetLocked(rest.into()),
            "net-released" => Undo::NetReleased(rest.into()),
            "tcp-repair" => {
                let mut it = rest.split(' ');
                let mut next = || it.next()?.parse::<i64>().ok();
                let (pid, fd, ino, reuse) = (next()?, next()?, next()?, next()?);
                Undo::TcpRepair { pid: pid as i32, fd: fd as i32, ino: ino as u64, reuse: reuse as i32 }
            }
            "tcp-repair-left" => Undo::TcpRepairLeft,
            _ => return None,
        })
    }
}

/// What is still outstanding after the journal's events so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outstanding {
    /// Frozen filesystems, in freezing order.
    pub frozen: Vec<PathBuf>,
    /// A kernel the worker loaded is still loaded.
    pub loaded: bool,
    /// A completed image that is still valid.
    pub image: Option<Undo>,
    /// Network lock tables installed and neither lifted nor handed over.
    pub net_locks: Vec<String>,
    /// Sockets still in repair mode: (pid, fd, inode, SO_REUSEADDR before).
    pub repairing: Vec<(i32, i32, u64, i32)>,
}

impl Outstanding {
    /// Applies one event.
    pub fn apply(&mut self, u: Undo) {
        match u {
            Undo::Frozen(m) => self.frozen.push(m),
            Undo::Thawed(m) => self.frozen.retain(|f| *f != m),
            Undo::KernelLoaded => self.loaded = true,
            Undo::KernelUnloaded => self.loaded = false,
            Undo::RegionImage(_) | Undo::CpioImage(_) => self.image = Some(u),
            Undo::ImageInvalidated => self.image = None,
            Undo::NetLocked(t) => self.net_locks.push(t),
            Undo::NetReleased(t) => self.net_locks.retain(|x| *x != t),
            Undo::TcpRepair { pid, fd, ino, reuse } => self.repairing.push((pid, fd, ino, reuse)),
            Undo::TcpRepairLeft => self.repairing.clear(),
        }
    }

    /// Whether anything needs undoing.
    pub fn is_empty(&self) -> bool {
        self.frozen.is_empty()
            && !self.loaded
            && self.image.is_none()
            && self.net_locks.is_empty()
            && self.repairing.is_empty()
    }

    /// Undoes everything outstanding; returns one line per action taken or failed.
    pub fn undo(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(img) = &self.image {
            out.push(match invalidate(img) {
                Ok(what) => format!("invalidated the image in {what}"),
                Err(e) => format!("could not invalidate the image ({}): run `seamless region wipe`", chain(&e)),
            });
        }
        for m in self.frozen.iter().rev() {
            out.push(match seamless_sys::fsfreeze::thaw(m) {
                Ok(()) => format!("thawed {}", m.display()),
                Err(e) => {
                    format!("could not thaw {} ({}): run `fsfreeze --unfreeze {}`", m.display(), chain(&e), m.display())
                }
            });
        }
        for &(pid, fd, ino, reuse) in &self.repairing {
            out.push(match leave_repair_of(pid, fd, ino, reuse) {
                Ok(true) => format!("took the TCP connection at pid {pid} fd {fd} out of repair mode"),
                Ok(false) => continue,
                Err(e) => {
                    format!("pid {pid} fd {fd}: could not leave TCP repair mode ({}): restart the process", chain(&e))
                }
            });
        }
        for t in &self.net_locks {
            out.push(match seamless_restore::netlock::lift(t) {
                Ok(true) => format!("lifted the network lock (table inet {t})"),
                Ok(false) => format!("the network lock (table inet {t}) was already gone"),
                Err(e) => format!("could not lift the network lock ({}): run `nft delete table inet {t}`", chain(&e)),
            });
        }
        if self.loaded {
            out.push(match seamless_sys::kexec::kexec_file_unload() {
                Ok(()) => "unloaded the new kernel".into(),
                Err(e) => format!("could not unload the new kernel ({}): run `kexec -u`", chain(&e)),
            });
        }
        out
    }
}

/// Switches repair mode off on a live process's socket (the worker died holding it); `false`
/// when the process or that socket is gone (then nothing is left to do).
fn leave_repair_of(pid: i32, fd: i32, ino: u64, reuse: i32) -> Result<bool, seamless_sys::SysError> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
    if link.to_string_lossy() != format!("socket:[{ino}]") {
        return Ok(false);
    }
    let pfd = seamless_sys::proc::pidfd_open(pid)?;
    let sock = seamless_sys::proc::pidfd_getfd(&pfd, fd, pid)?;
    crate::dump::sockets::leave_repair_fd(std::os::fd::AsRawFd::as_raw_fd(&sock), reuse);
    Ok(true)
}

fn invalidate(img: &Undo) -> Result<String, seamless_image::ImageError> {
    match img {
        Undo::RegionImage(dev) => {
            let mut s = seamless_image::BlockStore::open(dev)?;
            seamless_image::invalidate(&mut s)?;
            Ok(dev.display().to_string())
        }
        Undo::CpioImage(f) => {
            let mut s = seamless_image::CpioStore::open(f)?;
            seamless_image::invalidate(&mut s)?;
            // The combined initramfs beside it holds a copy of the image (dm-crypt keys included).
            if let Some(dir) = f.parent() {
                let _ = std::fs::remove_file(dir.join("initrd.img"));
            }
            Ok(f.display().to_string())
        }
        _ => Ok(String::new()),
    }
}

static JOURNAL: OnceLock<std::fs::File> = OnceLock::new();

/// Records an event in the supervisor's journal (a no-op when not supervised).
pub fn note(u: &Undo) {
    if let Some(mut f) = JOURNAL.get() {
        // One short write(2) per line: atomic on a pipe. A dead supervisor (EPIPE) is no error.
        let _ = f.write_all(u.encode().as_bytes());
    }
}

/// Runs `work` in a supervised worker child (see the module documentation) and returns its
/// exit code. Must be called while the process is single-threaded. If the split cannot be
/// made, `work` runs in this process, with the interrupting signals still collected.
pub fn run(what: &str, work: impl FnOnce() -> ExitCode) -> ExitCode {
    if let Err(e) = interrupt::block() {
        log::warn!("cannot block the interrupting signals ({}): Ctrl-C will not roll back cleanly", chain(&e));
    }
    let (rd, wr) = match seamless_sys::proc::pipe() {
        Ok(p) => p,
        Err(e) => {
            log::warn!("no supervisor for {what} ({}); running unsupervised", chain(&e));
            return work();
        }
    };
    let me = seamless_sys::proc::own_pid();
    match signal::fork() {
        Ok(Fork::Child) => {
            drop(rd);
            if let Err(e) = seamless_sys::proc::set_parent_death_signal(libc::SIGHUP) {
                log::warn!("no parent-death signal ({}): killing the supervisor will not roll back", chain(&e));
            }
            if signal::parent_pid() != me {
                // The supervisor is already gone: behave as if it had been killed.
                let _ = seamless_sys::proc::kill(seamless_sys::proc::own_pid(), libc::SIGHUP);
            }
            let _ = JOURNAL.set(std::fs::File::from(wr));
            work()
        }
        Ok(Fork::Parent(pid)) => {
            drop(wr);
            supervise(what, pid, rd)
        }
        Err(e) => {
            log::warn!("no supervisor for {what} ({}); running unsupervised", chain(&e));
            work()
        }
    }
}

fn supervise(what: &str, worker: i32, journal: OwnedFd) -> ExitCode {
    let set = SigSet::of(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGCHLD]);
    let _ = signal::block(&set);
    let _ = seamless_sys::proc::set_status_flags(std::os::fd::AsRawFd::as_raw_fd(&journal), libc::O_NONBLOCK);
    let mut journal = std::fs::File::from(journal);
    let mut state = Outstanding::default();
    let mut pending = String::new();
    let status = loop {
        match signal::wait(&set, Duration::from_millis(200)) {
            Ok(Some((sig, _))) if sig != libc::SIGCHLD => {
                eprintln!(
                    "seamless: {} received: asking the {what} (pid {worker}) to stop and put everything back",
                    signal::name(sig)
                );
                let _ = seamless_sys::proc::kill(worker, sig);
            }
            _ => {}
        }
        read_journal(&mut journal, &mut pending, &mut state);
        match ptrace::try_wait(worker) {
            Ok(Some((_, st @ (WaitStatus::Exited(_) | WaitStatus::Signaled(_))))) => break st,
            Ok(_) => {}
            Err(e) => {
                // Not our child any more (cannot happen): nothing left to wait for.
                log::error!("waiting for the {what} (pid {worker}): {}", chain(&e));
                break WaitStatus::Exited(1);
            }
        }
    };
    read_journal(&mut journal, &mut pending, &mut state);
    match status {
        WaitStatus::Exited(0) if state.is_empty() => ExitCode::SUCCESS,
        WaitStatus::Exited(code) => {
            if !state.is_empty() {
                report(&format!("the {what} (pid {worker}) exited with status {code} and left work undone"), &state);
            }
            ExitCode::from(if code == 0 { 1 } else { code.clamp(1, 255) as u8 })
        }
        WaitStatus::Signaled(sig) => {
            report(
                &format!(
                    "the {what} (pid {worker}) was killed by {}; the kernel released the processes it held",
                    signal::name(sig)
                ),
                &state,
            );
            ExitCode::from(1)
        }
        WaitStatus::Stopped { .. } => ExitCode::from(1),
    }
}

fn report(headline: &str, state: &Outstanding) {
    eprintln!("seamless: {headline}");
    let done = state.undo();
    if done.is_empty() {
        eprintln!("seamless: nothing else was left to undo");
    }
    for line in done {
        eprintln!("seamless: {line}");
    }
}

fn read_journal(f: &mut std::fs::File, pending: &mut String, state: &mut Outstanding) {
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => pending.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    while let Some(i) = pending.find('\n') {
        let line: String = pending.drain(..=i).collect();
        if let Some(u) = Undo::decode(line.trim_end_matches('\n')) {
            state.apply(u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_events_round_trip_and_cancel_out() {
        let events = [
            Undo::KernelLoaded,
            Undo::Frozen("/boot".into()),
            Undo::Frozen("/".into()),
            Undo::RegionImage("/dev/pmem0".into()),
            Undo::CpioImage("/run/seamless/region.cpio".into()),
            Undo::Thawed("/boot".into()),
            Undo::NetLocked("seamless-lock-7".into()),
            Undo::TcpRepair { pid: 40, fd: 3, ino: 99, reuse: 1 },
        ];
        let mut s = Outstanding::default();
        for e in &events {
            assert_eq!(Undo::decode(e.encode().trim_end()).as_ref(), Some(e));
            s.apply(e.clone());
        }
        assert_eq!(s.frozen, vec![PathBuf::from("/")]);
        assert!(s.loaded);
        assert_eq!(s.image, Some(Undo::CpioImage("/run/seamless/region.cpio".into())));
        assert_eq!(s.net_locks, vec!["seamless-lock-7".to_string()]);
        assert_eq!(s.repairing, vec![(40, 3, 99, 1)]);
        for e in [
            Undo::Thawed("/".into()),
            Undo::KernelUnloaded,
            Undo::ImageInvalidated,
            Undo::NetReleased("seamless-lock-7".into()),
            Undo::TcpRepairLeft,
        ] {
            s.apply(e);
        }
        assert!(s.is_empty());
        assert_eq!(Undo::decode("nonsense"), None);
    }
}
