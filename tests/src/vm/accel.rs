//! Choosing the QEMU accelerator. KVM is used only when a probe shows that a stock kernel
//! really boots with it (on PVM hosts `/dev/kvm` exists but stock kernels do not boot); the
//! verdict is cached per host kernel and guest kernel. `SEAMLESS_ACCEL=tcg|kvm` overrides.

use super::host::cache_dir;
use super::kernels::Kernel;
use super::stream::Stream;
use anyhow::Result;
use seamless_image::newc;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MARKER: &str = "SEAMLESS-KVM-PROBE-OK";
const PROBE_TIMEOUT: Duration = Duration::from_secs(25);

/// The accelerator to use for `kernel`, with the reason.
pub fn choose(kernel: &Kernel) -> Result<(String, String)> {
    if let Ok(a) = std::env::var("SEAMLESS_ACCEL") {
        return Ok((a, "SEAMLESS_ACCEL".into()));
    }
    if !std::path::Path::new("/dev/kvm").exists() {
        return Ok(("tcg".into(), "no /dev/kvm".into()));
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let verdict_file = cache_dir().join(format!("accel-verdict-{}-{}", host.trim(), kernel.release));
    if let Ok(v) = std::fs::read_to_string(&verdict_file) {
        let v = v.trim();
        let accel = if v.starts_with("kvm") { "kvm" } else { "tcg" };
        return Ok((accel.into(), format!("cached probe: {v}")));
    }
    let started = Instant::now();
    let ok = probe(kernel)?;
    let accel = if ok { "kvm" } else { "tcg" };
    let line = if ok {
        format!("kvm: {} booted to /init under KVM in {:.1} s", kernel.release, started.elapsed().as_secs_f64())
    } else {
        format!("tcg: {} did not reach /init under KVM within {PROBE_TIMEOUT:?}", kernel.release)
    };
    let _ = std::fs::write(&verdict_file, format!("{line}\n"));
    Ok((accel.into(), format!("probe: {line}")))
}

/// Boots `kernel` under KVM with an initramfs whose `/init` prints a marker and powers off.
fn probe(kernel: &Kernel) -> Result<bool> {
    let dir = cache_dir().join("kvm-probe");
    std::fs::create_dir_all(&dir)?;
    let mut c = newc::Builder::new();
    c.char_dev("dev/console", 0o600, 5, 1);
    c.file("bin/busybox", 0o755, &std::fs::read("/bin/busybox")?);
    c.file("init", 0o755, format!("#!/bin/busybox sh\necho {MARKER}\n/bin/busybox poweroff -f\n").as_bytes());
    let initrd = dir.join("probe.cpio");
    std::fs::write(&initrd, c.finish())?;
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-m", "512M", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio"])
        .args(["-no-reboot", "-kernel"])
        .arg(kernel.vmlinuz())
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let s = Stream::new(Instant::now(), None, None);
    if let Some(out) = child.stdout.take() {
        s.pump(out);
    }
    let ok = s.wait(PROBE_TIMEOUT, |d| d.text.contains(MARKER).then_some(())).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    Ok(ok)
}
