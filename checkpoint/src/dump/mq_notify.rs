//! `mq_notify(3)` registrations on POSIX message queues (record kind 63).
//!
//! The queue file shows the registered process, `sigev_notify` and `sigev_signo`
//! (`NOTIFY_PID:`, `NOTIFY:`, `SIGNO:`), not `sigev_value`. Reading the messages (received and
//! sent back, see [`super::objects`]) fires the registration anyway, since the first message
//! sent back arrives in an empty queue; so the value is read from the notification itself: the
//! signal the kernel queues to the registered process (stopped by the dump, so it stays
//! pending) carries it in `si_value` (`PTRACE_PEEKSIGINFO`). That signal is then taken out of
//! the process again (an injected `rt_sigtimedwait` with a zero timeout, signals blocked) and
//! the process registers again with the same `sigevent` (an injected `mq_notify` through its
//! own descriptor of the queue), so it is as it was, also with `--leave-running`. An empty
//! queue gets one probe message sent and received back for the same effect.
//!
//! Refused up front (the pre-check, which only reads): notification by a thread
//! (`SIGEV_THREAD`: the kernel writes to a netlink socket, which is not checkpointed), a
//! registered process outside the dump or holding no descriptor of the queue, a signal that
//! stops, continues or kills (firing it to read the value would act on the process), and a
//! signal of that number already pending in the process (the notification's could not be told
//! apart from it and taken out alone).

use super::files::FilePlan;
use super::process::Scratch;
use super::{DumpError, Frozen};
use seamless_image::records::{FileObject, MqNotification};
use seamless_sys::mqueue;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// `SI_MESGQ`: the `si_code` of a message queue notification.
const SI_MESGQ: i32 = -3;

/// A registration seen by the classification, read after the pre-check.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Index of the queue in `Objects::list`.
    pub index: usize,
    /// The dumped process and descriptor it was seen through, and that descriptor's path.
    pub seen: (i32, String),
    /// `NOTIFY_PID`: the registered process.
    pub owner: i32,
    /// `sigev_notify`.
    pub notify: i32,
    /// `sigev_signo`.
    pub signo: i32,
    /// The owner's descriptor of the queue (found by [`precheck`]).
    pub fd: i32,
}

fn refuse(pid: i32, what: &str, reason: impl Into<String>) -> DumpError {
    DumpError::Unsupported { pid, resource: what.into(), reason: reason.into() }
}

/// A field of a queue's `status` text (`QSIZE:n NOTIFY:n SIGNO:n NOTIFY_PID:n`), 0 if absent.
fn shows(status: &str, name: &str) -> i64 {
    status.split_whitespace().find_map(|w| w.strip_prefix(name)).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0)
}

/// The registration shown by a queue's `status` text, if any; `path` is the descriptor it was
/// read through.
pub fn parse(pid: i32, what: &str, status: &str, path: &str) -> Result<Option<Pending>, DumpError> {
    let field = |name: &str| shows(status, name);
    let owner = field("NOTIFY_PID:");
    if owner == 0 {
        return Ok(None);
    }
    let notify = i32::try_from(field("NOTIFY:")).unwrap_or(-1);
    if notify != MqNotification::SIGEV_SIGNAL && notify != MqNotification::SIGEV_NONE {
        return Err(refuse(
            pid,
            what,
            format!("pid {owner} registered for notification (mq_notify) by a thread (SIGEV_THREAD, notify {notify}): the kernel notifies through a netlink socket, which is not checkpointed"),
        ));
    }
    Ok(Some(Pending {
        index: 0,
        seen: (pid, path.to_string()),
        owner: i32::try_from(owner).unwrap_or(-1),
        notify,
        signo: i32::try_from(field("SIGNO:")).unwrap_or(0),
        fd: -1,
    }))
}

fn signo_of(info: &[u8]) -> i32 {
    i32::from_le_bytes([info[0], info[1], info[2], info[3]])
}

