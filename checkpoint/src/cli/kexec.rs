//! `seamless kexec`: load a kernel with `kexec_file_load`, jump into it after sync + freeze,
//! or unload it.

use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seamless kexec`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("action").required(true).multiple(true).args(["kernel", "exec", "unload"])))]
pub struct Args {
    /// Kernel image (bzImage) to load.
    #[arg(long, requires = "initrd")]
    pub kernel: Option<PathBuf>,
    /// Initramfs for the loaded kernel.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Command line of the loaded kernel (appended to the current one with --reuse-cmdline).
    #[arg(long, requires = "kernel")]
    pub append: Option<String>,
    /// Start from the running kernel's command line (without BOOT_IMAGE= and initrd=).
    #[arg(long, requires = "kernel")]
    pub reuse_cmdline: bool,
    /// Sync, freeze every writable block-backed filesystem and jump into the loaded kernel.
    #[arg(long, conflicts_with = "unload")]
    pub exec: bool,
    /// Unload the loaded kernel.
    #[arg(long)]
    pub unload: bool,
}

/// Runs `seamless kexec`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.unload {
        seamless::kexec::unload()?;
        eprintln!("seamless: kexec image unloaded");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(kernel) = &args.kernel {
        let mut cmdline = if args.reuse_cmdline { seamless::kexec::current_cmdline()? } else { String::new() };
        match (&args.append, args.reuse_cmdline) {
            (Some(extra), _) => {
                if !cmdline.is_empty() {
                    cmdline.push(' ');
                }
                cmdline.push_str(extra);
            }
            (None, true) => {}
            (None, false) => {
                anyhow::bail!("give the new kernel's command line with --append CMDLINE or --reuse-cmdline")
            }
        }
        seamless::kexec::load(kernel, args.initrd.as_deref(), &cmdline)
            .with_context(|| format!("kexec load of {}", kernel.display()))?;
        eprintln!(
            "seamless: loaded {} with initrd {} and command line {cmdline:?}",
            kernel.display(),
            args.initrd.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into())
        );
    }
    if args.exec {
        let err = seamless::kexec::exec(|frozen| {
            let list: Vec<String> =
                frozen.iter().map(|t| format!("{} ({})", t.mountpoint.display(), t.source)).collect();
            eprintln!(
                "seamless: froze {} filesystems: {}; jumping into the loaded kernel",
                frozen.len(),
                list.join(", ")
            );
            let _ = std::io::stderr().flush();
        });
        match err {
            Ok(never) => match never {},
            Err(e) => return Err(e).context("kexec --exec"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
