//! Identity and clean state of real XFS, btrfs and ext4 filesystems on loop devices (needs
//! root, `mkfs.xfs` from xfsprogs, `mkfs.btrfs` from btrfs-progs): what `seamless upgrade`
//! records after the freeze (`seamless_image::filesystems::read`) agrees with the
//! filesystems' own tools, verifies against the same frozen filesystem, and is refused when
//! the filesystem was written between the freeze and the check, or when a mount would replay
//! its log or journal. seamless-init runs the same code on the new kernel before the mount.

use seamless_image::filesystems::{read, FsIdentity, FsMismatch, FsState};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A filesystem of `fstype` on a loop device over a sparse file, mounted; unmounted and
/// detached on drop.
struct LoopFs {
    dir: PathBuf,
    dev: String,
    mnt: PathBuf,
    fstype: &'static str,
}

impl LoopFs {
    fn new(fstype: &'static str, mib: u64, mount_opts: &str) -> LoopFs {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fs-{fstype}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("mnt")).unwrap();
        let img = dir.join("disk.img");
        sh(&format!("truncate -s {mib}M {}", img.display()));
        let dev = sh(&format!("losetup -f --show {}", img.display())).trim().to_string();
        let mkfs = match fstype {
            "xfs" => format!("mkfs.xfs -q -f {dev}"),
            "btrfs" => format!("mkfs.btrfs -q -f {dev}"),
            _ => format!("mkfs.{fstype} -q -F {dev}"),
        };
        sh(&mkfs);
        let mnt = dir.join("mnt");
        let opts = if mount_opts.is_empty() { String::new() } else { format!("-o {mount_opts}") };
        sh(&format!("mount -t {fstype} {opts} {dev} {}", mnt.display()));
        LoopFs { dir, dev, mnt, fstype }
    }

    fn write(&self, name: &str, bytes: usize) {
        std::fs::write(self.mnt.join(name), vec![0x5a; bytes]).unwrap();
    }

    fn freeze(&self) {
        sh(&format!("sync -f {0} && fsfreeze -f {0}", self.mnt.display()));
    }

    fn thaw(&self) {
        sh(&format!("fsfreeze -u {}", self.mnt.display()));
    }

