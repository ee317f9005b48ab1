//! Which processes to preserve: `--pid`, `--cgroup` and `--unit` selections resolved to the
//! root pids of process trees.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A selection that could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The pid does not exist.
    #[error("pid {pid}: no such process")]
    NoProcess {
        /// The pid.
        pid: i32,
    },
    /// The cgroup cannot be read.
    #[error("cgroup {path}: cannot read cgroup.procs: {source}")]
    Cgroup {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing runs in the selection.
    #[error("{what}: no process to preserve")]
    Empty {
        /// The selection.
        what: String,
    },
}

/// What the operator selected.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Root pids of trees.
    pub pids: Vec<i32>,
    /// cgroup v2 paths (absolute, or relative to /sys/fs/cgroup).
    pub cgroups: Vec<PathBuf>,
    /// systemd unit names.
    pub units: Vec<String>,
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn cgroup_procs(path: &Path) -> Result<BTreeSet<i32>, TargetError> {
    let path = if path.is_absolute() && path.starts_with("/sys/fs/cgroup") {
        path.to_path_buf()
    } else {
        Path::new("/sys/fs/cgroup").join(path.strip_prefix("/").unwrap_or(path))
    };
    let mut out = BTreeSet::new();
    let mut stack = vec![path.clone()];
    while let Some(dir) = stack.pop() {
        let text = std::fs::read_to_string(dir.join("cgroup.procs"))
            .map_err(|source| TargetError::Cgroup { path: dir.clone(), source })?;
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        if let Ok(rd) = std::fs::read_dir(&dir) {
            stack.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
        }
    }
    Ok(out)
}

/// The roots among a set of pids: those whose parent is not in the set.
fn roots_of(set: &BTreeSet<i32>) -> Vec<i32> {
    set.iter().copied().filter(|p| !ppid(*p).is_some_and(|pp| set.contains(&pp))).collect()
}

impl Selection {
    /// Resolves to root pids of process trees, each once, in a stable order.
    pub fn resolve(&self) -> Result<Vec<i32>, TargetError> {
        let mut roots = Vec::new();
        for &pid in &self.pids {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return Err(TargetError::NoProcess { pid });
            }
            roots.push(pid);
        }
        for cg in &self.cgroups {
            let set = cgroup_procs(cg)?;
            if set.is_empty() {
                return Err(TargetError::Empty { what: format!("cgroup {}", cg.display()) });
            }
            roots.extend(roots_of(&set));
        }
        for unit in &self.units {
            let set = cgroup_procs(&Path::new("system.slice").join(unit))?;
            if set.is_empty() {
                return Err(TargetError::Empty { what: format!("unit {unit}") });
            }
            roots.extend(roots_of(&set));
        }
        let mut seen = BTreeSet::new();
        roots.retain(|p| seen.insert(*p));
        Ok(roots)
    }
}
