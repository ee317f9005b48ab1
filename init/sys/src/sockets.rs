//! Sockets for checkpoint/restore: creation, socket options as integers or raw bytes, raw
//! socket addresses, queue sizes, `TCP_REPAIR` and its companions, `sock_diag` queries, and
//! bringing an interface up.
//!
//! Addresses are passed as the raw bytes of a `struct sockaddr_*` (decoded by the image
//! crate); this module only moves them between the kernel and the caller.

use crate::error::{check, own};
use crate::{SysError, SysResult};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// `SIOCINQ` (= `FIONREAD`): bytes in the receive queue.
pub const SIOCINQ: libc::c_ulong = 0x541B;
/// `SIOCOUTQ` (= `TIOCOUTQ`): bytes in the send queue (sent but unacknowledged + unsent).
pub const SIOCOUTQ: libc::c_ulong = 0x5411;
/// `SIOCOUTQNSD`: bytes in the send queue not sent yet.
pub const SIOCOUTQNSD: libc::c_ulong = 0x894B;
/// `TCP_REPAIR_QUEUE` value selecting the receive queue.
pub const TCP_RECV_QUEUE: i32 = 1;
/// `TCP_REPAIR_QUEUE` value selecting the send queue.
pub const TCP_SEND_QUEUE: i32 = 2;
/// `TCP_REPAIR_WINDOW`.
pub const TCP_REPAIR_WINDOW: i32 = 29;
/// `SO_PEEK_OFF`.
pub const SO_PEEK_OFF: i32 = 42;
/// `NETLINK_SOCK_DIAG`.
pub const NETLINK_SOCK_DIAG: i32 = 4;
/// `SOCK_DIAG_BY_FAMILY` message type.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// TCP option codes for `TCP_REPAIR_OPTIONS`.
pub const TCPOPT_MSS: u32 = 2;
/// Window scale option (value: `snd_wscale | rcv_wscale << 16`).
pub const TCPOPT_WINDOW: u32 = 3;
/// SACK permitted.
pub const TCPOPT_SACK_PERM: u32 = 4;
/// Timestamps.
pub const TCPOPT_TIMESTAMP: u32 = 8;

/// `socket(domain, ty | SOCK_CLOEXEC, proto)`.
///
/// Man page: `socket(2)`.
pub fn socket(domain: i32, ty: i32, proto: i32) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    let fd = check(r.into(), "socket", || format!("domain {domain} type {ty} protocol {proto}"))?;
    // SAFETY: the kernel has just returned `fd`; nothing else owns it.
    Ok(unsafe { own(fd) })
}

/// `socketpair(domain, ty | SOCK_CLOEXEC, 0)`.
///
/// Man page: `socketpair(2)`.
pub fn socketpair(domain: i32, ty: i32) -> SysResult<(OwnedFd, OwnedFd)> {
    let mut sv = [-1 as libc::c_int; 2];
    // SAFETY: `sv` is a valid array of two ints the kernel fills in.
    let r = unsafe { libc::socketpair(domain, ty | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) };
    check(r.into(), "socketpair", || format!("domain {domain} type {ty}"))?;
    // SAFETY: the kernel has just returned both descriptors; nothing else owns them.
    Ok(unsafe { (own(sv[0].into()), own(sv[1].into())) })
}

/// `getsockopt` of an `int` option.
///
/// Man page: `getsockopt(2)`.
pub fn get_int(fd: RawFd, level: i32, opt: i32) -> SysResult<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of the advertised size.
    let r = unsafe { libc::getsockopt(fd, level, opt, (&mut v as *mut libc::c_int).cast(), &mut len) };
    check(r.into(), "getsockopt", || format!("fd {fd} level {level} option {opt}"))?;
    Ok(v)
}

/// `setsockopt` of an `int` option.
///
/// Man page: `setsockopt(2)`.
pub fn set_int(fd: RawFd, level: i32, opt: i32, val: i32) -> SysResult<()> {
    set_bytes(fd, level, opt, &val.to_ne_bytes())
}

/// `getsockopt` into a buffer; returns the length the kernel wrote.
///
/// Man page: `getsockopt(2)`.
pub fn get_bytes(fd: RawFd, level: i32, opt: i32, buf: &mut [u8]) -> SysResult<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is valid for writes of `len` bytes; `len` is valid for writes.
    let r = unsafe { libc::getsockopt(fd, level, opt, buf.as_mut_ptr().cast(), &mut len) };
    check(r.into(), "getsockopt", || format!("fd {fd} level {level} option {opt}"))?;
    Ok(len as usize)
}

