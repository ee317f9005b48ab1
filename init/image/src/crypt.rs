//! dm-crypt volumes below the recorded filesystems ([`crate::RecordKind::CRYPT_VOLUMES`]):
//! for each, what seamless-init needs to make the same mapping on the new kernel before the
//! distribution's initramfs would ask for a passphrase: the mapping's name and device-mapper
//! UUID, the LUKS header's UUID and sequence number (checked on the device before anything is
//! unlocked), the table line's fields (cipher, IV offset, data offset, optional parameters)
//! and the volume key, in memory only: the region is RAM (pmem carved out of it, or the
//! initramfs), and seamless-init overwrites the key in the region right after the mapping is
//! live ([`CryptVolumes::wiped`]).
//!
//! The key is not printed by `Debug` and is wiped from memory when a [`CryptVolume`] is dropped.

use seamless_sys::secret::{wipe, Secret};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Most volumes in a record.
pub const MAX_VOLUMES: usize = 64;
/// Longest volume key (dm-crypt's limit is far above any cipher's key).
pub const MAX_KEY: usize = 256;
/// Shortest volume key (a 128-bit cipher).
pub const MIN_KEY: usize = 16;
/// LUKS magic ("LUKS\xba\xbe"), at offset 0 of a LUKS1 or LUKS2 header.
pub const LUKS_MAGIC: [u8; 6] = *b"LUKS\xba\xbe";

/// The record: every dm-crypt volume below a recorded filesystem, the root's first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CryptVolumes {
    /// The volumes.
    pub volumes: Vec<CryptVolume>,
}

/// How the old kernel's table gave the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRef {
    /// As hex in the table line (`cryptsetup --disable-keyring`, LUKS1, plain).
    Inline,
    /// As a kernel keyring reference `:SIZE:TYPE:DESCRIPTION` (LUKS2's default): the new
    /// mapping takes the key the same way, from a key seamless-init adds and then invalidates.
    Keyring {
        /// `logon` (cryptsetup) or `user`.
        key_type: String,
        /// The key's description (`cryptsetup:UUID-d0`).
        description: String,
    },
}

/// One dm-crypt mapping as it was live (one `crypt` target covering the whole device).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CryptVolume {
    /// The mapping's name (`/dev/mapper/NAME`), as the distribution's crypttab names it.
    pub name: String,
    /// Its device-mapper UUID (`CRYPT-LUKS2-<uuid without dashes>-NAME`).
    pub dm_uuid: String,
    /// The LUKS header's UUID (`cryptsetup luksUUID`), canonical 36-character form.
    pub luks_uuid: String,
    /// LUKS version of the header (1 or 2).
    pub luks_version: u16,
    /// The LUKS2 header's sequence id (every header write raises it; 0 for LUKS1).
    pub header_seqid: u64,
    /// The device holding the header and the data as the old kernel named it (for messages;
    /// on the new kernel the device is found by its header's UUID).
    pub device: String,
    /// The target's length in 512-byte sectors.
    pub length: u64,
    /// The cipher specification (`aes-xts-plain64`).
    pub cipher: String,
    /// How the table gave the key.
    pub key_ref: KeyRef,
    /// The volume key; all zeros once seamless-init has wiped it in the region.
    pub key: Vec<u8>,
    /// The IV offset (sectors).
    pub iv_offset: u64,
    /// Where the data starts on the device (sectors).
    pub data_offset: u64,
    /// The optional parameters in table order (`allow_discards`, `sector_size:4096`, ...).
    pub options: Vec<String>,
    /// The mapping was read-only.
    pub read_only: bool,
}

impl Drop for CryptVolume {
    fn drop(&mut self) {
        wipe(&mut self.key);
    }
}

