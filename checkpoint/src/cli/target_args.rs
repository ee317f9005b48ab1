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
}

impl TargetArgs {
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
