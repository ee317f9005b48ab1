//! Interrupting `seamless dump` (needs root): `cargo test -p seamless-tests --test interrupt --
//! --test-threads=1`. A 1 GiB workload with 4 busy threads (`big_mem OUT 1024 4`) is dumped
//! and a signal is sent to the `seamless` process the operator started (or, for `kill -9 of
//! everything`, to every `seamless` process, during the memory copy) at several moments of
//! the dump. Whatever the
//! signal and the moment, every process of the tree must run on, untraced, and the workload's
//! own verdict after SIGTERM must be PASS; no complete image may be left.

use anyhow::{bail, ensure, Context, Result};
use rustix::process::{kill_process, Pid, Signal};
use seamless_tests::host::{check_image, proc_stat, tail, Harness};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn harness() -> Result<Harness> {
    Harness::new(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host"))
}

/// Pids of live `seamless` processes whose parent is `parent`.
fn seamless_children(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            comm.trim() == "seamless" && proc_stat(p).is_some_and(|(state, ppid, _)| ppid == parent && state != 'Z')
        })
        .collect()
}

/// Whom the signal goes to.
#[derive(Debug, Clone, Copy)]
enum Victim {
    /// The process the operator started (the supervisor).
    Started,
    /// Every `seamless` process (as `pkill -x seamless` would).
    All,
}

/// When the signal is sent.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// `delay` after the start.
    AfterStart,
    /// `delay` after the dump started copying memory.
    CopyingMemory,
    /// `delay` after `dump --pre-copy` started copying memory while the tree runs (on a
    /// kernel without soft-dirty tracking with `SEAMLESS_PRE_COPY_UNTRACKED=1`, so that the
    /// passes run).
    PreCopying,
}

fn interrupt_dump(signal: Signal, delay_ms: u64, victim: Victim) -> Result<()> {
    interrupt_dump_at(signal, Moment::AfterStart, delay_ms, victim)
}

fn interrupt_dump_at(signal: Signal, moment: Moment, delay_ms: u64, victim: Victim) -> Result<()> {
    let h = harness()?;
    let mut run = h.start("big_mem", &["1024", "4"])?;
    run.wait_ready(Duration::from_secs(120))?;
    let pids = run.snapshot_tree();
    let images = run.dir.join("images");
    let stderr = run.dir.join(format!("dump-{signal:?}-{delay_ms}ms.stderr"));
    let pre_copy: &[&str] = if let Moment::PreCopying = moment { &["--pre-copy"] } else { &[] };
    let mut child = Command::new(h.seamless()?)
        .args(["dump", "--tree", &run.pid.to_string(), "--images"])
        .arg(&images)
        .args(pre_copy)
        .env("SEAMLESS_PRE_COPY_UNTRACKED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr)?)
        .spawn()
        .context("spawning seamless dump")?;
    let started = child.id() as i32;
    if let Moment::CopyingMemory | Moment::PreCopying = moment {
        // Wait until the image holds 64 MiB of pages: the memory copy, where no thread is in
        // the middle of an injected call.
        let img = images.join("region.img");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::metadata(&img).map(|m| m.len()).unwrap_or(0) < 64 << 20 {
            ensure!(Instant::now() < deadline, "the dump never reached the memory copy");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    let targets = match victim {
        Victim::Started => vec![started],
        Victim::All => {
            let mut v = vec![started];
            v.extend(seamless_children(started));
            v
        }
    };
    let finished_early = child.try_wait()?.is_some();
    for p in &targets {
        if let Some(pid) = Pid::from_raw(*p) {
            let _ = kill_process(pid, signal);
        }
    }
    let status = child.wait()?;
    // The worker may outlive the supervisor (after SIGKILL of the supervisor it rolls back
    // on its own; it is then our child, as we are a subreaper).
    let me = std::process::id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seamless_children(me).is_empty() || !seamless_children(started).is_empty() {
        if Instant::now() > deadline {
            bail!("a seamless worker is still running 60 s after the signal: {:?}", seamless_children(me));
        }
        run.reap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = tail(&stderr, 12);
    if finished_early || status.success() {
        bail!("the dump finished before the signal ({status}): the moment {delay_ms} ms is too late; stderr:\n{err}");
    }
    if images.exists() && check_image(&images).is_ok() {
        bail!("the interrupted dump left a complete image in {}; stderr:\n{err}", images.display());
    }
    run.expect_running_untraced(&pids).with_context(|| format!("after the signal; dump stderr:\n{err}"))?;
    run.terminate()?;
    run.wait_verdict(Duration::from_secs(60)).with_context(|| format!("after the signal; dump stderr:\n{err}"))?;
    eprintln!(
        "{signal:?} at {moment:?} + {delay_ms} ms to {victim:?}: {status}; tree running and PASS; dump said:\n{err}"
    );
    run.finish();
    Ok(())
}

#[test]
fn sigint_early() -> Result<()> {
    interrupt_dump(Signal::INT, 30, Victim::Started)
}

#[test]
fn sigint_during_memory() -> Result<()> {
    interrupt_dump(Signal::INT, 300, Victim::Started)
}

#[test]
fn sigterm_during_memory() -> Result<()> {
    interrupt_dump(Signal::TERM, 200, Victim::Started)
}

#[test]
fn sighup_to_everything() -> Result<()> {
    interrupt_dump(Signal::HUP, 150, Victim::All)
}

#[test]
fn sigkill_early() -> Result<()> {
    interrupt_dump(Signal::KILL, 30, Victim::Started)
}

#[test]
fn sigkill_during_memory() -> Result<()> {
    interrupt_dump(Signal::KILL, 300, Victim::Started)
}

/// SIGKILL of every seamless process, the worker too, while memory is copied. (A worker
/// killed in the middle of an injected system call, a window of a few milliseconds per
/// process early in the dump, leaves that thread in the injected call: see the README.)
#[test]
fn sigkill_everything_while_copying_memory() -> Result<()> {
    interrupt_dump_at(Signal::KILL, Moment::CopyingMemory, 0, Victim::All)
}

#[test]
fn sigkill_everything_later_in_the_copy() -> Result<()> {
    interrupt_dump_at(Signal::KILL, Moment::CopyingMemory, 150, Victim::All)
}

/// SIGINT while `dump --pre-copy` copies memory with the tree running: nothing to put back
/// but the pauses; the tree keeps running untraced.
#[test]
fn sigint_during_pre_copy() -> Result<()> {
    interrupt_dump_at(Signal::INT, Moment::PreCopying, 0, Victim::Started)
}

/// SIGTERM later in the passes (the second pass, its pause or the frozen dump, by timing).
#[test]
fn sigterm_later_in_pre_copy() -> Result<()> {
    interrupt_dump_at(Signal::TERM, Moment::PreCopying, 700, Victim::Started)
}

/// SIGKILL of every seamless process during pre-copy.
#[test]
fn sigkill_everything_during_pre_copy() -> Result<()> {
    interrupt_dump_at(Signal::KILL, Moment::PreCopying, 0, Victim::All)
}

/// SIGKILL of every seamless process later in the passes.
#[test]
fn sigkill_everything_later_in_pre_copy() -> Result<()> {
    interrupt_dump_at(Signal::KILL, Moment::PreCopying, 700, Victim::All)
}
