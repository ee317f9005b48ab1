//! The network lock: while the preserved TCP connections are out of the kernel's hands (from
//! the moment the dump reads their queues until the restore has repaired them), every segment
//! of theirs is dropped, in both directions, so the peer sees silence and retransmits instead
//! of getting an acknowledgement for bytes the image no longer holds or a reset from a kernel
//! that has no socket for them.
//!
//! Mechanism: one nf_tables table of family `inet`, named by the image
//! ([`NetLockRecord::table`], `seamless-lock-<pid of the dump>`), with two base chains of type
//! `filter` at priority -300 (the raw priority: before connection tracking, so conntrack never
//! sees the dropped segments) on the `input` and `output` hooks. Each connection gets one rule
//! in each chain matching exactly its 4-tuple (family, TCP, source and destination address,
//! source and destination port) with verdict drop, except for segments carrying the
//! restorer's own mark ([`INJECT_MARK`]: the FIN or ACK it hands a connection it restores in
//! a close state). The preserved listeners get one rule in
//! the input chain that drops new connections to them (TCP segments with SYN and without ACK to
//! their address and port; any address of the port for a listener on the unspecified
//! address): those clients retransmit their SYN and connect once the restored listener exists,
//! where they would be refused while there is none. Other traffic is untouched: other
//! connections, UDP, ICMP all pass (the chains' policy is accept). Installing replaces a table of the same name in one
//! transaction, lifting deletes it; both are atomic.
//!
//! The table is built with [`seamless_sys::nft`] over `NETLINK_NETFILTER`, with no binary and
//! no library, so it also works in an initramfs. When the kernel has nf_tables as a module that
//! is not loaded yet and cannot be loaded on demand (no `modprobe`, as in an initramfs), the
//! modules are loaded from `/lib/modules/$(uname -r)` with their dependencies
//! ([`seamless_sys::module::load_with_deps`]) and the install is tried once more.

use seamless_image::records::{Addr, LockedConn, NetLockRecord};
use seamless_sys::nft::{self, BaseChain, Expr, NFT_REG_1};

/// Why the lock could not be installed or lifted.
#[derive(Debug, thiserror::Error)]
pub enum NetLockError {
    /// The kernel refused the transaction.
    #[error("nf_tables table inet {table}")]
    Kernel {
        /// Table.
        table: String,
        /// The refusal.
        #[source]
        source: seamless_sys::SysError,
    },
    /// The kernel has no nf_tables and the modules could not be loaded.
    #[error(
        "nf_tables table inet {table}: the kernel has no nf_tables ({}) and loading its modules failed",
        seamless_sys::chain(first)
    )]
    NoNfTables {
        /// Table.
        table: String,
        /// The first refusal.
        first: seamless_sys::SysError,
        /// Why the modules did not load.
        #[source]
        modules: Box<seamless_sys::module::ModuleError>,
    },
}

/// `IPPROTO_TCP` as the byte nf_tables compares the layer-4 protocol with.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 6
const IPPROTO_TCP: u8 = libc::IPPROTO_TCP as u8;

/// Priority of the lock's chains: `NF_IP_PRI_RAW`, ahead of connection tracking (-200).
pub const PRIORITY: i32 = -300;

/// The packet mark (`SO_MARK`) of the segments the restorer itself sends a connection it
/// repairs (the peer's FIN or acknowledgement that a close state needs, see
/// [`crate::tcp_states`]): the lock's connection rules let them pass.
pub const INJECT_MARK: u32 = 0x5ea1_0f1e;

/// The lock table a dump made by process `pid` uses.
pub fn table_name(pid: u32) -> String {
    format!("{}{pid}", seamless_image::records::NET_LOCK_PREFIX)
}

/// Address bytes and port of an IP address, an IPv4-mapped IPv6 address as IPv4.
fn wire(a: &Addr) -> Option<(Vec<u8>, u16)> {
    match a {
        Addr::V4 { ip, port } => Some((ip.to_vec(), *port)),
        Addr::V6 { ip, port, .. } => match ip {
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d] => Some((vec![*a, *b, *c, *d], *port)),
            _ => Some((ip.to_vec(), *port)),
        },
        _ => None,
    }
}

