//! Unix socket queues and closed peers ([`UnixQueue`](seamless_image::records::UnixQueue),
//! [`UnixPeerGone`]), once every description is open and the processes exist (pids for the
//! credentials, `SCM_CREDENTIALS`, that messages carry), before any descriptor is installed:
//!
//! 1. `SO_PASSCRED` is switched off on every unix socket that had it, so the messages sent
//!    again carry no credentials of the restorer (a message queued without credentials reads
//!    as pid 0 with the overflow uid and gid, as before), and on again at the end.
//! 2. Sockets whose peer was closed are rebuilt: a socket pair when both ends were unnamed; a
//!    client connected to the listener of the peer's name (the image's, or a temporary one
//!    bound to that name) whose accepted end is then closed; an accepted connection taken
//!    from its listener in the image, whose client is then closed. The queued bytes or
//!    messages are sent through the end that is closed afterwards, so the process reads them,
//!    then end of file.
//! 3. Messages queued on other unix sockets are sent again, in order (with the recorded
//!    credentials where a message carries a process's): on a pair through the
//!    other end; on a named datagram socket from the image's socket of the sender's name if
//!    there is one (its send buffer holds them, as it did), or else from a temporary socket
//!    bound to that name (a path that exists is moved aside for that moment and put back;
//!    the temporary file is removed), or from an unnamed one.
//! 4. Datagram sockets that were connected to a named socket are connected again.
//!
//! Descriptors in flight ([`UnixInFlight`](seamless_image::records::UnixInFlight)) are
//! descriptions opened with all the others; each goes out again with its message
//! (`SCM_RIGHTS`), and the restorer's copies are closed with the rest afterwards, leaving the
//! queue's references.

use crate::plan::Plan;
use crate::{Failures, RestoreError};
use seamless_image::records::{Addr, FileKind, SockState, SocketRecord, UnixMessage, UnixPeerGone};
use seamless_sys::chain;
use seamless_sys::sockets as net;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Whether description `id` is opened here rather than by [`crate::sockets::open`].
pub fn deferred(plan: &Plan, id: u32) -> bool {
    plan.unix_gone.contains_key(&id)
}

fn err(id: u32, what: String, e: seamless_sys::SysError) -> RestoreError {
    RestoreError::File { id, what: format!("{what} ({}({}))", e.call, e.subject), source: e.source }
}

fn io(id: u32, what: String, e: std::io::Error) -> RestoreError {
    RestoreError::File { id, what, source: e }
}

/// A name bound for a moment: a path that existed before is moved aside and put back when
/// this is dropped, the file the bind made removed.
struct TempName {
    path: Option<PathBuf>,
    aside: Option<PathBuf>,
}

impl Drop for TempName {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
            if let Some(a) = &self.aside {
                if let Err(e) = std::fs::rename(a, p) {
                    log::warn!("putting {} back from {}: {e}", p.display(), a.display());
                }
            }
        }
    }
}

/// Binds `fd` to `name` for a moment (see [`TempName`]).
fn bind_temp(id: u32, fd: RawFd, name: &Addr) -> Result<TempName, RestoreError> {
    let Addr::Unix { path } = name else { return Ok(TempName { path: None, aside: None }) };
    if path.is_empty() {
        return Ok(TempName { path: None, aside: None });
    }
    if path[0] == 0 {
        net::bind(fd, &name.to_raw()).map_err(|e| err(id, format!("binding a sender to {name}"), e))?;
        return Ok(TempName { path: None, aside: None });
    }
    let p = PathBuf::from(std::str::from_utf8(path).unwrap_or(""));
    let mut t = TempName { path: None, aside: None };
    if std::fs::symlink_metadata(&p).is_ok() {
        let mut a = p.clone().into_os_string();
        a.push(format!(".seamless-aside-{}", std::process::id()));
        let a = PathBuf::from(a);
        std::fs::rename(&p, &a).map_err(|e| io(id, format!("moving {} aside", p.display()), e))?;
        t.aside = Some(a);
    }
    match net::bind(fd, &name.to_raw()) {
        Ok(()) => {
            t.path = Some(p);
            Ok(t)
        }
        Err(e) => {
            if let Some(a) = t.aside.take() {
                let _ = std::fs::rename(&a, &p);
            }
            Err(err(id, format!("binding a sender to {name}"), e))
        }
    }
}

