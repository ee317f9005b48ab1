//! The panic hook of PID 1. `seamless-init` is built with `panic = "abort"`, and PID 1
//! exiting is a kernel panic; so a panic (a bug: the code is written not to panic) is logged
//! to `/dev/kmsg` with its message and location, and PID 1 then goes on with the boot the
//! way the normal path would from where it was, without restoring anything (the processes
//! of a restore in progress are killed, not left stopped under ptrace): mount the root
//! and switch to it, or switch to the already mounted root, or execute the real init. The
//! hook runs before the abort, and `exec` (or the rescue shell, or a halt loop) never returns
//! to it.
//!
//! The hook formats its log line on the stack and writes it with one `write`, without the
//! logger's lock (the panic may have happened while that lock was held). In a process that
//! is not PID 1 (a restore helper forked from it) it only logs.

use super::cmdline::BootParams;
use super::root;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What the boot still has to do to reach the real init, from where it is now.
#[derive(Debug, Clone)]
pub enum Fallback {
    /// Nothing mounted yet: mount the root filesystem as the command line says, switch to it
    /// and execute `init`.
    MountRoot {
        /// The boot parameters.
        params: Box<BootParams>,
        /// The real init.
        init: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// The root filesystem is mounted on [`root::NEW_ROOT`]: switch to it and execute `init`.
    SwitchRoot {
        /// The real init.
        init: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// Already on the real root: execute `init`.
    Exec {
        /// The real init.
        init: String,
        /// Its arguments.
        args: Vec<String>,
    },
}

static NEXT: Mutex<Option<Fallback>> = Mutex::new(None);
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Records what the hook must do if a panic happens from now on.
pub fn set(f: Fallback) {
    let mut g = match NEXT.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    *g = Some(f);
}

/// Installs the hook (PID 1 only).
pub fn install() {
    std::panic::set_hook(Box::new(|info| hook(info)));
}

/// A fixed buffer that keeps what fits (a log line needs no allocation).
struct Line {
    buf: [u8; 768],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() - 1 {
                break;
            }
            // One kmsg record: no line breaks inside.
            self.buf[self.len] = if b == b'\n' { b' ' } else { b };
            self.len += 1;
        }
        Ok(())
    }
}

/// The kernel-log line for a panic: priority 2 (critical), the prefix, message and location.
fn panic_line(info: &dyn std::fmt::Display, pid1: bool) -> Line {
    use std::fmt::Write as _;
    let mut l = Line { buf: [0; 768], len: 0 };
    let then = if pid1 {
        "the processes being restored are killed; going on with the boot to the real init"
    } else {
        "this helper process ends"
    };
    let _ = write!(l, "<2>{}: BUG: {info}; {then}", super::kmsg::PREFIX);
    l.buf[l.len] = b'\n';
    l.len += 1;
    l
}

fn hook(info: &dyn std::fmt::Display) {
    let pid1 = std::process::id() == 1;
    let line = panic_line(info, pid1);
    let bytes = &line.buf[..line.len];
    let logged = std::fs::OpenOptions::new().write(true).open("/dev/kmsg").and_then(|mut f| f.write_all(bytes));
    if logged.is_err() {
        let _ = std::io::stderr().write_all(&bytes[3..]);
    }
    // Only PID 1 goes on; and only once (a panic on the way is not retried).
    if !pid1 || PANICKED.swap(true, Ordering::SeqCst) {
        return;
    }
    seamless_restore::kill_in_progress();
    // A panic between unshare(CLONE_NEWTIME) and the return to our own time namespace would
    // leave the real init unable to vfork (clone(CLONE_VM) is EINVAL while the namespace for
    // children differs): go back first (fails harmlessly when nothing was unshared).
    if let Ok(own) = std::fs::File::open("/proc/self/ns/time") {
        let _ = seamless_sys::timens::enter_time_ns(&own);
    }
    let next = match NEXT.try_lock() {
        Ok(mut g) => g.take(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    let why = match next {
        Some(Fallback::MountRoot { params, init, args }) => match root::mount_root(&params) {
            Ok(()) => root::switch_root(&init, &args),
            Err(e) => seamless_sys::chain(&e).to_string(),
        },
        Some(Fallback::SwitchRoot { init, args }) => root::switch_root(&init, &args),
        Some(Fallback::Exec { init, args }) => root::exec_init(&init, &args),
        None => root::exec_init("/sbin/init", &[]),
    };
    root::rescue(&why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panic_line_is_one_critical_kmsg_record_and_bounded() {
        let l = panic_line(&"panicked at init/src/x.rs:3:9:\nindex out of bounds", true);
        let s = std::str::from_utf8(&l.buf[..l.len]).unwrap();
        assert!(s.starts_with("<2>seamless-init: BUG: panicked at init/src/x.rs:3:9: index out of bounds; "), "{s}");
        assert!(s.ends_with("real init\n"), "{s}");
        assert_eq!(s.matches('\n').count(), 1);
        let long = "x".repeat(5000);
        let l = panic_line(&long, false);
        assert_eq!(l.len, 768);
        assert_eq!(l.buf[767], b'\n');
    }
}
