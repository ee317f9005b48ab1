//! tmpfs files carried across the jump, on the running kernel (needs root, for mounts): what
//! `seamless upgrade` records (`checkpoint/src/upgrade/tmpfs.rs`) from a tmpfs, after that tmpfs
//! is replaced by an empty one (as on a new kernel), comes back through seamless-init's
//! recreation (`init/src/tmpfs.rs`) with contents, modes, owners, times (not of symbolic links)
//! and symbolic links; an
//! entry that already exists is left alone. The upgrade itself: workload `tmpfs_service` in the
//! VM scenarios `a_workloads_survive_*`.

use seamless_image::{MemStore, Reader, RecordKind, Writer, WriterInfo};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sh(cmd: &str) {
    let s = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(s.success(), "{cmd}");
}

/// Mode, owner, group and (not for symbolic links, whose times are not kept) mtime.
fn meta(p: &Path) -> (u32, u32, u32, i64) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode(), m.uid(), m.gid(), if m.file_type().is_symlink() { 0 } else { m.mtime() })
}

#[test]
fn carried_tmpfs_files_come_back_on_an_empty_tmpfs() {
    let mnt = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tmpfs-carry");
    let _ = Command::new("umount").arg(&mnt).status();
    std::fs::create_dir_all(&mnt).unwrap();
    sh(&format!("mount -t tmpfs -o mode=0751,size=16m tmpfs {}", mnt.display()));
    let d = mnt.join("svc");
    sh(&format!(
        "mkdir -m 0710 {d} && printf 'pid 42\\n' > {d}/pid && chown 65534:65534 {d}/pid && chmod 0604 {d}/pid && \
         head -c 3000000 /dev/urandom > {d}/big && chmod 4755 {d}/big && ln -s pid {d}/link && touch -d @1700000000 {d}/pid {d}",
        d = d.display()
    ));
    let before: Vec<(String, (u32, u32, u32, i64))> =
        ["svc", "svc/pid", "svc/big", "svc/link"].iter().map(|p| (p.to_string(), meta(&mnt.join(p)))).collect();
    let big = std::fs::read(d.join("big")).unwrap();

    let info = WriterInfo { kernel_release: "test".into(), boot_id: [1; 16], release: "0".into() };
    let mut w = Writer::new(MemStore::new(64 << 20), info).unwrap();
    let rec = seamless::upgrade::tmpfs::record(&[], std::slice::from_ref(&d), &mut w).unwrap();
    rec.check().expect("valid record");
    assert_eq!(rec.mounts.len(), 1, "{rec:?}");
    assert_eq!(rec.entries.len(), 4, "{:?}", rec.entries.iter().map(|e| &e.path).collect::<Vec<_>>());
    w.put_ignorable_record(RecordKind::TMPFS, 0, 0, &rec).unwrap();
    let image = w.finish().unwrap().bytes;

    // The new kernel's empty tmpfs; one entry is already there and must be left as it is.
    sh(&format!("umount {m} && mount -t tmpfs -o mode=0751,size=16m tmpfs {m}", m = mnt.display()));
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut r = Reader::open(MemStore::from_bytes(image)).unwrap();
    let rec = seamless_init::tmpfs::recorded(&mut r).expect("the record reads back");
    let s = seamless_init::tmpfs::recreate(&rec, &mut r);
    assert_eq!((s.created, s.existing, s.failed, s.mounted), (3, 1, 0, 0), "{s:?}");
    for (p, m) in &before[1..] {
        assert_eq!(&meta(&mnt.join(p)), m, "{p}: mode, owner, group, mtime");
    }
    assert_eq!(meta(&d).0 & 0o7777, 0o700, "the existing directory is left alone");
    assert_eq!(std::fs::read(d.join("big")).unwrap(), big);
    assert_eq!(std::fs::read_to_string(d.join("link")).unwrap(), "pid 42\n");
    assert_eq!(std::fs::read_link(d.join("link")).unwrap(), Path::new("pid"));

    // Nothing mounted at the recorded point: a tmpfs with the recorded options is mounted there.
    sh(&format!("umount {}", mnt.display()));
    let s = seamless_init::tmpfs::recreate(&rec, &mut r);
    assert_eq!((s.mounted, s.created, s.failed), (1, 4, 0), "{s:?}");
    assert_eq!(meta(&mnt).0 & 0o7777, 0o751, "the mount's mode= option");
    for (p, m) in &before {
        assert_eq!(&meta(&mnt.join(p)), m, "{p} on the new mount");
    }
    sh(&format!("umount {}", mnt.display()));
}
