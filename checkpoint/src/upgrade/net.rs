//! The network configuration recorded before the jump: addresses and IPv4 routes, so that
//! seamless-init can configure them again before it restores TCP connections.

use seamless_image::upgrade::{NetInterface, Route4};

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn mac_of(name: &str) -> Vec<u8> {
    if name == "lo" {
        return Vec::new();
    }
    read(&format!("/sys/class/net/{name}/address"))
        .trim()
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect()
}

fn prefix_of(mask: &[u8]) -> u8 {
    mask.iter().map(|b| b.count_ones() as u8).sum()
}

/// Every interface with its IPv4 and global IPv6 addresses (`lo` always, others when they
/// have an address).
pub fn interfaces() -> Vec<NetInterface> {
    let mut out: Vec<NetInterface> = Vec::new();
    fn entry(out: &mut Vec<NetInterface>, name: &str) -> usize {
        if let Some(i) = out.iter().position(|n| n.name == name) {
            return i;
        }
        out.push(NetInterface { name: name.to_string(), mac: mac_of(name), addrs: Vec::new() });
        out.len() - 1
    }
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let (Some(addr), Some(mask)) = (a.address, a.netmask) else { continue };
            let (Some(ip), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) else { continue };
            let i = entry(&mut out, &a.interface_name);
            out[i].addrs.push((ip.ip().octets().to_vec(), prefix_of(&m.ip().octets())));
        }
    }
    // /proc/net/if_inet6: address, ifindex, prefix, scope, flags, name; scope 0 is global.
    for line in read("/proc/net/if_inet6").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[3] != "00" {
            continue;
        }
        let bytes: Vec<u8> = (0..16).filter_map(|k| u8::from_str_radix(f[0].get(2 * k..2 * k + 2)?, 16).ok()).collect();
        let Ok(prefix) = u8::from_str_radix(f[2], 16) else { continue };
        if bytes.len() == 16 {
            let i = entry(&mut out, f[5]);
            out[i].addrs.push((bytes, prefix));
        }
    }
    entry(&mut out, "lo");
    out
}

/// The IPv4 routes that are up, from `/proc/net/route` (addresses in host byte order hex).
pub fn routes() -> Vec<Route4> {
    read("/proc/net/route")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(|v| v.to_le_bytes());
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            if flags & 1 == 0 {
                return None;
            }
            Some(Route4 {
                dev: f.first()?.to_string(),
                dest: hex(f.get(1)?)?,
                gateway: hex(f.get(2)?)?,
                prefix: prefix_of(&hex(f.get(7)?)?),
            })
        })
        .collect()
}