/// The expressions matching segments from `src` to `dst` not marked [`INJECT_MARK`], then drop.
fn rule(src: &(Vec<u8>, u16), dst: &(Vec<u8>, u16)) -> Vec<Expr> {
    let v4 = src.0.len() == 4;
    let mut e = vec![
        Expr::Meta { key: nft::NFT_META_MARK, dreg: NFT_REG_1 },
        Expr::CmpNeq { sreg: NFT_REG_1, data: INJECT_MARK.to_ne_bytes().to_vec() },
        Expr::Meta { key: nft::NFT_META_NFPROTO, dreg: NFT_REG_1 },
        Expr::CmpEq { sreg: NFT_REG_1, data: vec![if v4 { nft::NFPROTO_IPV4 } else { nft::NFPROTO_IPV6 }] },
        Expr::Meta { key: nft::NFT_META_L4PROTO, dreg: NFT_REG_1 },
        Expr::CmpEq { sreg: NFT_REG_1, data: vec![IPPROTO_TCP] },
    ];
    let net = nft::NFT_PAYLOAD_NETWORK_HEADER;
    if v4 {
        // saddr and daddr are adjacent in the IPv4 header (offsets 12 and 16): one 8-byte match.
        let mut both = src.0.clone();
        both.extend_from_slice(&dst.0);
        e.push(Expr::Payload { base: net, offset: 12, len: 8, dreg: NFT_REG_1 });
        e.push(Expr::CmpEq { sreg: NFT_REG_1, data: both });
    } else {
        // IPv6 saddr at 8, daddr at 24: 16 bytes each, one register each.
        e.push(Expr::Payload { base: net, offset: 8, len: 16, dreg: NFT_REG_1 });
        e.push(Expr::CmpEq { sreg: NFT_REG_1, data: src.0.clone() });
        e.push(Expr::Payload { base: net, offset: 24, len: 16, dreg: NFT_REG_1 });
        e.push(Expr::CmpEq { sreg: NFT_REG_1, data: dst.0.clone() });
    }
    // Source and destination port, the first 4 bytes of the TCP header.
    let mut ports = src.1.to_be_bytes().to_vec();
    ports.extend_from_slice(&dst.1.to_be_bytes());
    e.push(Expr::Payload { base: nft::NFT_PAYLOAD_TRANSPORT_HEADER, offset: 0, len: 4, dreg: NFT_REG_1 });
    e.push(Expr::CmpEq { sreg: NFT_REG_1, data: ports });
    e.push(Expr::Drop);
    e
}

/// The rule holding new connections (SYN without ACK) to the listener at `local`.
fn listener_rule(local: &Addr) -> Option<Vec<Expr>> {
    let (ip, port) = wire(local)?;
    let mut e = Vec::new();
    if ip.iter().any(|&b| b != 0) {
        let v4 = ip.len() == 4;
        e.push(Expr::Meta { key: nft::NFT_META_NFPROTO, dreg: NFT_REG_1 });
        e.push(Expr::CmpEq { sreg: NFT_REG_1, data: vec![if v4 { nft::NFPROTO_IPV4 } else { nft::NFPROTO_IPV6 }] });
        e.push(Expr::Meta { key: nft::NFT_META_L4PROTO, dreg: NFT_REG_1 });
        e.push(Expr::CmpEq { sreg: NFT_REG_1, data: vec![IPPROTO_TCP] });
        let (offset, len) = if v4 { (16, 4) } else { (24, 16) };
        e.push(Expr::Payload { base: nft::NFT_PAYLOAD_NETWORK_HEADER, offset, len, dreg: NFT_REG_1 });
        e.push(Expr::CmpEq { sreg: NFT_REG_1, data: ip });
    } else {
        // The unspecified address: the port on every local address of either family (a
        // dual-stack listener takes both).
        e.push(Expr::Meta { key: nft::NFT_META_L4PROTO, dreg: NFT_REG_1 });
        e.push(Expr::CmpEq { sreg: NFT_REG_1, data: vec![IPPROTO_TCP] });
    }
    let t = nft::NFT_PAYLOAD_TRANSPORT_HEADER;
    e.push(Expr::Payload { base: t, offset: 2, len: 2, dreg: NFT_REG_1 });
    e.push(Expr::CmpEq { sreg: NFT_REG_1, data: port.to_be_bytes().to_vec() });
    // TCP flags (byte 13): SYN (0x02) set, ACK (0x10) clear.
    e.push(Expr::Payload { base: t, offset: 13, len: 1, dreg: NFT_REG_1 });
    e.push(Expr::Bitwise { sreg: NFT_REG_1, dreg: NFT_REG_1, mask: vec![0x12], xor: vec![0] });
    e.push(Expr::CmpEq { sreg: NFT_REG_1, data: vec![0x02] });
    e.push(Expr::Drop);
    Some(e)
}

