//! `seamless`: the operator's command. Argument parsing and dispatch live in `cli/`; the work
//! itself is done by the `seamless` library and, for restore, by the `seamless-init` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
