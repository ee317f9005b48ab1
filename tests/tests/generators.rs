//! The seamless hooks inside images made by Debian's own initramfs generators, run for real
//! (initramfs-tools' `mkinitramfs`, dracut 059) in a throw-away chroot
//! (`seamless_tests::vm::debian`), and `seamless check` recognising each image: generator,
//! flavour, whether the hook runs before the root mount, and whether an image appended to the
//! initramfs survives the switch to the real root. Needs root (mount namespace, overlayfs,
//! chroot) and Debian's package archive. Each image takes about a minute to build.
//!
//! `cargo test -p seamless-tests --locked --test generators -- --test-threads=1 --nocapture`

use seamless_tests::host::seamless_bin;
use seamless_tests::paths;
use seamless_tests::vm::debian::{build_initramfs, Generator};
use seamless_tests::vm::{kernels, Which};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Builds the image and returns it with the `seamless check` output for it.
fn image(generator: Generator) -> (PathBuf, String) {
    paths::build_static().expect("building the static seamless-init");
    let kernel = kernels::fetch(Which::B).expect("fetching kernel B");
    let out = std::env::temp_dir().join(format!("seamless-gen-{}-{generator:?}.img", std::process::id()));
    let t = Instant::now();
    build_initramfs(&kernel, generator, &paths::static_init(), &out).unwrap_or_else(|e| panic!("{e:#}"));
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!("{generator:?}: {} bytes for {} in {:.1} s", size, kernel.release, t.elapsed().as_secs_f64());
    let check = check(&out);
    println!("{check}");
    (out, check)
}

fn check(initrd: &Path) -> String {
    let bin = seamless_bin().expect("the seamless binary");
    let out = Command::new(bin).arg("check").arg("--initrd").arg(initrd).output().expect("running seamless check");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `seamless check` line about `subject`.
fn verdict<'a>(check: &'a str, subject: &str) -> &'a str {
    check
        .lines()
        .find(|l| l.get(6..).is_some_and(|r| r.starts_with(subject)))
        .unwrap_or_else(|| panic!("no `{subject}` verdict in:\n{check}"))
}

#[test]
fn shell_scripts_parse() {
    let repo = paths::repo_root();
    for (shell, file) in [
        ("sh", "dracut/90seamless/seamless-verify-root.sh"),
        ("bash", "dracut/90seamless/module-setup.sh"),
        ("sh", "initramfs-tools/hooks/seamless"),
        ("sh", "initramfs-tools/scripts/local-premount/seamless"),
        ("sh", "mkinitcpio/hooks/seamless"),
        ("bash", "mkinitcpio/install/seamless"),
        ("bash", "mkinitcpio/install/sd-seamless"),
    ] {
        let st = Command::new(shell).arg("-n").arg(repo.join(file)).status().expect("running the shell");
        assert!(st.success(), "{shell} -n {file} failed");
    }
    // The sourced dracut hook must return, never exit (it would end dracut's /init).
    let hook = std::fs::read_to_string(repo.join("dracut/90seamless/seamless-verify-root.sh")).unwrap();
    assert!(!hook.lines().any(|l| l.trim_start().starts_with("exit")), "the dracut hook exits");
    // module-setup.sh's check() must return 255: only included when asked for.
    let setup = std::fs::read_to_string(repo.join("dracut/90seamless/module-setup.sh")).unwrap();
    let check = setup.split("check() {").nth(1).and_then(|s| s.split("\n}").next()).unwrap();
    assert!(check.contains("return 255"), "check() does not return 255:\n{check}");
}

#[test]
fn initramfs_tools_image_runs_the_hook_before_the_root_mount() {
    let (img, check) = image(Generator::InitramfsTools);
    let v = verdict(&check, "initramfs");
    assert!(v.starts_with("ok"), "{v}");
    assert!(v.contains("initramfs-tools (shell /init)") && v.contains("local-premount/seamless"), "{v}");
    let carried = verdict(&check, "image past switch_root");
    assert!(carried.starts_with("ok") && carried.contains("/run/seamless/region.img"), "{carried}");
    let _ = std::fs::remove_file(img);
}

#[test]
fn dracut_includes_the_module_only_when_asked() {
    let (img, check) = image(Generator::DracutPlain);
    let v = verdict(&check, "initramfs");
    assert!(v.starts_with("FAIL") && v.contains("without the seamless pre-mount hook"), "{v}");
    let _ = std::fs::remove_file(img);

    let (img, check) = image(Generator::DracutConf);
    let v = verdict(&check, "initramfs");
    assert!(v.starts_with("ok"), "{v}");
    assert!(v.contains("dracut (systemd)") && v.contains("dracut-pre-mount.service"), "{v}");
    let _ = std::fs::remove_file(img);
}

#[test]
fn dracut_classic_image_sources_the_hook() {
    let (img, check) = image(Generator::DracutClassic);
    let v = verdict(&check, "initramfs");
    assert!(v.starts_with("ok"), "{v}");
    assert!(v.contains("dracut (shell /init)") && v.contains("pre-mount/10-seamless-verify-root.sh"), "{v}");
    assert!(verdict(&check, "image past switch_root").starts_with("ok"), "{check}");
    let _ = std::fs::remove_file(img);
}
