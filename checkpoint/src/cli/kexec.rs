//! `seamless kexec`.

use std::process::ExitCode;

/// Arguments of `seamless kexec`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `seamless kexec`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`seamless kexec` is not implemented yet")
}
