//! A minimal nf_tables client over `NETLINK_NETFILTER`: just enough to build one table of base
//! chains with match-and-drop rules and to delete it again, in single atomic transactions
//! (batches), with no `nft` binary and no library. The network lock is built on it (see
//! `seamless_init::netlock`).
//!
//! Wire format: every message of a transaction is a netlink message of type
//! `(NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_*`, with a 4-byte `nfgenmsg` header (family,
//! version 0, resource id) and netlink attributes. Integers inside nf_tables attributes are
//! big-endian; attribute headers are host order; nested attributes carry `NLA_F_NESTED`. A
//! transaction is framed by `NFNL_MSG_BATCH_BEGIN` / `NFNL_MSG_BATCH_END` (resource id: the
//! subsystem) and is applied whole or not at all. Every message asks for an acknowledgement, so
//! an error names the message the kernel refused.

use crate::{SysError, SysResult};
use std::os::fd::{AsRawFd, OwnedFd};

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFT_REG_VERDICT: u32 = 0;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
/// The first 16-byte data register.
pub const NFT_REG_1: u32 = 1;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;

/// `NFPROTO_INET`: a table for IPv4 and IPv6 together.
pub const NFPROTO_INET: u8 = 1;
/// `NFPROTO_IPV4` (as `meta nfproto` yields it).
pub const NFPROTO_IPV4: u8 = 2;
/// `NFPROTO_IPV6`.
pub const NFPROTO_IPV6: u8 = 10;
/// `NFT_META_NFPROTO`: the packet's netfilter family (1 byte).
pub const NFT_META_NFPROTO: u32 = 15;
/// `NFT_META_MARK`: the packet's mark (`SO_MARK` of the socket that sent it), host order.
pub const NFT_META_MARK: u32 = 3;
/// `NFT_META_L4PROTO`: the packet's transport protocol (1 byte).
pub const NFT_META_L4PROTO: u32 = 16;
/// `NFT_PAYLOAD_NETWORK_HEADER`.
pub const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
/// `NFT_PAYLOAD_TRANSPORT_HEADER`.
pub const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
/// `NF_INET_LOCAL_IN`: the input hook.
pub const NF_INET_LOCAL_IN: u32 = 1;
/// `NF_INET_LOCAL_OUT`: the output hook.
pub const NF_INET_LOCAL_OUT: u32 = 3;

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Load packet metadata `key` into register `dreg`.
    Meta {
        /// `NFT_META_*`.
        key: u32,
        /// Destination register.
        dreg: u32,
    },
    /// Load `len` bytes at `offset` of header `base` into register `dreg`.
    Payload {
        /// `NFT_PAYLOAD_*_HEADER`.
        base: u32,
        /// Byte offset in that header.
        offset: u32,
        /// Bytes (at most 16 per register).
        len: u32,
        /// Destination register.
        dreg: u32,
    },
    /// Go on with the rule only if register `sreg` holds exactly `data` (at most 16 bytes).
    CmpEq {
        /// Source register.
        sreg: u32,
        /// The value, as it appears in the packet (network order).
        data: Vec<u8>,
    },
    /// Go on with the rule only if register `sreg` does not hold `data` (at most 16 bytes).
    CmpNeq {
        /// Source register.
        sreg: u32,
        /// The value, as it appears in the packet or the metadata.
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor` over `mask.len()` bytes (`mask` and `xor` equally long).
    Bitwise {
        /// Source register.
        sreg: u32,
        /// Destination register.
        dreg: u32,
        /// AND mask.
        mask: Vec<u8>,
        /// XOR value.
        xor: Vec<u8>,
    },
    /// Drop the packet.
    Drop,
}

/// A base chain: attached to a netfilter hook of the table's family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    /// Chain name.
    pub name: String,
    /// `NF_INET_*` hook.
    pub hook: u32,
    /// Priority (lower runs first; -300 is the raw priority, before connection tracking).
    pub priority: i32,
    /// Rules, each a list of expressions, in order.
    pub rules: Vec<Vec<Expr>>,
}

fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

fn attr_str(buf: &mut Vec<u8>, ty: u16, s: &str) {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    attr(buf, ty, &v);
}

fn attr_be32(buf: &mut Vec<u8>, ty: u16, v: u32) {
    attr(buf, ty, &v.to_be_bytes());
}

fn nested(buf: &mut Vec<u8>, ty: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    attr(buf, ty | NLA_F_NESTED, &inner);
}

fn encode_expr(buf: &mut Vec<u8>, e: &Expr) {
    nested(buf, NFTA_LIST_ELEM, |b| {
        let name = match e {
            Expr::Meta { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::CmpEq { .. } | Expr::CmpNeq { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Drop => "immediate",
        };
        attr_str(b, NFTA_EXPR_NAME, name);
        nested(b, NFTA_EXPR_DATA, |d| match e {
            Expr::Meta { key, dreg } => {
                attr_be32(d, NFTA_META_DREG, *dreg);
                attr_be32(d, NFTA_META_KEY, *key);
            }
            Expr::Payload { base, offset, len, dreg } => {
                attr_be32(d, NFTA_PAYLOAD_DREG, *dreg);
                attr_be32(d, NFTA_PAYLOAD_BASE, *base);
                attr_be32(d, NFTA_PAYLOAD_OFFSET, *offset);
                attr_be32(d, NFTA_PAYLOAD_LEN, *len);
            }
            Expr::CmpEq { sreg, data } => {
                attr_be32(d, NFTA_CMP_SREG, *sreg);
                attr_be32(d, NFTA_CMP_OP, NFT_CMP_EQ);
                nested(d, NFTA_CMP_DATA, |v| attr(v, NFTA_DATA_VALUE, data));
            }
            Expr::CmpNeq { sreg, data } => {
                attr_be32(d, NFTA_CMP_SREG, *sreg);
                attr_be32(d, NFTA_CMP_OP, NFT_CMP_NEQ);
                nested(d, NFTA_CMP_DATA, |v| attr(v, NFTA_DATA_VALUE, data));
            }
            Expr::Bitwise { sreg, dreg, mask, xor } => {
                attr_be32(d, NFTA_BITWISE_SREG, *sreg);
                attr_be32(d, NFTA_BITWISE_DREG, *dreg);
                attr_be32(d, NFTA_BITWISE_LEN, mask.len() as u32);
                nested(d, NFTA_BITWISE_MASK, |v| attr(v, NFTA_DATA_VALUE, mask));
                nested(d, NFTA_BITWISE_XOR, |v| attr(v, NFTA_DATA_VALUE, xor));
            }
            Expr::Drop => {
                attr_be32(d, NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                nested(d, NFTA_IMMEDIATE_DATA, |v| {
                    nested(v, NFTA_DATA_VERDICT, |c| attr_be32(c, NFTA_VERDICT_CODE, NF_DROP));
                });
            }
        });
    });
}

/// A transaction under construction: messages between a batch begin and end.
#[derive(Debug)]
struct Batch {
    buf: Vec<u8>,
    /// (sequence number, what the message does) of every message asking for an ack.
    acks: Vec<(u32, String)>,
    seq: u32,
}

impl Batch {
    fn new() -> Self {
        let mut b = Batch { buf: Vec::new(), acks: Vec::new(), seq: 0x5ea0_0000 };
        b.msg(NFNL_MSG_BATCH_BEGIN, 0, 0, NFNL_SUBSYS_NFTABLES, &[], None);
        b
    }

    fn msg(&mut self, ty: u16, flags: u16, family: u8, res_id: u16, body: &[u8], what: Option<String>) {
        self.seq += 1;
        let len = 16 + 4 + body.len();
        let ack = if what.is_some() { NLM_F_ACK } else { 0 };
        self.buf.extend_from_slice(&(len as u32).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&(flags | NLM_F_REQUEST | ack).to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self.buf.extend_from_slice(body);
        if let Some(w) = what {
            self.acks.push((self.seq, w));
        }
    }

    fn nft(&mut self, msg: u16, flags: u16, family: u8, body: &[u8], what: String) {
        self.msg((NFNL_SUBSYS_NFTABLES << 8) | msg, flags, family, 0, body, Some(what));
    }

    fn finish(mut self) -> (Vec<u8>, Vec<(u32, String)>) {
        self.msg(NFNL_MSG_BATCH_END, 0, 0, NFNL_SUBSYS_NFTABLES, &[], None);
        (self.buf, self.acks)
    }
}

fn table_body(table: &str) -> Vec<u8> {
    let mut b = Vec::new();
    attr_str(&mut b, NFTA_TABLE_NAME, table);
    b
}

fn chain_body(table: &str, c: &BaseChain) -> Vec<u8> {
    let mut b = Vec::new();
    attr_str(&mut b, NFTA_CHAIN_TABLE, table);
    attr_str(&mut b, NFTA_CHAIN_NAME, &c.name);
    nested(&mut b, NFTA_CHAIN_HOOK, |h| {
        attr_be32(h, NFTA_HOOK_HOOKNUM, c.hook);
        attr_be32(h, NFTA_HOOK_PRIORITY, c.priority as u32);
    });
    attr_be32(&mut b, NFTA_CHAIN_POLICY, NF_ACCEPT);
    attr_str(&mut b, NFTA_CHAIN_TYPE, "filter");
    b
}

fn rule_body(table: &str, chain: &str, exprs: &[Expr]) -> Vec<u8> {
    let mut b = Vec::new();
    attr_str(&mut b, NFTA_RULE_TABLE, table);
    attr_str(&mut b, NFTA_RULE_CHAIN, chain);
    nested(&mut b, NFTA_RULE_EXPRESSIONS, |l| {
        for e in exprs {
            encode_expr(l, e);
        }
    });
    b
}

/// The transaction that makes table `table` of `family` hold exactly `chains`: whatever a table
/// of that name held before is deleted in the same transaction (create-if-missing, delete,
/// create), so installing twice is the same as installing once and nothing is ever half there.
pub fn replace_table_batch(family: u8, table: &str, chains: &[BaseChain]) -> (Vec<u8>, Vec<(u32, String)>) {
    let mut b = Batch::new();
    let t = table_body(table);
    b.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, &t, format!("create table {table}"));
    b.nft(NFT_MSG_DELTABLE, 0, family, &t, format!("empty table {table}"));
    b.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, &t, format!("create table {table}"));
    for c in chains {
        b.nft(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            family,
            &chain_body(table, c),
            format!("create chain {table}/{}", c.name),
        );
        for (i, r) in c.rules.iter().enumerate() {
            b.nft(
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                family,
                &rule_body(table, &c.name, r),
                format!("add rule {i} to chain {table}/{}", c.name),
            );
        }
    }
    b.finish()
}

/// Receive-buffer room one acknowledgement takes (a 36-byte message in its own socket buffer,
/// whose true size is far larger), with a margin.
const ACK_ROOM: usize = 2048;

/// Opens the netlink socket for a transaction of `batch` bytes asking for `acks`
/// acknowledgements. The kernel processes the whole batch inside the one `send` and queues
/// every acknowledgement before the first can be read: the receive buffer must hold all of
/// them (or the kernel drops the rest and reports `ENOBUFS`), and the send buffer the whole
/// batch (or `EMSGSIZE`). Both are forced (`SO_*BUFFORCE`, which the `CAP_NET_ADMIN` that
/// nf_tables needs anyway allows) past the system's `rmem_max`/`wmem_max`, as `nft` does.
fn open(batch: usize, acks: usize) -> SysResult<OwnedFd> {
    let sock = crate::sockets::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER)?;
    let fd = sock.as_raw_fd();
    // A reply that never comes must not hang PID 1: at most 10 s per receive.
    let mut tv = Vec::with_capacity(16);
    tv.extend_from_slice(&10i64.to_ne_bytes());
    tv.extend_from_slice(&0i64.to_ne_bytes());
    crate::sockets::set_bytes(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
    let clamp = |n: usize| n.min(i32::MAX as usize / 2) as i32;
    let rcv = clamp((acks + 16) * ACK_ROOM);
    let snd = clamp(batch + (64 << 10));
    for (force, plain, value) in
        [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, rcv), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, snd)]
    {
        if crate::sockets::set_int(fd, libc::SOL_SOCKET, force, value).is_err() {
            // Without CAP_NET_ADMIN nf_tables refuses the batch anyway, with a clearer error.
            let _ = crate::sockets::set_int(fd, libc::SOL_SOCKET, plain, value);
        }
    }
    Ok(sock)
}

/// Sends a transaction and waits for the kernel's acknowledgement of every message; the first
/// refusal is returned as the error, naming the message (the whole transaction is then void).
fn commit(batch: &[u8], acks: &[(u32, String)]) -> SysResult<()> {
    let sock = open(batch.len(), acks.len())?;
    let fd = sock.as_raw_fd();
    let n = crate::sockets::send(fd, batch, 0)?;
    if n != batch.len() {
        return Err(SysError::new("nf_tables", "transaction", std::io::Error::other("short send")));
    }
    let mut pending: Vec<u32> = acks.iter().map(|(s, _)| *s).collect();
    let mut buf = vec![0u8; 64 << 10];
    while !pending.is_empty() {
        let n = crate::sockets::recv(fd, &mut buf, 0).map_err(|e| {
            SysError::new("nf_tables", format!("waiting for {} acknowledgements", pending.len()), e.source)
        })?;
        let mut msg = &buf[..n];
        while msg.len() >= 16 {
            let len = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize;
            let ty = u16::from_ne_bytes([msg[4], msg[5]]);
            let seq = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
            if len < 16 || len > msg.len() {
                break;
            }
            if ty == NLMSG_ERROR && len >= 20 {
                let err = i32::from_ne_bytes([msg[16], msg[17], msg[18], msg[19]]);
                pending.retain(|s| *s != seq);
                if err != 0 {
                    let what = acks.iter().find(|(s, _)| *s == seq).map(|(_, w)| w.as_str()).unwrap_or("batch");
                    return Err(SysError::new("nf_tables", what.to_string(), std::io::Error::from_raw_os_error(-err)));
                }
            }
            msg = &msg[((len + 3) & !3).min(msg.len())..];
        }
    }
    Ok(())
}

/// Makes table `table` (family `family`) hold exactly `chains` (see [`replace_table_batch`]),
/// atomically.
pub fn replace_table(family: u8, table: &str, chains: &[BaseChain]) -> SysResult<()> {
    let (batch, acks) = replace_table_batch(family, table, chains);
    commit(&batch, &acks)
}

/// Deletes table `table` with its chains and rules. Returns `false` when there was no such
/// table (`ENOENT`).
pub fn delete_table(family: u8, table: &str) -> SysResult<bool> {
    let mut b = Batch::new();
    b.nft(NFT_MSG_DELTABLE, 0, family, &table_body(table), format!("delete table {table}"));
    let (batch, acks) = b.finish();
    match commit(&batch, &acks) {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    #[test]
    fn batch_is_framed_and_every_message_asks_for_an_ack() {
        let chain = BaseChain {
            name: "in".into(),
            hook: NF_INET_LOCAL_IN,
            priority: -300,
            rules: vec![vec![Expr::Meta { key: NFT_META_L4PROTO, dreg: NFT_REG_1 }, Expr::Drop]],
        };
        let (buf, acks) = replace_table_batch(NFPROTO_INET, "t", &[chain]);
        // begin, new/del/new table, chain, rule, end
        let mut types = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            assert_eq!(len % 4, 0, "message lengths stay aligned");
            types.push((u16_at(&buf, at + 4), u16_at(&buf, at + 6) & NLM_F_ACK != 0));
            at += len;
        }
        assert_eq!(at, buf.len());
        let nft = |m: u16| (NFNL_SUBSYS_NFTABLES << 8) | m;
        assert_eq!(
            types,
            vec![
                (NFNL_MSG_BATCH_BEGIN, false),
                (nft(NFT_MSG_NEWTABLE), true),
                (nft(NFT_MSG_DELTABLE), true),
                (nft(NFT_MSG_NEWTABLE), true),
                (nft(NFT_MSG_NEWCHAIN), true),
                (nft(NFT_MSG_NEWRULE), true),
                (NFNL_MSG_BATCH_END, false),
            ]
        );
        assert_eq!(acks.len(), 5);
        // The batch begin names the subsystem in its resource id (big-endian).
        assert_eq!(&buf[18..20], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
    }

    #[test]
    fn cmp_data_is_nested_value() {
        let mut b = Vec::new();
        encode_expr(&mut b, &Expr::CmpEq { sreg: 1, data: vec![127, 0, 0, 1] });
        // list elem (nested) > name "cmp" > data (nested) > sreg, op, cmp data (nested) > value
        assert_eq!(u16_at(&b, 2), NFTA_LIST_ELEM | NLA_F_NESTED);
        let hay = &b[..];
        let value = [8u8, 0, NFTA_DATA_VALUE as u8, 0, 127, 0, 0, 1];
        assert!(hay.windows(8).any(|w| w == value), "{hay:?}");
    }
}