/// A message to send again, with the restorer's descriptors of what it carries.
struct Msg<'a> {
    m: &'a UnixMessage,
    fds: Vec<RawFd>,
}

/// The messages queued on description `id`, each with the descriptors in flight it carries
/// (every one must be open).
fn messages<'a>(plan: &'a Plan, id: u32, by_id: &BTreeMap<u32, OwnedFd>) -> Result<Vec<Msg<'a>>, RestoreError> {
    let flights = plan.unix_in_flight.get(&id);
    let mut out = Vec::new();
    for (i, m) in (0u32..).zip(plan.unix_queues.get(&id).map(|v| v.as_slice()).unwrap_or(&[])) {
        let mut fds = Vec::new();
        for d in flights.and_then(|f| f.get(&i)).map(|v| v.as_slice()).unwrap_or(&[]) {
            let fd = by_id.get(d).ok_or_else(|| RestoreError::File {
                id,
                what: format!("message {i} carries file #{d}, which could not be opened"),
                source: std::io::ErrorKind::NotFound.into(),
            })?;
            fds.push(fd.as_raw_fd());
        }
        out.push(Msg { m, fds });
    }
    Ok(out)
}

/// Sends every message through `fd` (to `to` when given), growing the send buffer of a
/// socket that is closed afterwards (`grow`) so that all of them fit.
fn send_all(id: u32, fd: RawFd, to: Option<&Addr>, msgs: &[&Msg], grow: bool) -> Result<(), RestoreError> {
    if grow {
        let need: usize = msgs.iter().map(|m| m.m.data.len() + 1024).sum();
        let want = i32::try_from(need + (64 << 10)).unwrap_or(i32::MAX);
        net::set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, want)
            .map_err(|e| err(id, "growing a sender's buffer".into(), e))?;
    }
    let to = to.map(|a| a.to_raw()).unwrap_or_default();
    for (n, msg) in msgs.iter().enumerate() {
        let m = msg.m;
        let what =
            || format!("queueing unix message {n} of {} again ({} bytes from {})", msgs.len(), m.data.len(), m.from);
        let mut done = 0;
        loop {
            // The descriptors go with the first bytes (one buffer: a read hands them over when
            // it reaches it).
            let fds: &[RawFd] = if done == 0 { &msg.fds } else { &[] };
            let creds = if done == 0 { m.creds } else { None };
            done += net::send_msg(fd, &m.data[done..], libc::MSG_DONTWAIT, &to, fds, creds)
                .map_err(|e| err(id, what(), e))?;
            // Datagrams go whole; stream bytes may need more than one send.
            if done >= m.data.len() {
                break;
            }
        }
    }
    Ok(())
}

/// What the unix sockets of the image are, for finding peers, senders and listeners.
struct Index<'a> {
    /// Socket records by description id.
    socks: BTreeMap<u32, &'a SocketRecord>,
}

impl<'a> Index<'a> {
    fn new(plan: &'a Plan) -> Self {
        let socks = plan
            .descs
            .values()
            .filter_map(|d| match &d.kind {
                FileKind::Socket(s) if s.family == libc::AF_UNIX => Some((d.id, s)),
                _ => None,
            })
            .collect();
        Index { socks }
    }

    fn by_ino(&self, ino: u64) -> Option<u32> {
        self.socks.iter().find(|(_, s)| s.ino == ino).map(|(id, _)| *id)
    }