/// `setsockopt` from a buffer.
///
/// Man page: `setsockopt(2)`.
pub fn set_bytes(fd: RawFd, level: i32, opt: i32, val: &[u8]) -> SysResult<()> {
    // SAFETY: `val` is valid for reads of its length.
    let r = unsafe { libc::setsockopt(fd, level, opt, val.as_ptr().cast(), val.len() as libc::socklen_t) };
    check(r.into(), "setsockopt", || format!("fd {fd} level {level} option {opt}"))?;
    Ok(())
}

fn name_call(fd: RawFd, peer: bool) -> SysResult<Vec<u8>> {
    // SAFETY: sockaddr_storage is plain old data; zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: `ss` is large enough for any address and `len` says so.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    check(r.into(), if peer { "getpeername" } else { "getsockname" }, || format!("fd {fd}"))?;
    let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `ss` is initialised (zeroed, then written by the kernel) and at least `len` bytes long.
    let bytes = unsafe { std::slice::from_raw_parts((&ss as *const libc::sockaddr_storage).cast::<u8>(), len) };
    Ok(bytes.to_vec())
}

/// `getsockname`: the raw local address.
///
/// Man page: `getsockname(2)`.
pub fn local_addr(fd: RawFd) -> SysResult<Vec<u8>> {
    name_call(fd, false)
}

/// `getpeername`: the raw peer address (`ENOTCONN` when unconnected).
///
/// Man page: `getpeername(2)`.
pub fn peer_addr(fd: RawFd) -> SysResult<Vec<u8>> {
    name_call(fd, true)
}

fn addr_call(fd: RawFd, addr: &[u8], connect: bool) -> SysResult<()> {
    // SAFETY: sockaddr_storage is plain old data; zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let n = addr.len().min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: both buffers are valid for `n` bytes and do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(addr.as_ptr(), (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(), n) };
    let p = (&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: `ss` holds `n` meaningful bytes of a socket address.
    let r = unsafe {
        if connect {
            libc::connect(fd, p, n as libc::socklen_t)
        } else {
            libc::bind(fd, p, n as libc::socklen_t)
        }
    };
    check(r.into(), if connect { "connect" } else { "bind" }, || format!("fd {fd}"))?;
    Ok(())
}

/// `bind` to a raw address.
///
/// Man page: `bind(2)`.
pub fn bind(fd: RawFd, addr: &[u8]) -> SysResult<()> {
    addr_call(fd, addr, false)
}

/// `connect` to a raw address.
///
/// Man page: `connect(2)`.
pub fn connect(fd: RawFd, addr: &[u8]) -> SysResult<()> {
    addr_call(fd, addr, true)
}

/// `listen`.
///
/// Man page: `listen(2)`.
pub fn listen(fd: RawFd, backlog: i32) -> SysResult<()> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::listen(fd, backlog) };
    check(r.into(), "listen", || format!("fd {fd} backlog {backlog}"))?;
    Ok(())
}

/// `recv(fd, buf, flags)`; returns the byte count.
///
/// Man page: `recv(2)`.
pub fn recv(fd: RawFd, buf: &mut [u8], flags: i32) -> SysResult<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
    Ok(check(r as libc::c_long, "recv", || format!("fd {fd}"))? as usize)
}

/// `send(fd, buf, flags)`; returns the byte count.
///
/// Man page: `send(2)`.
pub fn send(fd: RawFd, buf: &[u8], flags: i32) -> SysResult<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags | libc::MSG_NOSIGNAL) };
    Ok(check(r as libc::c_long, "send", || format!("fd {fd}"))? as usize)
}

/// `recvfrom(fd, buf, flags)`: the byte count (with `MSG_TRUNC`, the datagram's real length)
/// and the raw source address (empty when the kernel gave none).
///
/// Man page: `recvfrom(2)`.
pub fn recv_from(fd: RawFd, buf: &mut [u8], flags: i32) -> SysResult<(usize, Vec<u8>)> {
    // SAFETY: sockaddr_storage is plain old data; zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `buf` is valid for writes of its length, `ss` for `len` bytes, `len` for writes.
    let r = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>(),
            &mut len,
        )
    };
    let n = check(r as libc::c_long, "recvfrom", || format!("fd {fd}"))? as usize;
    let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `ss` is initialised (zeroed, then written by the kernel) and at least `len` bytes long.
    let addr = unsafe { std::slice::from_raw_parts((&ss as *const libc::sockaddr_storage).cast::<u8>(), len) };
    Ok((n, addr.to_vec()))
}

