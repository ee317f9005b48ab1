//! Threads' scheduling attributes ([`seamless_image::records::ThreadSched`]): policy and
//! real-time priority (`SCHED_OTHER`, `SCHED_BATCH`, `SCHED_IDLE`, `SCHED_FIFO`, `SCHED_RR`,
//! with `SCHED_RESET_ON_FORK`), nice value, CPU affinity (when narrower than the dumper's;
//! otherwise the restored thread keeps the restorer's, as the original had the full set) and
//! I/O priority, each read from outside by thread id. Refused: `SCHED_DEADLINE` (its runtime,
//! deadline and period are not carried) and I/O priority hints.

use super::freeze::FrozenProc;
use super::DumpError;
use seamless_image::records::ThreadSched;
use seamless_sys::sched;

fn refuse(pid: i32, tid: i32, reason: String) -> DumpError {
    DumpError::Unsupported { pid, resource: format!("thread {tid} scheduling"), reason }
}

/// One thread's attributes.
fn read(pid: i32, tid: i32, own_affinity: &[u64]) -> Result<ThreadSched, DumpError> {
    let err = |e| DumpError::sys(pid, format!("scheduling attributes of thread {tid}"), e);
    let (policy, priority) = sched::scheduler(tid).map_err(err)?;
    let reset_on_fork = policy & sched::RESET_ON_FORK != 0;
    let policy = policy & !sched::RESET_ON_FORK;
    if !matches!(policy, 0 | 1 | 2 | 3 | 5) {
        return Err(refuse(
            pid,
            tid,
            format!("scheduling policy {policy} (SCHED_DEADLINE or unknown): its parameters are not checkpointed; only OTHER, BATCH, IDLE, FIFO and RR are"),
        ));
    }
    let nice = sched::nice(tid).map_err(err)?;
    let affinity = sched::affinity(tid).map_err(err)?;
    let affinity = if affinity == own_affinity { Vec::new() } else { affinity };
    let ioprio = sched::ioprio(tid).map_err(err)?;
    if ioprio & 0x1fff > 7 {
        return Err(refuse(
            pid,
            tid,
            format!("I/O priority {ioprio:#x} carries hints: only the class and level are checkpointed"),
        ));
    }
    Ok(ThreadSched {
        tid,
        policy: policy as u32,
        reset_on_fork,
        priority: priority.max(0) as u32,
        nice,
        affinity,
        ioprio,
    })
}

/// Refuses what [`thread_sched`] cannot carry (reads only; part of the pre-check).
pub fn precheck(pid: i32, tids: &[i32]) -> Result<(), DumpError> {
    let own = sched::affinity(0).map_err(|e| DumpError::sys(pid, "the dumper's CPU affinity", e))?;
    for &tid in tids {
        read(pid, tid, &own)?;
    }
    Ok(())
}

/// The records of the threads of `p` whose attributes are not those a restored thread has
/// anyway (SCHED_OTHER, no real-time priority, the process's nice value, the restorer's
/// affinity, no I/O priority).
pub fn thread_sched(p: &FrozenProc) -> Result<Vec<ThreadSched>, DumpError> {
    let own = sched::affinity(0).map_err(|e| DumpError::sys(p.pid, "the dumper's CPU affinity", e))?;
    let leader_nice = sched::nice(p.pid).map_err(|e| DumpError::sys(p.pid, "nice value", e))?;
    let mut out = Vec::new();
    for &tid in &p.tids {
        let t = read(p.pid, tid, &own)?;
        let plain = ThreadSched { tid, nice: leader_nice, ..ThreadSched::default() };
        if t != plain {
            out.push(t);
        }
    }
    Ok(out)
}
