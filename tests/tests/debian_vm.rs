//! A real Debian 12 guest (mmdebstrap root, `seamless_tests::vm::debian::systemd_root`):
//! systemd as PID 1, redis-server and memcached as enabled units, both kernels installed from
//! their packages with initramfs-tools images made by their postinst. The seamless hook for
//! initramfs-tools is installed the normal way (`/etc/initramfs-tools/`, `update-initramfs
//! -u`) in the guest, then `seamless upgrade --unit redis-server --unit memcached` goes from
//! 6.1 to 6.12 with that initramfs. Run with
//! `cargo test -p seamless-tests --test debian_vm -- --test-threads=1 --nocapture` (as root).

use anyhow::{ensure, Result};
use seamless_tests::paths;
use seamless_tests::vm::debian::{self, UNSANDBOXED};
use seamless_tests::vm::{GuestBuilder, Which};
use std::time::Duration;

fn repo_file(rel: &str) -> std::path::PathBuf {
    paths::repo_root().join(rel)
}

/// Boots the Debian guest with `setup` applied, then upgrades with `--unit redis-server --unit
/// memcached` through `/boot/initrd.img-B`, which `seamless check` must see as `generator`.
fn units_upgrade(name: &str, generator: &str, setup: impl FnOnce(GuestBuilder, &str) -> GuestBuilder) -> Result<()> {
    let root = debian::systemd_root()?;
    let env = seamless_tests::vm::env()?;
    let b = env.kernel(Which::B).release.clone();
    let builder = GuestBuilder::new(name)
        .base_root(&root)
        .file("/etc/systemd/system/redis-server.service.d/50-seamless-test.conf", UNSANDBOXED, 0o644)
        .file("/etc/systemd/system/memcached.service.d/50-seamless-test.conf", UNSANDBOXED, 0o644)
        // What `systemctl edit memcached` leaves: an override that sets the command again. The
        // adoption's drop-in must still win (it sorts after it).
        .file(
            "/etc/systemd/system/memcached.service.d/override.conf",
            "[Service]\nExecStart=\nExecStart=/usr/share/memcached/scripts/systemd-memcached-wrapper /etc/memcached.conf\n",
            0o644,
        );
    let mut vm = setup(builder, &b).start()?;
    let state = vm.run_timeout(
        "for i in $(seq 1800); do systemctl is-active -q redis-server && systemctl is-active -q memcached && break; sleep 0.2; done; systemctl is-active redis-server memcached; systemctl --version | head -1",
        Duration::from_secs(400),
    )?;
    println!("{}", state.output.trim());
    ensure!(state.output.lines().take(2).all(|l| l.trim() == "active"), "units not active: {}", state.output);

    // The Debian kernel's own initramfs (made by its postinst before the hook was installed)
    // has no hook: check refuses it, naming the generator.
    let a = env.kernel(Which::A).release.clone();
    let plain = vm.sh(&format!("seamless check --initrd /boot/initrd.img-{a} 2>&1; true"))?;
    ensure!(
        plain.contains("initramfs-tools (shell /init)") && plain.contains("without /scripts/local-premount/seamless"),
        "check did not refuse the hookless initramfs-tools image:\n{plain}"
    );
    // Keep the services above the new kernel's own low pids (README, known limits).
    vm.sh("echo 30000 > /proc/sys/kernel/ns_last_pid && systemctl restart redis-server memcached")?;
    vm.sh(seamless_tests::service::REDIS_FILL_200)?;
    let main = |vm: &mut seamless_tests::vm::Vm| -> Result<String> {
        vm.sh("systemctl show -p MainPID -p ActiveState -p NRestarts redis-server memcached | tr '\\n' ' '")
    };
    let pids_before = main(&mut vm)?;
    println!("before: {pids_before}");
    let check = vm
        .sh(&format!("seamless check --initrd /boot/initrd.img-{b} --unit redis-server --unit memcached 2>&1; true"))?;
    println!("{check}");
    ensure!(
        check.contains("ok    initramfs") && check.contains(generator),
        "check refuses the rebuilt image:\n{check}"
    );

    let k = vm.jump(
        Which::B,
        &format!(
            "seamless upgrade --kernel /boot/vmlinuz-{b} --initrd /boot/initrd.img-{b} --reuse-cmdline --unit redis-server --unit memcached"
        ),
    )?;
    let lines: Vec<String> = vm.console_since(k.console_from).into_iter().map(|l| l.text).collect();
    for l in lines.iter().filter(|l| l.contains("seamless-init:") && !l.contains("is on device")) {
        println!("{l}");
    }
    ensure!(lines.iter().any(|l| l.contains("seamless-init: restored")), "nothing restored");
    let keys = vm.sh("redis-cli dbsize; redis-cli get key200; true")?;
    println!("redis after: {}", keys.trim());
    let diag = vm.sh("systemctl cat redis-server --no-pager 2>&1 | grep -A3 seamless; journalctl -b --no-pager -o short-monotonic | grep -iE 'redis|memcached|seamless|adopt|pid file|PID' | tail -n 30; true")?;
    println!("{diag}");
    ensure!(keys.lines().next().is_some_and(|l| l.contains("200")), "redis lost keys: {keys}");
    // Wait for the adoption to settle (seamless-adopted.service reloads systemd).
    let settle = vm.run_timeout(
        "for i in $(seq 300); do systemctl is-active -q seamless-adopted.service && break; sleep 0.2; done; systemctl is-active seamless-adopted.service; true",
        Duration::from_secs(90),
    )?;
    println!("seamless-adopted.service: {}", settle.output.trim());
    let after = main(&mut vm)?;
    println!("after: {after}");
    let journal = vm.sh("journalctl -k -b --no-pager | grep -c 'seamless-init:'; journalctl -b --no-pager -u redis-server -u memcached | tail -n 8; ls /run/systemd/system/*.d/ 2>&1; true")?;
    println!("{journal}");
    ensure!(after == pids_before, "units not adopted with the same main pids: before {pids_before}, after {after}");
    ensure!(
        journal.lines().next().and_then(|l| l.trim().parse::<u32>().ok()).unwrap_or(0) > 0,
        "no seamless-init lines in journalctl -k"
    );
    let restart = vm.run_timeout(
        "systemctl restart redis-server && systemctl show -p MainPID -p ActiveState redis-server | tr '\\n' ' ' && redis-cli ping",
        Duration::from_secs(300),
    )?;
    println!("after restart: {}", restart.output.trim());
    ensure!(
        restart.status == 0 && restart.output.contains("ActiveState=active") && restart.output.contains("PONG"),
        "restart failed: {}",
        restart.output
    );
    Ok(())
}

