//! Network configuration before the restore: the interfaces get back the addresses and IPv4
//! routes they had on the old kernel, so repaired TCP connections have a route to their peer
//! and restored listeners their address. Interfaces are found by hardware address (names can
//! change between kernels), `lo` by name. What already exists is left as it is; the
//! distribution's network manager takes over later as usual.

use seamless_image::upgrade::Upgrade;
use seamless_sys::chain;
use seamless_sys::rtnl::{self, Applied};

fn ifindex_by_name(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok()?.trim().parse().ok()
}

fn name_by_mac(mac: &[u8]) -> Option<String> {
    let want: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    let want = want.join(":");
    std::fs::read_dir("/sys/class/net").ok()?.flatten().find_map(|e| {
        let addr = std::fs::read_to_string(e.path().join("address")).ok()?;
        (addr.trim() == want).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// Configures what `upgrade` recorded; returns one line per problem (for the report).
pub fn configure(upgrade: &Upgrade) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = Vec::new();
    for i in &upgrade.interfaces {
        let now = if i.mac.is_empty() { Some(i.name.clone()) } else { name_by_mac(&i.mac) };
        let Some((now, index)) = now.and_then(|n| ifindex_by_name(&n).map(|x| (n, x))) else {
            problems
                .push(format!("interface {} (hardware address {:02x?}) is not there on this kernel", i.name, i.mac));
            continue;
        };
        names.push((i.name.clone(), index));
        if let Err(e) = rtnl::link_up(index) {
            problems.push(format!("{now}: {}", chain(&e)));
            continue;
        }
        for (addr, prefix) in &i.addrs {
            match rtnl::add_addr(index, addr, *prefix) {
                Ok(Applied::Done) => log::info!("{now}: address {} added", show(addr, *prefix)),
                Ok(Applied::AlreadyThere) => {}
                Err(e) => problems.push(format!("{now}: address {}: {}", show(addr, *prefix), chain(&e))),
            }
        }
    }
    for r in &upgrade.routes {
        let Some(&(_, index)) = names.iter().find(|(n, _)| *n == r.dev) else { continue };
        if let Err(e) = rtnl::add_route4(r.dest, r.prefix, r.gateway, index) {
            problems.push(format!("route {}: {}", show(&r.dest, r.prefix), chain(&e)));
        }
    }
    problems
}

fn show(addr: &[u8], prefix: u8) -> String {
    match <[u8; 4]>::try_from(addr) {
        Ok(v4) => format!("{}/{prefix}", std::net::Ipv4Addr::from(v4)),
        Err(_) => match <[u8; 16]>::try_from(addr) {
            Ok(v6) => format!("{}/{prefix}", std::net::Ipv6Addr::from(v6)),
            Err(_) => format!("{addr:?}/{prefix}"),
        },
    }
}