/// `sendto(fd, buf, flags, addr)` with a raw destination address; returns the byte count.
///
/// Man page: `sendto(2)`.
pub fn send_to(fd: RawFd, buf: &[u8], flags: i32, addr: &[u8]) -> SysResult<usize> {
    // SAFETY: sockaddr_storage is plain old data; zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let n = addr.len().min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: both buffers are valid for `n` bytes and do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(addr.as_ptr(), (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(), n) };
    // SAFETY: `buf` is valid for reads of its length and `ss` holds `n` bytes of an address.
    let r = unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            flags | libc::MSG_NOSIGNAL,
            (&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr>(),
            n as libc::socklen_t,
        )
    };
    Ok(check(r as libc::c_long, "sendto", || format!("fd {fd}"))? as usize)
}

/// One classic BPF instruction (`struct sock_filter`): opcode, jump offsets, constant.
pub type BpfInsn = (u16, u8, u8, u32);

/// Largest classic BPF program the kernel accepts (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// The classic BPF program attached to a socket (`SO_GET_FILTER`); empty when none is.
/// `EACCES` means an eBPF program (`SO_ATTACH_BPF`), which has no classic form to read.
///
/// Man page: `socket(7)` (`SO_GET_FILTER`), `getsockopt(2)`.
pub fn get_filter(fd: RawFd) -> SysResult<Vec<BpfInsn>> {
    // With a zero length the kernel returns the number of instructions in `len`.
    let mut len: libc::socklen_t = 0;
    // SAFETY: a null buffer with length 0 is only counted, never written.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, std::ptr::null_mut(), &mut len) };
    check(r.into(), "getsockopt(SO_GET_FILTER)", || format!("fd {fd}"))?;
    let count = (len as usize).min(BPF_MAXINSNS);
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut raw = vec![libc::sock_filter { code: 0, jt: 0, jf: 0, k: 0 }; count];
    let mut len = count as libc::socklen_t;
    // SAFETY: `raw` holds `len` sock_filter entries; the kernel writes at most that many
    // (the length is counted in instructions for this option).
    let r =
        unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, raw.as_mut_ptr().cast(), &mut len) };
    check(r.into(), "getsockopt(SO_GET_FILTER)", || format!("fd {fd}"))?;
    raw.truncate((len as usize).min(count));
    Ok(raw.into_iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect())
}

/// Attaches a classic BPF program to a socket (`SO_ATTACH_FILTER`).
///
/// Man page: `socket(7)` (`SO_ATTACH_FILTER`), `setsockopt(2)`.
pub fn attach_filter(fd: RawFd, prog: &[BpfInsn]) -> SysResult<()> {
    let mut raw: Vec<libc::sock_filter> =
        prog.iter().map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k }).collect();
    let fprog = libc::sock_fprog { len: raw.len().min(u16::MAX as usize) as u16, filter: raw.as_mut_ptr() };
    // SAFETY: `fprog` points at `raw`, which lives until the call returns; the kernel copies it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    check(r.into(), "setsockopt(SO_ATTACH_FILTER)", || format!("fd {fd}, {} instructions", prog.len()))?;
    Ok(())
}

/// An `ioctl` returning an `int` through its pointer argument (`SIOCINQ`, `SIOCOUTQ`, ...).
///
/// Man page: `ioctl(2)`, the requests of `tcp(7)` and `unix(7)`.
pub fn ioctl_int(fd: RawFd, req: libc::c_ulong) -> SysResult<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the requests used with this helper write one int through the pointer.
    let r = unsafe { libc::ioctl(fd, req as _, &mut v as *mut libc::c_int) };
    check(r.into(), "ioctl", || format!("fd {fd} request {req:#x}"))?;
    Ok(v)
}

/// `TCP_REPAIR` on (1) or off (0).
///
/// Man page: `setsockopt(2)` `TCP_REPAIR`, in `tcp(7)`.
pub fn tcp_repair(fd: RawFd, on: bool) -> SysResult<()> {
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR, i32::from(on))
}

/// Selects the queue (`TCP_RECV_QUEUE` / `TCP_SEND_QUEUE`) later repair calls apply to.
///
/// Man page: `setsockopt(2)` `TCP_REPAIR_QUEUE`, in `tcp(7)`.
pub fn tcp_repair_queue(fd: RawFd, queue: i32) -> SysResult<()> {
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR_QUEUE, queue)
}

