//! Upgrade benchmark (prints numbers; not a timed test), all measured in one run, in VMs:
//!
//! 1. the redis blackout during `seamless upgrade` A -> B, seen from the host (last answered
//!    PING before the upgrade to the first one after), with 2000 keys loaded;
//! 2. the bare `seamless kexec --exec` A -> B, to B's /init (no processes preserved);
//! 3. a full cold boot of B plus the service's start: from starting QEMU to the first
//!    answered PING.
//!
//! Run as root: `cargo run -p seamless-tests --release --bin bench-upgrade`.

use seamless_tests::scenarios::{redis_guest, redis_upgrade, wait_redis, REDIS_PORT};
use seamless_tests::vm::{env, GuestBuilder, Which};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    seamless_tests::host::become_subreaper()?;
    let env = env()?;
    let (a, b) = (env.kernel(Which::A).release.clone(), env.kernel(Which::B).release.clone());
    println!("upgrade benchmark: {a} -> {b}, QEMU accel {}", env.accel);

    let up = redis_upgrade("bench-redis", Which::A, Which::B, 2000)?;
    let upgrade_jump = up.kexec.jump_to_init;
    drop(up.vm);

    let mut vm = GuestBuilder::new("bench-kexec").start()?;
    let bare = vm.kexec(Which::B)?;
    drop(vm);

    let t0 = Instant::now();
    let vm = redis_guest("bench-cold", Which::B).start()?;
    let port = vm.host_port(REDIS_PORT).ok_or_else(|| anyhow::anyhow!("no redis port"))?;
    let answered = wait_redis(port, Duration::from_secs(120))?;
    let cold = answered - t0;
    drop(vm);

    println!();
    println!("{:<58} {:>9}", "measurement", "seconds");
    println!("{:<58} {:>9.3}", "redis blackout during seamless upgrade (host view)", up.blackout.as_secs_f64());
    println!("{:<58} {:>9.3}", "  of which kexec --exec to B's /init (upgrade)", upgrade_jump.as_secs_f64());
    println!("{:<58} {:>9.3}", "bare kexec --exec to B's /init", bare.jump_to_init.as_secs_f64());
    println!("{:<58} {:>9.3}", "cold boot of B + redis start (QEMU start to first PONG)", cold.as_secs_f64());
    println!("client connection kept across the upgrade: {:?}", up.kept_connection);
    println!("\nseamless-init's stage table from the upgrade:");
    for l in &up.stage_lines {
        println!("  {}", l.split("seamless-init:").nth(1).unwrap_or(l).trim_end());
    }
    Ok(())
}