impl std::fmt::Debug for CryptVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptVolume")
            .field("name", &self.name)
            .field("dm_uuid", &self.dm_uuid)
            .field("luks_uuid", &self.luks_uuid)
            .field("luks_version", &self.luks_version)
            .field("header_seqid", &self.header_seqid)
            .field("device", &self.device)
            .field("length", &self.length)
            .field("cipher", &self.cipher)
            .field("key_ref", &self.key_ref)
            .field("key", &format_args!("[{} bytes]", self.key.len()))
            .field("iv_offset", &self.iv_offset)
            .field("data_offset", &self.data_offset)
            .field("options", &self.options)
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// Why a table line or a header cannot be carried, or a record is malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptProblem {
    /// The mapping is not one `crypt` target.
    #[error("dm-crypt volume {name}: {what}")]
    Table {
        /// The mapping.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// A field of the record is malformed.
    #[error("dm-crypt volume {name}: {what}")]
    Field {
        /// The mapping.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// Too many volumes.
    #[error("{count} dm-crypt volumes, at most {MAX_VOLUMES}")]
    TooMany {
        /// How many.
        count: usize,
    },
}

/// The fields of a `crypt` table line (`CIPHER KEY IV_OFFSET DEVICE OFFSET [N OPTIONS...]`).
#[derive(Debug)]
pub struct CryptTable {
    /// The cipher.
    pub cipher: String,
    /// The key given inline, or `None` for a keyring reference.
    pub key: Option<Secret>,
    /// The keyring reference: size, type, description.
    pub keyring: Option<(usize, String, String)>,
    /// IV offset.
    pub iv_offset: u64,
    /// `MAJOR:MINOR` of the device.
    pub device: (u64, u64),
    /// Data offset.
    pub data_offset: u64,
    /// Optional parameters.
    pub options: Vec<String>,
}

/// Parses the parameters of a `crypt` target of mapping `name` as `DM_TABLE_STATUS` with
/// `DM_STATUS_TABLE_FLAG` returns them.
pub fn parse_table(name: &str, params: &[u8]) -> Result<CryptTable, CryptProblem> {
    let bad = |what: &str| CryptProblem::Table { name: name.to_string(), what: what.to_string() };
    let text = std::str::from_utf8(params).map_err(|_| bad("table parameters are not UTF-8"))?;
    let f: Vec<&str> = text.split_ascii_whitespace().collect();
    if f.len() < 5 {
        return Err(bad("crypt table line has fewer than 5 fields"));
    }
    let num = |s: &str, what: &str| s.parse::<u64>().map_err(|_| bad(&format!("{what} {s:?} is not a number")));
    let (key, keyring) = if let Some(r) = f[1].strip_prefix(':') {
        let mut p = r.splitn(3, ':');
        let (Some(size), Some(kind), Some(desc)) = (p.next(), p.next(), p.next()) else {
            return Err(bad("malformed keyring reference"));
        };
        let size: usize = size.parse().map_err(|_| bad("malformed keyring key size"))?;
        (None, Some((size, kind.to_string(), desc.to_string())))
    } else if f[1] == "-" {
        return Err(bad("the mapping has no key (a wiped or null key)"));
    } else {
        (Some(Secret::from_hex(f[1].as_bytes()).ok_or_else(|| bad("the key is not hex"))?), None)
    };
    let (ma, mi) = f[3].split_once(':').ok_or_else(|| bad("the device is not MAJOR:MINOR"))?;
    let device = (num(ma, "major")?, num(mi, "minor")?);
    let mut options = Vec::new();
    if let Some(n) = f.get(5) {
        let n = usize::try_from(num(n, "option count")?).map_err(|_| bad("option count too large"))?;
        if f.len() != 6 + n {
            return Err(bad("option count does not match the options"));
        }
        options.extend(f[6..].iter().map(|s| s.to_string()));
    } else if f.len() != 5 {
        return Err(bad("trailing fields"));
    }
    Ok(CryptTable {
        cipher: f[0].to_string(),
        key,
        keyring,
        iv_offset: num(f[2], "IV offset")?,
        device,
        data_offset: num(f[4], "offset")?,
        options,
    })
}

/// What the LUKS header at the start of a device says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksHeader {
    /// 1 or 2.
    pub version: u16,
    /// The UUID (as stored: 36 characters).
    pub uuid: String,
    /// LUKS2's sequence id (0 for LUKS1).
    pub seqid: u64,
}

/// Reads the LUKS header at the start of `dev` (`O_DIRECT`); `None` when there is none
/// (another content, or a detached header).
pub fn read_header(dev: &Path) -> Result<Option<LuksHeader>, crate::filesystems::FsReadError> {
    let b = crate::filesystems::read_direct(dev, 0, 4096)?;
    Ok(parse_header(&b))
}

/// Parses a LUKS1/LUKS2 binary header: magic at 0, version (big-endian) at 6, LUKS2's
/// sequence id at 16, the UUID at 168 in both versions.
pub fn parse_header(b: &[u8]) -> Option<LuksHeader> {
    if b.len() < 208 || b[..6] != LUKS_MAGIC {
        return None;
    }
    let version = u16::from_be_bytes([b[6], b[7]]);
    let raw = &b[168..208];
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    let uuid = std::str::from_utf8(&raw[..end]).ok()?.to_string();
    let seqid = if version == 2 { u64::from_be_bytes(b[16..24].try_into().ok()?) } else { 0 };
    Some(LuksHeader { version, uuid, seqid })
}

fn uuid_ok(u: &str) -> bool {
    u.len() == 36
        && u.bytes()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == b'-' } else { c.is_ascii_hexdigit() })
}

/// Characters device-mapper names may carry here (what udev and cryptsetup accept, no
/// whitespace and no `/`).
fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= seamless_sys::dm::MAX_NAME
        && n != "."
        && n != ".."
        && n.bytes().all(|c| c.is_ascii_alphanumeric() || b"#+-.:=@_".contains(&c))
}

