//! VM scenarios with real Debian kernels: kernel A (6.1) and kernel B (6.12) in QEMU, a region
//! on /dev/pmem0 (`memmap=256M!1G`) carried across `seamless kexec --exec`, and seamless-init
//! as PID 1 of the new kernel's initramfs. Run with
//! `cargo test -p seamless-tests --test vm -- --test-threads=1` (as root).

use anyhow::{ensure, Result};
use seamless_tests::vm::{GuestBuilder, Vm, Which};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

/// Lines of the boot since `from` that seamless-init logged about the region.
fn region_lines(vm: &Vm, from: usize) -> Vec<String> {
    vm.console_since(from).into_iter().map(|l| l.text).filter(|t| t.contains("seamless-init: region")).collect()
}

/// Writes a pattern region on the running kernel, kexecs into `to`, and checks that the new
/// kernel's seamless-init validated it.
fn pattern_survives(name: &str, from: Which, to: Which) -> Result<()> {
    let mut vm = GuestBuilder::new(name).boot_kernel(from).start()?;
    let out = vm.sh("seamless region write-pattern /dev/pmem0 --mib 16 --seed 0xfeed")?;
    ensure!(out.contains("16 chunks"), "write-pattern said: {out}");
    let k = vm.kexec(to)?;
    let line = vm.wait_console(k.console_from, "seamless-init: region /dev/pmem0 valid", T)?;
    ensure!(line.text.contains("test pattern seed 0xfeed verified over 16 chunks"), "{}", line.text);
    ensure!(region_lines(&vm, k.console_from).len() == 1, "{:?}", region_lines(&vm, k.console_from));
    println!("{name}: {}", line.text);
    Ok(())
}

/// (a) A region written on A survives `seamless kexec --exec` and is validated on B.
#[test]
fn a_pattern_region_survives_kexec_a_to_b() -> Result<()> {
    pattern_survives("a-pattern", Which::A, Which::B)
}

/// (e) The downgrade B -> A works too.
#[test]
fn e_pattern_region_survives_downgrade_b_to_a() -> Result<()> {
    pattern_survives("e-downgrade", Which::B, Which::A)
}

/// (b) No region: both the cold boot and the kexec'd boot say so and boot normally.
#[test]
fn b_no_region_boots_normally() -> Result<()> {
    let mut vm = GuestBuilder::new("b-no-region").start()?;
    vm.wait_console(0, "seamless-init: no region found", T)?;
    // Refusals are explained, and --unload really unloads.
    let r = vm.run("seamless kexec --exec")?;
    ensure!(r.status != 0 && r.output.contains("no kernel is loaded"), "{}", r.output);
    let r = vm.run("seamless kexec --kernel /etc/passwd --initrd /etc/group --append x")?;
    ensure!(r.status != 0 && r.output.contains("not a kernel image"), "{}", r.output);
    let rel = vm.sh("ls /boot | sed -n 's/^vmlinuz-//p' | head -n1")?;
    let rel = rel.trim();
    vm.sh(&format!("seamless kexec --kernel /boot/vmlinuz-{rel} --initrd /boot/initrd.img-{rel} --append x"))?;
    ensure!(vm.sh("cat /sys/kernel/kexec_loaded")?.trim() == "1");
    vm.sh("seamless kexec --unload")?;
    ensure!(vm.sh("cat /sys/kernel/kexec_loaded")?.trim() == "0");
    let k = vm.kexec(Which::B)?;
    let line = vm.wait_console(k.console_from, "seamless-init: no region found", T)?;
    ensure!(line.text.contains("/dev/pmem0 (no seamless magic)"), "{}", line.text);
    ensure!(vm.sh("uname -r")?.trim() == k.release);
    Ok(())
}

/// (c) A flipped byte in a page chunk: B boots normally and logs one line naming the check.
#[test]
fn c_corrupt_region_is_rejected_with_one_clear_line() -> Result<()> {
    let mut vm = GuestBuilder::new("c-corrupt").start()?;
    vm.sh("seamless region write-pattern /dev/pmem0 --mib 4")?;
    let out = vm.sh("seamless region flip-byte /dev/pmem0 --entry 2 --at 777")?;
    ensure!(out.contains("entry 2 (page-chunk"), "{out}");
    let k = vm.kexec(Which::B)?;
    let lines = region_lines(&vm, k.console_from);
    ensure!(lines.len() == 1, "expected one region line, got {lines:?}");
    ensure!(
        lines[0].contains("rejected: entry 2 (page-chunk") && lines[0].contains("checksum mismatch"),
        "{}",
        lines[0]
    );
    ensure!(vm.sh("uname -r")?.trim() == k.release);
    println!("{}", lines[0]);
    Ok(())
}

/// (d) Files written on A, then frozen by `seamless kexec --exec`: B mounts the root with no
/// journal recovery and no orphan processing, and the files are intact.
#[test]
fn d_frozen_root_needs_no_recovery_on_b() -> Result<()> {
    let mut vm = GuestBuilder::new("d-frozen-root").start()?;
    vm.sh(
        "mkdir -p /data && for i in $(seq 1 40); do dd if=/dev/urandom of=/data/f$i bs=64k count=1 2>/dev/null; done",
    )?;
    vm.sh("cd /data && md5sum f* > /root/sums && echo done > /data/marker")?;
    // While mounted rw, ext4 flags its journal as needing recovery (incompat bit 0x4): without
    // the freeze, B would replay the journal. The freeze must clear it.
    let flags = vm.sh("dd if=/dev/vda bs=1 skip=$((1024+0x60)) count=1 2>/dev/null | od -An -tu1")?;
    ensure!(flags.trim().parse::<u8>()? & 4 != 0, "needs_recovery not set on the mounted root: {flags}");
    let k = vm.kexec(Which::B)?;
    let ext4: Vec<String> =
        vm.console_since(k.console_from).into_iter().map(|l| l.text).filter(|t| t.contains("EXT4-fs (vda)")).collect();
    ensure!(ext4.iter().any(|l| l.contains("mounted filesystem")), "no ext4 mount line: {ext4:?}");
    let bad: Vec<&String> = ext4.iter().filter(|l| l.contains("recovery") || l.contains("orphan")).collect();
    ensure!(bad.is_empty(), "journal recovery or orphan cleanup on B: {bad:?}");
    let check = vm.sh("cd /data && md5sum -c /root/sums | grep -c ': OK$'; cat /data/marker")?;
    ensure!(check.split_whitespace().collect::<Vec<_>>() == ["40", "done"], "{check}");
    println!("{ext4:?}");
    Ok(())
}

/// (f) A region carried in a cpio archive appended to the new kernel's initramfs (no pmem):
/// seamless-init finds /seamless/region.img and validates it.
#[test]
fn f_region_appended_to_initramfs() -> Result<()> {
    let mut vm = GuestBuilder::new("f-cpio").start()?;
    let b = seamless_tests::vm::env()?.kernel(Which::B).release.clone();
    vm.sh("seamless region write-pattern /tmp/region.cpio --mib 8 --seed 0xc910")?;
    vm.sh(&format!("cat /boot/initrd.img-{b} /tmp/region.cpio > /tmp/initrd-region.img"))?;
    let k = vm.kexec_with_initrd(Which::B, "/tmp/initrd-region.img")?;
    let lines = region_lines(&vm, k.console_from);
    ensure!(lines.len() == 1, "{lines:?}");
    ensure!(
        lines[0].contains("region /seamless/region.img valid") && lines[0].contains("seed 0xc910 verified"),
        "{}",
        lines[0]
    );
    println!("{}", lines[0]);
    Ok(())
}
