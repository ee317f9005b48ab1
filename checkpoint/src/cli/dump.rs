//! `seamless dump`.

use std::process::ExitCode;

/// Arguments of `seamless dump`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `seamless dump`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`seamless dump` is not implemented yet")
}