/// Refuses the registrations that cannot be read and made again exactly (see the module
/// docs); finds each owner's descriptor of its queue. Reads only.
pub fn precheck(frozen: &Frozen, plan: &mut FilePlan) -> Result<(), DumpError> {
    let objects = &mut plan.objects;
    for n in &mut objects.notify {
        let (pid, _) = n.seen;
        let FileObject::PosixMq(q) = &objects.list[n.index].0 else { continue };
        let what = format!("POSIX message queue /{} (mq_notify of pid {})", q.name, n.owner);
        let live = frozen.procs().iter().any(|p| p.pid == n.owner && p.zombie.is_none());
        if !live {
            return Err(refuse(
                pid,
                &what,
                format!(
                    "pid {} registered for notification is not in the dump: the registration could not be made again",
                    n.owner
                ),
            ));
        }
        let fd = plan
            .tables
            .get(&n.owner)
            .and_then(|t| t.fds.iter().find(|f| q.descs.contains(&f.desc)))
            .map(|f| f.fd)
            .ok_or_else(|| {
                refuse(
                    n.owner,
                    &what,
                    "the registered process holds no descriptor of the queue: the registration could not be made again",
                )
            })?;
        n.fd = fd;
        if n.notify != MqNotification::SIGEV_SIGNAL {
            continue;
        }
        if !(1..=64).contains(&n.signo) || MqNotification::REFUSED_SIGNALS.contains(&n.signo) {
            return Err(refuse(
                n.owner,
                &what,
                format!(
                    "notification by signal {}, which stops, continues or kills: reading its value would fire it",
                    n.signo
                ),
            ));
        }
        for shared in [true, false] {
            let pending = seamless_sys::ptrace::peek_siginfo(n.owner, shared)
                .map_err(|e| DumpError::sys(n.owner, "reading pending signals", e))?;
            if pending.iter().any(|i| signo_of(i) == n.signo) {
                return Err(refuse(
                    n.owner,
                    &what,
                    format!("signal {} of the notification is already pending in the process: the notification's own could not be told apart", n.signo),
                ));
            }
        }
    }
    Ok(())
}

/// Reads the messages of every registered queue and each registration's value, and registers
/// each again (see the module docs). After the pre-check; not for `seamless check`.
pub fn read(plan: &mut FilePlan) -> Result<(), DumpError> {
    if plan.objects.pre_flight {
        return Ok(());
    }
    for n in std::mem::take(&mut plan.objects.notify) {
        let FileObject::PosixMq(q) = &plan.objects.list[n.index].0 else { continue };
        let what = format!("POSIX message queue /{} (mq_notify of pid {})", q.name, n.owner);
        let (messages, value) = read_one(&n, &what)?;
        if let FileObject::PosixMq(q) = &mut plan.objects.list[n.index].0 {
            q.messages = messages;
        }
        let regs = plan.objects.notify_regs.entry(n.owner).or_default();
        regs.regs.push(MqNotification { fd: n.fd, notify: n.notify, signo: n.signo, value });
        regs.regs.sort_by_key(|r| r.fd);
    }
    Ok(())
}

fn status(f: &std::fs::File, pid: i32, what: &str) -> Result<String, DumpError> {
    use std::io::{Read, Seek};
    let mut f = f;
    f.seek(std::io::SeekFrom::Start(0)).map_err(|e| DumpError::io(pid, format!("{what}: rewinding"), e))?;
    let mut s = String::new();
    f.read_to_string(&mut s).map_err(|e| DumpError::io(pid, format!("{what}: reading its status"), e))?;
    Ok(s)
}

/// Messages as (priority, text), in the order they are received.
type Messages = Vec<(u32, Vec<u8>)>;

fn read_one(n: &Pending, what: &str) -> Result<(Messages, u64), DumpError> {
    let (pid, path) = (&n.seen.0, &n.seen.1);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| DumpError::io(*pid, format!("{what}: opening it"), e))?;
    let fd = f.as_raw_fd();
    let attr = mqueue::mq_getattr(fd).map_err(|e| DumpError::sys(*pid, what.to_string(), e))?;
    let mut messages = Vec::new();
    for _ in 0..attr.curmsgs {
        match mqueue::mq_receive(fd, attr.msgsize as usize) {
            Ok(m) => messages.push(m),
            Err(e) if e.errno() == Some(libc::EAGAIN) => break,
            Err(e) => return Err(DumpError::sys(*pid, what.to_string(), e)),
        }
    }
    // Fire the registration: the messages back in order, or a probe through the empty queue.
    if messages.is_empty() {
        mqueue::mq_send(fd, 0, b"p").map_err(|e| DumpError::sys(*pid, format!("{what}: probe"), e))?;
        mqueue::mq_receive(fd, attr.msgsize as usize).map_err(|e| DumpError::sys(*pid, format!("{what}: probe"), e))?;
    } else if let Some(e) = messages.iter().find_map(|(p, m)| mqueue::mq_send(fd, *p, m).err()) {
        return Err(DumpError::sys(*pid, format!("{what}: putting the messages back"), e));
    }
    let after = mqueue::mq_getattr(fd).map(|a| a.curmsgs).unwrap_or(u64::MAX);
    let fired = shows(&status(&f, *pid, what)?, "NOTIFY_PID:") == 0;
    let value = if n.notify == MqNotification::SIGEV_SIGNAL && fired { take_signal(n, what) } else { Ok(0) };
    // Registered again whatever happened above, so the process keeps it.
    let again = register(n, value.as_ref().copied().unwrap_or(0));
    if after != messages.len() as u64 || messages.len() as u64 != attr.curmsgs {
        return Err(refuse(
            *pid,
            what,
            "another process sent to or received from the queue while the dump read it: it is shared with processes outside the dump",
        ));
    }
    if !fired {
        return Err(refuse(
            *pid,
            what,
            "the registration did not fire when the messages were sent back (a receiver is waiting on the queue)",
        ));
    }
    let value = value?;
    again?;
    let now = status(&f, *pid, what)?;
    let shown = [shows(&now, "NOTIFY:"), shows(&now, "SIGNO:"), shows(&now, "NOTIFY_PID:")];
    if shown != [i64::from(n.notify), i64::from(n.signo), i64::from(n.owner)] {
        return Err(refuse(*pid, what, format!("registered again, the queue shows {now:?}")));
    }
    Ok((messages, value))
}