#[test]
fn systemd_guest_upgrade_with_units_through_initramfs_tools() -> Result<()> {
    units_upgrade("debian-units", "initramfs-tools (shell /init)", |g, b| {
        g.host_file("/etc/initramfs-tools/hooks/seamless", &repo_file("initramfs-tools/hooks/seamless"), 0o755)
            .host_file(
                "/etc/initramfs-tools/scripts/local-premount/seamless",
                &repo_file("initramfs-tools/scripts/local-premount/seamless"),
                0o755,
            )
            // The hook installed before the image is made: what a kernel package's postinst does.
            .chroot_setup(&format!("update-initramfs -u -k {b} >/dev/null"))
    })
}

/// The same without `memmap=`: the image is appended to the initramfs-tools image and
/// carried past its switch_root in /run/seamless/.
#[test]
fn systemd_guest_upgrade_with_units_without_pmem() -> Result<()> {
    units_upgrade("debian-units-nopmem", "initramfs-tools (shell /init)", |g, b| {
        g.without_pmem()
            .host_file("/etc/initramfs-tools/hooks/seamless", &repo_file("initramfs-tools/hooks/seamless"), 0o755)
            .host_file(
                "/etc/initramfs-tools/scripts/local-premount/seamless",
                &repo_file("initramfs-tools/scripts/local-premount/seamless"),
                0o755,
            )
            .chroot_setup(&format!("update-initramfs -u -k {b} >/dev/null"))
    })
}

/// dracut-core installed in the guest root (without its kpartx dependency, which only its
/// device-mapper modules use), the module installed, the image made with
/// `dracut --force --add seamless` (`omit` adds `--omit systemd` for the classic flavour).
fn with_dracut(g: GuestBuilder, b: &str, omit: &str) -> GuestBuilder {
    let debs = debian::debs(debian::Generator::DracutSystemd).expect("dracut packages");
    let core =
        debs.iter().find(|d| d.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("dracut-core_")));
    let core = core.expect("dracut-core .deb").clone();
    g.host_file("/tmp/dracut-core.deb", &core, 0o644)
        .host_file("/usr/lib/dracut/modules.d/90seamless/module-setup.sh", &repo_file("dracut/90seamless/module-setup.sh"), 0o755)
        .host_file(
            "/usr/lib/dracut/modules.d/90seamless/seamless-verify-root.sh",
            &repo_file("dracut/90seamless/seamless-verify-root.sh"),
            0o755,
        )
        .chroot_setup(&format!(
            "dpkg -i --force-depends /tmp/dracut-core.deb >/dev/null 2>&1 && rm /tmp/dracut-core.deb && dracut --force --no-hostonly --add seamless {omit} --kver {b} /boot/initrd.img-{b} 2>/dev/null"
        ))
}

#[test]
fn systemd_guest_upgrade_with_units_through_dracut_systemd() -> Result<()> {
    units_upgrade("debian-units-dracut-sd", "dracut (systemd)", |g, b| with_dracut(g, b, ""))
}

#[test]
fn systemd_guest_upgrade_with_units_through_dracut_classic() -> Result<()> {
    units_upgrade("debian-units-dracut-classic", "dracut (shell /init)", |g, b| with_dracut(g, b, "--omit systemd"))
}
