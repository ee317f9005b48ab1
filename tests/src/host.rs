//! Host round-trip runner: start a workload, wait until it is ready, `seamless dump` it, check it
//! is gone, `seamless restore` it, trigger its check and read its verdict.
//!
//! The runner makes itself a child subreaper, so every process of a workload tree that loses its
//! parent (the whole tree, once the dump kills it; the restored root, once `seamless restore`
//! exits) becomes its child and is reaped here. All waiting goes through one reaper
//! ([`Running::reap`]); operations are serialised by a process-wide lock, so even a parallel test
//! run cannot steal another test's exit statuses.
//!
//! The `seamless` binary is `$SEAMLESS_BIN` if set; otherwise it is built with
//! `cargo build -p seamless` (`--release` from a release binary) into the target directory that
//! holds the running test or benchmark, then taken from there, so it is never stale.
//!
//! Failures carry what is needed to understand them: the command line, its exit status and the
//! last lines of its stderr; the workload's own `FAIL:` reason and the tail of its stderr; the
//! state of processes that should or should not exist.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::workloads;

/// How long a workload may take to announce READY (1 GiB fills take a few seconds).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a workload may take to deliver its verdict after SIGTERM (timers wait up to 25 s).
pub const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);
/// Limit for one `seamless dump` or `seamless restore`.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the dumped tree may take to disappear after a dump without `--leave-running`.
pub const GONE_TIMEOUT: Duration = Duration::from_secs(20);

static SERIAL: Mutex<()> = Mutex::new(());

/// Makes this process a child subreaper (idempotent).
pub fn become_subreaper() -> Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).context("prctl(PR_SET_CHILD_SUBREAPER)")
}

/// Directory of the profile the current executable was built in (`<target>/debug`, ...).
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the current executable")?;
    let mut dir = exe.parent().context("executable without a directory")?.to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Finds (building it if needed) the `seamless` binary; see the module documentation.
pub fn seamless_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate_bin("seamless", "SEAMLESS_BIN").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Finds (building it if needed) this checkout's `seamless-init`, as a normal (not static)
/// binary of the test profile; `SEAMLESS_INIT_BIN` overrides it.
pub fn seamless_init_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate_bin("seamless-init", "SEAMLESS_INIT_BIN").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn locate_bin(name: &str, env: &str) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os(env) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("{env}={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let profile = profile_dir()?;
    let target = profile.parent().context("profile directory without a parent")?;
    let profile_name = profile.file_name().and_then(|n| n.to_str()).context("profile directory name")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).env("CARGO_TARGET_DIR", target).args(["build", "--quiet", "-p", name, "--bin", name]);
    match profile_name {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd.output().with_context(|| format!("running cargo build -p {name}"))?;
    if !out.status.success() {
        bail!(
            "cargo build -p {name} failed ({}); set {env} to use a prebuilt binary:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = profile.join(name);
    if !bin.is_file() {
        bail!("cargo build -p {name} succeeded but {} does not exist", bin.display());
    }
    Ok(bin)
}

/// The last `lines` lines of a file (for failure messages), or a note that it is unreadable.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            if all.is_empty() {
                "(empty)".to_string()
            } else {
                all[start..].join("\n")
            }
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// `(state, ppid, starttime)` of a process from /proc/PID/stat, if it exists.
pub fn proc_stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); starttime is field 22.
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

/// A line of /proc/PID/status (e.g. `State`, `TracerPid`).
pub fn proc_status(pid: i32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(|v| v.trim().to_string())
}

/// A short description of a process for failure messages.
pub fn describe_process(pid: i32) -> String {
    match proc_stat(pid) {
        None => format!("pid {pid} (gone)"),
        Some((state, ppid, _)) => format!(
            "pid {pid} ({}, state {state}, ppid {ppid}, TracerPid {}, wchan {})",
            std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|s| s.trim().to_string()).unwrap_or_default(),
            proc_status(pid, "TracerPid").unwrap_or_default(),
            std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
        ),
    }
}

/// `pid` and all its descendants (through every thread's `children` file), parents first.
pub fn tree_pids(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                let children = task.path().join("children");
                if let Ok(text) = std::fs::read_to_string(children) {
                    for c in text.split_whitespace().filter_map(|s| s.parse().ok()) {
                        if !out.contains(&c) {
                            out.push(c);
                        }
                    }
                }
            }
        }
        i += 1;
    }
    out
}

