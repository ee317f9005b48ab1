//! Putting restored systemd services back into their units, before systemd starts.
//!
//! `seamless upgrade --unit` records each preserved unit (name, main pid, cgroup) in
//! [`UNITS_FILE`] on the root filesystem before freezing it. After the restore, as `init=`
//! on the real root, seamless-init:
//!
//! 1. mounts cgroup2 on `/sys/fs/cgroup` (systemd keeps an existing cgroup2 mount), creates
//!    the unit's recorded cgroup and moves the restored main process and its restored
//!    descendants into it;
//! 2. writes the main pid to `/run/seamless/units/UNIT.pid` and a runtime drop-in
//!    `/run/systemd/system/UNIT.d/zz-seamless-adopt.conf` that turns the unit's start into an
//!    adoption: `Type=forking`, `PIDFile=` that file, every `ExecStart*` replaced by `true`
//!    (and the unit's exec sandbox, `NoExecPaths=`/`ExecPaths=`, reset so that `true` may
//!    run), so systemd starts no second instance and takes the restored process as `MainPID`;
//! 3. adds the runtime unit `seamless-adopted.service` (wanted by `multi-user.target`; it
//!    wants the adopted units, so one that was started by hand and is not enabled is adopted
//!    too, and is ordered after them) that removes those drop-ins and reloads systemd, so that a later `systemctl restart` or
//!    `stop` runs the unit's real configuration again.
//!
//! Units whose main pid was not restored are left alone (systemd starts them as usual). Every
//! failure is logged and leaves the unit to systemd.

use crate::error::BootError;
use seamless_sys::chain;
use seamless_sys::mount::{mount, MS_NODEV, MS_NOEXEC, MS_NOSUID};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

/// Written by `seamless upgrade` (`checkpoint/src/targets.rs`): `UNIT\tMAINPID\tCGROUP` lines.
pub const UNITS_FILE: &str = "/var/lib/seamless/units";

/// Where the adoption pid files go.
pub const PID_DIR: &str = "/run/seamless/units";

/// The drop-in's file name.
/// The adoption drop-in's name: systemd applies a unit's drop-ins in the order of their names
/// across every directory, so it must sort after any an operator may have (`override.conf`,
/// which `systemctl edit` writes, `50-*.conf`): one of those setting `ExecStart=` after it would
/// undo the adoption and start a second instance.
const DROP_IN: &str = "zz-seamless-adopt.conf";

/// One recorded unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedUnit {
    /// `redis-server.service`.
    pub name: String,
    /// Its main pid on the old kernel (the same after the restore).
    pub main_pid: i32,
    /// Its cgroup, relative to the cgroup2 root (`/system.slice/redis-server.service`).
    pub cgroup: String,
}

/// Parses [`UNITS_FILE`]; malformed lines are skipped (and named in the second list).
pub fn parse(text: &str) -> (Vec<RecordedUnit>, Vec<String>) {
    let mut units = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split('\t');
        let parsed = (|| {
            let name = f.next()?.trim();
            let pid = f.next()?.trim().parse::<i32>().ok()?;
            let cgroup = f.next()?.trim();
            let safe_name = !name.is_empty()
                && !name.contains('/')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "@._-:\\".contains(c));
            let safe_cgroup = cgroup.starts_with('/') && !cgroup.split('/').any(|c| c == "..");
            (safe_name && safe_cgroup && pid > 1).then(|| RecordedUnit {
                name: name.to_string(),
                main_pid: pid,
                cgroup: cgroup.to_string(),
            })
        })();
        match parsed {
            Some(u) => units.push(u),
            None => bad.push(line.to_string()),
        }
    }
    (units, bad)
}

