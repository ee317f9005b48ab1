//! The service benchmark (`bench-services`): real Debian services as their normal systemd
//! units in the Debian 12 guest ([`crate::vm::debian::systemd_root`]), load generated from the
//! host side of the guest's tap NIC (the network namespace the harness made for it), and the
//! same load across three ways of getting from 6.1 to 6.12: `seamless upgrade --unit ...`, a
//! plain kexec (`systemctl kexec`: every unit stopped and started again) and a normal reboot
//! (`systemctl reboot`, then a cold boot of 6.12).
//!
//! Applications: memcached (the thesis's data set and access pattern, clients with a 0 ms and
//! a 12 ms miss penalty) and redis, both loaded at once in one guest.

pub mod chart;
pub mod memcache;
pub mod redis_load;
pub mod series;

use crate::vm::debian::{self, UNSANDBOXED};
use crate::vm::{GuestBuilder, Vm, Which, TAP_GUEST_ADDR, TAP_GUEST_MAC};
use anyhow::{anyhow, ensure, Context, Result};
use series::{Recorder, Trace};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// memcached's port.
pub const MEMCACHED_PORT: u16 = 11211;
/// redis' port.
pub const REDIS_PORT: u16 = 6379;

/// How the guest gets from 6.1 to 6.12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `seamless upgrade --unit redis-server --unit memcached`.
    Seamless,
    /// `seamless kexec` (load only), then `systemctl kexec`.
    Kexec,
    /// `systemctl reboot`, then a cold boot of 6.12 with its initramfs-tools image (the one
    /// the other two jump into) on the same disk.
    Reboot,
}

impl Mode {
    /// All, in the order they run.
    pub const ALL: [Mode; 3] = [Mode::Seamless, Mode::Kexec, Mode::Reboot];

    /// Legend text.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Seamless => "seamless upgrade",
            Mode::Kexec => "plain kexec (systemctl kexec)",
            Mode::Reboot => "reboot (systemctl reboot + cold boot)",
        }
    }

    /// Short name (file names, command line).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Seamless => "seamless",
            Mode::Kexec => "kexec",
            Mode::Reboot => "reboot",
        }
    }

    /// Line colour.
    pub fn color(self) -> plotters::style::RGBColor {
        match self {
            Mode::Seamless => plotters::style::RGBColor(0, 114, 178),
            Mode::Kexec => plotters::style::RGBColor(230, 159, 0),
            Mode::Reboot => plotters::style::RGBColor(213, 94, 0),
        }
    }
}

/// Load durations.
#[derive(Debug, Clone, Copy)]
pub struct Durations {
    /// Load before the kernel change.
    pub before: Duration,
    /// Load after the services answer again.
    pub after: Duration,
}

/// One load generator's trace.
#[derive(Debug, Clone)]
pub struct Load {
    /// `memcached, 0 ms miss penalty`, ...
    pub name: String,
    /// File name stem.
    pub stem: String,
    /// What it saw.
    pub trace: Trace,
}

/// One run: the loads across one kernel change.
#[derive(Debug, Clone)]
pub struct Run {
    /// How the kernel changed.
    pub mode: Mode,
    /// Seconds from the start of the load to the start of the change.
    pub event_s: f64,
    /// From the start of the change to the control shell of 6.12.
    pub change: Duration,
    /// The load generators' traces.
    pub loads: Vec<Load>,
    /// `/run/seamless/report.json` of the new kernel (seamless only).
    pub report: Option<serde_json::Value>,
    /// seamless' "dumped ..." line (seamless only).
    pub dumped: Option<String>,
    /// memcached's `curr_items` before the change and once the load ended.
    pub items: (Option<u64>, Option<u64>),
    /// Main pids of the units before and after (`systemctl show`).
    pub pids: (String, String),
    /// redis' persistence state and log tail, the root filesystem's use, at the end.
    pub diag: String,
}

