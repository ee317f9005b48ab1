//! Root filesystem identity on a real ext4 image made by mkfs.ext4.

use seamless_image::upgrade::{read_identity, IdentityMismatch};
use std::process::Command;

#[test]
fn ext4_identity_detects_changes() {
    let dir = std::env::temp_dir().join(format!("seamless-rootid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("fs.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(32 << 20).unwrap();
    let ok = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img).status().expect("mkfs.ext4 (e2fsprogs) is needed");
    assert!(ok.success());
    let a = read_identity(&img, "ext4", "rw").unwrap();
    assert!(a.uuid.is_some(), "ext4 superblock parsed");
    assert!(!a.needs_recovery);
    assert_eq!(a.verify(&read_identity(&img, "ext4", "rw").unwrap()), Ok(()));

    // Touch the superblock's mount count, as a mount would.
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[1024 + 0x34] ^= 1;
    std::fs::write(&img, &bytes).unwrap();
    let err = a.verify(&read_identity(&img, "ext4", "rw").unwrap()).unwrap_err();
    assert!(matches!(err, IdentityMismatch::Fingerprint { .. }), "{err}");

    // Set the needs-recovery flag.
    bytes[1024 + 0x60] |= 0x4;
    std::fs::write(&img, &bytes).unwrap();
    let err = a.verify(&read_identity(&img, "ext4", "rw").unwrap()).unwrap_err();
    assert!(matches!(err, IdentityMismatch::NeedsRecovery { .. }), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
