//! `seamless inspect`.

use std::process::ExitCode;

/// Arguments of `seamless inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `seamless inspect`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`seamless inspect` is not implemented yet")
}
