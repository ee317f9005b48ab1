//! Arguments shared by `check` and `upgrade`: what to preserve, and the new command line.

use seamless::targets::Selection;
use std::path::PathBuf;

/// Which processes to preserve.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Preserve the process tree rooted at this pid (repeatable).
    #[arg(long = "pid")]
    pub pids: Vec<i32>,
    /// Preserve every process of this cgroup v2 (path under /sys/fs/cgroup; repeatable).
    #[arg(long = "cgroup")]
    pub cgroups: Vec<PathBuf>,
    /// Preserve every process of this systemd unit (repeatable): any unit systemd knows,
    /// templated ones included (`postgresql@15-main`); a name without a suffix is a
    /// `.service`. Its cgroup is asked from systemd (`systemctl show`).
    #[arg(long = "unit")]
    pub units: Vec<String>,
}

impl TargetArgs {
    /// As a library selection.
    pub fn selection(&self) -> Selection {
        Selection { pids: self.pids.clone(), cgroups: self.cgroups.clone(), units: self.units.clone() }
    }
}

/// The new kernel's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct CmdlineArgs {
    /// Command line for the new kernel.
    #[arg(long, conflicts_with = "reuse_cmdline")]
    pub append: Option<String>,
    /// Give the new kernel the current command line.
    #[arg(long)]
    pub reuse_cmdline: bool,
}

impl CmdlineArgs {
    /// The command line, if one was chosen (`None` means: the current one, for checks).
    pub fn resolve(&self) -> anyhow::Result<Option<String>> {
        if self.reuse_cmdline {
            return Ok(Some(seamless::check::current_cmdline()));
        }
        Ok(self.append.clone())
    }
}

/// The kernel to upgrade to, and where its image goes.
#[derive(Debug, Clone, clap::Args)]
pub struct NewKernelArgs {
    /// The new kernel image.
    #[arg(long, conflicts_with = "newest")]
    pub kernel: Option<PathBuf>,
    /// The new kernel's initramfs (with seamless-init inside).
    #[arg(long, conflicts_with = "newest")]
    pub initrd: Option<PathBuf>,
    /// Use the newest kernel installed in --boot (`vmlinuz-RELEASE` with `initrd.img-RELEASE`
    /// or `initramfs-RELEASE.img`); exit 3 when it is the running one.
    #[arg(long)]
    pub newest: bool,
    /// Where --newest looks.
    #[arg(long, value_name = "DIR", default_value = "/boot")]
    pub boot: PathBuf,
    /// The region device (default: the first /dev/pmem*; without one, the image goes into the
    /// initramfs).
    #[arg(long)]
    pub region: Option<PathBuf>,
    /// Image format version to write (default: the newest the target's seamless-init reads;
    /// `seamless-init --image-formats` says which it reads).
    #[arg(long, value_name = "VERSION")]
    pub image_format: Option<u32>,
}

/// The kernel [`NewKernelArgs`] name.
#[derive(Debug)]
pub enum NewKernel {
    /// `--kernel` and `--initrd`, or neither (a check of the processes alone).
    Given { kernel: Option<PathBuf>, initrd: Option<PathBuf> },
    /// `--newest` found a kernel newer than the running one.
    Newest(seamless::upgrade::newest::Installed),
    /// `--newest` found the running kernel newest: nothing to do.
    UpToDate { release: String },
}

impl NewKernelArgs {
    /// Resolves `--newest` (reading --boot); says on stderr which kernel it picked.
    pub fn pick(&self) -> anyhow::Result<NewKernel> {
        if !self.newest {
            return Ok(NewKernel::Given { kernel: self.kernel.clone(), initrd: self.initrd.clone() });
        }
        let Some((n, running)) = seamless::upgrade::newest::pick(&self.boot) else {
            anyhow::bail!("--newest: no kernel with an initramfs in {}", self.boot.display());
        };
        if running {
            eprintln!("seamless: the newest installed kernel, {}, is already running: nothing to do", n.release);
            return Ok(NewKernel::UpToDate { release: n.release });
        }
        eprintln!("seamless: newest installed kernel: {} ({})", n.release, n.kernel.display());
        Ok(NewKernel::Newest(n))
    }
}