    fn identity(&self) -> FsIdentity {
        read("/srv", Path::new(&self.dev), "", self.fstype).unwrap()
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.mnt).output();
        let _ = Command::new("umount").arg(&self.mnt).output();
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn blkid_uuid(dev: &str) -> String {
    sh(&format!("blkid -p -s UUID -o value {dev}")).trim().replace('-', "")
}

fn hex(u: &[u8; 16]) -> String {
    u.iter().map(|b| format!("{b:02x}")).collect()
}

/// Frozen: clean, verified against itself. Thawed, written, frozen again: refused as written.
fn frozen_verifies_and_written_is_refused(fs: &LoopFs) -> (FsIdentity, FsIdentity) {
    fs.write("before", 1 << 20);
    fs.freeze();
    let frozen = fs.identity();
    assert!(frozen.state.is_clean(), "{}: frozen but not clean: {}", fs.fstype, frozen.summary());
    assert_eq!(hex(&frozen.uuid), blkid_uuid(&fs.dev), "{}: UUID differs from blkid's", fs.fstype);
    frozen.verify(&fs.identity()).unwrap_or_else(|e| panic!("{}: the same frozen filesystem refused: {e}", fs.fstype));
    fs.thaw();
    fs.write("after", 4096);
    fs.freeze();
    let written = fs.identity();
    let err = frozen.verify(&written).expect_err("a filesystem written after the freeze must be refused");
    println!("{}: frozen {} / written {}: refused: {err}", fs.fstype, frozen.summary(), written.summary());
    (frozen, written)
}

#[test]
fn xfs_clean_log_and_written_log_are_told_apart() {
    let fs = LoopFs::new("xfs", 320, "");
    let (frozen, written) = frozen_verifies_and_written_is_refused(&fs);
    let (FsState::Xfs { head_lsn: a, .. }, FsState::Xfs { head_lsn: b, log_clean, .. }) = (frozen.state, written.state)
    else {
        panic!("not XFS states: {frozen:?} {written:?}")
    };
    assert!(log_clean && b > a, "the head of the log must move with the write: {a:#x} -> {b:#x}");
    assert!(matches!(frozen.verify(&written), Err(FsMismatch::Written { .. })));
    // Tail and head agree with xfs_logprint's view of the log.
    let FsState::Xfs { tail_lsn, .. } = written.state else { unreachable!() };
    let print = sh(&format!("xfs_logprint -t {} 2>&1 || true", fs.dev));
    let want = format!("log tail: {} head: {}", tail_lsn & 0xffff_ffff, (b & 0xffff_ffff) + 2);
    assert!(print.contains(&want), "{want:?} not in {print}");
    // A shut-down filesystem (as after a crash) has log records after the last unmount record.
    fs.thaw();
    fs.write("lost", 1 << 16);
    sh(&format!("xfs_io -c fsync {0}/lost && xfs_io -x -c 'shutdown -f' {0}", fs.mnt.display()));
    sh(&format!("umount {}", fs.mnt.display()));
    let crashed = fs.identity();
    assert!(!crashed.state.is_clean(), "a shut-down XFS needs log recovery: {}", crashed.summary());
    assert!(matches!(frozen.verify(&crashed), Err(FsMismatch::NotClean { .. })));
    let repair = Command::new("xfs_repair").arg("-n").arg(&fs.dev).output().unwrap();
    assert!(!repair.status.success(), "xfs_repair -n agrees the log is dirty");
    // Mounted again (the log is replayed) and unmounted: an unmount record ends the log.
    sh(&format!("mount {} {1} && umount {1}", fs.dev, fs.mnt.display()));
    let unmounted = fs.identity();
    assert!(
        matches!(unmounted.state, FsState::Xfs { log_clean: true, unmount_record: true, .. }),
        "{}",
        unmounted.summary()
    );
}

#[test]
fn btrfs_generation_and_log_root() {
    let fs = LoopFs::new("btrfs", 256, "commit=300");
    let (frozen, written) = frozen_verifies_and_written_is_refused(&fs);
    let dump = sh(&format!("btrfs inspect-internal dump-super {}", fs.dev));
    let field = |name: &str| {
        dump.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse::<u64>().unwrap()))
            .unwrap_or_else(|| panic!("no {name} in {dump}"))
    };
    let FsState::Btrfs { generation, log_root } = written.state else { panic!("{written:?}") };
    assert_eq!((generation, log_root), (field("generation"), field("log_root")), "{dump}");
    assert!(matches!(frozen.verify(&written), Err(FsMismatch::Written { .. })));
    // An fsync without a transaction commit leaves a log tree that the next mount replays.
    fs.thaw();
    fs.write("logged", 8192);
    sh(&format!("xfs_io -c fsync {}/logged", fs.mnt.display()));
    let logged = fs.identity();
    let FsState::Btrfs { log_root, .. } = logged.state else { panic!("{logged:?}") };
    assert_ne!(log_root, 0, "fsync wrote a log tree: {}", logged.summary());
    assert!(matches!(frozen.verify(&logged), Err(FsMismatch::NotClean { .. })));
}

#[test]
fn ext4_journal_and_fingerprint() {
    let fs = LoopFs::new("ext4", 128, "");
    let (frozen, _) = frozen_verifies_and_written_is_refused(&fs);
    fs.thaw();
    // Mounted and in use, the journal needs recovery.
    fs.write("busy", 4096);
    let busy = fs.identity();
    assert_eq!(busy.state, FsState::Ext { needs_recovery: true }, "{}", busy.summary());
    assert!(matches!(frozen.verify(&busy), Err(FsMismatch::NotClean { .. })));
}