/// The guest: the Debian root with redis-server and memcached as their Debian units (listening
/// on the tap NIC, memcached with 256 MiB of cache), the tap NIC configured by systemd-networkd,
/// and the seamless hook in the initramfs-tools image of 6.12 (made the normal way).
fn guest(name: &str) -> Result<GuestBuilder> {
    let root = debian::systemd_root()?;
    let env = crate::vm::env()?;
    let b = env.kernel(Which::B).release.clone();
    let repo = crate::paths::repo_root();
    let network = format!(
        "[Match]\nMACAddress={TAP_GUEST_MAC}\n\n[Network]\nAddress={TAP_GUEST_ADDR}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    );
    Ok(GuestBuilder::new(name)
        .base_root(&root)
        .tap_peer()
        .file("/etc/systemd/system/redis-server.service.d/50-seamless-test.conf", UNSANDBOXED, 0o644)
        .file("/etc/systemd/system/memcached.service.d/50-seamless-test.conf", UNSANDBOXED, 0o644)
        .file("/etc/systemd/network/20-bench-tap.network", network, 0o644)
        .host_file("/etc/initramfs-tools/hooks/seamless", &repo.join("initramfs-tools/hooks/seamless"), 0o755)
        .host_file(
            "/etc/initramfs-tools/scripts/local-premount/seamless",
            &repo.join("initramfs-tools/scripts/local-premount/seamless"),
            0o755,
        )
        .chroot_setup(
            "sed -i 's/^-m .*/-m 256/; s/^-l .*/-l 0.0.0.0/; s/^-c .*/-c 4096/' /etc/memcached.conf \
             && sed -i 's/^bind .*/bind 0.0.0.0/; s/^protected-mode .*/protected-mode no/' /etc/redis/redis.conf \
             && systemctl enable systemd-networkd.service >/dev/null 2>&1 \
             && ln -sf /dev/null /etc/systemd/system/systemd-networkd-wait-online.service",
        )
        .chroot_setup(&format!("update-initramfs -u -k {b} >/dev/null")))
}

/// Runs `f` on a new thread in the network namespace `ns`.
fn spawn_in(ns: &str, f: impl FnOnce() + Send + 'static) -> Result<std::thread::JoinHandle<()>> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    Ok(std::thread::spawn(move || {
        if rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .is_ok()
        {
            f();
        }
    }))
}

fn wait_units(vm: &mut Vm) -> Result<String> {
    let out = vm.run_timeout(
        "for i in $(seq 900); do systemctl is-active -q redis-server && systemctl is-active -q memcached && break; sleep 0.2; done; systemctl is-active redis-server memcached",
        Duration::from_secs(300),
    )?;
    ensure!(out.status == 0, "units not active: {}", out.output);
    Ok(out.output)
}

fn unit_pids(vm: &mut Vm) -> Result<String> {
    Ok(vm.sh("systemctl show -p MainPID -p NRestarts redis-server memcached | tr '\\n' ' '")?.trim().to_string())
}

fn curr_items(ns: &str, addr: SocketAddr) -> Option<u64> {
    crate::stream::in_netns(ns, move || {
        let mut c = memcache::Conn::connect(addr)?;
        let s = c.stats()?;
        s.iter()
            .find(|(k, _)| k == "curr_items")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| anyhow!("no curr_items"))
    })
    .ok()
}

