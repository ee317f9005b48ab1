//! A minimal rtnetlink client: bring a link up, add an address, add an IPv4 route. Enough
//! for seamless-init to restore the network configuration that TCP connections need before
//! they are repaired, long before the distribution's network manager runs.

use crate::{SysError, SysResult};
use std::os::fd::AsRawFd;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

/// Outcome of a request the kernel may already have satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Done now.
    Done,
    /// It was already so (`EEXIST`).
    AlreadyThere,
}

fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_le_bytes());
    buf.extend_from_slice(&ty.to_le_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

fn request(ty: u16, flags: u16, body: &[u8], what: String) -> SysResult<Applied> {
    let sock = crate::sockets::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE)?;
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
    msg.extend_from_slice(&ty.to_le_bytes());
    msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_le_bytes());
    msg.extend_from_slice(&1u32.to_le_bytes());
    msg.extend_from_slice(&0u32.to_le_bytes());
    msg.extend_from_slice(body);
    crate::sockets::send(sock.as_raw_fd(), &msg, 0)?;
    let mut reply = [0u8; 1024];
    let n = crate::sockets::recv(sock.as_raw_fd(), &mut reply, 0)?;
    if n < 20 || u16::from_le_bytes([reply[4], reply[5]]) != NLMSG_ERROR {
        return Err(SysError::new("rtnetlink", what, std::io::Error::other("unexpected reply")));
    }
    let err = i32::from_le_bytes([reply[16], reply[17], reply[18], reply[19]]);
    match -err {
        0 => Ok(Applied::Done),
        libc::EEXIST => Ok(Applied::AlreadyThere),
        e => Err(SysError::new("rtnetlink", what, std::io::Error::from_raw_os_error(e))),
    }
}

/// Sets the link with index `ifindex` up.
///
/// Man page: `rtnetlink(7)` `RTM_NEWLINK`.
pub fn link_up(ifindex: u32) -> SysResult<Applied> {
    let mut b = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    b.extend_from_slice(&(ifindex as i32).to_le_bytes());
    b.extend_from_slice(&IFF_UP.to_le_bytes());
    b.extend_from_slice(&IFF_UP.to_le_bytes());
    request(RTM_NEWLINK, 0, &b, format!("link {ifindex} up"))
}

/// Adds address `addr` (4 or 16 bytes) with `prefix` to the link `ifindex`.
///
/// Man page: `rtnetlink(7)` `RTM_NEWADDR`.
pub fn add_addr(ifindex: u32, addr: &[u8], prefix: u8) -> SysResult<Applied> {
    let family = if addr.len() == 16 { libc::AF_INET6 } else { libc::AF_INET } as u8;
    // IPv6: no duplicate address detection, the address was in use a moment ago.
    let flags = if addr.len() == 16 { IFA_F_NODAD } else { 0 };
    let mut b = vec![family, prefix, flags, RT_SCOPE_UNIVERSE];
    b.extend_from_slice(&ifindex.to_le_bytes());
    attr(&mut b, IFA_LOCAL, addr);
    attr(&mut b, IFA_ADDRESS, addr);
    request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &b, format!("address {addr:?}/{prefix} on link {ifindex}"))
}

/// Adds the IPv4 route `dest/prefix` via `gateway` (0.0.0.0: directly connected) out of
/// link `ifindex`, in the main table.
///
/// Man page: `rtnetlink(7)` `RTM_NEWROUTE`.
pub fn add_route4(dest: [u8; 4], prefix: u8, gateway: [u8; 4], ifindex: u32) -> SysResult<Applied> {
    let scope = if gateway == [0; 4] { RT_SCOPE_LINK } else { RT_SCOPE_UNIVERSE };
    let mut b = vec![libc::AF_INET as u8, prefix, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST];
    b.extend_from_slice(&0u32.to_le_bytes());
    if prefix > 0 {
        attr(&mut b, RTA_DST, &dest);
    }
    if gateway != [0; 4] {
        attr(&mut b, RTA_GATEWAY, &gateway);
    }
    attr(&mut b, RTA_OIF, &ifindex.to_le_bytes());
    request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &b, format!("route {dest:?}/{prefix} via {gateway:?}"))
}
