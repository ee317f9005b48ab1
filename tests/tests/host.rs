//! Host round trips of every workload: `cargo test -p seamless-tests --test host -- --test-threads=1`
//! (needs root). Per workload: `self_test` (the workload alone, validates it), `round_trip` (dump,
//! kill, restore, check) and `leave_running` (dump with `--leave-running`, check the original).
//! `refuse_netlink::refused` checks that an unsupported socket makes the dump refuse cleanly.
//! See `tests/workloads/README.md`.

use std::path::PathBuf;

use anyhow::Result;
use seamless_tests::host::Harness;

fn harness() -> Result<Harness> {
    Harness::new(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host"))
}

macro_rules! workload_tests {
    ($($module:ident => $name:literal [$($arg:literal),*];)*) => {$(
        mod $module {
            use super::*;

            #[test]
            fn self_test() -> Result<()> {
                harness()?.self_test($name, &[$($arg),*])
            }

            #[test]
            fn round_trip() -> Result<()> {
                let rt = harness()?.round_trip($name, &[$($arg),*])?;
                eprintln!("{}: {rt:?}", $name);
                Ok(())
            }

            #[test]
            fn leave_running() -> Result<()> {
                harness()?.leave_running($name, &[$($arg),*])
            }
        }
    )*};
}

workload_tests! {
    threads_fpu => "threads_fpu" [];
    memory => "memory" [];
    big_mem => "big_mem" ["1024"];
    brk => "brk" [];
    pipes => "pipes" [];
    files => "files" [];
    signals => "signals" [];
    timers => "timers" [];
    tree => "tree" [];
    blocking_nanosleep => "blocking" ["nanosleep"];
    blocking_read => "blocking" ["read"];
    blocking_futex => "blocking" ["futex"];
    blocking_poll => "blocking" ["poll"];
    blocking_epoll => "blocking" ["epoll"];
    blocking_accept => "blocking" ["accept"];
    vdso_glibc => "vdso_glibc" [];
    anonfds => "anonfds" [];
    creds => "creds" [];
    fanout => "fanout" ["16"];
}

mod refuse_netlink {
    use super::*;

    #[test]
    fn self_test() -> Result<()> {
        harness()?.self_test("refuse_netlink", &[])
    }

    /// The dump must refuse, name the netlink socket, and leave the process running.
    #[test]
    fn refused() -> Result<()> {
        let message = harness()?.expect_refused("refuse_netlink", &[], "netlink")?;
        eprintln!("refusal message: {message}");
        Ok(())
    }
}

mod vdso_trampoline {
    use super::*;

    /// The cross-kernel vDSO path (old vDSO address patched to jump into the new vDSO),
    /// forced on the same kernel.
    #[test]
    fn vdso_glibc_round_trip() -> Result<()> {
        let rt = harness()?.round_trip_with("vdso_glibc", &[], &["--force-vdso-trampoline"])?;
        eprintln!("vdso_glibc with trampoline: {rt:?}");
        Ok(())
    }

    /// Threads sleeping in raw syscalls do not touch the vDSO, but glibc's startup pointers do.
    #[test]
    fn timers_round_trip() -> Result<()> {
        harness()?.round_trip_with("timers", &[], &["--force-vdso-trampoline"]).map(|_| ())
    }
}

/// Every workload compiles (gcc, warnings are errors).
#[test]
fn workloads_build() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host").join("bin");
    seamless_tests::workloads::build_all(&dir)?;
    Ok(())
}
