//! Command-line interface: one module per subcommand, each turning typed library errors into
//! messages for the operator.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod check;
mod dump;
mod inspect;
mod kexec;
mod region;
mod restore;
mod target_args;
mod upgrade;

/// Upgrade the kernel without losing running processes: checkpoint, kexec, restore.
#[derive(Debug, Parser)]
#[command(name = "seamless", version, about, long_about = None)]
struct Cli {
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Upgrade to a new kernel, keeping the selected process trees running.
    Upgrade(upgrade::Args),
    /// Pre-flight checks: can this machine upgrade to the given kernel with these processes?
    Check(check::Args),
    /// Summarise an image (directory, block device or cpio archive) and verify every checksum.
    Inspect(inspect::Args),
    /// Load a kernel with kexec_file_load, or jump into the loaded one after sync + freeze.
    Kexec(kexec::Args),
    /// Freeze a process tree and write its checkpoint into an image.
    Dump(dump::Args),
    /// Recreate the process trees saved in an image, with their original PIDs.
    Restore(restore::Args),
    /// Low-level region maintenance (write a test pattern, wipe).
    Region(region::Args),
}

/// Parses the command line, runs the subcommand and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    // Commands that hold processes or frozen filesystems run under a supervisor, so that an
    // interruption or a kill of either process rolls back instead of losing anything.
    use seamless::supervisor::run as supervised;
    match cli.command {
        Command::Upgrade(a) => supervised("upgrade", || outcome(upgrade::run(a))),
        Command::Check(a) => outcome(check::run(a)),
        Command::Inspect(a) => outcome(inspect::run(a)),
        Command::Kexec(a) if a.exec => supervised("kexec", || outcome(kexec::run(a))),
        Command::Kexec(a) => outcome(kexec::run(a)),
        Command::Dump(a) => supervised("dump", || outcome(dump::run(a))),
        Command::Restore(a) => outcome(restore::run(a)),
        Command::Region(a) => outcome(region::run(a)),
    }
}

/// Prints an error once and maps it to exit code 1.
fn outcome(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("seamless: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    seamless_sys::logger::init("seamless", true, level);
}