#[test]
fn a_type_without_verifier_is_refused() {
    let fs = LoopFs::new("ext4", 64, "");
    let e = read("/srv", Path::new(&fs.dev), "", "vfat").unwrap_err().to_string();
    assert!(e.contains("no clean-state verifier"), "{e}");
    // And a type that is not what the device holds.
    let e = read("/srv", Path::new(&fs.dev), "", "xfs").unwrap_err().to_string();
    assert!(e.contains("no XFS superblock"), "{e}");
}

/// XFS on a loop device (`lvm`: on a logical volume of a volume group on it), a process
/// holding a file open on it. `seamless upgrade`'s selection finds the filesystem through the process,
/// records it frozen with the logical volume's device-mapper UUID, and seamless-init's check
/// (the one it runs before the real system mounts the volume) accepts it as frozen, finds it
/// by that UUID when the recorded path is gone, and refuses it, naming it, once it was written.
fn volume_used_by_a_process(lvm: bool) {
    let vg = format!("seamlesstest{}", std::process::id());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("lvm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mnt")).unwrap();
    let mnt = dir.join("mnt");
    sh(&format!("truncate -s 400M {}/pv.img", dir.display()));
    let pv = sh(&format!("losetup -f --show {}/pv.img", dir.display())).trim().to_string();
    struct Cleanup(String, String, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "fsfreeze -u {2}/mnt; umount {2}/mnt; vgremove -q -f {0}; pvremove -q -f {1}; losetup -d {1}",
                    self.0,
                    self.1,
                    self.2.display()
                ))
                .output();
            let _ = std::fs::remove_dir_all(&self.2);
        }
    }
    let _cleanup = Cleanup(vg.clone(), pv.clone(), dir.clone());
    let dev = if lvm {
        sh(&format!(
            "export LVM_SUPPRESS_FD_WARNINGS=1; pvcreate -q -f {pv} && vgcreate -q {vg} {pv} && \
             lvcreate -q -y -n data -l 100%FREE {vg} && (udevadm settle || true)"
        ));
        format!("/dev/mapper/{vg}-data")
    } else {
        pv.clone()
    };
    sh(&format!("mkfs.xfs -q -f {dev} && mount {dev} {}", mnt.display()));
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3>>{}/service.log && echo started >&3 && exec sleep 120", mnt.display()))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = holder.id() as i32;
    let targets = seamless::kexec::current_freeze_targets().unwrap();
    let used = seamless::upgrade::filesystems::used_targets(&targets, &[pid]);
    let ours: Vec<_> = used.iter().filter(|t| t.mountpoint == mnt).map(|t| (*t).clone()).collect();
    assert_eq!(ours.len(), 1, "the volume the process writes to is selected: {used:?}");
    // The filesystem of the process's root is selected too (here perhaps under the mount
    // point of a later bind mount of it, which the freeze keeps instead).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root_dev =
        mountinfo.lines().find(|l| l.split(' ').nth(4) == Some("/")).and_then(|l| l.split(' ').nth(2)).unwrap();
    assert!(used.iter().any(|t| t.dev == root_dev), "the root's filesystem ({root_dev}) is selected: {used:?}");
    sh(&format!("sync -f {0} && fsfreeze -f {0}", mnt.display()));
    let rec = seamless::upgrade::filesystems::record(&ours, &[pid]).unwrap();
    assert!(seamless::upgrade::filesystems::needed(&rec));
    rec.check().unwrap();
    let lv = &rec.filesystems[0];
    println!("recorded {}", lv.summary());
    let wait = std::time::Duration::from_secs(2);
    seamless_init::handover::verify_filesystems(&rec, wait).unwrap();
    assert!(lv.mount_options.starts_with("rw") && lv.fs_options.starts_with("rw"), "{lv:?}");
    // seamless-init mounts it where it was before the restore (here: a second place, since
    // this kernel still has it mounted), with its options, and leaves a mounted one alone.
    let again = dir.join("again");
    std::fs::create_dir_all(&again).unwrap();
    let mut elsewhere = rec.clone();
    elsewhere.filesystems[0].mountpoint = again.display().to_string();
    let mounted = seamless_init::handover::mount_filesystems(&elsewhere, wait).unwrap();
    assert_eq!(mounted, vec![again.display().to_string()]);
    let log = std::fs::read_to_string(again.join("service.log"));
    sh(&format!("umount {}", again.display()));
    assert_eq!(log.unwrap(), "started\n");
    assert!(seamless_init::handover::mount_filesystems(&rec, wait).unwrap().is_empty(), "mounted already");
    if lvm {
        assert!(lv.dm_uuid.starts_with("LVM-"), "{}", lv.summary());
        // The recorded name is gone on the new kernel (no udev links yet): found by its UUID.
        let mut renamed = rec.clone();
        renamed.filesystems[0].device = format!("/dev/mapper/{vg}-gone");
        seamless_init::handover::verify_filesystems(&renamed, wait).unwrap();
        // Another logical volume's UUID is not accepted under the recorded name.
        let mut other = rec.clone();
        other.filesystems[0].dm_uuid.push('x');
        assert!(seamless_init::handover::verify_filesystems(&other, std::time::Duration::from_millis(200)).is_err());
    } else {
        assert_eq!(lv.dm_uuid, "", "a loop device is no device-mapper device");
        // Another device under the recorded name is refused.
        let mut other = rec.clone();
        other.filesystems[0].uuid[0] ^= 1;
        assert!(seamless_init::handover::verify_filesystems(&other, wait).is_err());
    }
    // Written between the freeze and the check: refused, naming the filesystem.
    sh(&format!("fsfreeze -u {0} && echo more >> {0}/service.log && sync -f {0} && fsfreeze -f {0}", mnt.display()));
    let e = seamless_init::handover::verify_filesystems(&rec, wait).unwrap_err();
    let why = seamless_sys::chain(&e).to_string();
    println!("refused: {why}");
    assert!(why.contains(&mnt.display().to_string()) && why.contains("written after the freeze"), "{why}");
    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn xfs_volume_used_by_a_process_is_recorded_and_verified_by_seamless_init() {
    volume_used_by_a_process(false);
}