/// The two base chains of the lock for `conns` and the held `listeners`: `input` drops what
/// the peers send and new connections to the listeners, `output` what this host would send
/// the peers (window probes, retransmissions, resets).
pub fn chains_with(conns: &[LockedConn], listeners: &[Addr]) -> Vec<BaseChain> {
    let mut c = chains(conns);
    c[0].rules.extend(listeners.iter().filter_map(listener_rule));
    c
}

/// The two base chains of the lock for `conns`: `input` drops what the peers send, `output`
/// what this host would send them (window probes, retransmissions, resets).
pub fn chains(conns: &[LockedConn]) -> Vec<BaseChain> {
    let mut input = Vec::new();
    let mut output = Vec::new();
    for c in conns {
        let (Some(local), Some(peer)) = (wire(&c.local), wire(&c.peer)) else { continue };
        if local.0.len() != peer.0.len() {
            continue;
        }
        input.push(rule(&peer, &local));
        output.push(rule(&local, &peer));
    }
    vec![
        BaseChain { name: "input".into(), hook: nft::NF_INET_LOCAL_IN, priority: PRIORITY, rules: input },
        BaseChain { name: "output".into(), hook: nft::NF_INET_LOCAL_OUT, priority: PRIORITY, rules: output },
    ]
}

fn no_nf_tables(e: &seamless_sys::SysError) -> bool {
    // No nfnetlink (the socket family is missing), or no nf_tables subsystem behind it.
    matches!(e.errno(), Some(libc::EPROTONOSUPPORT | libc::EOPNOTSUPP | libc::ENOENT | libc::EAFNOSUPPORT))
}

fn load_modules() -> Result<(), seamless_sys::module::ModuleError> {
    let release = seamless_sys::kernel_release();
    // libcrc32c (a dependency of nf_tables) needs a crc32c implementation, which the kernel
    // would ask modprobe for; not every system has it loaded already.
    let _ = seamless_sys::module::load_with_deps(&release, "crc32c_generic");
    seamless_sys::module::load_with_deps(&release, "nf_tables").map(|_| ())
}

/// Installs (or replaces, atomically) the lock described by `lock`.
pub fn install(lock: &NetLockRecord) -> Result<(), NetLockError> {
    install_with(lock, &[])
}

/// Installs (or replaces, atomically) the lock of `lock`'s connections that also holds new
/// connections to `listeners`.
pub fn install_with(lock: &NetLockRecord, listeners: &[Addr]) -> Result<(), NetLockError> {
    let chains = chains_with(&lock.conns, listeners);
    let table = lock.table.clone();
    match nft::replace_table(nft::NFPROTO_INET, &table, &chains) {
        Ok(()) => {}
        Err(e) if no_nf_tables(&e) => match load_modules() {
            Ok(()) => nft::replace_table(nft::NFPROTO_INET, &table, &chains)
                .map_err(|source| NetLockError::Kernel { table: table.clone(), source })?,
            Err(modules) => return Err(NetLockError::NoNfTables { table, first: e, modules: Box::new(modules) }),
        },
        Err(source) => return Err(NetLockError::Kernel { table, source }),
    }
    if listeners.is_empty() {
        log::info!("network lock: table inet {} holds {} TCP connection(s) still", lock.table, lock.conns.len());
    } else {
        log::info!(
            "network lock: table inet {} holds {} TCP connection(s) still and new connections to {} listener(s)",
            lock.table,
            lock.conns.len(),
            listeners.len()
        );
    }
    Ok(())
}

