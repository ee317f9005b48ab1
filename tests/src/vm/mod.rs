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

/// Everything the scenarios share, prepared once per test process: host packages, both
/// kernels, the static binaries, the initramfs images and the accelerator.
#[derive(Debug)]
pub struct Env {
    /// Kernel A (6.1).
    pub a: Kernel,
    /// Kernel B (6.12).
    pub b: Kernel,
    /// Initramfs of kernel A.
    pub initrd_a: PathBuf,
    /// Initramfs of kernel B.
    pub initrd_b: PathBuf,
    /// Hook-style initramfs of kernel A.
    pub hook_initrd_a: PathBuf,
    /// Hook-style initramfs of kernel B.
    pub hook_initrd_b: PathBuf,
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
    /// The kernel `w`.
    pub fn kernel(&self, w: Which) -> &Kernel {
        match w {
            Which::A => &self.a,
            Which::B => &self.b,
        }
    }
    /// The hook-style (distribution-like) initramfs of kernel `w`, installed in the guest as
    /// `/boot/initrd-hooks.img-RELEASE`.
    pub fn hook_initrd(&self, w: Which) -> &PathBuf {
        match w {
            Which::A => &self.hook_initrd_a,
            Which::B => &self.hook_initrd_b,
        }
    }

    /// The initramfs of kernel `w`.
    pub fn initrd(&self, w: Which) -> &PathBuf {
        match w {
            Which::A => &self.initrd_a,
            Which::B => &self.initrd_b,
        }
    }
}

fn prepare() -> Result<Env> {
    host::ensure_host_packages()?;
    let a = kernels::fetch(Which::A).context("fetching kernel A")?;
    let b = kernels::fetch(Which::B).context("fetching kernel B")?;
    eprintln!("vm: kernel A {} ({}), kernel B {} ({})", a.release, a.package, b.release, b.package);
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
    let (initrd_a, ma) = build(&a, "initrd", &plain)?;
    let (initrd_b, mb) = build(&b, "initrd", &plain)?;
    let (hook_initrd_a, _) = build(&a, "initrd-hooks", &hooks)?;
    let (hook_initrd_b, _) = build(&b, "initrd-hooks", &hooks)?;
    eprintln!("vm: initramfs A with {ma} modules, B with {mb} modules");
    let (accel, accel_reason) = accel::choose(&a)?;
    eprintln!("vm: accelerator {accel} ({accel_reason})");
    Ok(Env { a, b, initrd_a, initrd_b, hook_initrd_a, hook_initrd_b, init_bin, seamless_bin, accel, accel_reason })
}

/// The shared environment, prepared on first use.
pub fn env() -> Result<&'static Env> {
    static ENV: OnceLock<std::result::Result<Env, String>> = OnceLock::new();
    ENV.get_or_init(|| prepare().map_err(|e| format!("{e:#}"))).as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}
