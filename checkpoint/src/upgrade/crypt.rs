//! dm-crypt volumes below the recorded filesystems: their live tables and volume keys, for
//! record kind 51 ([`seamless_image::crypt::CryptVolumes`]), which seamless-init uses to make
//! the same mappings on the new kernel before the distribution's initramfs would ask for a
//! passphrase.
//!
//! Where the key comes from:
//! - the table line itself, when it holds the key as hex (`DM_TABLE_STATUS` with
//!   `DM_STATUS_TABLE_FLAG`, what `dmsetup table --showkeys` prints): volumes opened with
//!   `cryptsetup --disable-keyring`, LUKS1 on older cryptsetup, kernels without the keyring;
//! - otherwise the table names a kernel keyring key (`:64:logon:cryptsetup:UUID-d0`), which is
//!   what Debian 12's cryptsetup 2.6 does for every LUKS2 volume: a `logon` key cannot be read
//!   from user space, and cryptsetup unlinks it once the table is loaded, so the key exists
//!   only inside dm-crypt. seamless then derives it again from the LUKS header with a
//!   passphrase or key file the operator gives (`--crypt-key NAME=FILE`, `NAME=-` for a
//!   passphrase on stdin), through the system's own `cryptsetup luksDump --dump-volume-key`
//!   (which checks it against the header's digest), reading its output from a pipe: nothing
//!   touches a disk. Without one, `check` refuses the volume with that reason.

use seamless_image::crypt::{self, CryptProblem, CryptVolume, KeyRef};
use seamless_sys::secret::Secret;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the passphrase or key file for a volume whose key is in the kernel keyring comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A key file (as crypttab's third field would name it), passed to cryptsetup by path.
    File(PathBuf),
    /// A passphrase read from stdin when the command started.
    Passphrase(Arc<Secret>),
}

/// `--crypt-key NAME=SOURCE`.
#[derive(Debug, Clone)]
pub struct CryptKey {
    /// The mapping's name.
    pub name: String,
    /// Its passphrase or key file.
    pub source: KeySource,
}

impl CryptKey {
    /// Parses `NAME=PATH` or `NAME=-` (`stdin`: the passphrase, read by the caller once, one
    /// trailing newline dropped).
    pub fn parse(arg: &str, stdin: &mut dyn FnMut() -> std::io::Result<Secret>) -> Result<Self, String> {
        let (name, src) =
            arg.split_once('=').ok_or_else(|| format!("--crypt-key {arg:?}: give NAME=FILE or NAME=-"))?;
        if name.is_empty() || src.is_empty() {
            return Err(format!("--crypt-key {arg:?}: give NAME=FILE or NAME=-"));
        }
        let source = if src == "-" {
            KeySource::Passphrase(Arc::new(stdin().map_err(|e| format!("--crypt-key {name}=-: reading stdin: {e}"))?))
        } else {
            KeySource::File(PathBuf::from(src))
        };
        Ok(Self { name: name.to_string(), source })
    }
}

/// A dm-crypt device below a filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptDev {
    /// Its device-mapper name.
    pub name: String,
    /// Its device-mapper UUID (`CRYPT-...`).
    pub dm_uuid: String,
}

/// The dm-crypt devices under block device `source` (itself, or below it through `slaves/`),
/// read from `sys` (`/sys`), outermost first.
pub fn devices(sys: &Path, source: &str) -> Vec<CryptDev> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(m) = std::fs::metadata(source) else { return Vec::new() };
    if !m.file_type().is_block_device() {
        return Vec::new();
    }
    let rdev = m.rdev();
    let (ma, mi) = (((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff), (rdev & 0xff) | ((rdev >> 12) & !0xff));
    let mut out = Vec::new();
    let mut todo = vec![sys.join(format!("dev/block/{ma}:{mi}"))];
    while let Some(dir) = todo.pop() {
        if out.len() > 64 {
            break;
        }
        let uuid = std::fs::read_to_string(dir.join("dm/uuid")).unwrap_or_default();
        if uuid.starts_with("CRYPT-") {
            let name = std::fs::read_to_string(dir.join("dm/name")).unwrap_or_default();
            out.push(CryptDev { name: name.trim().to_string(), dm_uuid: uuid.trim().to_string() });
        }
        for e in std::fs::read_dir(dir.join("slaves")).into_iter().flatten().flatten() {
            todo.push(e.path());
        }
    }
    out
}

