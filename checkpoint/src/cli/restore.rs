//! `seamless restore`.

use std::process::ExitCode;

/// Arguments of `seamless restore`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `seamless restore`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`seamless restore` is not implemented yet")
}
