//! A fleet roll-out on the tools operators already run (README, "Fleet"): the real
//! `ansible-playbook` (ansible-core from PyPI, in a venv under the cache directory) runs
//! `fleet/ansible/upgrade.yml` with `serial: 1` over SSH against three Debian 12 guests
//! (`seamless_tests::vm::debian::fleet_root`: systemd, sshd, python3, redis-server and
//! memcached preserved with `--unit`, the initramfs-tools hook installed). The second guest's
//! memcached runs with `PrivateTmp=yes`, which `seamless check` refuses. The roll-out must
//! upgrade the first guest (new boot id and kernel, units active with the same MainPID,
//! NRestarts=0), stop at the second with the check's reason, and never touch the third (no SSH
//! login at all; same boot, same MainPIDs).
//!
//! Then kured's `--reboot-command` (`fleet/kured/reboot-command`, shown verbatim in
//! `fleet/kured/README.md`) runs exactly as kured runs it, from a process in its own network,
//! UTS and IPC namespaces like kured's pod: split like a shell would, no shell, behind
//! `nsenter -m/proc/1/ns/mnt --`. On the refusing guest it exits 1 with the JSON reason and
//! changes nothing; on the untouched guest it upgrades; the variant with the fallback reboots
//! the refusing guest the usual way.
//!
//! About 20 minutes under TCG, so not in the default `tests/run`: `tests/run vm fleet`, or
//! `cargo test -p seamless-tests --test fleet_vm -- --nocapture` (as root).

use anyhow::{bail, ensure, Context, Result};
use seamless_tests::fleet::{self, shell_quote};
use seamless_tests::paths;
use seamless_tests::vm::debian::{self, UNSANDBOXED};
use seamless_tests::vm::{GuestBuilder, Vm, Which};
use std::process::Command;
use std::time::{Duration, Instant};

/// The units every guest preserves.
const UNITS: [&str; 2] = ["redis-server", "memcached"];

/// What must not change on a host the roll-out did not upgrade, and what must change (boot
/// id, release) but keep the units on one it did.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    boot_id: String,
    release: String,
    /// `MainPID=.. ActiveState=.. NRestarts=..` of each unit, in [`UNITS`] order.
    units: Vec<String>,
}

fn state(vm: &mut Vm) -> Result<State> {
    let out = vm.sh(&format!(
        "cat /proc/sys/kernel/random/boot_id; uname -r; for u in {}; do systemctl show -p MainPID -p ActiveState -p NRestarts $u | sort | tr '\\n' ' '; echo; done",
        UNITS.join(" ")
    ))?;
    let mut lines = out.lines().map(|l| l.trim().to_string());
    let boot_id = lines.next().context("no boot id")?;
    let release = lines.next().context("no release")?;
    Ok(State { boot_id, release, units: lines.filter(|l| !l.is_empty()).collect() })
}

/// The same units with the same main pids, active, never restarted.
fn units_kept(before: &State, after: &State) -> Result<()> {
    ensure!(before.units == after.units, "units changed: before {:?}, after {:?}", before.units, after.units);
    for u in &after.units {
        ensure!(
            u.contains("ActiveState=active") && u.contains("NRestarts=0") && !u.contains("MainPID=0 "),
            "unit not active with its process: {u}"
        );
    }
    Ok(())
}

/// After a jump: waits until systemd has finished starting the new boot (the preserved units
/// are adopted as it starts them) and every unit is active again.
fn settle(vm: &mut Vm) -> Result<()> {
    let out = vm.run_timeout(
        &format!(
            "systemctl is-system-running --wait; for i in $(seq 600); do [ -z \"$(systemctl is-active {u} | grep -vx active)\" ] && break; sleep 0.5; done; systemctl is-active {u}; journalctl -k -b --no-pager -o cat | grep 'seamless-init:' | grep -iE 'restored|refus|fail|adopt' | tail -n 12",
            u = UNITS.join(" ")
        ),
        Duration::from_secs(600),
    )?;
    println!("{}", out.output.trim());
    Ok(())
}