    /// The image's socket of type `ty` bound to `name` (a listener when `listening`).
    fn named(&self, name: &Addr, ty: i32, listening: bool) -> Option<u32> {
        if name.is_none() {
            return None;
        }
        self.socks
            .iter()
            .find(|(_, s)| s.ty == ty && &s.local == name && matches!(s.state, SockState::Listen { .. }) == listening)
            .map(|(id, _)| *id)
    }
}

/// Rebuilds, refills and connects (see the module documentation); failures give up the
/// descriptions' units. `configure` applies a rebuilt socket's options and extras.
pub fn finish(
    plan: &Plan,
    by_id: &mut BTreeMap<u32, OwnedFd>,
    fails: &mut Failures,
    configure: &dyn Fn(u32, RawFd, &SocketRecord) -> Result<(), RestoreError>,
) {
    if plan.unix_queues.is_empty() && plan.unix_gone.is_empty() && !plan.descs.values().any(connected_unix_dgram) {
        return;
    }
    let ix = Index::new(plan);
    let passcred: Vec<u32> = ix
        .socks
        .iter()
        .filter(|(id, s)| {
            by_id.contains_key(id)
                && s.opts.iter().any(|o| o.level == libc::SOL_SOCKET && o.name == libc::SO_PASSCRED && o.value != 0)
        })
        .map(|(id, _)| *id)
        .collect();
    for id in &passcred {
        if let Some(fd) = by_id.get(id) {
            let _ = net::set_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 0);
        }
    }
    for (id, g) in &plan.unix_gone {
        if fails.desc_failed(*id) {
            continue;
        }
        let Some(s) = ix.socks.get(id) else { continue };
        let made = messages(plan, *id, by_id).and_then(|msgs| {
            let all: Vec<&Msg> = msgs.iter().collect();
            orphan(*id, s, g, &all, &ix, by_id)
        });
        match made.and_then(|fd| {
            configure(*id, fd.as_raw_fd(), s)?;
            if let Some(d) = plan.descs.get(id) {
                seamless_sys::proc::set_status_flags(fd.as_raw_fd(), crate::abi::signed(d.flags))
                    .map_err(|e| err(*id, "fcntl(F_SETFL)".into(), e))?;
            }
            Ok(fd)
        }) {
            Ok(fd) => {
                by_id.insert(*id, fd);
            }
            Err(e) => fails.fail_desc(*id, chain(&e).to_string()),
        }
    }
    for id in plan.unix_queues.keys() {
        if plan.unix_gone.contains_key(id) || fails.desc_failed(*id) {
            continue;
        }
        let Some(s) = ix.socks.get(id) else { continue };
        if let Err(e) = messages(plan, *id, by_id).and_then(|msgs| refill(*id, s, &msgs, &ix, by_id)) {
            fails.fail_desc(*id, chain(&e).to_string());
        }
    }
    for (id, s) in &ix.socks {
        if !connected_unix_dgram_rec(s) || fails.desc_failed(*id) {
            continue;
        }
        let Some(fd) = by_id.get(id) else { continue };
        if let Err(e) = net::connect(fd.as_raw_fd(), &s.peer.to_raw()) {
            fails.fail_desc(*id, chain(&err(*id, format!("connecting to {}", s.peer), e)).to_string());
        }
    }
    for id in &passcred {
        if let Some(fd) = by_id.get(id) {
            if let Err(e) = net::set_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1) {
                fails.fail_desc(*id, chain(&err(*id, "SO_PASSCRED".into(), e)).to_string());
            }
        }
    }
}

fn connected_unix_dgram(d: &seamless_image::records::FileDesc) -> bool {
    matches!(&d.kind, FileKind::Socket(s) if connected_unix_dgram_rec(s))
}

fn connected_unix_dgram_rec(s: &SocketRecord) -> bool {
    s.family == libc::AF_UNIX && s.ty == libc::SOCK_DGRAM && matches!(s.state, SockState::Connected)
}

