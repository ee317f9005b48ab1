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

/// `anon_inode:[eventfd]`: counter (hex in fdinfo) and `EFD_SEMAPHORE`.
pub fn eventfd(pid: i32, fd: i32) -> Result<FileKind, DumpError> {
    let t = fdinfo(pid, fd)?;
    let count = field(&t, "eventfd-count:")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| bad(pid, fd, "eventfd", &t))?;
    let semaphore = field(&t, "eventfd-semaphore:").is_some_and(|v| v == "1");
    Ok(FileKind::EventFd { count, semaphore })
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
pub fn timerfd(pid: i32, fd: i32) -> Result<FileKind, DumpError> {
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
    fn parses_timer_pairs() {
        assert_eq!(pair_ns("(1, 500)"), Some(1_000_000_500));
        assert_eq!(pair_ns(" (0, 0)"), Some(0));
        assert_eq!(pair_ns("1, 2"), None);
    }
}