/// `TCP_QUEUE_SEQ` of the selected queue (`write_seq` for send, `rcv_nxt` for receive).
///
/// Man page: `getsockopt(2)` `TCP_QUEUE_SEQ`, in `tcp(7)`.
pub fn tcp_queue_seq(fd: RawFd) -> SysResult<u32> {
    Ok(get_int(fd, libc::IPPROTO_TCP, libc::TCP_QUEUE_SEQ)? as u32)
}

/// Sets `TCP_QUEUE_SEQ` of the selected queue (only on a closed socket in repair mode).
///
/// Man page: `setsockopt(2)` `TCP_QUEUE_SEQ`, in `tcp(7)`.
pub fn set_tcp_queue_seq(fd: RawFd, seq: u32) -> SysResult<()> {
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_QUEUE_SEQ, seq as i32)
}

/// `TCP_REPAIR_OPTIONS` with `(code, value)` pairs.
///
/// Man page: `setsockopt(2)` `TCP_REPAIR_OPTIONS`, in `tcp(7)`.
pub fn tcp_repair_options(fd: RawFd, opts: &[(u32, u32)]) -> SysResult<()> {
    let bytes: Vec<u8> = opts.iter().flat_map(|(c, v)| c.to_ne_bytes().into_iter().chain(v.to_ne_bytes())).collect();
    set_bytes(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR_OPTIONS, &bytes)
}

/// `struct tcp_repair_window`: `snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup`.
///
/// Man page: `getsockopt(2)` `TCP_REPAIR_WINDOW`, in `tcp(7)`.
pub fn tcp_repair_window(fd: RawFd) -> SysResult<[u32; 5]> {
    let mut b = [0u8; 20];
    let n = get_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &mut b)?;
    if n != 20 {
        return Err(SysError::new(
            "getsockopt(TCP_REPAIR_WINDOW)",
            format!("fd {fd}"),
            std::io::Error::other(format!("{n} bytes")),
        ));
    }
    let w = |i: usize| u32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
    Ok([w(0), w(1), w(2), w(3), w(4)])
}

/// Sets `TCP_REPAIR_WINDOW`.
///
/// Man page: `setsockopt(2)` `TCP_REPAIR_WINDOW`, in `tcp(7)`.
pub fn set_tcp_repair_window(fd: RawFd, w: [u32; 5]) -> SysResult<()> {
    let b: Vec<u8> = w.iter().flat_map(|x| x.to_ne_bytes()).collect();
    set_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &b)
}

/// The fields of `struct tcp_info` checkpointing needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpInfo {
    /// `tcpi_state` (`TCP_ESTABLISHED` = 1, `TCP_LISTEN` = 10, `TCP_CLOSE` = 7, ...).
    pub state: u8,
    /// `tcpi_options` (`TCPI_OPT_TIMESTAMPS` 1, `SACK` 2, `WSCALE` 4).
    pub options: u8,
    /// Send window scale.
    pub snd_wscale: u8,
    /// Receive window scale.
    pub rcv_wscale: u8,
}

/// `TCP_INFO` (the leading fields).
///
/// Man page: `getsockopt(2)` `TCP_INFO`, in `tcp(7)`.
pub fn tcp_info(fd: RawFd) -> SysResult<TcpInfo> {
    let mut b = [0u8; 256];
    let n = get_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut b)?;
    if n < 8 {
        return Err(SysError::new("getsockopt(TCP_INFO)", format!("fd {fd}"), std::io::Error::other("short")));
    }
    Ok(TcpInfo { state: b[0], options: b[5], snd_wscale: b[6] & 0xf, rcv_wscale: b[6] >> 4 })
}

/// Sends one `SOCK_DIAG_BY_FAMILY` dump request (`req` = the family-specific request struct,
/// without the netlink header) and returns the payload of every answer message.
///
/// Man page: `sock_diag(7)` over `netlink(7)`.
pub fn sock_diag(req: &[u8]) -> SysResult<Vec<Vec<u8>>> {
    let nl = socket(libc::AF_NETLINK, libc::SOCK_DGRAM, NETLINK_SOCK_DIAG)?;
    let len = 16 + req.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(req);
    send(nl.as_raw_fd(), &msg, 0)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = recv(nl.as_raw_fd(), &mut buf, 0)?;
        let mut off = 0;
        while off + 16 <= n {
            let mlen = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
            let mtype = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if mlen < 16 || off + mlen > n {
                return Err(SysError::new("sock_diag", "reply", std::io::Error::other("malformed netlink message")));
            }
            if mtype == libc::NLMSG_DONE as u16 {
                return Ok(out);
            }
            if mtype == libc::NLMSG_ERROR as u16 {
                let e = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap_or([0; 4]));
                return Err(SysError::new("sock_diag", "request", std::io::Error::from_raw_os_error(-e)));
            }
            out.push(buf[off + 16..off + mlen].to_vec());
            off += (mlen + 3) & !3;
        }
    }
}

