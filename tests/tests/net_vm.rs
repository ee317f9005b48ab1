//! A real outside peer across the upgrade: the guest's second NIC is a tap device into a
//! network namespace on the host ([`GuestBuilder::tap_peer`]), so the service's TCP peer is the
//! host kernel's TCP stack (no user-mode network in between that would hide a reset or a lost
//! byte). Host-side clients in that namespace keep an upload, a download and 200 idle
//! keep-alive connections open to `tcp_service` in the guest while it goes 6.1 -> 6.12 -> 6.1
//! with `seamless upgrade`. `cargo test -p seamless-tests --test net_vm -- --nocapture` (root).

use anyhow::{ensure, Context, Result};
use seamless_tests::flows::{check_download, Clients, Storm};
use seamless_tests::netns::counter;
use seamless_tests::scenarios::{expect_pass, start_workloads};
use seamless_tests::vm::{GuestBuilder, KexecReport, Vm, Which, TAP_GUEST_ADDR};
use std::time::Duration;

const PORT: u16 = 7500;
const IDLE: usize = 200;

/// Fails unless seamless-init restored everything on the boot of `k`; prints its stage lines.
fn restored(vm: &Vm, k: &KexecReport) -> Result<()> {
    let lines: Vec<String> = vm.console_since(k.console_from).into_iter().map(|l| l.text).collect();
    let bad: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("was not restored") || l.contains("nothing restored") || l.contains("cannot be rebuilt"))
        .collect();
    ensure!(bad.is_empty(), "seamless-init did not restore everything: {bad:?}");
    for l in lines.iter().filter(|l| {
        l.contains("seamless-init: restored")
            || l.contains("network lock")
            || l.contains("stopped for")
            || l.contains("address")
    }) {
        println!("{l}");
    }
    Ok(())
}

/// 6.1 -> 6.12 -> 6.1 with the clients streaming the whole time: every byte arrives exactly
/// once and in order (the service checks the upload byte by byte and its checksum must match
/// the client's; the client checks the download against the pattern and the service's count
/// and checksum), no connection is reset (the clients' namespace counts no reset and the
/// service accepted exactly the connections made: the 202 it started with and the new clients
/// that connected during each jump, held instead of refused), and each client's stall through
/// each jump is printed.
#[test]
fn outside_peer_streams_through_upgrade_and_back() -> Result<()> {
    let mut vm = GuestBuilder::new("net-peer").tap_peer().with_workloads(&["tcp_service"]).start()?;
    // The service counts what it accepts; the test compares with what it made (new clients
    // connect during every jump too).
    let args = format!("{PORT} 0");
    let pids = start_workloads(&mut vm, &[("tcp_service", &args)])?;
    let pid = pids[0].1;
    let ns = vm.peer_netns().context("no peer namespace")?.name().to_string();
    let addr: std::net::SocketAddr = format!("{TAP_GUEST_ADDR}:{PORT}").parse()?;
    let clients = Clients::open(&ns, addr, IDLE)?;
    println!("{IDLE} idle connections, an upload and a download to {addr} from namespace {ns}");
    let mut stalls = Vec::new();
    let mut newcomers = Vec::new();
    for (to, label) in [(Which::B, "6.1 -> 6.12"), (Which::A, "6.12 -> 6.1")] {
        let (sent0, _) = clients.upload.progress();
        let got0 = clients.download.received();
        // New clients all through the jump: held (not refused) until the restored listener exists.
        let storm = Storm::start(&ns, addr, Duration::from_millis(500));
        let k = vm.upgrade(to, &format!("--pid {pid}"))?;
        restored(&vm, &k)?;
        let s = clients.after(Duration::from_secs(300)).with_context(|| format!("after {label}"))?;
        let (pools, slowest) = storm.finish().with_context(|| format!("new clients through {label}"))?;
        for p in &pools {
            p.ping_all()?;
        }
        println!(
            "{label}: {} new clients connected during the jump, the slowest after {:.1} s",
            pools.len(),
            slowest.as_secs_f64()
        );
        newcomers.extend(pools);
        let comm = vm.sh(&format!("cat /proc/{pid}/comm"))?;
        ensure!(comm.trim() == "tcp_service", "pid {pid} is {comm:?} after {label}");
        println!(
            "{label} ({} on the new kernel): {s}; {} bytes uploaded and {} downloaded meanwhile",
            k.release,
            clients.upload.progress().0 - sent0,
            clients.download.received() - got0
        );
        stalls.push((label, s));
    }
    let counters = vm.peer_netns().context("no peer namespace")?.tcp_counters()?;
    let made = IDLE + 2 + newcomers.len();
    for p in newcomers {
        p.close()?;
    }
    let (up, down) = clients.finish()?;
    println!("upload: {up}\ndownload: {down}");
    for name in ["EstabResets", "OutRsts"] {
        let v = counter(&counters, name)?;
        ensure!(v == 0, "{name} = {v} in the clients' namespace: a connection was reset");
    }
    println!(
        "clients' kernel: {} segments retransmitted, {} connections established at the end",
        counter(&counters, "RetransSegs")?,
        counter(&counters, "CurrEstab")?
    );
    expect_pass(&mut vm, &pids)?;
    check_download(&down, &vm.sh("cat /root/wl/tcp_service.log")?)?;
    let accepted = vm.sh("grep 'connections accepted' /root/wl/tcp_service.log")?;
    println!("{}", accepted.trim());
    ensure!(
        accepted.contains(&format!(" {made} connections accepted")),
        "the service did not accept exactly the {made} connections made (none again): {accepted}"
    );
    for (label, s) in &stalls {
        println!("stall through {label}: {s}");
    }
    Ok(())
}
