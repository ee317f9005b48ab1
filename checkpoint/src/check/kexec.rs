//! Can this kernel kexec into the new one? Sysctl, lockdown, and optionally a trial load.

use super::{CheckOptions, Verdict};
use seamless_sys::chain;

/// Verdicts on kexec_file_load permissions and on the kernel image.
pub fn check(opts: &CheckOptions) -> Vec<Verdict> {
    let mut v = Vec::new();
    match std::fs::read_to_string("/proc/sys/kernel/kexec_load_disabled").map(|s| s.trim().to_string()) {
        Ok(s) if s == "0" => v.push(Verdict::ok("kexec allowed", "kernel.kexec_load_disabled = 0")),
        Ok(_) => v.push(Verdict::fail(
            "kexec allowed",
            "kernel.kexec_load_disabled = 1: kexec is disabled until the next reboot; reboot normally this time",
        )),
        Err(e) => v.push(Verdict::fail(
            "kexec allowed",
            format!("cannot read /proc/sys/kernel/kexec_load_disabled ({}): is CONFIG_KEXEC_FILE enabled?", chain(&e)),
        )),
    }
    if let Ok(l) = std::fs::read_to_string("/sys/kernel/security/lockdown") {
        let mode = l.split_whitespace().find(|w| w.starts_with('[')).unwrap_or("[none]").trim_matches(['[', ']']);
        if mode == "none" {
            v.push(Verdict::ok("lockdown", "none"));
        } else {
            v.push(Verdict::warn("lockdown", format!("{mode}: only kernels signed with a trusted key can be loaded")));
        }
    }
    if let Some(k) = &opts.kernel {
        match std::fs::metadata(k) {
            Ok(m) if m.is_file() => v.push(Verdict::ok("kernel image", format!("{} ({} bytes)", k.display(), m.len()))),
            _ => v.push(Verdict::fail("kernel image", format!("{} is not a readable file", k.display()))),
        }
        if opts.trial_load {
            v.push(trial_load(opts));
        }
    }
    v
}

fn trial_load(opts: &CheckOptions) -> Verdict {
    let loaded = std::fs::read_to_string("/sys/kernel/kexec_loaded").map(|s| s.trim() == "1").unwrap_or(false);
    if loaded {
        return Verdict::warn("kernel accepted", "a kernel is already loaded; not replacing it for a trial load");
    }
    let Some(kernel) = &opts.kernel else { return Verdict::warn("kernel accepted", "no kernel given") };
    let cmdline = opts.cmdline.clone().unwrap_or_else(super::current_cmdline);
    match crate::kexec::load(kernel, opts.initrd.as_deref(), &cmdline) {
        Ok(()) => {
            let _ = crate::kexec::unload();
            Verdict::ok("kernel accepted", "trial kexec_file_load succeeded (and was unloaded)")
        }
        Err(e) => Verdict::fail("kernel accepted", chain(&e).to_string()),
    }
}