/// `shutdown(fd, how)`.
///
/// Man page: `shutdown(2)`.
pub fn shutdown(fd: RawFd, how: i32) -> SysResult<()> {
    // SAFETY: plain syscall with scalar arguments.
    let r = unsafe { libc::shutdown(fd, how) };
    check(r.into(), "shutdown", || format!("fd {fd} how {how}"))?;
    Ok(())
}

/// Brings a network interface up (`SIOCSIFFLAGS` with `IFF_UP`) if it is down; returns whether
/// it had to. Used for `lo`, which a freshly booted kernel leaves down until someone raises it.
///
/// Man page: `ioctl(2)` `SIOCGIFFLAGS`/`SIOCSIFFLAGS`, in `netdevice(7)`.
pub fn link_up(name: &str) -> SysResult<bool> {
    const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
    const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    // struct ifreq: 16-byte name, then a union whose first member here is `short ifr_flags`.
    let mut req = [0u8; 40];
    let n = name.len().min(15);
    req[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: `req` is a 40-byte ifreq the kernel reads and writes within bounds.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), SIOCGIFFLAGS as _, req.as_mut_ptr()) };
    check(r.into(), "ioctl(SIOCGIFFLAGS)", || name.to_string())?;
    let flags = i16::from_ne_bytes([req[16], req[17]]);
    if flags & libc::IFF_UP as i16 != 0 {
        return Ok(false);
    }
    req[16..18].copy_from_slice(&(flags | libc::IFF_UP as i16).to_ne_bytes());
    // SAFETY: as above.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), SIOCSIFFLAGS as _, req.as_mut_ptr()) };
    check(r.into(), "ioctl(SIOCSIFFLAGS)", || name.to_string())?;
    Ok(true)
}

/// What [`recv_msg`] received: the byte count (with `MSG_TRUNC`, the message's real length),
/// the raw source address, the returned `msg_flags`, the descriptors of an `SCM_RIGHTS`
/// message (now owned by the caller), the `SCM_CREDENTIALS` (pid, uid, gid) if any, and how
/// many other control messages came along.
#[derive(Debug, Default)]
pub struct Received {
    /// Bytes (the real length with `MSG_TRUNC`).
    pub len: usize,
    /// Raw source address (empty when the kernel gave none).
    pub addr: Vec<u8>,
    /// `msg_flags`.
    pub flags: i32,
    /// Descriptors passed with the message.
    pub fds: Vec<OwnedFd>,
    /// Credentials passed with the message.
    pub creds: Option<(i32, u32, u32)>,
    /// Control messages of other kinds.
    pub other: usize,
}

