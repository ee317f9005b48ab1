//! `tests/demo`: a VM boots Debian's kernel A with Debian's redis-server, the host stores keys
//! and keeps pinging it, `seamless upgrade` moves the VM to kernel B, and the host checks the
//! same redis process still has every key. Prints the time of every stage.

use seamless_tests::scenarios::redis_upgrade;
use seamless_tests::vm::{env, Which};
use std::process::ExitCode;

const KEYS: usize = 2000;

fn main() -> ExitCode {
    if let Err(e) = seamless_tests::host::become_subreaper() {
        eprintln!("demo: {e:#}");
    }
    let run = || -> anyhow::Result<()> {
        let env = env()?;
        println!(
            "seamless demo: redis-server on {} -> {}\n",
            env.kernel(Which::A).release,
            env.kernel(Which::B).release
        );
        let r = redis_upgrade("demo", Which::A, Which::B, KEYS)?;
        println!("\nVM stages (host clock):\n{}", r.vm.report());
        println!("seamless stages (from the new kernel's log):");
        for l in &r.stage_lines {
            let text = l.split("seamless-init:").nth(1).unwrap_or(l);
            println!("  {}", text.trim_end());
        }
        println!("\nredis: {KEYS} keys intact, same pid, not restarted by init");
        println!("redis blackout seen from the host: {:.3} s", r.blackout.as_secs_f64());
        match &r.kept_connection {
            Ok(()) => println!("a client connection opened before the upgrade still works after it (TCP_REPAIR)"),
            Err(why) => println!("a client connection opened before the upgrade broke: {why}"),
        }
        println!("  (kexec --exec to the new kernel's /init alone: {:.3} s)", r.kexec.jump_to_init.as_secs_f64());
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