fn token_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|c| c.is_ascii_graphic())
}

impl CryptVolume {
    /// The table line for the new kernel with the device `major:minor`: the key inline as
    /// hex, or the keyring reference again. A [`Secret`]: it may hold the key.
    pub fn table_line(&self, device: (u64, u64)) -> Secret {
        let mut line: Vec<u8> = Vec::with_capacity(512 + self.key.len() * 2);
        line.extend_from_slice(self.cipher.as_bytes());
        line.push(b' ');
        match &self.key_ref {
            KeyRef::Inline => line.extend_from_slice(Secret::copy_of(&self.key).to_hex().as_bytes()),
            KeyRef::Keyring { key_type, description } => {
                line.extend_from_slice(format!(":{}:{key_type}:{description}", self.key.len()).as_bytes())
            }
        }
        line.extend_from_slice(
            format!(" {} {}:{} {}", self.iv_offset, device.0, device.1, self.data_offset).as_bytes(),
        );
        if !self.options.is_empty() {
            line.extend_from_slice(format!(" {} {}", self.options.len(), self.options.join(" ")).as_bytes());
        }
        Secret::new(line)
    }

    /// Whether seamless-init has wiped the key in the region already.
    pub fn wiped(&self) -> bool {
        self.key.iter().all(|&b| b == 0)
    }

    /// Every field as the writer makes it; a wiped key passes (later readers see it so).
    pub fn check(&self) -> Result<(), CryptProblem> {
        let bad = |what: String| CryptProblem::Field { name: self.name.clone(), what };
        if !name_ok(&self.name) {
            return Err(bad(format!("name {:?} is not a device-mapper name", self.name)));
        }
        if !token_ok(&self.dm_uuid, seamless_sys::dm::MAX_UUID) || !self.dm_uuid.starts_with("CRYPT-") {
            return Err(bad(format!("device-mapper UUID {:?} is not a CRYPT- UUID", self.dm_uuid)));
        }
        if !uuid_ok(&self.luks_uuid) {
            return Err(bad(format!("LUKS UUID {:?} is malformed", self.luks_uuid)));
        }
        if !matches!(self.luks_version, 1 | 2) || (self.luks_version == 1 && self.header_seqid != 0) {
            return Err(bad(format!("LUKS version {} (seqid {})", self.luks_version, self.header_seqid)));
        }
        if !self.device.starts_with("/dev/") || !token_ok(&self.device, 256) {
            return Err(bad(format!("device {:?} is not under /dev", self.device)));
        }
        if self.length == 0 || self.length > u64::MAX >> 9 {
            return Err(bad(format!("length {} sectors", self.length)));
        }
        if !token_ok(&self.cipher, 128) {
            return Err(bad("cipher is not printable ASCII of at most 128 bytes".into()));
        }
        if !(MIN_KEY..=MAX_KEY).contains(&self.key.len()) {
            return Err(bad(format!("key of {} bytes (from {MIN_KEY} to {MAX_KEY})", self.key.len())));
        }
        if let KeyRef::Keyring { key_type, description } = &self.key_ref {
            if !matches!(key_type.as_str(), "logon" | "user")
                || !token_ok(description, 256)
                || !description.contains(':')
            {
                return Err(bad(format!("keyring reference {key_type}:{description:?}")));
            }
        }
        if self.options.len() > 16 || !self.options.iter().all(|o| token_ok(o, 128)) {
            return Err(bad("more than 16 options, or one that is not printable ASCII".into()));
        }
        if let Some(o) =
            self.options.iter().find(|o| o.starts_with("integrity:") || o.starts_with("integrity_key_size:"))
        {
            return Err(bad(format!("option {o}: dm-integrity below is not carried")));
        }
        Ok(())
    }
}

impl CryptVolumes {
    /// Checks every volume and that names are distinct.
    pub fn check(&self) -> Result<(), CryptProblem> {
        if self.volumes.len() > MAX_VOLUMES {
            return Err(CryptProblem::TooMany { count: self.volumes.len() });
        }
        let mut seen = std::collections::HashSet::new();
        for v in &self.volumes {
            v.check()?;
            if !seen.insert(v.name.as_str()) {
                return Err(CryptProblem::Field { name: v.name.clone(), what: "named twice".into() });
            }
        }
        Ok(())
    }