/// The drop-in that makes systemd adopt the running main process of `unit`.
pub fn drop_in(unit: &RecordedUnit) -> String {
    format!(
        "# Written by seamless-init: {name} runs already (restored with pid {pid}); this start adopts it.\n\
         # Removed by seamless-adopted.service once the unit is active.\n\
         [Service]\n\
         Type=forking\n\
         PIDFile={PID_DIR}/{name}.pid\n\
         GuessMainPID=no\n\
         ExecStartPre=\n\
         ExecStart=\n\
         ExecStart=/bin/true\n\
         ExecStartPost=\n\
         ExecReload=\n\
         ExecCondition=\n\
         NoExecPaths=\n\
         ExecPaths=\n\
         NotifyAccess=main\n\
         Restart=no\n",
        name = unit.name,
        pid = unit.main_pid
    )
}

/// The one-shot unit that removes the drop-ins once the adopted units are up.
pub fn cleanup_unit(units: &[RecordedUnit]) -> String {
    let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
    let mut rm = String::new();
    for u in units {
        let _ = write!(rm, " /run/systemd/system/{}.d/{DROP_IN}", u.name);
    }
    format!(
        "# Written by seamless-init: hands the adopted units back to their own configuration.\n\
         [Unit]\n\
         Description=seamless: restored services adopted, back to their unit files\n\
         Wants={after}\n\
         After={after}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart=/bin/rm -f{rm}\n\
         ExecStart=/bin/systemctl daemon-reload\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        after = names.join(" ")
    )
}

/// The restored pids descending from `root` (itself included) among `restored`.
fn subtree(root: i32, restored: &[i32]) -> Vec<i32> {
    let set: BTreeSet<i32> = restored.iter().copied().collect();
    let ppid = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let mut out = vec![root];
    for &p in &set {
        let mut cur = p;
        for _ in 0..64 {
            match ppid(cur) {
                Some(pp) if pp == root && p != root => {
                    out.push(p);
                    break;
                }
                Some(pp) if set.contains(&pp) => cur = pp,
                _ => break,
            }
        }
    }
    out
}

fn cgroup2_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| {
            s.lines().any(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                f.get(4) == Some(&"/sys/fs/cgroup") && l.contains(" - cgroup2 ")
            })
        })
        .unwrap_or(false)
}

/// Directories 0755 and files 0644 whatever the umask (PID 1 starts with umask 0, and
/// systemd warns about world-writable unit files).
fn mkdir(dir: &Path) -> Result<(), BootError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(|e| BootError::path("creating", dir, e))
}

fn write(path: &Path, text: &str) -> Result<(), BootError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        mkdir(dir)?;
    }
    let err = |e: std::io::Error| BootError::path("writing", path, e);
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(path).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(err)
}

/// Whether process `pid` is in cgroup `cgroup` or below it.
fn inside(pid: i32, cgroup: &str) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("0::"))
        .any(|p| p == cgroup || p.strip_prefix(cgroup).is_some_and(|r| r.starts_with('/')))
}

fn adopt_one(unit: &RecordedUnit, restored: &[i32]) -> Result<usize, BootError> {
    let dir = Path::new("/sys/fs/cgroup").join(unit.cgroup.trim_start_matches('/'));
    mkdir(&dir)?;
    let pids = subtree(unit.main_pid, restored);
    for pid in &pids {
        // The restore already put a process with a cgroup record back into its own cgroup
        // (record kind 57); one inside the unit's cgroup stays where it is.
        if inside(*pid, &unit.cgroup) {
            continue;
        }
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| BootError::path(format!("moving pid {pid} into"), &dir, e))?;
    }
    write(&Path::new(PID_DIR).join(format!("{}.pid", unit.name)), &format!("{}\n", unit.main_pid))?;
    write(&Path::new("/run/systemd/system").join(format!("{}.d", unit.name)).join(DROP_IN), &drop_in(unit))?;
    Ok(pids.len())
}