/// SSH logins the guest's sshd accepted this boot.
fn logins(vm: &mut Vm) -> Result<usize> {
    let out = vm.sh("journalctl -b -u ssh --no-pager -o cat | grep -c 'Accepted publickey'; true")?;
    Ok(out.trim().parse().unwrap_or(0))
}

fn repo_file(rel: &str) -> std::path::PathBuf {
    paths::repo_root().join(rel)
}

/// A fleet guest: root's key login for `public_key`, the units unsandboxed (and memcached
/// sandboxed again with `PrivateTmp=yes` when `refused`), the initramfs-tools hook in the new
/// kernel's image.
fn guest(name: &str, public_key: &str, refused: bool) -> Result<GuestBuilder> {
    let root = debian::fleet_root()?;
    let b = seamless_tests::vm::env()?.kernel(Which::B).release.clone();
    let mut g = GuestBuilder::new(name)
        .base_root(&root)
        .forward(22)
        .file("/root/.ssh/authorized_keys", format!("{public_key}\n"), 0o600)
        .file("/etc/systemd/system/redis-server.service.d/50-seamless-test.conf", UNSANDBOXED, 0o644)
        .file("/etc/systemd/system/memcached.service.d/50-seamless-test.conf", UNSANDBOXED, 0o644)
        .host_file("/etc/initramfs-tools/hooks/seamless", &repo_file("initramfs-tools/hooks/seamless"), 0o755)
        .host_file(
            "/etc/initramfs-tools/scripts/local-premount/seamless",
            &repo_file("initramfs-tools/scripts/local-premount/seamless"),
            0o755,
        )
        .chroot_setup(&format!("update-initramfs -u -k {b} >/dev/null"));
    if refused {
        g = g.file(
            "/etc/systemd/system/memcached.service.d/60-fleet-test-sandbox.conf",
            "[Service]\nPrivateTmp=yes\n",
            0o644,
        );
    }
    Ok(g)
}

/// Waits for the units and sshd, puts the services above the new kernel's low pids
/// (README, known limits), fills redis, and proves the key login works once.
fn prepare(vm: &mut Vm, name: &str, key: &std::path::Path) -> Result<()> {
    let up = vm.run_timeout(
        "for i in $(seq 1500); do [ -z \"$(systemctl is-active redis-server memcached ssh | grep -vx active)\" ] && break; sleep 0.2; done; systemctl is-active redis-server memcached ssh",
        Duration::from_secs(400),
    )?;
    if !up.output.lines().take(3).all(|l| l.trim() == "active") {
        let diag = vm.sh("systemctl list-jobs --no-pager; systemctl status --no-pager -l redis-server memcached ssh 2>&1 | tail -n 60; journalctl -b --no-pager -o short-monotonic | tail -n 80; true")?;
        bail!("{name}: services not active: {}\n{diag}", up.output);
    }
    vm.sh("echo 30000 > /proc/sys/kernel/ns_last_pid && systemctl restart redis-server memcached")?;
    vm.sh(seamless_tests::service::REDIS_FILL_200)?;
    let port = vm.host_port(22).context("no forwarded SSH port")?;
    let out = Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=60", "-i"])
        .arg(key)
        .args(["-p", &port.to_string(), "root@127.0.0.1", "uname -r"])
        .output()?;
    ensure!(out.status.success(), "{name}: ssh on 127.0.0.1:{port} failed: {}", String::from_utf8_lossy(&out.stderr));
    println!("{name}: ssh 127.0.0.1:{port} -> {}", String::from_utf8_lossy(&out.stdout).trim());
    Ok(())
}

