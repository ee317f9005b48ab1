//! `seamless check`: pre-flight verdicts before an upgrade. Each check is a module; each
//! yields [`Verdict`]s that say what was checked, whether it passed, and what to do if not.
//! Nothing here changes the system, except the optional trial load of the new kernel
//! (loaded and unloaded again, only when no kernel is loaded yet).

pub mod config;
pub mod formats;
pub mod fs;
pub mod initramfs;
pub mod kexec;
pub mod process;
pub mod region;

use serde::Serialize;
use std::path::PathBuf;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but with a caveat (e.g. the initramfs fallback instead of a region).
    Warn,
    /// Blocks the upgrade.
    Fail,
}

/// One line of the pre-flight report.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// What was checked (`kexec`, `region`, `pid 123`, ...).
    pub subject: String,
    /// The outcome.
    pub status: Status,
    /// What was found, and for failures what the operator can do.
    pub detail: String,
}

impl Verdict {
    /// A passing verdict.
    pub fn ok(subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { subject: subject.into(), status: Status::Ok, detail: detail.into() }
    }
    /// A warning.
    pub fn warn(subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { subject: subject.into(), status: Status::Warn, detail: detail.into() }
    }
    /// A blocking failure.
    pub fn fail(subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { subject: subject.into(), status: Status::Fail, detail: detail.into() }
    }
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The new kernel image.
    pub kernel: Option<PathBuf>,
    /// Its initramfs.
    pub initrd: Option<PathBuf>,
    /// The command line the new kernel will get (None: the current one).
    pub cmdline: Option<String>,
    /// Root pids of the trees to preserve.
    pub pids: Vec<i32>,
    /// The region device to use (None: the first /dev/pmem*).
    pub region: Option<PathBuf>,
    /// Load the kernel for real (then unload it) to prove the kernel accepts the image.
    pub trial_load: bool,
    /// The image format version asked for (`None`: the newest the target reads).
    pub image_format: Option<u32>,
    /// The new kernel's build configuration (`None`: `config-RELEASE` beside the kernel
    /// image, see [`config::config_candidates`]).
    pub kernel_config: Option<PathBuf>,
    /// Passphrases or key files of dm-crypt volumes whose key is in the kernel keyring.
    pub crypt_keys: Vec<crate::upgrade::crypt::CryptKey>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every verdict, in order.
    pub verdicts: Vec<Verdict>,
    /// The image format version to write (`None` when none fits the target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_format: Option<u32>,
    /// The record kinds the target's seamless-init reads (`None` when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_kinds: Option<Vec<u16>>,
}

impl Report {
    /// True when nothing blocks the upgrade.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.status != Status::Fail)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for v in &self.verdicts {
            let s = match v.status {
                Status::Ok => "ok",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            writeln!(f, "{s:<5} {:<22} {}", v.subject, v.detail)?;
        }
        let fails = self.verdicts.iter().filter(|v| v.status == Status::Fail).count();
        if fails == 0 {
            writeln!(f, "ready: nothing blocks the upgrade")
        } else {
            writeln!(f, "not ready: {fails} check(s) failed")
        }
    }
}

/// Runs every check.
pub fn run(opts: &CheckOptions) -> Report {
    let mut verdicts = Vec::new();
    verdicts.extend(kexec::check(opts));
    let need = process::estimate_image_bytes(&opts.pids);
    verdicts.extend(region::check(opts, need));
    verdicts.extend(initramfs::check(opts));
    let (format, image_format, target_kinds) = formats::check(opts);
    verdicts.extend(format);
    verdicts.extend(fs::check(&opts.pids, target_kinds.as_deref(), &opts.crypt_keys, opts.initrd.as_deref()));
    let (trees, mut needs) = process::check_with_needs(&opts.pids);
    if let Some(dev) = region::chosen(opts) {
        needs.extend(config::region_needs(&dev));
    }
    verdicts.extend(config::check(opts, &needs));
    verdicts.extend(trees);
    verdicts.extend(tmpfs_verdict(&opts.pids));
    Report { verdicts, image_format, target_kinds }
}

/// What of tmpfs (RAM) the preserved trees use: carried, or named with why not.
fn tmpfs_verdict(pids: &[i32]) -> Vec<Verdict> {
    if pids.is_empty() {
        return Vec::new();
    }
    let plan = crate::upgrade::tmpfs::plan(pids, &[]);
    let (entries, bytes) = plan.size();
    let carried = format!("{entries} entr(ies), {} KiB carried to the new kernel", bytes >> 10);
    if plan.not_carried.is_empty() {
        return vec![Verdict::ok(
            "tmpfs",
            format!(
                "{carried}; the rest of tmpfs is gone after the jump, as after a reboot (--keep PATH carries more)"
            ),
        )];
    }
    let list: Vec<String> = plan.not_carried.iter().map(|(p, why)| format!("{p} ({why})")).collect();
    vec![Verdict::warn("tmpfs", format!("{carried}; not carried: {}", list.join(", ")))]
}

/// The current kernel command line.
pub fn current_cmdline() -> String {
    std::fs::read_to_string("/proc/cmdline").unwrap_or_default().trim().to_string()
}

/// The value of `name=` in a command line.
pub fn cmdline_param<'a>(cmdline: &'a str, name: &str) -> Option<&'a str> {
    cmdline.split_whitespace().find_map(|w| w.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}
