//! Private stores and trusted reading: file modes, planted links, the directory lock,
//! ownership checks, unknown record kinds and flags.

use seamless_image::{
    append_to_initrd, open_trusted, CpioStore, DirLock, DirStore, Entry, ImageError, MemStore, Reader, RecordKind,
    Superblock, Writer, WriterInfo, ENTRY_SIZE, FORMAT_VERSION, SUPERBLOCK_SIZE,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn info() -> WriterInfo {
    WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [7; 16], release: "0.1.0".into() }
}

/// A fresh directory under the target's tmp dir (root-owned 0755 ancestors when run as root).
fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("image-trust-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

#[test]
fn cpio_and_combined_initrd_are_private_and_replace_links() {
    let d = scratch("cpio");
    let victim = d.join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cpio = d.join("region.cpio");
    std::os::unix::fs::symlink(&victim, &cpio).unwrap();
    let mut w = Writer::new(CpioStore::create(&cpio, 1 << 20).unwrap(), info()).unwrap();
    w.put_record(RecordKind::STAGES, 0, 0, &vec![1u32]).unwrap();
    w.finish().unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep", "CpioStore::create wrote through a link");
    assert!(std::fs::symlink_metadata(&cpio).unwrap().file_type().is_file());
    assert_eq!(mode(&cpio), 0o600);

    let base = d.join("base.img");
    std::fs::write(&base, b"070701 not really an archive").unwrap();
    let out = d.join("initrd.img");
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    append_to_initrd(&base, &cpio, &out).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep", "append_to_initrd wrote through a link");
    assert_eq!(mode(&out), 0o600);
    let combined = std::fs::read(&out).unwrap();
    assert!(combined.starts_with(b"070701 not really"));
    // No temporary files are left behind.
    let mut names: Vec<String> =
        std::fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["base.img", "initrd.img", "region.cpio", "victim"]);
}

#[test]
fn dir_store_is_private_and_locked_while_written() {
    let d = scratch("dir").join("images");
    let store = DirStore::create(&d, 1 << 20).unwrap();
    assert_eq!(mode(&d), 0o700);
    assert_eq!(mode(&d.join("region.img")), 0o600);
    match DirStore::create(&d, 1 << 20) {
        Err(ImageError::Locked { dir, holder }) => {
            assert_eq!(dir, d.display().to_string());
            assert_eq!(holder, Some(std::process::id() as i32));
        }
        other => panic!("second create must be refused as locked, got {other:?}"),
    }
    let msg = DirLock::acquire(&d).unwrap_err().to_string();
    assert!(msg.contains("locked by another seamless dump") && msg.contains(&d.display().to_string()), "{msg}");
    let w = Writer::new(store, info()).unwrap();
    w.finish().unwrap();
    // The store (and with it the lock) is gone: a new dump may start.
    let _again = DirStore::create(&d, 1 << 20).unwrap();
}

#[test]
fn a_link_as_image_directory_is_refused() {
    let d = scratch("dirlink");
    std::fs::create_dir(d.join("real")).unwrap();
    std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
    match DirStore::create(&d.join("link"), 1 << 20) {
        Err(ImageError::Untrusted { path, why }) => {
            assert!(path.ends_with("/link"), "{path}");
            assert!(why.contains("symbolic link"), "{why}");
        }
        other => panic!("a link as directory must be refused, got {other:?}"),
    }
    assert!(std::fs::read_dir(d.join("real")).unwrap().next().is_none());
}

#[test]
fn open_trusted_checks_owner_modes_and_links() {
    if !is_root() {
        eprintln!("skipped: ownership checks need root");
        return;
    }
    let d = scratch("open");
    let img = d.join("region.img");
    std::fs::write(&img, b"x").unwrap();
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o600)).unwrap();
    open_trusted(&img, false).unwrap();
    let refused = |why: &str| match open_trusted(&img, false) {
        Err(ImageError::Untrusted { path, why: w }) => format!("{path}: {w}"),
        other => panic!("{why}: must be refused, got {other:?}"),
    };
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o602)).unwrap();
    assert!(refused("other-writable").contains("writable by others"));
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&img, Some(65534), None).unwrap();
    assert!(refused("not root's").contains("uid 65534"));
    std::os::unix::fs::chown(&img, Some(0), None).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o775)).unwrap();
    let msg = refused("group-writable directory");
    assert!(msg.starts_with(&d.display().to_string()) && msg.contains("writable by its group"), "{msg}");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = d.join("link.img");
    std::os::unix::fs::symlink(&img, &link).unwrap();
    match open_trusted(&link, false) {
        Err(ImageError::Untrusted { why, .. }) => assert!(why.contains("symbolic link"), "{why}"),
        other => panic!("a link must be refused, got {other:?}"),
    }
    // A directory others may write anywhere above (here /tmp, mode 1777).
    let tmp = std::env::temp_dir().join(format!("seamless-trust-{}", std::process::id()));
    std::fs::write(&tmp, b"x").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = open_trusted(&tmp, false);
    let _ = std::fs::remove_file(&tmp);
    if mode(&std::env::temp_dir()) & 0o002 != 0 {
        assert!(matches!(r, Err(ImageError::Untrusted { .. })), "{r:?}");
    }
}

