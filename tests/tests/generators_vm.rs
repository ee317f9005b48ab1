//! Upgrades whose new initramfs was made by Debian's own generators (dracut 059 in both
//! flavours, initramfs-tools 0.142; built in a throw-away chroot by
//! `seamless_tests::vm::debian`) with the hooks of this repository: the image really boots,
//! the hook verifies the root before the generator checks and mounts it, and seamless-init, as
//! `init=` on the real root, restores the process trees. Without `memmap=` the image travels
//! appended to that initramfs and is carried past its switch_root through `/run/seamless/`.
//! Run with `cargo test -p seamless-tests --test generators_vm -- --test-threads=1` (as root).

use anyhow::{ensure, Result};
use seamless_tests::scenarios::{expect_pass, start_workloads};
use seamless_tests::vm::debian::{build_initramfs, Generator};
use seamless_tests::vm::{GuestBuilder, Which};
use std::time::Instant;

const WORKLOADS: &[&str] = &["memory", "pipes", "vdso_glibc"];

/// Builds the image for kernel B, boots a guest (with or without pmem) that has it as
/// `/boot/initrd-gen.img-B`, upgrades A -> B with it and checks the boot and the restore.
fn upgrade_with(generator: Generator, name: &str, pmem: bool, expect: &[&str]) -> Result<()> {
    let env = seamless_tests::vm::env()?;
    let b = env.kernel(Which::B).clone();
    let img = std::env::temp_dir().join(format!("seamless-{name}-{}.img", std::process::id()));
    let t = Instant::now();
    build_initramfs(&b, generator, &env.init_bin, &img)?;
    println!("{generator:?} image for {} in {:.1} s", b.release, t.elapsed().as_secs_f64());
    let mut builder = GuestBuilder::new(name).with_service().with_workloads(WORKLOADS).host_file(
        &format!("/boot/initrd-gen.img-{}", b.release),
        &img,
        0o644,
    );
    if !pmem {
        builder = builder.without_pmem();
    }
    let mut vm = builder.start()?;
    let _ = std::fs::remove_file(&img);
    let check = vm.sh(&format!("seamless check --initrd /boot/initrd-gen.img-{} 2>&1; true", b.release))?;
    println!("{check}");
    ensure!(check.lines().any(|l| l.starts_with("ok    initramfs")), "seamless check refuses the image:\n{check}");
    let list: Vec<(&str, &str)> = WORKLOADS.iter().map(|w| (*w, "")).collect();
    let pids = start_workloads(&mut vm, &list)?;
    let targets: Vec<String> = pids.iter().map(|(_, p)| format!("--pid {p}")).collect();
    let k = vm.jump(
        Which::B,
        &format!(
            "seamless upgrade --kernel /boot/vmlinuz-{r} --initrd /boot/initrd-gen.img-{r} --reuse-cmdline {}",
            targets.join(" "),
            r = b.release
        ),
    )?;
    let lines: Vec<String> = vm.console_since(k.console_from).into_iter().map(|l| l.text).collect();
    for needle in expect.iter().copied().chain(["seamless-init: verify-root", "seamless-init: restored"]) {
        ensure!(
            lines.iter().any(|l| l.contains(needle)),
            "no {needle:?} in the new kernel's log:\n{}",
            lines.join("\n")
        );
    }
    let bad: Vec<&String> = lines.iter().filter(|l| l.contains("was not restored") || l.contains("refused")).collect();
    ensure!(bad.is_empty(), "not everything was restored: {bad:?}");
    for l in lines.iter().filter(|l| l.contains("seamless-init:")) {
        println!("{l}");
    }
    let cmdline = vm.sh("cat /proc/cmdline")?;
    for w in ["fsck.mode=skip", "fastboot", "rd.skipfsck", "init=/usr/lib/seamless/seamless-init"] {
        ensure!(cmdline.split_whitespace().any(|x| x == w), "{w} missing from the new command line: {cmdline}");
    }
    ensure!(vm.sh("cat /proc/1/comm")?.trim() == "init", "PID 1 is not the real init after the hand-over");
    expect_pass(&mut vm, &pids)
}

/// dracut's classic shell `/init` sources the pre-mount hook (which returns, so `/init` goes
/// on), mounts the root, and switches to seamless-init; the image is in the pmem region.
#[test]
fn dracut_classic_image_restores_after_switch_root() -> Result<()> {
    upgrade_with(Generator::DracutClassic, "gen-dracut-classic", true, &["verify-root /dev/vda: ok /dev/pmem0"])
}

/// initramfs-tools runs scripts/local-premount/seamless; without pmem the image is appended to
/// the initramfs and verify-root carries it to /run/seamless/region.img for the init= role.
#[test]
fn initramfs_tools_image_without_pmem_carries_the_image() -> Result<()> {
    upgrade_with(
        Generator::InitramfsTools,
        "gen-itools-nopmem",
        false,
        &["carried /seamless/region.img", "region /run/seamless/region.img valid"],
    )
}

/// dracut's systemd flavour runs the hook in dracut-pre-mount.service; without pmem.
#[test]
fn dracut_systemd_image_without_pmem_restores() -> Result<()> {
    upgrade_with(
        Generator::DracutSystemd,
        "gen-dracut-systemd",
        false,
        &["carried /seamless/region.img", "region /run/seamless/region.img valid"],
    )
}

/// A plain `dracut --force` with the module installed but not asked for leaves it out, and
/// the image boots the guest normally (kexec into B, root mounted, the guest's own init runs,
/// nothing of seamless on the way).
#[test]
fn dracut_plain_image_without_the_module_boots_normally() -> Result<()> {
    let env = seamless_tests::vm::env()?;
    let b = env.kernel(Which::B).clone();
    let img = std::env::temp_dir().join(format!("seamless-gen-plain-{}.img", std::process::id()));
    build_initramfs(&b, Generator::DracutPlain, &env.init_bin, &img)?;
    let path = format!("/boot/initrd-plain.img-{}", b.release);
    let mut vm = GuestBuilder::new("gen-dracut-plain").host_file(&path, &img, 0o644).start()?;
    let _ = std::fs::remove_file(&img);
    let check = vm.sh(&format!("seamless check --initrd {path} 2>&1; true"))?;
    ensure!(
        check.lines().any(|l| l.starts_with("FAIL  initramfs") && l.contains("without the seamless pre-mount hook")),
        "check did not see that the module is missing:\n{check}"
    );
    vm.kexec_without_seamless(Which::B, &path)?;
    ensure!(vm.sh("cat /proc/1/comm")?.trim() == "init", "PID 1 is not the guest's init");
    ensure!(vm.sh("grep -c ' / ' /proc/mounts")?.trim() != "0", "no root filesystem mounted");
    println!("{}", vm.report());
    Ok(())
}
