//! Recreating the process tree with the original pids: the restorer forks the root with
//! `clone3(set_tid)`; each forked helper sets up its session/group, forks its own children the
//! same way (zombies exit at once with their saved status), reports ready on a pipe and
//! waits in `pause()` until the restorer seizes it and rebuilds it by syscall injection.

use crate::plan::Plan;
use crate::RestoreError;
use seamless_sys::chain;
use seamless_sys::proc::{self, Forked};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// Live pids that reported ready, and pids that could not be created with the reason.
pub type Created = (Vec<i32>, Vec<(i32, String)>);

/// Forks every process of the plan but the trees rooted in `skip` (given up already).
/// Returns the live pids that reported ready and the pids that could not be created (with
/// the reason).
///
/// A session leader whose session had a pty as controlling terminal takes it (`ttys`: our
/// slave descriptor by session) right after `setsid`, before it forks anything: every process
/// of the session inherits it from there, as each did from its parent originally.
pub fn create_tree(plan: &Plan, skip: &[i32], ttys: &BTreeMap<i32, i32>) -> Result<Created, RestoreError> {
    let (r, w) = proc::pipe().map_err(|e| RestoreError::sys(0, "ready pipe", e))?;
    let mut rf = std::fs::File::from(r);
    let wf = std::fs::File::from(w);
    let mut failed = Vec::new();
    let roots: Vec<i32> = plan.roots().into_iter().filter(|r| !skip.contains(r)).collect();
    // Every process reports once on the pipe: a live one when it is ready, a zombie just
    // before it exits; a negative pid for one that could not be created as it was.
    let mut expected = 0usize;
    let mut stack = roots.clone();
    while let Some(p) = stack.pop() {
        // Children forked from their restored parent (crate::cow) are not made here.
        if plan.procs.contains_key(&p) && !crate::cow::forked_from_parent(plan, p) {
            expected += 1;
        }
        stack.extend(plan.children_of(p));
    }
    // Tree roots become children of whoever runs the restore (a shell, a test runner), as
    // they were of their original parent; as PID 1 (seamless-init) they are its own children
    // and stay with the real init it executes.
    let sibling = std::process::id() != 1;
    for root in roots {
        // A just-killed original may still be a zombie for a moment: retry briefly.
        let mut forked = proc::fork_with_pid_as(root, sibling);
        for _ in 0..40 {
            match &forked {
                Err(e) if e.errno() == Some(libc::EEXIST) => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    forked = proc::fork_with_pid_as(root, sibling);
                }
                _ => break,
            }
        }
        match forked {
            Ok(Forked::Child) => helper(plan, root, &wf, ttys),
            Ok(Forked::Parent(_)) => {}
            Err(e) => {
                // The whole subtree is lost.
                let mut stack = vec![root];
                while let Some(p) = stack.pop() {
                    if plan.procs.contains_key(&p) && !crate::cow::forked_from_parent(plan, p) {
                        expected = expected.saturating_sub(1);
                    }
                    failed.push((p, format!("cannot create pid {root} (root of its subtree): {}", chain(&e))));
                    stack.extend(plan.children_of(p));
                }
            }
        }
    }
    drop(wf);
    let mut ready = Vec::new();
    let mut zombies = 0usize;
    let mut buf = [0u8; 4];
    while ready.len() + zombies < expected {
        if rf.read_exact(&mut buf).is_err() {
            break;
        }
        let v = i32::from_le_bytes(buf);
        if v > 0 && plan.procs.get(&v).is_some_and(|x| x.is_zombie()) {
            zombies += 1;
        } else if v > 0 {
            ready.push(v);
        } else {
            let pid = -v;
            let mut stack = vec![pid];
            while let Some(p) = stack.pop() {
                if plan.procs.contains_key(&p) && !crate::cow::forked_from_parent(plan, p) {
                    expected = expected.saturating_sub(1);
                }
                failed.push((
                    p,
                    format!("cannot create pid {pid}: pid in use, clone3 refused, or (a zombie) its process group or session cannot be joined again"),
                ));
                stack.extend(plan.children_of(p));
            }
        }
    }
    Ok((ready, failed))
}

/// Runs in a freshly forked process that must become `pid`.
fn helper(plan: &Plan, pid: i32, ready: &std::fs::File, ttys: &BTreeMap<i32, i32>) -> ! {
    let Some(p) = plan.procs.get(&pid) else { proc::exit_now(1) };
    if p.rec.sid == pid {
        let _ = proc::setsid();
        // Checked later: the foreground group is set through it (`crate::tty::take_terminal`).
        if let Some(&fd) = ttys.get(&pid) {
            let _ = seamless_sys::tty::make_controlling(fd);
        }
    } else if p.rec.pgid == pid {
        let _ = proc::setpgid(0, 0);
    }
    if let seamless_image::records::ProcState::Zombie { status } = p.rec.state {
        // A zombie keeps the group and session it had: it joins its group before it exits.
        // A group of the image's processes is forked concurrently, so it waits up to 5 s for
        // it to exist and is reported failed (not left wrong) without it; a group outside the
        // image is tried once, as for live processes (`lib.rs`).
        let want = (p.rec.pgid, p.rec.sid);
        let ours = plan.procs.values().any(|q| q.rec.pgid == want.0 && q.rec.pid != pid);
        for _ in 0..if ours { 500 } else { 1 } {
            if proc::own_group_and_session().0 == want.0 || proc::join_group(want.0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if ours && proc::own_group_and_session() != want {
            let mut w = ready;
            let _ = w.write_all(&(-pid).to_le_bytes());
            proc::exit_now(1);
        }
        let mut w = ready;
        let _ = w.write_all(&pid.to_le_bytes());
        if status & 0x7f == 0 {
            proc::exit_now((status >> 8) & 0xff);
        }
        let sig = status & 0x7f;
        let _ = proc::default_signal(sig);
        let _ = proc::kill(pid, sig);
        proc::exit_now(128 + sig);
    }
    let mut w = ready;
    for c in plan.children_of(pid).into_iter().filter(|&c| !crate::cow::forked_from_parent(plan, c)) {
        match proc::fork_with_pid(c) {
            Ok(Forked::Child) => helper(plan, c, ready, ttys),
            Ok(Forked::Parent(_)) => {}
            Err(_) => {
                let _ = w.write_all(&(-c).to_le_bytes());
            }
        }
    }
    let _ = w.write_all(&pid.to_le_bytes());
    let _ = proc::close_from(0);
    loop {
        proc::pause();
    }
}
