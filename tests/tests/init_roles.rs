//! `seamless-init` outside its roles (not PID 1, not `verify-root`): it prints its usage and
//! exits 2, mounting nothing. Run on the live host as a normal process, the shipped static
//! binary, with the arguments an operator might try. Before the strict role test, `--help`
//! here mounted a fresh /proc over /proc and a tmpfs over /run and executed `/sbin/init`.
//!
//! And its panic hook as PID 1: this test binary re-runs itself as PID 1 of a new pid
//! namespace (`unshare`, needs root), with `/dev/kmsg` bound to a file in a private mount
//! namespace, installs the hook and panics; the panic must be logged there with its message
//! and location, and the process must go on into the "real init" (a shell that says so).

use seamless_init::boot::fallback::{self, Fallback};
use seamless_tests::paths;
use std::process::Command;

/// The mount table lines of the mount points seamless-init's boot path touches (other
/// engineers' tests may mount elsewhere meanwhile).
fn boot_mounts() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
    text.lines()
        .filter(|l| {
            l.split(' ').nth(4).is_some_and(|m| {
                ["/", "/proc", "/sys", "/dev", "/run", "/newroot"].contains(&m) || m.starts_with("/newroot/")
            })
        })
        .map(String::from)
        .collect()
}

#[test]
fn outside_its_roles_it_prints_usage_mounts_nothing_and_exits_2() {
    paths::build_static().expect("building the static binaries");
    let bin = paths::static_init();
    let cases: &[&[&str]] =
        &[&["--help"], &["-h"], &[], &["ro", "quiet"], &["verify-root"], &["verify-root", "--device"]];
    for args in cases {
        let before = boot_mounts();
        let out = Command::new(&bin).args(*args).output().unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let after = boot_mounts();
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("seamless-init {args:?}: {} ({} bytes of usage)", out.status, err.len());
        assert_eq!(before, after, "seamless-init {args:?} changed the mounts");
        assert_eq!(out.status.code(), Some(2), "seamless-init {args:?}: {}\n{err}", out.status);
        assert!(err.contains("usage: seamless-init"), "seamless-init {args:?} printed no usage: {err}");
        assert!(out.stdout.is_empty(), "seamless-init {args:?} wrote to stdout");
    }
}

const AS_PID1: &str = "SEAMLESS_TEST_PANIC_AS_PID1";
const HANDED_OVER: &str = "the real init runs";

#[test]
fn a_panic_as_pid_1_is_logged_to_kmsg_and_the_real_init_runs() {
    if std::env::var_os(AS_PID1).is_some() {
        assert_eq!(std::process::id(), 1, "not PID 1 of the new namespace");
        fallback::install();
        fallback::set(Fallback::Exec {
            init: "/bin/sh".into(),
            args: vec!["-c".into(), format!("echo {HANDED_OVER}")],
        });
        let v: Vec<u8> = Vec::new();
        let _ = v[std::hint::black_box(3)];
        unreachable!("the panic hook returned");
    }
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("init_roles");
    std::fs::create_dir_all(&dir).unwrap();
    let kmsg = dir.join("kmsg");
    std::fs::write(&kmsg, b"").unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--kill-child", "sh", "-c"])
        .arg("mount --bind \"$0\" /dev/kmsg && exec \"$1\" --exact a_panic_as_pid_1_is_logged_to_kmsg_and_the_real_init_runs --nocapture --test-threads=1")
        .arg(&kmsg)
        .arg(&exe)
        .env(AS_PID1, "1")
        .output()
        .expect("running unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(&kmsg).unwrap();
    eprintln!("child: {}; kmsg: {}", out.status, log.trim());
    assert!(stdout.contains(HANDED_OVER), "no hand-over after the panic ({}):\n{stdout}\n{stderr}", out.status);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(log.starts_with("<2>seamless-init: BUG: panicked at tests/tests/init_roles.rs:"), "{log}");
    assert!(log.contains("index out of bounds"), "{log}");
    assert_eq!(log.matches('\n').count(), 1, "{log}");
}
