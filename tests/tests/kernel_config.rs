//! `seamless check` reads the target kernel's build configuration and names, before anything
//! is frozen, a feature the preserved processes need that the target lacks. The configuration
//! is Debian's real one for kernel B (`/boot/config-RELEASE` beside its image, fetched like the
//! VM scenarios'), as is and with one option taken out. Needs root (the check freezes the
//! tree with ptrace). `cargo test -p seamless-tests --test kernel_config -- --test-threads=1`

use anyhow::{ensure, Context, Result};
use seamless_tests::host::Harness;
use seamless_tests::vm::{kernels, Which};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn harness() -> Result<Harness> {
    Harness::new(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kernel-config"))
}

/// One verdict: subject, status, detail.
type Verdict = (String, String, String);

/// `seamless check --pid PID ARGS --json`: (exit status, verdicts).
fn check(h: &Harness, pid: i32, args: &[&str]) -> Result<(i32, Vec<Verdict>)> {
    let out = Command::new(h.seamless()?).args(["check", "--json", "--pid", &pid.to_string()]).args(args).output()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!("check output: {} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })?;
    let verdicts = json["verdicts"]
        .as_array()
        .context("no verdicts")?
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (s("subject"), s("status"), s("detail"))
        })
        .collect();
    Ok((out.status.code().unwrap_or(-1), verdicts))
}

/// Kernel B's config with `option` switched off (as `make` writes it).
fn without(config: &Path, option: &str, dir: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(config)?;
    let prefix = format!("{option}=");
    ensure!(text.lines().any(|l| l.starts_with(&prefix)), "{} does not set {option}", config.display());
    let cut: String = text
        .lines()
        .map(|l| if l.starts_with(&prefix) { format!("# {option} is not set") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    let out = dir.join(format!("config-without-{option}"));
    std::fs::write(&out, cut + "\n")?;
    Ok(out)
}

#[test]
fn check_names_what_the_target_kernel_lacks() -> Result<()> {
    let kernel = kernels::fetch(Which::B)?;
    let h = harness()?;
    // timerfds, a signalfd, glibc-less static code with an rseq area of its own: every kind
    // of descriptor it holds needs its option in the target.
    let mut w = h.start("timerfd_signalfd", &[])?;
    w.wait_ready(Duration::from_secs(30))?;

    // The real config, found beside the kernel image: nothing missing.
    let image = kernel.vmlinuz();
    let (_, v) = check(&h, w.pid, &["--kernel", image.to_str().context("path")?])?;
    let found =
        v.iter().find(|(s, _, _)| s == "new kernel config").with_context(|| format!("no config verdict: {v:?}"))?;
    println!("{found:?}");
    ensure!(found.1 == "ok", "{found:?}");
    ensure!(found.2.contains(&kernel.config().display().to_string()), "not the config beside the image: {found:?}");
    for opt in ["CONFIG_CHECKPOINT_RESTORE=y", "CONFIG_TIME_NS=y", "CONFIG_TIMERFD=y", "CONFIG_SIGNALFD=y"] {
        ensure!(found.2.contains(opt), "{opt} not checked: {found:?}");
    }
    ensure!(!v.iter().any(|(s, st, _)| s.starts_with("new kernel") && st != "ok"), "{v:?}");

    // The same config without one option the tree needs: refused, with the option named.
    let tmp = std::env::temp_dir().join(format!("seamless-kconfig-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    for option in ["CONFIG_TIME_NS", "CONFIG_SIGNALFD", "CONFIG_CHECKPOINT_RESTORE"] {
        let cfg = without(&kernel.config(), option, &tmp)?;
        let (status, v) = check(
            &h,
            w.pid,
            &["--kernel", image.to_str().context("path")?, "--kernel-config", cfg.to_str().context("path")?],
        )?;
        let subject = format!("new kernel {option}");
        let fail = v.iter().find(|(s, _, _)| *s == subject).with_context(|| format!("{option} not named: {v:?}"))?;
        println!("{fail:?}");
        ensure!(fail.1 == "fail" && fail.2.contains(&format!("pid {}", w.pid)), "{fail:?}");
        ensure!(status == 1, "check exited {status} with {option} missing");
    }
    std::fs::remove_dir_all(&tmp)?;
    // The check changed nothing: the workload still passes its own checks.
    w.terminate()?;
    w.wait_verdict(Duration::from_secs(30))
}
