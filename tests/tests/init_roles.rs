//! `seamless-init` outside its roles (not PID 1, not `verify-root`): it prints its usage and
//! exits 2, mounting nothing. Run on the live host as a normal process, the shipped static
//! binary, with the arguments an operator might try. Before the strict role test, `--help`
//! here mounted a fresh /proc over /proc and a tmpfs over /run and executed `/sbin/init`.

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