/// Why a dm-crypt volume cannot be carried.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    /// device-mapper refused.
    #[error("dm-crypt volume {0}: reading its table")]
    Table(String, #[source] seamless_sys::SysError),
    /// The table is not something seamless-init can rebuild.
    #[error(transparent)]
    Layout(#[from] CryptProblem),
    /// Not a single crypt target.
    #[error("dm-crypt volume {name}: {what}")]
    Unsupported {
        /// The mapping.
        name: String,
        /// Why.
        what: String,
    },
    /// The key is in the kernel keyring and no passphrase or key file was given.
    #[error("dm-crypt volume {name}: its key is the kernel keyring's {key_type} key {description:?}, which no program can read (cryptsetup's default for LUKS2); give its passphrase or key file with --crypt-key {name}=FILE (or {name}=- for a passphrase on stdin), or open it with cryptsetup --disable-keyring")]
    KeyInKeyring {
        /// The mapping.
        name: String,
        /// Key type.
        key_type: String,
        /// Key description.
        description: String,
    },
    /// cryptsetup could not derive the key.
    #[error("dm-crypt volume {name}: cryptsetup luksDump --dump-volume-key on {device}: {what}")]
    Derive {
        /// The mapping.
        name: String,
        /// The LUKS device.
        device: String,
        /// What failed (cryptsetup's message, never the key).
        what: String,
    },
}

/// The block device node for `major:minor` (`/dev/block/M:m`, which udev and devtmpfs keep);
/// its kernel name through `/sys` when that link is missing.
fn node(dev: (u64, u64)) -> PathBuf {
    let link = PathBuf::from(format!("/dev/block/{}:{}", dev.0, dev.1));
    if link.exists() {
        return link;
    }
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{}:{}/uevent", dev.0, dev.1)).unwrap_or_default();
    uevent.lines().find_map(|l| l.strip_prefix("DEVNAME=")).map(|n| PathBuf::from("/dev").join(n)).unwrap_or(link)
}

/// Reads the mapping `dev` and, when the key is only in the keyring, derives it with the
/// passphrase or key file given in `keys` for it (without one, the error says what to give). Returns the volume for the record, the key in it.
pub fn read(dev: &CryptDev, keys: &[CryptKey]) -> Result<CryptVolume, CryptError> {
    let name = &dev.name;
    let info = seamless_sys::dm::info(name).map_err(|e| CryptError::Table(name.clone(), e))?;
    let targets = seamless_sys::dm::table(name).map_err(|e| CryptError::Table(name.clone(), e))?;
    let unsupported = |what: String| CryptError::Unsupported { name: name.clone(), what };
    let [t] = targets.as_slice() else {
        return Err(unsupported(format!(
            "{} targets; one crypt target over the whole device is carried",
            targets.len()
        )));
    };
    if t.kind != "crypt" || t.start != 0 {
        return Err(unsupported(format!("target {} at sector {}, not one crypt target", t.kind, t.start)));
    }
    let table = crypt::parse_table(name, t.params.as_bytes())?;
    let device = node(table.device);
    let header = crypt::read_header(&device).map_err(|e| {
        unsupported(format!("reading the LUKS header on {}: {}", device.display(), seamless_sys::chain(&e)))
    })?;
    let Some(header) = header else {
        return Err(unsupported(format!(
            "no LUKS header at the start of {} (a detached header, or plain dm-crypt): seamless-init could not check what it unlocks",
            device.display()
        )));
    };
    if let Some(o) = table.options.iter().find(|o| o.starts_with("integrity:")) {
        return Err(unsupported(format!("authenticated encryption with dm-integrity below ({o}) is not carried")));
    }
    let (key_ref, key) = match (table.key, table.keyring) {
        (Some(k), _) => (KeyRef::Inline, k),
        (None, Some((size, key_type, description))) => {
            let Some(given) = keys.iter().find(|k| &k.name == name) else {
                return Err(CryptError::KeyInKeyring { name: name.clone(), key_type, description });
            };
            let k = derive(name, &device, &given.source)?;
            if k.len() != size {
                return Err(CryptError::Derive {
                    name: name.clone(),
                    device: device.display().to_string(),
                    what: format!("the key is {} bytes, the table's {size}", k.len()),
                });
            }
            (KeyRef::Keyring { key_type, description }, k)
        }
        (None, None) => return Err(unsupported("the table gives no key".into())),
    };
    let v = CryptVolume {
        name: name.clone(),
        dm_uuid: if info.as_ref().is_some_and(|i| !i.uuid.is_empty()) {
            info.map(|i| i.uuid).unwrap_or_default()
        } else {
            dev.dm_uuid.clone()
        },
        luks_uuid: header.uuid,
        luks_version: header.version,
        header_seqid: header.seqid,
        device: device.display().to_string(),
        length: t.length,
        cipher: table.cipher,
        key_ref,
        key: key.as_bytes().to_vec(),
        iv_offset: table.iv_offset,
        data_offset: table.data_offset,
        options: table.options,
        read_only: std::fs::read_to_string(format!("/sys/dev/block/{}/ro", dm_devno(name)))
            .is_ok_and(|s| s.trim() == "1"),
    };
    v.check()?;
    Ok(v)
}

/// `MAJOR:MINOR` of mapping `name` (for `/sys/dev/block`).
fn dm_devno(name: &str) -> String {
    match seamless_sys::dm::info(name) {
        Ok(Some(i)) => {
            let (a, b) = i.major_minor();
            format!("{a}:{b}")
        }
        _ => "0:0".into(),
    }
}

/// The volume key of the LUKS device `device`, from `cryptsetup luksDump --dump-volume-key`
/// with the passphrase or key file `source`; output read from a pipe, parsed, and wiped.
fn derive(name: &str, device: &Path, source: &KeySource) -> Result<Secret, CryptError> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let fail = |what: String| CryptError::Derive { name: name.to_string(), device: device.display().to_string(), what };
    let mut cmd = Command::new("cryptsetup");
    cmd.args(["luksDump", "--dump-volume-key", "--batch-mode"]);
    match source {
        KeySource::File(p) => {
            cmd.arg(format!("--key-file={}", p.display())).stdin(Stdio::null());
        }
        KeySource::Passphrase(_) => {
            cmd.arg("--key-file=-").stdin(Stdio::piped());
        }
    }
    cmd.arg(device).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run cryptsetup: {e}")))?;
    if let (KeySource::Passphrase(p), Some(mut stdin)) = (source, child.stdin.take()) {
        stdin.write_all(p.as_bytes()).map_err(|e| fail(format!("writing the passphrase: {e}")))?;
    }
    // One buffer of its final size (no reallocation leaves a copy), wiped on drop.
    let mut out = Secret::new(vec![0u8; 1 << 16]);
    let mut got = 0usize;
    if let Some(mut so) = child.stdout.take() {
        let mut buf = [0u8; 4096];
        loop {
            match so.read(&mut buf) {
                Ok(0) => break,
                Ok(n) if got + n <= out.len() => {
                    out.as_mut_bytes()[got..got + n].copy_from_slice(&buf[..n]);
                    got += n;
                }
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    seamless_sys::secret::wipe(&mut buf);
                    return Err(fail(format!("reading its output: {e}")));
                }
            }
        }
        seamless_sys::secret::wipe(&mut buf);
    }
    let mut err = String::new();
    if let Some(mut se) = child.stderr.take() {
        let _ = se.read_to_string(&mut err);
    }
    let status = child.wait().map_err(|e| fail(format!("waiting for cryptsetup: {e}")))?;
    if !status.success() {
        return Err(fail(format!("{status}: {}", err.trim())));
    }
    parse_dump(&out.as_bytes()[..got]).ok_or_else(|| fail("its output has no volume key (\"MK dump:\")".into()))
}

