//! eventfd, signalfd and timerfd: their whole state is in `/proc/PID/fdinfo/FD` (counter and
//! semaphore mode; signal mask; clock, remaining time, interval, unread expirations). The
//! restorer recreates them and passes them in like any other open file.

use super::DumpError;
use seamless_image::records::{FileKind, TimerFdRecord};

fn fdinfo(pid: i32, fd: i32) -> Result<String, DumpError> {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .map_err(|e| DumpError::io(pid, format!("reading fdinfo of fd {fd}"), e))
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim)
}

fn bad(pid: i32, fd: i32, what: &str, text: &str) -> DumpError {
    DumpError::Unsupported {
        pid,
        resource: format!("fd {fd} ({what})"),
        reason: format!("cannot parse its fdinfo: {}", text.replace('\n', "; ")),
    }
}

/// A duplicate of the process's descriptor (the same open file description).
fn duplicate(pid: i32, fd: i32, what: &str) -> Result<std::os::fd::OwnedFd, DumpError> {
    let sys = |call: &str, e| DumpError::sys(pid, format!("fd {fd} ({what}): {call}"), e);
    let pidfd = seamless_sys::proc::pidfd_open(pid).map_err(|e| sys("pidfd_open", e))?;
    seamless_sys::proc::pidfd_getfd(&pidfd, fd, pid).map_err(|e| sys("pidfd_getfd", e))
}

/// `anon_inode:[eventfd]`: counter (hex in fdinfo) and `EFD_SEMAPHORE`.
///
/// Kernels before 6.6 do not show the semaphore mode in fdinfo; it is then found by what a
/// read returns, on a duplicate of the descriptor, the counter put back as it was: add 2
/// (the counter is then at least 2), read (semaphore mode gives 1, leaving `count + 1`; plain
/// mode gives `count + 2`, leaving 0), then read once more, or add `count` back. The tree is
/// frozen, so no reader of its own races with this; an edge-triggered epoll watch of a process
/// left running may see one extra wake-up.
pub fn eventfd(pid: i32, fd: i32) -> Result<FileKind, DumpError> {
    let t = fdinfo(pid, fd)?;
    let count = field(&t, "eventfd-count:")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| bad(pid, fd, "eventfd", &t))?;
    let semaphore = match field(&t, "eventfd-semaphore:") {
        Some(v) => v == "1",
        None => probe_semaphore(pid, fd, count)?,
    };
    Ok(FileKind::EventFd { count, semaphore })
}

fn probe_semaphore(pid: i32, fd: i32, count: u64) -> Result<bool, DumpError> {
    use seamless_sys::eventfd::{eventfd_add, eventfd_read};
    use std::os::fd::AsRawFd;
    let dup = duplicate(pid, fd, "eventfd")?;
    let d = dup.as_raw_fd();
    let sys = |e| DumpError::sys(pid, format!("fd {fd} (eventfd): probing its mode"), e);
    if count > u64::MAX - 3 {
        return Err(bad(pid, fd, "eventfd counter too close to its maximum to probe its mode", ""));
    }
    eventfd_add(d, 2).map_err(sys)?;
    let got = eventfd_read(d).map_err(sys)?;
    let semaphore = got == 1;
    if semaphore {
        eventfd_read(d).map_err(sys)?;
    } else if count > 0 {
        eventfd_add(d, count).map_err(sys)?;
    }
    let after = field(&fdinfo(pid, fd)?, "eventfd-count:").and_then(|v| u64::from_str_radix(v, 16).ok());
    if after != Some(count) {
        return Err(bad(pid, fd, &format!("eventfd counter {after:?} after probing its mode, was {count}"), ""));
    }
    Ok(semaphore)
}

/// `anon_inode:[signalfd]`: the signal mask.
pub fn signalfd(pid: i32, fd: i32) -> Result<FileKind, DumpError> {
    let t = fdinfo(pid, fd)?;
    let mask = field(&t, "sigmask:")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| bad(pid, fd, "signalfd", &t))?;
    Ok(FileKind::SignalFd { mask })
}

fn pair_ns(v: &str) -> Option<u64> {
    let v = v.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (s, ns) = v.split_once(',')?;
    Some(s.trim().parse::<u64>().ok()? * 1_000_000_000 + ns.trim().parse::<u64>().ok()?)
}

/// `anon_inode:[timerfd]`: clock, remaining time, interval, unread expirations.
///
/// A periodic timer that expired unread shows no time left in fdinfo until something moves it
/// to its next expiry; `timerfd_gettime` on a duplicate does (counting the missed expirations
/// into the unread ones), so fdinfo is read after it. Recorded without that, such a timer came
/// back disarmed.
pub fn timerfd(pid: i32, fd: i32) -> Result<FileKind, DumpError> {
    use std::os::fd::AsRawFd;
    let dup = duplicate(pid, fd, "timerfd")?;
    seamless_sys::eventfd::timerfd_gettime(dup.as_raw_fd())
        .map_err(|e| DumpError::sys(pid, format!("fd {fd} (timerfd): timerfd_gettime"), e))?;
    let t = fdinfo(pid, fd)?;
    let p = || -> Option<TimerFdRecord> {
        Some(TimerFdRecord {
            clock: field(&t, "clockid:")?.parse().ok()?,
            ticks: field(&t, "ticks:")?.parse().ok()?,
            settime_flags: u32::from_str_radix(field(&t, "settime flags:")?, 8).ok()?,
            value_ns: pair_ns(field(&t, "it_value:")?)?,
            interval_ns: pair_ns(field(&t, "it_interval:")?)?,
        })
    };
    Ok(FileKind::TimerFd(p().ok_or_else(|| bad(pid, fd, "timerfd", &t))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_semaphore_probe_tells_the_modes_apart_and_keeps_the_counter() {
        use std::os::fd::AsRawFd;
        let me = std::process::id() as i32;
        for (count, flags, semaphore) in [
            (5, libc::EFD_SEMAPHORE, true),
            (5, 0, false),
            (0, 0, false),
            (0, libc::EFD_SEMAPHORE, true),
            (1, 0, false),
        ] {
            let e = seamless_sys::eventfd::eventfd(count, flags).unwrap();
            assert_eq!(probe_semaphore(me, e.as_raw_fd(), u64::from(count)).unwrap(), semaphore, "count {count}");
            let left = field(&fdinfo(me, e.as_raw_fd()).unwrap(), "eventfd-count:").map(|v| v.to_string());
            assert_eq!(left, Some(format!("{count:x}")), "the counter after probing");
        }
    }

    #[test]
    fn parses_timer_pairs() {
        assert_eq!(pair_ns("(1, 500)"), Some(1_000_000_500));
        assert_eq!(pair_ns(" (0, 0)"), Some(0));
        assert_eq!(pair_ns("1, 2"), None);
    }
}
