//! pidfds: the process a pidfd refers to (`Pid:` of `/proc/PID/fdinfo`) must be a live
//! process of the dump; the restored pidfd then refers to the restored process. Refused, with
//! the reason: a pidfd of a process outside the dump or one that has exited, a thread pidfd
//! (`PIDFD_THREAD`).

use super::{DumpError, Frozen};
use seamless_image::records::pidfd::PIDFD_PATH;
use seamless_image::records::{FileKind, PidfdRecord};

fn refuse(pid: i32, fd: i32, reason: impl Into<String>) -> DumpError {
    DumpError::Unsupported { pid, resource: format!("fd {fd} ({PIDFD_PATH})"), reason: reason.into() }
}

/// The `Pid:` value of a pidfd's fdinfo text.
pub fn target(text: &str) -> Option<i32> {
    text.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|v| v.trim().parse().ok())
}

/// Classifies pidfd `fd` of `pid` (description `id`, status flags `flags`).
pub fn classify(
    pid: i32,
    fd: i32,
    id: u32,
    flags: u32,
    out: &mut Vec<(i32, i32, PidfdRecord)>,
) -> Result<FileKind, DumpError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .map_err(|e| DumpError::io(pid, format!("reading fdinfo of fd {fd}"), e))?;
    if flags & libc::O_EXCL as u32 != 0 {
        return Err(refuse(pid, fd, "a thread pidfd (PIDFD_THREAD) is not checkpointed"));
    }
    let target = target(&text).ok_or_else(|| refuse(pid, fd, "no Pid: line in /proc/PID/fdinfo"))?;
    if target <= 0 {
        return Err(refuse(pid, fd, "the process it refers to has exited (and was reaped): a pidfd of a process that is gone cannot be recreated"));
    }
    out.push((pid, fd, PidfdRecord { desc: id, pid: target }));
    Ok(FileKind::CharDev { path: PIDFD_PATH.into(), rdev: 0 })
}

/// Refuses the pidfds whose process is not a live process of the dump.
pub fn check(frozen: &Frozen, pidfds: &[(i32, i32, PidfdRecord)]) -> Result<(), DumpError> {
    for &(pid, fd, r) in pidfds {
        match frozen.procs().iter().find(|p| p.pid == r.pid) {
            Some(p) if p.zombie.is_none() => {}
            Some(_) => return Err(refuse(pid, fd, format!("it refers to pid {}, a zombie: only pidfds of live processes are recreated", r.pid))),
            None => return Err(refuse(pid, fd, format!("it refers to pid {}, which is not in the dump: restored, the pidfd would refer to nothing (or to another process with that pid); dump that process too or close the pidfd", r.pid))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_target_pid() {
        assert_eq!(
            super::target("pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1\nPid:\t4242\nNSpid:\t4242\n"),
            Some(4242)
        );
        assert_eq!(super::target("Pid:\t-1\n"), Some(-1));
        assert_eq!(super::target("pos:\t0\n"), None);
    }
}