fn image_with(extra: impl FnOnce(&mut Writer<MemStore>)) -> MemStore {
    let mut w = Writer::new(MemStore::new(1 << 20), info()).unwrap();
    w.put_record(RecordKind::STAGES, 0, 0, &vec![1u32]).unwrap();
    extra(&mut w);
    w.finish().unwrap()
}

#[test]
fn unknown_kinds_are_refused_for_restore_unless_ignorable() {
    let s = image_with(|w| {
        w.put_record(RecordKind(999), 42, 0, &"new").unwrap();
    });
    match Reader::open(s.clone()) {
        Err(ImageError::UnknownKind { index, kind, owner }) => {
            assert_eq!((index, kind, owner), (1, RecordKind(999), 42));
        }
        other => panic!("unknown kind must be refused, got {other:?}"),
    }
    // Inspection still lists it.
    let r = Reader::open_for_inspect(s).unwrap();
    assert_eq!(r.entries()[1].kind, RecordKind(999));

    let s = image_with(|w| {
        w.put_ignorable_record(RecordKind(999), 42, 0, &"optional").unwrap();
    });
    let r = Reader::open(s).unwrap();
    assert_eq!(r.entries()[1].flags, Entry::IGNORABLE);
    // Known kinds stay accepted without the flag.
    assert!(RecordKind::PAGE_CHUNK.is_known() && seamless_image::records::TREE.is_known());
    assert!(!RecordKind(999).is_known());
}

/// Rewrites entry `i`'s flags and fixes the index and superblock checksums.
fn set_entry_flags(s: &mut MemStore, i: usize, flags: u16) {
    let mut raw = [0u8; SUPERBLOCK_SIZE];
    raw.copy_from_slice(&s.bytes[..SUPERBLOCK_SIZE]);
    let mut sb = Superblock::decode(&raw, "memory").unwrap();
    let at = sb.index_offset as usize + i * ENTRY_SIZE;
    s.bytes[at + 2..at + 4].copy_from_slice(&flags.to_le_bytes());
    let end = sb.index_offset as usize + sb.entry_count as usize * ENTRY_SIZE;
    sb.index_crc = crc32c(&s.bytes[sb.index_offset as usize..end]);
    s.bytes[..SUPERBLOCK_SIZE].copy_from_slice(&sb.encode().unwrap());
}

/// CRC-32C, bitwise (the test does not depend on the crate's implementation).
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn unknown_entry_flags_are_refused() {
    let mut s = image_with(|_| {});
    set_entry_flags(&mut s, 0, 0x8000);
    match Reader::open_for_inspect(s) {
        Err(ImageError::BadEntry { index: 0, detail, .. }) => {
            assert!(detail.contains("unknown flags 0x8000"), "{detail}")
        }
        other => panic!("unknown entry flags must be refused, got {other:?}"),
    }
}

#[test]
fn incompatible_features_are_enforced() {
    let s = image_with(|_| {});
    let mut raw = [0u8; SUPERBLOCK_SIZE];
    raw.copy_from_slice(&s.bytes[..SUPERBLOCK_SIZE]);
    let mut sb = Superblock::decode(&raw, "memory").unwrap();
    assert_eq!((sb.version, sb.incompat, sb.compat), (FORMAT_VERSION, 0, 0));
    // A compatible feature this build does not know is ignored.
    sb.compat = 1 << 33;
    let ok = Superblock::decode(&sb.encode().unwrap(), "memory").unwrap();
    assert_eq!(ok.compat, 1 << 33);
    // An incompatible feature this build does not know is refused, by every reader.
    sb.incompat = 1 << 40;
    let mut bytes = s.bytes.clone();
    bytes[..SUPERBLOCK_SIZE].copy_from_slice(&sb.encode().unwrap());
    match Reader::open_for_inspect(MemStore::from_bytes(bytes)) {
        Err(ImageError::BadSuperblock { field: "incompat", detail, .. }) => {
            assert!(detail.contains("0x10000000000"), "{detail}")
        }
        other => panic!("unknown incompatible features must be refused, got {other:?}"),
    }
    // Format 1 keeps them in the 16-bit halves of `flags`; wider bits cannot be written there.
    sb.version = 1;
    assert!(matches!(sb.encode(), Err(ImageError::CannotWrite { version: 1, .. })));
    sb.incompat = 0x4;
    sb.compat = 0x2;
    let v1 = sb.encode().unwrap();
    assert_eq!(v1[20..24], 0x0002_0004u32.to_le_bytes());
    match Superblock::decode(&v1, "memory") {
        Err(ImageError::BadSuperblock { field: "incompat", .. }) => {}
        other => panic!("an unknown format-1 required flag must be refused, got {other:?}"),
    }
}