/// Sends `sig` to `pid`.
pub fn signal(pid: i32, sig: Signal) -> Result<()> {
    let p = Pid::from_raw(pid).with_context(|| format!("invalid pid {pid}"))?;
    rustix::process::kill_process(p, sig).with_context(|| format!("kill({pid}, {sig:?})"))
}

fn describe_wait(status: rustix::process::WaitStatus) -> String {
    if let Some(code) = status.exit_status() {
        format!("exit code {code}")
    } else if let Some(sig) = status.terminating_signal() {
        format!("killed by signal {sig}")
    } else {
        format!("wait status {status:?}")
    }
}

/// The result of one `seamless` invocation.
#[derive(Debug)]
pub struct CommandResult {
    /// The command line, for messages.
    pub command: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// Where its stdout went.
    pub stdout: PathBuf,
    /// Where its stderr went.
    pub stderr: PathBuf,
}

impl CommandResult {
    /// A failure description: command, status and stderr tail.
    pub fn failure(&self) -> String {
        format!(
            "`{}` {} after {:.2} s; last stderr lines:\n{}",
            self.command,
            self.status,
            self.elapsed.as_secs_f64(),
            tail(&self.stderr, 25)
        )
    }

    /// Full stderr text.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Runs a command with stdout/stderr to `<dir>/<label>.stdout|stderr` and a timeout.
pub fn run_logged(mut cmd: Command, dir: &Path, label: &str, timeout: Duration) -> Result<CommandResult> {
    let stdout = dir.join(format!("{label}.stdout"));
    let stderr = dir.join(format!("{label}.stderr"));
    let command = format!("{cmd:?}").replace('"', "");
    cmd.stdin(Stdio::null())
        .stdout(File::create(&stdout).with_context(|| format!("creating {}", stdout.display()))?)
        .stderr(File::create(&stderr).with_context(|| format!("creating {}", stderr.display()))?);
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawning `{command}`"))?;
    loop {
        if let Some(status) = child.try_wait().with_context(|| format!("waiting for `{command}`"))? {
            return Ok(CommandResult { command, status, elapsed: start.elapsed(), stdout, stderr });
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{command}` did not finish within {} s (killed); last stderr lines:\n{}",
                timeout.as_secs(),
                tail(&stderr, 25)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether every directory from `/` down to `dir` is root's and not writable by others.
fn trusted_ancestors(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    dir.ancestors().all(|d| std::fs::metadata(d).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0))
}

/// The runner: where binaries and run directories live.
#[derive(Debug)]
pub struct Harness {
    work_root: PathBuf,
    bin_dir: PathBuf,
    netns: Option<String>,
    _serial: MutexGuard<'static, ()>,
}

impl Harness {
    /// A runner keeping binaries in `<work_root>/bin` and one directory per run under
    /// `<work_root>`. Makes the process a subreaper, gives SIGINT, SIGQUIT, SIGTERM and SIGHUP
    /// their default action, and takes the process-wide runner lock.
    pub fn new(work_root: &Path) -> Result<Self> {
        let serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        become_subreaper()?;
        // Everything the tests start reacts to the interrupting signals as when started from a
        // terminal, even when the test run itself ignores some (a background job of a script).
        seamless_sys::signal::default_action(
            &[Signal::INT, Signal::QUIT, Signal::TERM, Signal::HUP].map(|s| s.as_raw()),
        )
        .context("resetting the interrupting signals to their default action")?;
        std::fs::create_dir_all(work_root).with_context(|| format!("creating {}", work_root.display()))?;
        Ok(Self { work_root: work_root.to_path_buf(), bin_dir: work_root.join("bin"), netns: None, _serial: serial })
    }

    /// Runs workloads, dumps and restores inside the named network namespace (made with
    /// `ip netns add`), through `nsenter --net`, which executes the program in place (same pid)
    /// and, unlike `ip netns exec`, keeps the mount namespace: the dump refuses processes whose
    /// namespaces differ from its own.
    pub fn in_netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_string());
        self
    }

    fn command(&self, program: &Path) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// The `seamless` binary (built on first use).
    pub fn seamless(&self) -> Result<PathBuf> {
        seamless_bin()
    }

    /// Builds (if needed) a workload binary.
    pub fn binary(&self, name: &str) -> Result<PathBuf> {
        workloads::build_named(name, &self.bin_dir)
    }

    /// Starts a workload in a fresh run directory; stdin is /dev/null, stdout and stderr go to
    /// files there.
    pub fn start(&self, name: &str, args: &[&str]) -> Result<Running> {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let binary = self.binary(name)?;
        let label = std::iter::once(name).chain(args.iter().copied()).collect::<Vec<_>>().join("-");
        let dir =
            self.work_root.join(format!("{label}-{}-{}", std::process::id(), RUN.fetch_add(1, Ordering::Relaxed)));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cleaning {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let outfile = dir.join("out");
        let stdout = dir.join("workload.stdout");
        let stderr = dir.join("workload.stderr");
        let child = self
            .command(&binary)
            .arg(&outfile)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout)?)
            .stderr(File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("starting workload {}", binary.display()))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        // Dropping a Child neither kills nor waits: all waiting goes through Running::reap.
        drop(child);
        Ok(Running { label, pid, dir, outfile, stderr, exits: HashMap::new(), known: Vec::new(), stopped: Vec::new() })
    }

    /// The image directory of a run: `<work_root>/images/<run>`, outside the run directory,
    /// which some workloads make world-writable (creds) and under which `seamless restore`
    /// would rightly refuse an image.
    ///
    /// `seamless restore` trusts an image only when no directory above it is writable by
    /// others: when the checkout itself lies below such a directory (a clone in `/tmp`), the
    /// images go to `/var/lib/seamless-tests/<work root>` instead.
    pub fn images_for(&self, run: &Running) -> PathBuf {
        let name = run.dir.file_name().unwrap_or_default();
        if trusted_ancestors(&self.work_root) {
            return self.work_root.join("images").join(name);
        }
        let flat: String = self.work_root.to_string_lossy().chars().map(|c| if c == '/' { '_' } else { c }).collect();
        let root = PathBuf::from("/var/lib/seamless-tests").join(flat);
        if std::fs::create_dir_all(&root).is_ok() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions("/var/lib/seamless-tests", std::fs::Permissions::from_mode(0o755));
        }
        root.join(name)
    }

    /// `seamless dump --tree PID --images DIR [--leave-running]`.
    pub fn dump(&self, run: &Running, images: &Path, leave_running: bool) -> Result<CommandResult> {
        self.dump_with(run, images, leave_running, &[])
    }

    /// [`Self::dump`] with extra `seamless dump` arguments (e.g. `--pre-copy`).
    pub fn dump_with(
        &self,
        run: &Running,
        images: &Path,
        leave_running: bool,
        extra: &[&str],
    ) -> Result<CommandResult> {
        let mut cmd = self.command(&self.seamless()?);
        cmd.arg("dump").arg("--tree").arg(run.pid.to_string()).arg("--images").arg(images).args(extra);
        if leave_running {
            cmd.arg("--leave-running");
        }
        run_logged(cmd, &run.dir, if leave_running { "dump-leave-running" } else { "dump" }, COMMAND_TIMEOUT)
    }

    /// `seamless dump --tree PID... --images DIR`: several trees into one image.
    pub fn dump_trees(&self, runs: &[&Running], images: &Path) -> Result<CommandResult> {
        let mut cmd = self.command(&self.seamless()?);
        cmd.arg("dump");
        for r in runs {
            cmd.arg("--tree").arg(r.pid.to_string());
        }
        cmd.arg("--images").arg(images);
        let dir = runs.first().map(|r| r.dir.clone()).unwrap_or_else(|| self.work_root.clone());
        run_logged(cmd, &dir, "dump", COMMAND_TIMEOUT)
    }

    /// `seamless restore --images DIR`.
    pub fn restore(&self, run: &Running, images: &Path, extra: &[&str]) -> Result<CommandResult> {
        let mut cmd = self.command(&self.seamless()?);
        cmd.arg("restore").arg("--images").arg(images).args(extra);
        run_logged(cmd, &run.dir, "restore", COMMAND_TIMEOUT)
    }

    /// The workload alone: READY, SIGTERM, PASS (validates the workload itself).
    pub fn self_test(&self, name: &str, args: &[&str]) -> Result<()> {
        let mut run = self.start(name, args)?;
        run.wait_ready(READY_TIMEOUT)?;
        run.terminate()?;
        run.wait_verdict(VERDICT_TIMEOUT)?;
        run.finish();
        Ok(())
    }

    /// Dump (killing the tree), check it is gone, restore, check every process is back, then
    /// SIGTERM the restored root and expect PASS.
    pub fn round_trip(&self, name: &str, args: &[&str]) -> Result<RoundTrip> {
        self.round_trip_with(name, args, &[])
    }

    /// [`Self::round_trip`] with extra `seamless restore` arguments (e.g.
    /// `--force-vdso-trampoline`, the cross-kernel vDSO path simulated on one kernel).
    pub fn round_trip_with(&self, name: &str, args: &[&str], restore_args: &[&str]) -> Result<RoundTrip> {
        Ok(self.round_trip_dumped_with(name, args, &[], restore_args)?.0)
    }

    /// [`Self::round_trip_with`] with extra `seamless dump` arguments too (e.g. `--pre-copy`);
    /// also returns the last lines the dump printed on stderr.
    pub fn round_trip_dumped_with(
        &self,
        name: &str,
        args: &[&str],
        dump_args: &[&str],
        restore_args: &[&str],
    ) -> Result<(RoundTrip, String)> {
        let mut run = self.start(name, args)?;
        run.wait_ready(READY_TIMEOUT)?;
        let pids = run.snapshot_tree();
        let images = self.images_for(&run);
        let dump = self.dump_with(&run, &images, false, dump_args)?;
        if !dump.status.success() {
            bail!("{}: dump of pid {} failed: {}", run.label, run.pid, dump.failure());
        }
        let entries = check_image(&images).with_context(|| {
            format!(
                "{}: dump exited 0 but the image is not usable; dump stderr:\n{}",
                run.label,
                tail(&dump.stderr, 10)
            )
        })?;
        run.expect_gone(&pids, GONE_TIMEOUT)?;
        let restore = self.restore(&run, &images, restore_args)?;
        if !restore.status.success() {
            bail!("{}: restore failed: {}", run.label, restore.failure());
        }
        let missing: Vec<i32> = pids.iter().copied().filter(|p| proc_stat(*p).is_none()).collect();
        if !missing.is_empty() {
            bail!(
                "{}: restore exited 0 but pids {missing:?} of the original tree {pids:?} do not exist; restore \
                 stderr:\n{}",
                run.label,
                tail(&restore.stderr, 25)
            );
        }
        run.snapshot_tree();
        run.terminate()?;
        run.wait_verdict(VERDICT_TIMEOUT).with_context(|| {
            format!(
                "after a dump ({:.2} s) and restore ({:.2} s)",
                dump.elapsed.as_secs_f64(),
                restore.elapsed.as_secs_f64()
            )
        })?;
        let _ = std::fs::remove_dir_all(&images);
        let dump_log = tail(&dump.stderr, 10);
        run.finish();
        Ok((RoundTrip { processes: pids.len(), entries, dump: dump.elapsed, restore: restore.elapsed }, dump_log))
    }

    /// Dump with `--leave-running`: the tree must keep running untraced, and still PASS.
    pub fn leave_running(&self, name: &str, args: &[&str]) -> Result<()> {
        let mut run = self.start(name, args)?;
        run.wait_ready(READY_TIMEOUT)?;
        let pids = run.snapshot_tree();
        let images = self.images_for(&run);
        let dump = self.dump(&run, &images, true)?;
        if !dump.status.success() {
            bail!("{}: dump --leave-running of pid {} failed: {}", run.label, run.pid, dump.failure());
        }
        check_image(&images)
            .with_context(|| format!("{}: dump --leave-running exited 0 but the image is not usable", run.label))?;
        run.expect_running_untraced(&pids)?;
        run.terminate()?;
        run.wait_verdict(VERDICT_TIMEOUT).context("after dump --leave-running")?;
        let _ = std::fs::remove_dir_all(&images);
        run.finish();
        Ok(())
    }

    /// `seamless check --pid PID` must fail the tree with a verdict naming the root pid and
    /// `needle` (case-insensitive), and leave the tree running untraced.
    pub fn expect_check_refused(&self, run: &mut Running, pids: &[i32], needle: &str) -> Result<String> {
        let mut cmd = Command::new(self.seamless()?);
        cmd.arg("check").arg("--pid").arg(run.pid.to_string());
        let check = run_logged(cmd, &run.dir, "check", COMMAND_TIMEOUT)?;
        let out = std::fs::read_to_string(&check.stdout).unwrap_or_default();
        let subject = format!("pid {}:", run.pid);
        let line = out
            .lines()
            .find(|l| {
                l.starts_with("FAIL") && l.contains(&subject) && l.to_lowercase().contains(&needle.to_lowercase())
            })
            .map(str::to_string);
        let mut problems = Vec::new();
        if check.status.success() {
            problems.push(format!("`{}` exited 0", check.command));
        }
        if line.is_none() {
            problems.push(format!("no FAIL verdict naming {subject:?} and {needle:?} in:\n{out}"));
        }
        if let Err(e) = run.expect_running_untraced(pids) {
            problems.push(format!("after `seamless check`: {e:#}"));
        }
        if !problems.is_empty() {
            bail!("{}: check refusal:\n- {}", run.label, problems.join("\n- "));
        }
        Ok(line.unwrap_or_default())
    }

    /// A dump that must be refused: `seamless check` fails the tree first
    /// ([`Self::expect_check_refused`]); then the dump exits non-zero with stderr naming the
    /// root's pid and `needle` (case-insensitive), leaves no complete image, and the tree runs
    /// on untraced and making progress (its heartbeat file `out.progress` keeps changing). Then
    /// the workload must still PASS.
    pub fn expect_refused(&self, name: &str, args: &[&str], needle: &str) -> Result<String> {
        self.expect_refused_by(name, args, needle, true)
    }

    /// [`Self::expect_refused`] for what only the dump can refuse (`check_refuses` false):
    /// `seamless check` must then not fail the tree on `needle` (e.g. waiting connections,
    /// which the dump gives the service time to accept first).
    pub fn expect_refused_by(&self, name: &str, args: &[&str], needle: &str, check_refuses: bool) -> Result<String> {
        let mut run = self.start(name, args)?;
        run.wait_ready(READY_TIMEOUT)?;
        let pids = run.snapshot_tree();
        if check_refuses {
            self.expect_check_refused(&mut run, &pids, needle)?;
        } else {
            let mut cmd = Command::new(self.seamless()?);
            cmd.arg("check").arg("--pid").arg(run.pid.to_string());
            let check = run_logged(cmd, &run.dir, "check", COMMAND_TIMEOUT)?;
            let out = std::fs::read_to_string(&check.stdout).unwrap_or_default();
            if out.lines().any(|l| l.starts_with("FAIL") && l.to_lowercase().contains(&needle.to_lowercase())) {
                bail!("{}: `seamless check` refused {needle:?}, which only the dump may refuse:\n{out}", run.label);
            }
            run.expect_running_untraced(&pids)?;
        }
        let images = self.images_for(&run);
        let dump = self.dump(&run, &images, false)?;
        let stderr = dump.stderr_text();
        if dump.status.success() {
            bail!(
                "{}: `{}` succeeded but must refuse ({needle}); stderr:\n{}",
                run.label,
                dump.command,
                tail(&dump.stderr, 10)
            );
        }
        // Everything below is checked even when an earlier check fails, so one run reports all
        // problems of the refusal.
        let mut problems = Vec::new();
        if !stderr.to_lowercase().contains(&needle.to_lowercase()) {
            problems.push(format!("the refusal does not name {needle:?}: {}", dump.failure()));
        }
        if !stderr.contains(&format!("pid {}:", run.pid)) {
            problems.push(format!("the refusal does not name pid {}: {}", run.pid, dump.failure()));
        }
        if images.exists() && check_image(&images).is_ok() {
            problems.push(format!("the refused dump left a complete image in {}", images.display()));
        }
        if let Err(e) = run.expect_running_untraced(&pids) {
            problems.push(format!("{e:#}"));
        }
        let progress = run.outfile.with_extension("progress");
        let read_beat = || -> Result<u64> {
            let mut buf = [0u8; 8];
            File::open(&progress)
                .and_then(|mut f| f.read_exact(&mut buf))
                .with_context(|| format!("reading heartbeat {}", progress.display()))?;
            Ok(u64::from_ne_bytes(buf))
        };
        match read_beat() {
            Ok(before) => {
                std::thread::sleep(Duration::from_millis(300));
                match read_beat() {
                    Ok(after) if after > before => {}
                    Ok(after) => problems.push(format!(
                        "after the refused dump the workload makes no progress (heartbeat {before} -> {after}): {}",
                        describe_process(run.pid)
                    )),
                    Err(e) => problems.push(format!("{e:#}")),
                }
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
        match run.terminate().and_then(|()| run.wait_verdict(VERDICT_TIMEOUT)) {
            Ok(()) => {}
            Err(e) => problems.push(format!("after the refused dump: {e:#}")),
        }
        run.finish();
        if !problems.is_empty() {
            bail!("{}: refusal checks failed:\n- {}", run.label, problems.join("\n- "));
        }
        Ok(stderr.trim().to_string())
    }
}

/// Numbers of one successful round trip.
#[derive(Debug, Clone, Copy)]
pub struct RoundTrip {
    /// Processes in the dumped tree.
    pub processes: usize,
    /// Index entries in the image.
    pub entries: usize,
    /// Wall time of `seamless dump`.
    pub dump: Duration,
    /// Wall time of `seamless restore`.
    pub restore: Duration,
}

/// Opens the image in `dir` like a restore would; returns its entry count.
pub fn check_image(dir: &Path) -> Result<usize> {
    let store =
        seamless_image::DirStore::open(dir).with_context(|| format!("opening image store {}", dir.display()))?;
    let reader = seamless_image::Reader::open(store).with_context(|| format!("reading image {}", dir.display()))?;
    Ok(reader.entries().len())
}

/// One started workload tree.
#[derive(Debug)]
pub struct Running {
    /// Workload name plus arguments (for messages and the run directory name).
    pub label: String,
    /// Pid of the workload's root process.
    pub pid: i32,
    /// The run directory (outfile, data files, logs, images).
    pub dir: PathBuf,
    /// The verdict file.
    pub outfile: PathBuf,
    stderr: PathBuf,
    exits: HashMap<i32, String>,
    /// (pid, starttime) of every process seen in the tree, to clean up without hitting reused pids.
    known: Vec<(i32, u64)>,
    /// Processes that were in a group stop (state `T`) when the tree was recorded: they must
    /// be stopped, not running, after `--leave-running` (workload `stopped`).
    stopped: Vec<i32>,
}

impl Running {
    /// Reaps every exited child without blocking, remembering exit statuses by pid.
    pub fn reap(&mut self) {
        // wait4(-1, ...) (waitpid(None) would be wait4(0): only our own process group); __WALL:
        // also children whose exit signal is not SIGCHLD.
        let options = WaitOptions::NOHANG | WaitOptions::from_bits_retain(0x4000_0000);
        while let Ok(Some((pid, status))) = rustix::process::wait(options) {
            self.exits.insert(pid.as_raw_nonzero().get(), describe_wait(status));
        }
    }

    fn diagnostics(&self) -> String {
        format!(
            "workload stderr (last lines):\n{}\nverdict file: {}",
            tail(&self.stderr, 15),
            std::fs::read_to_string(&self.outfile).unwrap_or_else(|_| "(none)".into()).trim()
        )
    }

    /// Waits for `<outfile>.ready`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let ready = self.outfile.with_extension("ready");
        let start = Instant::now();
        loop {
            if std::fs::read_to_string(&ready).is_ok_and(|t| t == "READY\n") {
                return Ok(());
            }
            self.reap();
            if let Some(status) = self.exits.get(&self.pid) {
                bail!("{}: workload exited ({status}) before READY; {}", self.label, self.diagnostics());
            }
            if start.elapsed() > timeout {
                bail!(
                    "{}: no READY within {} s: {}; {}",
                    self.label,
                    timeout.as_secs(),
                    describe_process(self.pid),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Records the current tree (pids and start times); returns the pids.
    pub fn snapshot_tree(&mut self) -> Vec<i32> {
        let pids = tree_pids(self.pid);
        for &p in &pids {
            if let Some((state, _, start)) = proc_stat(p) {
                if !self.known.contains(&(p, start)) {
                    self.known.push((p, start));
                }
                if state == 'T' && !self.stopped.contains(&p) {
                    self.stopped.push(p);
                }
            }
        }
        pids
    }

    /// Sends SIGTERM to the root.
    pub fn terminate(&self) -> Result<()> {
        signal(self.pid, Signal::TERM).with_context(|| format!("{}: {}", self.label, describe_process(self.pid)))
    }

    /// Waits for the verdict line and the root's exit; Ok only for PASS with exit code 0.
    pub fn wait_verdict(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            self.reap();
            let verdict = std::fs::read_to_string(&self.outfile).ok().filter(|t| t.ends_with('\n'));
            let exit = self.exits.get(&self.pid).cloned();
            match (verdict, exit) {
                (Some(v), Some(exit)) => {
                    let v = v.trim_end();
                    if v == "PASS" && exit == "exit code 0" {
                        return Ok(());
                    }
                    if let Some(reason) = v.strip_prefix("FAIL: ") {
                        bail!("{}: workload reports FAIL: {reason} ({exit})", self.label);
                    }
                    bail!("{}: verdict {v:?} with {exit}; {}", self.label, self.diagnostics());
                }
                (None, Some(exit)) => {
                    bail!("{}: workload root died ({exit}) without a verdict; {}", self.label, self.diagnostics());
                }
                _ => {}
            }
            if start.elapsed() > timeout {
                bail!(
                    "{}: no verdict within {} s after SIGTERM: {}; {}",
                    self.label,
                    timeout.as_secs(),
                    describe_process(self.pid),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// After a dump without `--leave-running`: every process of `pids` must disappear.
    pub fn expect_gone(&mut self, pids: &[i32], timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            self.reap();
            let left: Vec<i32> = pids.iter().copied().filter(|p| proc_stat(*p).is_some()).collect();
            if left.is_empty() {
                // The restored processes will have the same pids: forget the old exit statuses.
                for p in pids {
                    self.exits.remove(p);
                }
                return Ok(());
            }
            if start.elapsed() > timeout {
                let desc: Vec<String> = left.iter().map(|p| describe_process(*p)).collect();
                bail!(
                    "{}: {} s after the dump these processes still exist: {}",
                    self.label,
                    timeout.as_secs(),
                    desc.join("; ")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// After `--leave-running` or a refused dump: every process of `pids` exists with the same
    /// start time, is not stopped (or still stopped, if it was in a group stop before) and has
    /// no tracer (waits up to 2 s for a detach to settle).
    pub fn expect_running_untraced(&mut self, pids: &[i32]) -> Result<()> {
        let start = Instant::now();
        loop {
            self.reap();
            let mut problems = Vec::new();
            for &p in pids {
                match proc_stat(p) {
                    None => problems.push(format!("pid {p} is gone")),
                    Some((_, _, st)) if !self.known.contains(&(p, st)) => {
                        problems.push(format!("pid {p} is a different process now"))
                    }
                    Some((state, _, _)) => {
                        let tracer = proc_status(p, "TracerPid").unwrap_or_default();
                        let was_stopped = self.stopped.contains(&p);
                        if state == 't' || (state == 'T') != was_stopped || tracer != "0" {
                            problems.push(describe_process(p));
                        }
                    }
                }
            }
            if problems.is_empty() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(2) {
                bail!("{}: the tree is not running freely after the dump: {}", self.label, problems.join("; "));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends a run that passed: kills whatever is left of the tree (only processes recorded by
    /// [`Self::snapshot_tree`] or the root, never a reused pid), reaps, and removes the run's
    /// directory. A run dropped without `finish` keeps its directory for the post-mortem.
    pub fn finish(&mut self) {
        self.stop();
        // A run that got this far passed: its directory (outputs, partial images of an
        // interrupted dump) is only kept for runs that failed.
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Kills and reaps what is left of the tree, keeping its directory.
    fn stop(&mut self) {
        let mut known = self.known.clone();
        if let Some((_, _, st)) = proc_stat(self.pid) {
            if proc_stat(self.pid).is_some_and(|(_, ppid, _)| ppid == std::process::id() as i32) {
                known.push((self.pid, st));
            }
        }
        for (pid, start) in known {
            if proc_stat(pid).is_some_and(|(state, _, st)| st == start && state != 'Z') {
                let _ = signal(pid, Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        self.reap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