/// The guest command that runs `reboot_command` the way kured does (its pod has the host's
/// PID namespace but its own network, UTS and IPC namespaces): split like a shell would,
/// without a shell, and executed as `/usr/bin/nsenter -m/proc/1/ns/mnt -- ARGV`.
fn as_kured(reboot_command: &str) -> String {
    const EXEC: &str = "import os, shlex, sys\nargv = ['/usr/bin/nsenter', '-m/proc/1/ns/mnt', '--'] + shlex.split(sys.argv[1])\nos.execv(argv[0], argv)";
    format!("unshare --net --uts --ipc --fork -- python3 -c {} {}", shell_quote(EXEC), shell_quote(reboot_command))
}

fn read_json(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[test]
fn ansible_rolls_out_serially_and_stops_at_the_refused_host() -> Result<()> {
    let t0 = Instant::now();
    let env = seamless_tests::vm::env()?;
    let (a, b) = (env.kernel(Which::A).release.clone(), env.kernel(Which::B).release.clone());
    let ansible = fleet::ansible_bin()?;
    debian::fleet_root()?;
    let work = seamless_tests::vm::host::cache_dir().join("runs").join(format!("fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let (key, public) = fleet::keypair(&work.join("ssh"))?;
    println!("fleet: controller ready in {:.0} s ({})", t0.elapsed().as_secs_f64(), ansible.display());

    // One guest after the other: each builds its disk and boots while the others idle.
    let names = ["guest1", "guest2", "guest3"];
    let mut vms = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let t = Instant::now();
        let mut vm = guest(&format!("fleet-{name}"), &public, i == 1)?.start()?;
        prepare(&mut vm, name, &key)?;
        println!("fleet: {name} up in {:.0} s", t.elapsed().as_secs_f64());
        vms.push(vm);
    }
    let mut before = Vec::new();
    let mut logins_before = Vec::new();
    for vm in vms.iter_mut() {
        before.push(state(vm)?);
        logins_before.push(logins(vm)?);
    }
    for (n, s) in names.iter().zip(&before) {
        println!("before {n}: {} {} {:?}", s.release, s.boot_id, s.units);
    }

    // The roll-out.
    let reports = work.join("reports");
    std::fs::create_dir_all(&reports)?;
    let mut inventory = String::from("fleet:\n  hosts:\n");
    for (n, vm) in names.iter().zip(&vms) {
        let port = vm.host_port(22).context("no SSH port")?;
        inventory.push_str(&format!("    {n}:\n      ansible_host: 127.0.0.1\n      ansible_port: {port}\n"));
    }
    inventory.push_str(&format!(
        "  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR\n    ansible_python_interpreter: /usr/bin/python3\n    seamless_units: [{}]\n    seamless_install_from: {}\n    seamless_report_dir: {}\n",
        key.display(),
        UNITS.join(", "),
        env.seamless_bin.display(),
        reports.display()
    ));
    let inventory_path = work.join("inventory.yml");
    std::fs::write(&inventory_path, &inventory)?;
    let control = std::env::temp_dir().join(format!("sfl-{}", std::process::id()));
    std::fs::create_dir_all(&control)?;
    let marks: Vec<_> = vms.iter().map(|vm| vm.jump_mark()).collect();
    let playbook = fleet::fleet_dir().join("ansible/upgrade.yml");
    println!("fleet: ansible-playbook -i {} {}", inventory_path.display(), playbook.display());
    let run = fleet::run_logged(
        Command::new(ansible.join("ansible-playbook"))
            .arg("-i")
            .arg(&inventory_path)
            .arg(&playbook)
            .env("ANSIBLE_CONFIG", fleet::fleet_dir().join("ansible/ansible.cfg"))
            .env("ANSIBLE_HOME", work.join("ansible-home"))
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", &control)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("LC_ALL", "C.UTF-8")
            .env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", ansible.display())),
        &work.join("ansible.log"),
        Duration::from_secs(45 * 60),
    )?;
    let _ = std::fs::remove_dir_all(&control);
    let out = &run.output;
    println!("fleet: ansible-playbook took {:.0} s, {:?}", run.took.as_secs_f64(), run.status);
    let status = run.status.context("ansible-playbook did not finish within 45 minutes")?;
    ensure!(!status.success(), "the roll-out succeeded although guest2 must be refused");

    // What Ansible said and recorded.
    let said = |needle: &str| out.lines().any(|l| l.contains(needle));
    ensure!(said(&format!("seamless guest1: upgraded {a} -> {b}")), "no upgrade result for guest1");
    ensure!(said("seamless guest2: refused at preflight: pre-flight check refused"), "no refusal for guest2");
    ensure!(said("namespace mnt"), "guest2's reason does not name memcached's mount namespace");
    ensure!(!out.contains("guest3"), "Ansible reached guest3");
    let recap: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("PLAY RECAP")).collect();
    println!("{}", recap.join("\n"));
    ensure!(recap.iter().any(|l| l.starts_with("guest1") && l.contains("failed=0")), "guest1 not clean in the recap");
    ensure!(
        recap.iter().any(|l| l.starts_with("guest2") && l.contains("failed=1")),
        "guest2 did not fail in the recap"
    );
    let r1 = read_json(&reports.join("guest1.json"))?;
    let r2 = read_json(&reports.join("guest2.json"))?;
    ensure!(!reports.join("guest3.json").exists(), "guest3 has a result");
    ensure!(r1["outcome"] == "upgraded" && r1["kernel_after"] == b.as_str(), "guest1's record: {r1:#}");
    ensure!(r1["blackout_ms"].as_u64().is_some_and(|ms| ms > 0), "guest1's record has no blackout: {r1:#}");
    ensure!(
        r1["checkpoint_stages"].as_array().is_some_and(|s| !s.is_empty())
            && r1["restore_stages"].as_array().is_some_and(|s| !s.is_empty()),
        "guest1's record has no stage table: {r1:#}"
    );
    ensure!(r2["outcome"] == "refused" && r2["stage"] == "preflight", "guest2's record: {r2:#}");
    let failing: Vec<&serde_json::Value> =
        r2["preflight"].as_array().map(|v| v.iter().filter(|v| v["status"] == "fail").collect()).unwrap_or_default();
    ensure!(!failing.is_empty(), "guest2's record names no failing verdict: {r2:#}");

    // What the guests say.
    let mut vms = vms.into_iter();
    let (mut g1, mut g2, mut g3) = (vms.next().unwrap(), vms.next().unwrap(), vms.next().unwrap());
    let k = g1.follow_jump(Which::B, marks[0])?;
    settle(&mut g1)?;
    let after1 = state(&mut g1)?;
    println!(
        "after guest1: {} {} {:?} (jump to /init {:.1} s)",
        after1.release,
        after1.boot_id,
        after1.units,
        k.jump_to_init.as_secs_f64()
    );
    ensure!(
        after1.release == b && after1.boot_id != before[0].boot_id,
        "guest1 not on {b} with a new boot: {after1:?}"
    );
    units_kept(&before[0], &after1)?;
    let keys = g1.sh("redis-cli --raw dbsize")?;
    ensure!(keys.trim() == "200", "guest1's redis lost keys: {keys}");
    let after2 = state(&mut g2)?;
    ensure!(after2 == before[1], "guest2 changed: before {:?}, after {after2:?}", before[1]);
    let after3 = state(&mut g3)?;
    ensure!(after3 == before[2], "guest3 changed: before {:?}, after {after3:?}", before[2]);
    let l3 = logins(&mut g3)?;
    ensure!(l3 == logins_before[2], "guest3 saw {} SSH login(s) during the roll-out", l3 - logins_before[2]);
    println!(
        "fleet: the roll-out upgraded guest1, stopped at guest2, left guest3 alone ({:.0} s so far)",
        t0.elapsed().as_secs_f64()
    );

    // kured's reboot command, verbatim from fleet/kured/.
    let command = std::fs::read_to_string(fleet::fleet_dir().join("kured/reboot-command"))?.trim().to_string();
    let fallback =
        std::fs::read_to_string(fleet::fleet_dir().join("kured/reboot-command-with-fallback"))?.trim().to_string();
    let doc = std::fs::read_to_string(fleet::fleet_dir().join("kured/README.md"))?;
    ensure!(
        doc.contains(&command) && doc.contains(&fallback),
        "fleet/kured/README.md does not show the tested commands"
    );
    // The sentinel: 0 (reboot required) where seamless can upgrade, 1 where it refuses, 3
    // where the newest kernel runs already.
    let sentinel =
        std::fs::read_to_string(fleet::fleet_dir().join("kured/reboot-sentinel-command"))?.trim().to_string();
    ensure!(doc.contains(&sentinel), "fleet/kured/README.md does not show the tested sentinel command");
    for (vm, name, want) in [(&mut g3, "guest3", 0), (&mut g2, "guest2", 1), (&mut g1, "guest1", 3)] {
        let out = vm.run_timeout(&as_kured(&sentinel), Duration::from_secs(600))?;
        println!("kured sentinel on {name}: exit {}", out.status);
        ensure!(out.status == want, "sentinel on {name} exited {}, expected {want}:\n{}", out.status, out.output);
    }

    let refused = g2.run_timeout(&as_kured(&command), Duration::from_secs(600))?;
    println!("kured on guest2 (exit {}):\n{}", refused.status, refused.output.trim());
    ensure!(refused.status == 1, "kured's command on guest2 exited {}, expected 1", refused.status);
    let summary = refused.output.lines().find(|l| l.starts_with('{')).context("no JSON summary")?;
    let summary: serde_json::Value = serde_json::from_str(summary)?;
    ensure!(summary["outcome"] == "refused" && summary["kernel"] == b.as_str(), "kured summary on guest2: {summary}");
    ensure!(summary.to_string().contains("namespace mnt"), "kured summary does not say why: {summary}");
    let again2 = state(&mut g2)?;
    ensure!(again2 == before[1], "kured's refused command changed guest2: {again2:?}");

    let k3 = g3.jump(Which::B, &as_kured(&command))?;
    settle(&mut g3)?;
    let after3 = state(&mut g3)?;
    println!(
        "after kured on guest3: {} {} {:?} (jump to /init {:.1} s)",
        after3.release,
        after3.boot_id,
        after3.units,
        k3.jump_to_init.as_secs_f64()
    );
    ensure!(
        after3.release == b && after3.boot_id != before[2].boot_id,
        "guest3 not on {b} with a new boot: {after3:?}"
    );
    units_kept(&before[2], &after3)?;
    let report = g3.sh("cat /run/seamless/report.json")?;
    let report: serde_json::Value = serde_json::from_str(report.trim())?;
    println!("guest3 blackout {} ms", report["blackout_ms"]);

    // The fallback: seamless still refuses guest2, so it reboots the usual way.
    let from = g2.console_mark();
    g2.sh(&format!("nohup {} >/var/tmp/kured-fallback.log 2>&1 &", as_kured(&fallback)))?;
    let line = g2.wait_console(from, "reboot: Restarting system", Duration::from_secs(300));
    let line = match line {
        Ok(l) => l,
        Err(e) => bail!("guest2 did not reboot with the fallback: {e}"),
    };
    println!("kured with fallback on guest2: {}", line.text.trim());

    println!("\nfleet summary ({:.0} s):", t0.elapsed().as_secs_f64());
    println!("  guest1  ansible: upgraded {a} -> {b}, blackout {} ms, units kept", r1["blackout_ms"]);
    println!(
        "  guest2  ansible: refused at preflight ({}); kured: exit 1, nothing changed; with fallback: rebooted",
        failing[0]["detail"]
    );
    println!(
        "  guest3  ansible: not reached (no SSH login); kured: upgraded, blackout {} ms, units kept",
        report["blackout_ms"]
    );
    Ok(())
}