    /// The encoding of [`CryptVolumes::wiped`], for [`crate::Reader::rewrite_record`].
    pub fn wiped_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.wiped()).unwrap_or_default()
    }

    /// The record with every key replaced by zeros of the same length (what stays in the
    /// region after the unlock: it encodes to exactly as many bytes).
    pub fn wiped(&self) -> CryptVolumes {
        let mut w = self.clone();
        for v in &mut w.volumes {
            wipe(&mut v.key);
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> CryptVolume {
        CryptVolume {
            name: "srvcrypt".into(),
            dm_uuid: "CRYPT-LUKS2-0f1e2d3c4b5a69788796a5b4c3d2e1f0-srvcrypt".into(),
            luks_uuid: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
            luks_version: 2,
            header_seqid: 3,
            device: "/dev/vdb".into(),
            length: 2_031_616,
            cipher: "aes-xts-plain64".into(),
            key_ref: KeyRef::Keyring {
                key_type: "logon".into(),
                description: "cryptsetup:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-d0".into(),
            },
            key: (0..64).collect(),
            iv_offset: 0,
            data_offset: 32768,
            options: vec!["sector_size:4096".into()],
            read_only: false,
        }
    }

    #[test]
    fn table_lines_parse_and_rebuild() {
        let t = parse_table("x", b"aes-xts-plain64 :64:logon:cryptsetup:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-d0 0 254:16 32768 1 sector_size:4096").unwrap();
        assert_eq!(t.cipher, "aes-xts-plain64");
        assert!(t.key.is_none());
        assert_eq!(t.keyring, Some((64, "logon".into(), "cryptsetup:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-d0".into())));
        assert_eq!((t.iv_offset, t.device, t.data_offset), (0, (254, 16), 32768));
        assert_eq!(t.options, vec!["sector_size:4096".to_string()]);
        let v = sample();
        assert_eq!(
            v.table_line((253, 0)).as_bytes(),
            b"aes-xts-plain64 :64:logon:cryptsetup:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-d0 0 253:0 32768 1 sector_size:4096"
        );
        let t = parse_table("x", b"aes-cbc-essiv:sha256 00112233445566778899aabbccddeeff 0 8:2 4096").unwrap();
        assert_eq!(t.key.unwrap().as_bytes().len(), 16);
        assert!(t.options.is_empty());
        let mut inline = sample();
        inline.key_ref = KeyRef::Inline;
        inline.key = vec![0xab; 16];
        inline.options.clear();
        assert_eq!(
            inline.table_line((8, 2)).as_bytes(),
            format!("aes-xts-plain64 {} 0 8:2 32768", "ab".repeat(16)).as_bytes()
        );
        for bad in [&b"aes 00 0 8:2"[..], b"aes zz 0 8:2 0", b"aes 00 0 8-2 0", b"aes 00 0 8:2 0 2 a", b"aes - 0 8:2 0"]
        {
            assert!(parse_table("x", bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn headers_parse() {
        let mut b = vec![0u8; 4096];
        b[..6].copy_from_slice(&LUKS_MAGIC);
        b[6..8].copy_from_slice(&2u16.to_be_bytes());
        b[16..24].copy_from_slice(&7u64.to_be_bytes());
        b[168..204].copy_from_slice(b"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert_eq!(
            parse_header(&b),
            Some(LuksHeader { version: 2, uuid: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(), seqid: 7 })
        );
        b[0] = b'X';
        assert_eq!(parse_header(&b), None);
    }

    type Edit = Box<dyn Fn(&mut CryptVolume)>;

    #[test]
    fn every_field_is_checked() {
        let ok = CryptVolumes { volumes: vec![sample()] };
        ok.check().unwrap();
        let w = ok.wiped();
        assert!(w.volumes[0].wiped() && !ok.volumes[0].wiped());
        w.check().unwrap();
        assert_eq!(postcard::to_allocvec(&w).unwrap().len(), postcard::to_allocvec(&ok).unwrap().len());
        assert!(!format!("{:?}", ok).contains("1, 2, 3"), "Debug shows the key");
        let bads: Vec<Edit> = vec![
            Box::new(|v| v.name = "a/b".into()),
            Box::new(|v| v.name = String::new()),
            Box::new(|v| v.dm_uuid = "LVM-x".into()),
            Box::new(|v| v.luks_uuid = "not-a-uuid".into()),
            Box::new(|v| v.luks_version = 3),
            Box::new(|v| v.device = "vdb".into()),
            Box::new(|v| v.length = 0),
            Box::new(|v| v.cipher = "aes xts".into()),
            Box::new(|v| v.key = vec![1; 8]),
            Box::new(|v| v.key_ref = KeyRef::Keyring { key_type: "keyring".into(), description: "a:b".into() }),
            Box::new(|v| v.options = vec!["integrity:28:aead".into()]),
            Box::new(|v| v.options = vec!["a b".into()]),
        ];
        for (i, f) in bads.iter().enumerate() {
            let mut v = sample();
            f(&mut v);
            assert!(CryptVolumes { volumes: vec![v] }.check().is_err(), "case {i} passed");
        }
        assert!(CryptVolumes { volumes: vec![sample(), sample()] }.check().is_err());
    }
}