/// A socket whose peer was closed: connected, refilled through the peer, the peer closed.
fn orphan(
    id: u32,
    s: &SocketRecord,
    g: &UnixPeerGone,
    msgs: &[&Msg],
    ix: &Index,
    by_id: &BTreeMap<u32, OwnedFd>,
) -> Result<OwnedFd, RestoreError> {
    let fresh = || net::socket(libc::AF_UNIX, s.ty, 0).map_err(|e| err(id, "socket".into(), e));
    if g.accepted {
        // An accepted connection: connect a client to the image's listener of its name.
        let l = ix
            .named(&s.local, s.ty, true)
            .and_then(|l| by_id.get(&l))
            .ok_or_else(|| RestoreError::Corrupt { pid: 0, what: format!("file #{id}: no listener {}", s.local) })?;
        let c = fresh()?;
        net::connect(c.as_raw_fd(), &s.local.to_raw()).map_err(|e| err(id, format!("connecting to {}", s.local), e))?;
        let x = net::accept(l.as_raw_fd()).map_err(|e| err(id, format!("accepting from {}", s.local), e))?;
        send_all(id, c.as_raw_fd(), None, msgs, true)?;
        drop(c);
        return Ok(x);
    }
    if g.peer.is_none() {
        let (a, b) = net::socketpair(libc::AF_UNIX, s.ty).map_err(|e| err(id, "socketpair".into(), e))?;
        send_all(id, b.as_raw_fd(), None, msgs, true)?;
        drop(b);
        return Ok(a);
    }
    // A client whose server end was closed: through the listener of the peer's name.
    let ours = ix.named(&g.peer, s.ty, true).and_then(|l| by_id.get(&l));
    let (temp, _name) = match ours {
        Some(_) => (None, None),
        None => {
            let l = fresh()?;
            let name = bind_temp(id, l.as_raw_fd(), &g.peer)?;
            net::listen(l.as_raw_fd(), 1).map_err(|e| err(id, "listen".into(), e))?;
            (Some(l), Some(name))
        }
    };
    let listener = ours.or(temp.as_ref()).map(|l| l.as_raw_fd()).unwrap_or(-1);
    let a = fresh()?;
    net::connect(a.as_raw_fd(), &g.peer.to_raw()).map_err(|e| err(id, format!("connecting to {}", g.peer), e))?;
    let server = net::accept(listener).map_err(|e| err(id, format!("accepting from {}", g.peer), e))?;
    send_all(id, server.as_raw_fd(), None, msgs, true)?;
    drop(server);
    Ok(a)
}

/// Sends the messages of a socket that is still connected or named again.
fn refill(
    id: u32,
    s: &SocketRecord,
    msgs: &[Msg],
    ix: &Index,
    by_id: &BTreeMap<u32, OwnedFd>,
) -> Result<(), RestoreError> {
    if let SockState::UnixPair { peer, .. } = &s.state {
        let other = ix.by_ino(*peer).and_then(|p| by_id.get(&p)).ok_or_else(|| RestoreError::Corrupt {
            pid: 0,
            what: format!("file #{id}: the other end socket:[{peer}] of a pair is not open"),
        })?;
        let all: Vec<&Msg> = msgs.iter().collect();
        return send_all(id, other.as_raw_fd(), None, &all, false);
    }
    if s.local.is_none() {
        return Err(RestoreError::Corrupt {
            pid: 0,
            what: format!("file #{id}: messages queued on an unnamed socket"),
        });
    }
    for m in msgs {
        let one = [m];
        match ix.named(&m.m.from, s.ty, false).and_then(|o| by_id.get(&o)) {
            Some(owner) => send_all(id, owner.as_raw_fd(), Some(&s.local), &one, false)?,
            None => {
                let t = net::socket(libc::AF_UNIX, s.ty, 0).map_err(|e| err(id, "socket".into(), e))?;
                let name = bind_temp(id, t.as_raw_fd(), &m.m.from)?;
                send_all(id, t.as_raw_fd(), Some(&s.local), &one, false)?;
                drop(name);
            }
        }
    }
    Ok(())
}
