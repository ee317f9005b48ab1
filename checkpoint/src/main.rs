//! `seamless`: the operator's command.

fn main() -> anyhow::Result<()> {
    Ok(())
}