/// Puts the restored processes of every recorded unit back into it (see the module
/// documentation). `restored` are the pids the restore brought back.
pub fn adopt(restored: &[i32]) {
    let text = match std::fs::read_to_string(UNITS_FILE) {
        Ok(t) => t,
        Err(_) => return,
    };
    let (units, bad) = parse(&text);
    for l in bad {
        log::warn!("{UNITS_FILE}: ignoring malformed line {l:?}");
    }
    let units: Vec<RecordedUnit> = units
        .into_iter()
        .filter(|u| {
            let ok = restored.contains(&u.main_pid);
            if !ok {
                log::info!("unit {}: main pid {} was not restored; systemd starts it as usual", u.name, u.main_pid);
            }
            ok
        })
        .collect();
    if units.is_empty() {
        return;
    }
    if !cgroup2_mounted() {
        let _ = mkdir(Path::new("/sys/fs/cgroup"));
        if let Err(e) =
            mount("cgroup2", Path::new("/sys/fs/cgroup"), Some("cgroup2"), MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        {
            log::error!("cannot mount cgroup2 on /sys/fs/cgroup ({}); restored units stay outside their cgroups and systemd starts them again", chain(&e));
            return;
        }
    }
    let mut adopted = Vec::new();
    for u in &units {
        match adopt_one(u, restored) {
            Ok(n) => {
                log::info!(
                    "unit {}: {n} restored process(es) in {}; systemd adopts main pid {}",
                    u.name,
                    u.cgroup,
                    u.main_pid
                );
                adopted.push(u.clone());
            }
            Err(e) => log::error!("unit {}: {}; systemd will start it again", u.name, chain(&e)),
        }
    }
    if adopted.is_empty() {
        return;
    }
    let unit_path = Path::new("/run/systemd/system/seamless-adopted.service");
    let wants = Path::new("/run/systemd/system/multi-user.target.wants/seamless-adopted.service");
    let linked = write(unit_path, &cleanup_unit(&adopted)).and_then(|()| {
        mkdir(Path::new("/run/systemd/system/multi-user.target.wants"))?;
        let _ = std::fs::remove_file(wants);
        std::os::unix::fs::symlink(unit_path, wants).map_err(|e| BootError::path("linking", wants, e))
    });
    if let Err(e) = linked {
        log::error!("{}: the adoption drop-ins stay until the next boot; run `rm /run/systemd/system/*.d/{DROP_IN}; systemctl daemon-reload`", chain(&e));
    }
    if let Err(e) = std::fs::remove_file(UNITS_FILE) {
        log::warn!("cannot remove {UNITS_FILE}: {}", chain(&e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_parsed_and_unsafe_ones_skipped() {
        let (u, bad) = parse(
            "redis-server.service\t30004\t/system.slice/redis-server.service\n\
             postgresql@15-main.service\t812\t/system.slice/system-postgresql.slice/postgresql@15-main.service\n\
             evil/../x.service\t5\t/system.slice/x\n\
             x.service\t7\t/system.slice/../../etc\n\
             short line\n",
        );
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].name, "postgresql@15-main.service");
        assert_eq!(u[1].main_pid, 812);
        assert_eq!(bad.len(), 3);
    }

    #[test]
    fn drop_in_adopts_without_starting() {
        let u = RecordedUnit {
            name: "memcached.service".into(),
            main_pid: 30008,
            cgroup: "/system.slice/memcached.service".into(),
        };
        let d = drop_in(&u);
        assert!(d.contains("Type=forking\n") && d.contains("PIDFile=/run/seamless/units/memcached.service.pid\n"));
        assert!(d.contains("ExecStart=\nExecStart=/bin/true\n") && d.contains("ExecStartPre=\n"));
        let c = cleanup_unit(&[u]);
        assert!(c.contains("Wants=memcached.service\n") && c.contains("After=memcached.service\n"));
        assert!(c.contains("ExecStart=/bin/rm -f /run/systemd/system/memcached.service.d/zz-seamless-adopt.conf\n"));
    }
}
