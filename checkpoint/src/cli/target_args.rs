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
    /// The passphrase or key file of a dm-crypt volume whose key is in the kernel keyring
    /// (cryptsetup's default for LUKS2), as NAME=FILE, or NAME=- for a passphrase on stdin
    /// (one trailing newline dropped): the volume key is derived from the LUKS header with it
    /// (`cryptsetup luksDump --dump-volume-key`) and carried in the region, in RAM only, so the
    /// new kernel does not ask for the passphrase (repeatable).
    #[arg(long = "crypt-key", value_name = "NAME=FILE")]
    pub crypt_keys: Vec<String>,
}

impl TargetArgs {
    /// The `--crypt-key` arguments; stdin is read (once) for the first `NAME=-`.
    pub fn crypt_keys(&self) -> anyhow::Result<Vec<seamless::upgrade::crypt::CryptKey>> {
        use seamless::upgrade::crypt::CryptKey;
        use seamless_sys::secret::Secret;
        let mut passphrase: Option<Secret> = None;
        let mut read_stdin = || -> std::io::Result<Secret> {
            if let Some(p) = &passphrase {
                return Ok(Secret::copy_of(p.as_bytes()));
            }
            use std::io::Read;
            let mut buf = Secret::new(vec![0u8; 8192]);
            let mut got = 0;
            let mut stdin = std::io::stdin().lock();
            while got < buf.len() {
                match stdin.read(&mut buf.as_mut_bytes()[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let mut end = got;
            if end > 0 && buf.as_bytes()[end - 1] == b'\n' {
                end -= 1;
            }
            let p = Secret::copy_of(&buf.as_bytes()[..end]);
            passphrase = Some(Secret::copy_of(p.as_bytes()));
            Ok(p)
        };
        self.crypt_keys.iter().map(|a| CryptKey::parse(a, &mut read_stdin).map_err(anyhow::Error::msg)).collect()
    }

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