/// `recvmsg(fd, buf, flags)` with room for the source address and for control messages
/// (descriptors and credentials); the descriptors received are returned owned.
///
/// Man page: `recvmsg(2)`, `unix(7)` (`SCM_RIGHTS`, `SCM_CREDENTIALS`).
pub fn recv_msg(fd: RawFd, buf: &mut [u8], flags: i32) -> SysResult<Received> {
    // SAFETY: sockaddr_storage is plain old data; zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // Room for 253 descriptors (SCM_MAX_FD) and one credentials message, 8-byte aligned.
    let mut ctrl = vec![0u64; 160];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain old data; zero is valid.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
    m.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    m.msg_control = ctrl.as_mut_ptr().cast();
    m.msg_controllen = ctrl.len() * 8;
    // SAFETY: every pointer in `m` refers to a live buffer of the stated length.
    let r = unsafe { libc::recvmsg(fd, &mut m, flags | libc::MSG_CMSG_CLOEXEC) };
    let n = check(r as libc::c_long, "recvmsg", || format!("fd {fd}"))? as usize;
    let alen = (m.msg_namelen as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `ss` is initialised (zeroed, then written by the kernel) and at least `alen` bytes long.
    let addr = unsafe { std::slice::from_raw_parts((&ss as *const libc::sockaddr_storage).cast::<u8>(), alen) };
    let mut out = Received { len: n, addr: addr.to_vec(), flags: m.msg_flags, ..Received::default() };
    // SAFETY: `m` describes the control buffer the kernel filled; the CMSG macros walk it
    // within `msg_controllen`.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&m) };
    while !c.is_null() {
        // SAFETY: `c` points to a complete cmsghdr inside the control buffer.
        let (level, ty, len) = unsafe { ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len) };
        // SAFETY: as above; the data follows the header.
        let data = unsafe { libc::CMSG_DATA(c) };
        let hdr = data as usize - c as usize;
        let dlen = len.saturating_sub(hdr);
        if level == libc::SOL_SOCKET && ty == libc::SCM_RIGHTS {
            for i in 0..dlen / 4 {
                // SAFETY: the kernel wrote `dlen / 4` descriptor numbers at `data`.
                let raw = unsafe { std::ptr::read_unaligned(data.cast::<i32>().add(i)) };
                // SAFETY: the kernel installed `raw` in this process for us alone.
                out.fds.push(unsafe { own(raw.into()) });
            }
        } else if level == libc::SOL_SOCKET && ty == libc::SCM_CREDENTIALS && dlen >= 12 {
            // SAFETY: a struct ucred (pid, uid, gid) of 12 bytes was written at `data`.
            let u = unsafe { std::ptr::read_unaligned(data.cast::<libc::ucred>()) };
            out.creds = Some((u.pid, u.uid, u.gid));
        } else {
            out.other += 1;
        }
        // SAFETY: advancing within the same control buffer.
        c = unsafe { libc::CMSG_NXTHDR(&m, c) };
    }
    Ok(out)
}

/// `accept4(fd, NULL, NULL, SOCK_CLOEXEC)`.
///
/// Man page: `accept(2)`.
pub fn accept(fd: RawFd) -> SysResult<OwnedFd> {
    // SAFETY: no address is asked for; plain syscall.
    let r = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
    let r = check(r.into(), "accept4", || format!("fd {fd}"))?;
    // SAFETY: accept4 returned a fresh descriptor.
    Ok(unsafe { own(r) })
}

/// `sendmsg(fd, buf, flags)` to the raw address `to` (none when empty) with the descriptors
/// `fds` as one `SCM_RIGHTS` control message (none when empty) and the credentials `creds`
/// (pid, uid, gid) as an `SCM_CREDENTIALS` one; returns the byte count.
///
/// Man page: `sendmsg(2)`, `unix(7)` (`SCM_RIGHTS`, `SCM_CREDENTIALS`).
pub fn send_msg(
    fd: RawFd,
    buf: &[u8],
    flags: i32,
    to: &[u8],
    fds: &[RawFd],
    creds: Option<(i32, u32, u32)>,
) -> SysResult<usize> {
    // SAFETY: sockaddr_storage is plain old data; zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let n = to.len().min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: both buffers are valid for `n` bytes and do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(to.as_ptr(), (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(), n) };
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    let data_len = std::mem::size_of_val(fds) as u32;
    let cred_len = std::mem::size_of::<libc::ucred>() as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let (rights, cred) = unsafe { (libc::CMSG_SPACE(data_len) as usize, libc::CMSG_SPACE(cred_len) as usize) };
    let space = if fds.is_empty() { 0 } else { rights } + if creds.is_some() { cred } else { 0 };
    let mut ctrl = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain old data; zero is valid.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    if n > 0 {
        m.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
        m.msg_namelen = n as libc::socklen_t;
    }
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    if space > 0 {
        m.msg_control = ctrl.as_mut_ptr().cast();
        m.msg_controllen = space;
        // SAFETY: the control buffer has room for the rights message (when there are
        // descriptors) followed by the credentials message (when given), as sized above.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&m);
            if !fds.is_empty() {
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(data_len) as usize;
                std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), data_len as usize);
                c = libc::CMSG_NXTHDR(&m, c);
            }
            if let Some((pid, uid, gid)) = creds {
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_CREDENTIALS;
                (*c).cmsg_len = libc::CMSG_LEN(cred_len) as usize;
                let u = libc::ucred { pid, uid, gid };
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::ucred>(), u);
            }
        }
    }
    // SAFETY: every pointer in `m` refers to a live buffer of the stated length.
    let r = unsafe { libc::sendmsg(fd, &m, flags | libc::MSG_NOSIGNAL) };
    Ok(check(r as libc::c_long, "sendmsg", || format!("fd {fd}"))? as usize)
}