/// The same on real LVM. Needs device-mapper in the running kernel (`dm_mod`), which the CI
/// host's kernel lacks: run with `--ignored` where it has it.
#[test]
#[ignore = "needs device-mapper (dm_mod) in the host kernel"]
fn lvm_xfs_volume_used_by_a_process_is_recorded_and_verified_by_seamless_init() {
    volume_used_by_a_process(true);
}

/// `check` refuses a used filesystem on dm-crypt, directly or below an LVM volume: the layers
/// are found through sysfs (`dev/block/M:m/dm/uuid` and `slaves/`), here a tree standing in for
/// `/sys` over a real loop device (the CI host's kernel has no device-mapper).
#[test]
fn dm_crypt_below_a_volume_is_found() {
    use std::os::unix::fs::MetadataExt;
    let fs = LoopFs::new("ext4", 32, "");
    let rdev = std::fs::metadata(&fs.dev).unwrap().rdev();
    let (ma, mi) = (((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff), (rdev & 0xff) | ((rdev >> 12) & !0xff));
    let sys = fs.dir.join("sys");
    let lv = sys.join(format!("dev/block/{ma}:{mi}"));
    std::fs::create_dir_all(lv.join("dm")).unwrap();
    std::fs::write(lv.join("dm/uuid"), "LVM-abc\n").unwrap();
    assert!(seamless::upgrade::filesystems::crypt_layers(&sys, &fs.dev).is_empty(), "plain LVM");
    std::fs::create_dir_all(lv.join("slaves/dm-0/dm")).unwrap();
    std::fs::write(lv.join("slaves/dm-0/dm/uuid"), "CRYPT-LUKS2-0123-luks\n").unwrap();
    assert_eq!(seamless::upgrade::filesystems::crypt_layers(&sys, &fs.dev), vec!["CRYPT-LUKS2-0123-luks".to_string()]);
}
