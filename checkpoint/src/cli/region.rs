//! `seamless region`.

use std::process::ExitCode;

/// Arguments of `seamless region`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `seamless region`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`seamless region` is not implemented yet")
}