/// One run of the loads across `mode`'s kernel change.
pub fn run(mode: Mode, d: Durations) -> Result<Run> {
    let env = crate::vm::env()?;
    let b = env.kernel(Which::B).release.clone();
    let mut vm = guest(&format!("bench-services-{}", mode.name()))?.start()?;
    let units = wait_units(&mut vm)?.replace('\n', " ");
    println!("{}: guest up on {}; {units}", mode.name(), vm.release());
    vm.run_timeout(
        &format!("for i in $(seq 600); do ip -4 addr | grep -q {TAP_GUEST_ADDR}/ && break; sleep 0.2; done; ip -4 addr | grep {TAP_GUEST_ADDR}/"),
        Duration::from_secs(150),
    )?;
    // Keep the services above the new kernel's own low pids (README, known limits).
    vm.sh("echo 30000 > /proc/sys/kernel/ns_last_pid && systemctl restart redis-server memcached")?;
    wait_units(&mut vm)?;
    let ns = vm.peer_netns().context("no peer namespace")?.name().to_string();
    let mc: SocketAddr = format!("{TAP_GUEST_ADDR}:{MEMCACHED_PORT}").parse()?;
    let rd: SocketAddr = format!("{TAP_GUEST_ADDR}:{REDIS_PORT}").parse()?;
    let t = Instant::now();
    crate::stream::in_netns(&ns, move || {
        crate::stream::connect_retrying(mc, Duration::from_secs(60))?;
        memcache::Conn::connect(mc)?.fill()?;
        crate::stream::connect_retrying(rd, Duration::from_secs(60))?;
        redis_load::fill(rd)
    })?;
    let items_before = curr_items(&ns, mc);
    println!(
        "{}: {} memcached pairs and {} redis keys loaded in {:.1} s (curr_items {items_before:?})",
        mode.name(),
        memcache::PAIRS,
        redis_load::KEYS,
        t.elapsed().as_secs_f64()
    );
    let pids_before = unit_pids(&mut vm)?;

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let mut loads: Vec<(String, String, Arc<Recorder>)> = Vec::new();
    for (penalty, clients) in [(0u64, 2u64), (12, 2)] {
        let rec = Arc::new(Recorder::new(t0));
        for c in 0..clients {
            let (rec, stop) = (rec.clone(), stop.clone());
            threads.push(spawn_in(&ns, move || {
                memcache::client(mc, Duration::from_millis(penalty), penalty * 100 + c + 1, rec, stop)
            })?);
        }
        loads.push((format!("memcached, {penalty} ms miss penalty"), format!("memcached-{penalty}ms"), rec));
    }
    let rec = Arc::new(Recorder::new(t0));
    for c in 0..2u64 {
        let (rec, stop) = (rec.clone(), stop.clone());
        threads.push(spawn_in(&ns, move || redis_load::client(rd, 1000 + c, rec, stop))?);
    }
    loads.push(("redis".into(), "redis".into(), rec));

    std::thread::sleep(d.before);
    let event_s = t0.elapsed().as_secs_f64();
    let started = Instant::now();
    let jumped = match mode {
        Mode::Seamless => vm
            .jump(
                Which::B,
                &format!(
                    "seamless upgrade --kernel /boot/vmlinuz-{b} --initrd /boot/initrd.img-{b} --reuse-cmdline --unit redis-server --unit memcached"
                ),
            )
            .map(|_| ()),
        Mode::Kexec => vm
            .sh(&format!("seamless kexec --kernel /boot/vmlinuz-{b} --initrd /boot/initrd.img-{b} --reuse-cmdline"))
            // The control loop dies with the shutdown: the command never ends by itself.
            .and_then(|_| vm.jump_to_ready(Which::B, "systemctl kexec; sleep 600"))
            .map(|_| ()),
        Mode::Reboot => vm.reboot_into(Which::B, true).map(|_| ()),
    };
    let change = started.elapsed();
    let settled = jumped.and_then(|()| wait_units(&mut vm));
    if let Err(e) = settled {
        stop.store(true, Ordering::Relaxed);
        return Err(e.context(format!("{}: the kernel change", mode.name())));
    }
    println!("{}: on {} after {:.1} s, units active", mode.name(), vm.release(), change.as_secs_f64());
    std::thread::sleep(d.after);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let items_after = curr_items(&ns, mc);
    let pids_after = unit_pids(&mut vm)?;
    let diag = vm.sh(
        "redis-cli info persistence | grep -E 'rdb_last_bgsave_status|rdb_changes_since|rdb_last_save_time'; tail -n 6 /var/log/redis/redis-server.log; df -h / | tail -1; true",
    )?;
    let (report, dumped) = if mode == Mode::Seamless {
        let json = vm.sh("cat /run/seamless/report.json")?;
        let control = std::fs::read_to_string(vm.work_dir().join("control.log")).unwrap_or_default();
        let dumped = control.lines().rev().find(|l| l.contains("seamless: dumped")).map(|l| l.trim().to_string());
        (Some(serde_json::from_str(json.trim()).context("report.json")?), dumped)
    } else {
        (None, None)
    };
    Ok(Run {
        mode,
        event_s,
        change,
        loads: loads.into_iter().map(|(name, stem, rec)| Load { name, stem, trace: rec.trace() }).collect(),
        report,
        dumped,
        items: (items_before, items_after),
        pids: (pids_before, pids_after),
        diag,
    })
}