/// Reads the value of the notification signal just queued to the owner and takes the signal
/// out of the process again.
fn take_signal(n: &Pending, what: &str) -> Result<u64, DumpError> {
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    let pending = seamless_sys::ptrace::peek_siginfo(n.owner, true)
        .map_err(|e| DumpError::sys(n.owner, "reading pending signals", e))?;
    let field = |i: &[u8], off: usize| i32::from_le_bytes([i[off], i[off + 1], i[off + 2], i[off + 3]]);
    let ours = pending
        .iter()
        .find(|i| signo_of(&i[..]) == n.signo && field(&i[..], 8) == SI_MESGQ && field(&i[..], 16) == me)
        .ok_or_else(|| refuse(n.owner, what, format!("the notification signal {} did not arrive", n.signo)))?;
    let value = u64::from_le_bytes(ours[24..32].try_into().unwrap_or([0; 8]));
    let mut s = Scratch::new(n.owner, n.owner)?;
    let set = 1u64 << (n.signo - 1);
    let (set_at, info_at, ts_at) = (s.addr, s.addr + 64, s.addr + 256);
    let write =
        |s: &Scratch, at: u64, b: &[u8]| s.mem.write(at, b).map_err(|e| DumpError::io(n.owner, "writing scratch", e));
    let r = write(&s, set_at, &set.to_le_bytes()).and_then(|()| write(&s, ts_at, &[0u8; 16])).and_then(|()| {
        s.call(n.owner, "rt_sigtimedwait", libc::SYS_rt_sigtimedwait, [set_at, info_at, ts_at, 8, 0, 0])
    });
    let got = r.and_then(|signo| {
        let info = s.words(n.owner, 64, 2)?;
        let code = (info[1] as u32).cast_signed();
        Ok((signo, code))
    });
    s.release(n.owner)?;
    match got? {
        (signo, code) if signo == u64::from(n.signo.unsigned_abs()) && code == SI_MESGQ => Ok(value),
        (signo, code) => {
            Err(refuse(n.owner, what, format!("took signal {signo} code {code} out, not the notification")))
        }
    }
}

/// Registers the owner again through its descriptor: `mq_notify(fd, {value, signo, notify})`.
fn register(n: &Pending, value: u64) -> Result<(), DumpError> {
    let mut s = Scratch::new(n.owner, n.owner)?;
    let mut ev = [0u8; 64];
    ev[..8].copy_from_slice(&value.to_le_bytes());
    ev[8..12].copy_from_slice(&n.signo.to_le_bytes());
    ev[12..16].copy_from_slice(&n.notify.to_le_bytes());
    let at = s.addr;
    let r = s.mem.write(at, &ev).map_err(|e| DumpError::io(n.owner, "writing scratch", e)).and_then(|()| {
        s.call(n.owner, "mq_notify", libc::SYS_mq_notify, [u64::from(n.fd.unsigned_abs()), at, 0, 0, 0, 0])
    });
    s.release(n.owner)?;
    r.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_status_names_the_registration() {
        assert!(parse(1, "q", "QSIZE:0          NOTIFY:0     SIGNO:0     NOTIFY_PID:0     \n", "/p")
            .unwrap()
            .is_none());
        let p = parse(1, "q", "QSIZE:5          NOTIFY:0     SIGNO:40    NOTIFY_PID:77    \n", "/p").unwrap().unwrap();
        assert_eq!((p.owner, p.notify, p.signo, p.seen.1.as_str()), (77, 0, 40, "/p"));
        let p = parse(1, "q", "QSIZE:0 NOTIFY:1 SIGNO:0 NOTIFY_PID:78\n", "/p").unwrap().unwrap();
        assert_eq!((p.owner, p.notify), (78, MqNotification::SIGEV_NONE));
        match parse(1, "q", "QSIZE:0 NOTIFY:2 SIGNO:0 NOTIFY_PID:79\n", "/p") {
            Err(DumpError::Unsupported { reason, .. }) => assert!(reason.contains("SIGEV_THREAD"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
