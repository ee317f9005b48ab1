//! VM end-to-end harness: real Debian kernels in QEMU, an ext4 root disk with busybox, the
//! static seamless binaries and both kernels under /boot, driven through a control loop on
//! the second serial port while the first one (the kernel console) is captured with host
//! timestamps.
//!
//! ```no_run
//! use seamless_tests::vm::{GuestBuilder, Which};
//! let mut vm = GuestBuilder::new("example").start()?;
//! vm.sh("seamless region write-pattern /dev/pmem0 --mib 4")?;
//! vm.kexec(Which::B)?;
//! # Ok::<(), anyhow::Error>(())
//! ```

mod accel;
pub mod debian;
mod guest;
pub mod host;
pub mod initramfs;
pub mod kernels;
mod machine;
pub mod stream;

pub use guest::{GuestBuilder, TAP_GUEST_ADDR, TAP_GUEST_MAC, TAP_HOST_ADDR};
pub use kernels::{Kernel, Which};
pub use machine::{CmdOutput, JumpMark, KexecReport, Vm};

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::OnceLock;

/// One kernel of the scenarios with its initramfs images.
#[derive(Debug)]
pub struct Prepared {
    /// Which one.
    pub which: Which,
    /// The unpacked kernel.
    pub kernel: Kernel,
    /// Its initramfs (seamless-init as `/init`).
    pub initrd: PathBuf,
    /// Its hook-style (distribution-like) initramfs.
    pub hook_initrd: PathBuf,
}

/// Everything the scenarios share, prepared once per test process: host packages, every
/// kernel of [`Which::ALL`], the static binaries, the initramfs images and the accelerator.
#[derive(Debug)]
pub struct Env {
    /// The kernels, in the order of [`Which::ALL`].
    pub kernels: Vec<Prepared>,
    /// The static `seamless-init`.
    pub init_bin: PathBuf,
    /// The static `seamless`.
    pub seamless_bin: PathBuf,
    /// `tcg` or `kvm`.
    pub accel: String,
    /// Why that accelerator.
    pub accel_reason: String,
}

impl Env {
    fn prepared(&self, w: Which) -> &Prepared {
        // prepare() fills every kernel of Which::ALL or fails.
        self.kernels.iter().find(|p| p.which == w).expect("every kernel is prepared")
    }
    /// The kernel `w`.
    pub fn kernel(&self, w: Which) -> &Kernel {
        &self.prepared(w).kernel
    }
    /// The hook-style (distribution-like) initramfs of kernel `w`, installed in the guest as
    /// `/boot/initrd-hooks.img-RELEASE`.
    pub fn hook_initrd(&self, w: Which) -> &PathBuf {
        &self.prepared(w).hook_initrd
    }

    /// The initramfs of kernel `w`.
    pub fn initrd(&self, w: Which) -> &PathBuf {
        &self.prepared(w).initrd
    }

    /// One line naming every kernel (`A 6.1.0-57-amd64, P ...`).
    pub fn describe(&self) -> String {
        self.kernels.iter().map(|p| format!("{} {}", p.which.label(), p.kernel.release)).collect::<Vec<_>>().join(", ")
    }
}

fn prepare() -> Result<Env> {
    host::ensure_host_packages()?;
    let mut fetched = Vec::new();
    for w in Which::ALL {
        let k = kernels::fetch(w).with_context(|| format!("fetching kernel {}", w.label()))?;
        eprintln!("vm: kernel {} {} ({})", w.label(), k.release, k.packages.join(" "));
        fetched.push((w, k));
    }
    let t = std::time::Instant::now();
    crate::paths::build_static().context("building the static seamless binaries")?;
    eprintln!("vm: static binaries ready in {:.1} s", t.elapsed().as_secs_f64());
    let init_bin = crate::paths::static_init();
    let seamless_bin = crate::paths::static_seamless();
    let dir = host::cache_dir().join("initramfs");
    std::fs::create_dir_all(&dir)?;
    // Named after the seamless-init it carries, so that runs from other checkouts sharing the
    // cache never boot each other's binaries; built under a private name, then renamed: a
    // concurrent run keeps reading the old file.
    let init_id = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(&init_bin).with_context(|| format!("reading {}", init_bin.display()))?.hash(&mut h);
        h.finish()
    };
    let build = |k: &Kernel, prefix: &str, spec: &initramfs::InitramfsSpec| -> Result<(PathBuf, usize)> {
        let path = dir.join(format!("{prefix}-{}-{init_id:016x}.img", k.release));
        let tmp = dir.join(format!("{prefix}-{}.img.{}", k.release, std::process::id()));
        let modules = initramfs::build(k, &init_bin, spec, &tmp)?;
        std::fs::rename(&tmp, &path)?;
        Ok((path, modules.len()))
    };
    let plain = initramfs::InitramfsSpec::default();
    let hooks = initramfs::InitramfsSpec { distro_hooks: true, ..Default::default() };
    let mut kernels = Vec::new();
    for (which, kernel) in fetched {
        let (initrd, n) =
            build(&kernel, "initrd", &plain).with_context(|| format!("initramfs of {}", kernel.release))?;
        let (hook_initrd, _) = build(&kernel, "initrd-hooks", &hooks)?;
        eprintln!("vm: initramfs {} with {n} modules", which.label());
        kernels.push(Prepared { which, kernel, initrd, hook_initrd });
    }
    let (accel, accel_reason) = accel::choose(&kernels[0].kernel)?;
    eprintln!("vm: accelerator {accel} ({accel_reason})");
    Ok(Env { kernels, init_bin, seamless_bin, accel, accel_reason })
}

/// The shared environment, prepared on first use.
pub fn env() -> Result<&'static Env> {
    static ENV: OnceLock<std::result::Result<Env, String>> = OnceLock::new();
    ENV.get_or_init(|| prepare().map_err(|e| format!("{e:#}"))).as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}