/// Lifts the lock table `table`; `Ok(false)` when it was not there (already lifted, or the
/// kernel it was on is gone).
pub fn lift(table: &str) -> Result<bool, NetLockError> {
    match nft::delete_table(nft::NFPROTO_INET, table) {
        Ok(there) => {
            if there {
                log::info!("network lock: table inet {table} lifted");
            }
            Ok(there)
        }
        // No nf_tables at all: no table either.
        Err(e) if no_nf_tables(&e) => Ok(false),
        Err(source) => Err(NetLockError::Kernel { table: table.to_string(), source }),
    }
}

/// Lifts `table`, logging instead of failing (for rollback paths, which must go on).
pub fn lift_logged(table: &str, when: &str) {
    if let Err(e) = lift(table) {
        log::error!(
            "{when}: cannot lift the network lock ({}): the preserved connections stay blocked; \
             remove it by hand with `nft delete table inet {table}`",
            seamless_sys::chain(&e)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_rules_drop_syns_to_the_port() {
        let specific = chains_with(&[], &[Addr::V4 { ip: [10, 77, 0, 2], port: 7500 }]);
        let r = &specific[0].rules[0];
        assert!(r.contains(&Expr::CmpEq { sreg: NFT_REG_1, data: vec![10, 77, 0, 2] }));
        assert!(r.contains(&Expr::CmpEq { sreg: NFT_REG_1, data: vec![0x1d, 0x4c] }));
        assert!(r.contains(&Expr::Bitwise { sreg: NFT_REG_1, dreg: NFT_REG_1, mask: vec![0x12], xor: vec![0] }));
        assert!(r.ends_with(&[Expr::CmpEq { sreg: NFT_REG_1, data: vec![0x02] }, Expr::Drop]));
        assert!(specific[1].rules.is_empty(), "nothing is held on the way out");
        let any = chains_with(&[], &[Addr::V6 { ip: [0; 16], port: 80, flowinfo: 0, scope_id: 0 }]);
        assert!(!any[0].rules[0].iter().any(|e| matches!(e, Expr::Meta { key: nft::NFT_META_NFPROTO, .. })));
    }

    #[test]
    fn rules_match_both_directions_and_v4_mapped_as_v4() {
        let c = LockedConn {
            local: Addr::V6 {
                ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1],
                port: 80,
                flowinfo: 0,
                scope_id: 0,
            },
            peer: Addr::V6 {
                ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2],
                port: 5000,
                flowinfo: 0,
                scope_id: 0,
            },
        };
        let ch = chains(&[c]);
        assert_eq!(ch.len(), 2);
        let input = &ch[0].rules[0];
        assert!(input.contains(&Expr::CmpEq { sreg: NFT_REG_1, data: vec![nft::NFPROTO_IPV4] }));
        // input: from the peer (127.0.0.2:5000) to us (127.0.0.1:80)
        assert!(input.contains(&Expr::CmpEq { sreg: NFT_REG_1, data: vec![127, 0, 0, 2, 127, 0, 0, 1] }));
        assert!(input.contains(&Expr::CmpEq { sreg: NFT_REG_1, data: vec![0x13, 0x88, 0, 80] }));
        let output = &ch[1].rules[0];
        assert!(output.contains(&Expr::CmpEq { sreg: NFT_REG_1, data: vec![127, 0, 0, 1, 127, 0, 0, 2] }));
        assert_eq!(output.last(), Some(&Expr::Drop));
        let unmarked = Expr::CmpNeq { sreg: NFT_REG_1, data: INJECT_MARK.to_ne_bytes().to_vec() };
        assert!(input.contains(&unmarked) && output.contains(&unmarked), "the restorer's own segments pass");
    }
}