/// The key in `cryptsetup luksDump --dump-volume-key` output: the hex bytes after `MK dump:`
/// and on the indented lines after it.
pub fn parse_dump(out: &[u8]) -> Option<Secret> {
    let text = std::str::from_utf8(out).ok()?;
    let at = text.find("MK dump:")?;
    let mut hex = Secret::new(Vec::with_capacity(text.len()));
    for (i, line) in text[at + "MK dump:".len()..].lines().enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        for w in line.split_ascii_whitespace() {
            if w.len() != 2 || !w.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            hex.push_within(w.as_bytes())?;
        }
    }
    let key = Secret::from_hex(hex.as_bytes())?;
    (!key.is_empty()).then_some(key)
}

/// The dm-crypt devices below the filesystems the trees rooted at `roots` use (the root's
/// first), each once.
pub fn used_devices(targets: &[crate::kexec::FreezeTarget], roots: &[i32]) -> Vec<CryptDev> {
    let mut used = super::filesystems::used_targets(targets, roots);
    used.sort_by_key(|t| t.mountpoint != Path::new("/"));
    let mut out: Vec<CryptDev> = Vec::new();
    for t in used {
        for d in devices(Path::new("/sys"), &t.source) {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

/// Why the dm-crypt record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CryptRecordError {
    /// A volume cannot be carried.
    #[error(transparent)]
    Volume(#[from] CryptError),
    /// The target's seamless-init does not know record kind 51.
    #[error("the new initramfs's seamless-init cannot unlock dm-crypt volumes (it does not know record kind 51): {0}")]
    Unsupported(String),
    /// Writing the record failed.
    #[error("writing the dm-crypt record")]
    Write(#[from] seamless_image::ImageError),
}

/// Reads every dm-crypt volume below the filesystems the trees rooted at `roots` use, with its
/// key (derived now, before anything is frozen: a key derivation takes its time), for
/// [`write()`]; an empty record when there is none.
pub fn read_all(
    targets: &[crate::kexec::FreezeTarget],
    roots: &[i32],
    keys: &[CryptKey],
    reader_kinds: Option<&[u16]>,
) -> Result<crypt::CryptVolumes, CryptRecordError> {
    let devs = used_devices(targets, roots);
    let mut rec = crypt::CryptVolumes::default();
    if devs.is_empty() {
        return Ok(rec);
    }
    let names: Vec<String> = devs.iter().map(|d| d.name.clone()).collect();
    if reader_kinds.is_some_and(|k| !k.contains(&seamless_image::RecordKind::CRYPT_VOLUMES.0)) {
        return Err(CryptRecordError::Unsupported(names.join(", ")));
    }
    if let Some(mode) = lockdown_confidentiality() {
        return Err(CryptRecordError::Volume(CryptError::Unsupported {
            name: names.join(", "),
            what: format!("the kernel is locked down ({mode}): root cannot read kernel memory, but could read a volume key carried in the region; unlock it at the prompt instead"),
        }));
    }
    for d in &devs {
        rec.volumes.push(read(d, keys)?);
    }
    rec.check().map_err(CryptError::from)?;
    Ok(rec)
}

/// `Some(mode)` when `/sys/kernel/security/lockdown` selects `confidentiality`.
fn lockdown_confidentiality() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/security/lockdown").ok()?;
    s.contains("[confidentiality]").then(|| "lockdown=confidentiality".to_string())
}

/// Writes record kind 51 into the region (encoded into a buffer that is wiped afterwards);
/// nothing for an empty record. Called last before the image is completed, so that the keys
/// are in the region for the shortest time; an image invalidated after that has them zeroed
/// ([`seamless_image::invalidate`]).
pub fn write<S: seamless_image::Store>(
    rec: &crypt::CryptVolumes,
    writer: &mut seamless_image::Writer<S>,
) -> Result<(), CryptRecordError> {
    if !rec.volumes.is_empty() {
        writer.put_secret_record(seamless_image::RecordKind::CRYPT_VOLUMES, 0, 0, rec)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_key_dump_parses() {
        let out = b"LUKS header information for /dev/vdb\nCipher name:   \taes\nCipher mode:   \txts-plain64\nPayload offset:\t32768\nUUID:          \t0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\nMK bits:       \t512\nMK dump:\t00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f \n\t\t10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f \n\t\t20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f \n\t\t30 31 32 33 34 35 36 37 38 39 3a 3b 3c 3d 3e 3f \n";
        let k = parse_dump(out).unwrap();
        assert_eq!(k.as_bytes(), (0u8..64).collect::<Vec<u8>>().as_slice());
        assert!(parse_dump(b"no key here").is_none());
        assert!(parse_dump(b"MK dump:\t0g 11\n").is_none());
    }

    #[test]
    fn crypt_key_arguments() {
        let mut stdin = || Ok(Secret::copy_of(b"pass"));
        let k = CryptKey::parse("cryptroot=-", &mut stdin).unwrap();
        assert_eq!(k.name, "cryptroot");
        assert!(matches!(&k.source, KeySource::Passphrase(p) if p.as_bytes() == b"pass"));
        assert!(!format!("{k:?}").contains("pass\""), "Debug shows the passphrase");
        let k = CryptKey::parse("data=/etc/keys/data.key", &mut stdin).unwrap();
        assert!(matches!(&k.source, KeySource::File(p) if p == Path::new("/etc/keys/data.key")));
        assert!(CryptKey::parse("nokey", &mut stdin).is_err());
        assert!(CryptKey::parse("=x", &mut stdin).is_err());
    }
}
