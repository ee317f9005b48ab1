//! Which processes to preserve: `--pid`, `--cgroup` and `--unit` selections resolved to the
//! root pids of process trees.

use seamless_sys::chain;
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
    #[error("cgroup {path}: cannot read cgroup.procs")]
    Cgroup {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The unit record for the new kernel cannot be written.
    #[error("{path}: cannot record the preserved units for the new kernel")]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// systemd could not tell where the unit runs.
    #[error("unit {unit}: {reason}")]
    Unit {
        /// The unit, as resolved (`redis-server.service`).
        unit: String,
        /// What went wrong, and what to do.
        reason: String,
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
            let set = cgroup_procs(&unit_cgroup(unit)?)?;
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

/// Where `seamless upgrade` records the preserved systemd units (one line per unit: name,
/// main pid and cgroup, tab-separated) on the root filesystem, before it is frozen, for
/// seamless-init on the new kernel (`init/src/units.rs`), which puts the restored processes
/// back into their units.
pub const UNITS_FILE: &str = "/var/lib/seamless/units";

/// Writes [`UNITS_FILE`] for `units` (removes it when there are none).
pub fn record_units(units: &[String]) -> Result<(), TargetError> {
    let path = Path::new(UNITS_FILE);
    if units.is_empty() {
        let _ = std::fs::remove_file(path);
        return Ok(());
    }
    let mut text = String::new();
    for unit in units {
        let info = unit_info(unit)?;
        text.push_str(&format!("{}\t{}\t{}\n", info.id, info.main_pid, info.control_group));
    }
    let io = |source| TargetError::Record { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

/// Unit types systemd knows; a name without one of these suffixes is a service.
const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".scope",
    ".slice",
    ".socket",
    ".target",
    ".mount",
    ".timer",
    ".path",
    ".swap",
    ".device",
    ".automount",
];

/// `redis-server` -> `redis-server.service`; names with a unit suffix stay as they are.
pub fn unit_name(unit: &str) -> String {
    if UNIT_SUFFIXES.iter().any(|s| unit.ends_with(s)) {
        unit.to_string()
    } else {
        format!("{unit}.service")
    }
}

/// What `systemctl show` says about a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitInfo {
    /// `Id=`: the unit's full name.
    pub id: String,
    /// `LoadState=` (`loaded`, `not-found`, ...).
    pub load_state: String,
    /// `ActiveState=` (`active`, `inactive`, ...).
    pub active_state: String,
    /// `ControlGroup=`: its cgroup, relative to the cgroup2 root (empty when not running).
    pub control_group: String,
    /// `MainPID=` (0 when none).
    pub main_pid: i32,
    /// `RuntimeDirectory=`: directories below `/run` systemd made for it (tmpfs: carried to the
    /// new kernel by `seamless upgrade --unit`).
    pub runtime_directories: Vec<String>,
}

/// Parses `systemctl show -p Id -p LoadState -p ActiveState -p ControlGroup -p MainPID` output.
pub fn parse_unit_show(text: &str) -> UnitInfo {
    let mut info = UnitInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        match k {
            "Id" => info.id = v.to_string(),
            "LoadState" => info.load_state = v.to_string(),
            "ActiveState" => info.active_state = v.to_string(),
            "ControlGroup" => info.control_group = v.to_string(),
            "MainPID" => info.main_pid = v.trim().parse().unwrap_or(0),
            "RuntimeDirectory" => info.runtime_directories = v.split_whitespace().map(str::to_string).collect(),
            _ => {}
        }
    }
    info
}

/// Asks systemd about `unit` (any unit name, templated ones too; `.service` is implied).
pub fn unit_info(unit: &str) -> Result<UnitInfo, TargetError> {
    let name = unit_name(unit);
    let err = |reason: String| TargetError::Unit { unit: name.clone(), reason };
    let out = std::process::Command::new("systemctl")
        .args(["show", "-p", "Id", "-p", "LoadState", "-p", "ActiveState", "-p", "ControlGroup", "-p", "MainPID"])
        .args(["-p", "RuntimeDirectory"])
        .arg(&name)
        .output()
        .map_err(|e| {
            err(format!("cannot run systemctl: {}; --unit needs systemd (use --cgroup or --pid)", chain(&e)))
        })?;
    if !out.status.success() {
        return Err(err(format!(
            "systemctl show failed: {}; --unit needs a running systemd (use --cgroup or --pid)",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let info = parse_unit_show(&String::from_utf8_lossy(&out.stdout));
    if info.load_state != "loaded" {
        return Err(err(format!(
            "systemd does not know it (LoadState={}); check the name with systemctl list-units",
            info.load_state
        )));
    }
    Ok(info)
}

/// The `RuntimeDirectory=` paths of `units` (`/run/NAME`), carried across the jump with the
/// unit's processes.
pub fn runtime_directories(units: &[String]) -> Result<Vec<PathBuf>, TargetError> {
    let mut out = Vec::new();
    for u in units {
        out.extend(unit_info(u)?.runtime_directories.iter().map(|d| Path::new("/run").join(d)));
    }
    Ok(out)
}

/// The cgroup directory of a running unit, as systemd reports it.
fn unit_cgroup(unit: &str) -> Result<PathBuf, TargetError> {
    let info = unit_info(unit)?;
    if info.control_group.is_empty() {
        return Err(TargetError::Unit {
            unit: info.id,
            reason: format!("it has no cgroup (ActiveState={}): nothing runs in it", info.active_state),
        });
    }
    Ok(cgroup2_root().join(info.control_group.trim_start_matches('/')))
}

/// Where the cgroup2 hierarchy is mounted: `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
/// hybrid-hierarchy system.
fn cgroup2_root() -> PathBuf {
    let unified = Path::new("/sys/fs/cgroup/unified");
    if !Path::new("/sys/fs/cgroup/cgroup.procs").exists() && unified.join("cgroup.procs").exists() {
        unified.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_default_to_services() {
        assert_eq!(unit_name("redis-server"), "redis-server.service");
        assert_eq!(unit_name("postgresql@15-main"), "postgresql@15-main.service");
        assert_eq!(unit_name("memcached.service"), "memcached.service");
        assert_eq!(unit_name("session-3.scope"), "session-3.scope");
    }

    #[test]
    fn systemctl_show_output_is_parsed() {
        let info = parse_unit_show(
            "Id=postgresql@15-main.service\nLoadState=loaded\nActiveState=active\nControlGroup=/system.slice/system-postgresql.slice/postgresql@15-main.service\nMainPID=812\n",
        );
        assert_eq!(info.id, "postgresql@15-main.service");
        assert_eq!(info.control_group, "/system.slice/system-postgresql.slice/postgresql@15-main.service");
        assert_eq!(info.main_pid, 812);
        assert_eq!(parse_unit_show("garbage\nMainPID=x\n").main_pid, 0);
        let redis = parse_unit_show("Id=redis-server.service\nRuntimeDirectory=redis redis-extra\n");
        assert_eq!(redis.runtime_directories, ["redis", "redis-extra"]);
    }
}
