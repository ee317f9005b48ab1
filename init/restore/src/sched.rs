//! Threads' scheduling attributes, set from outside on each thread id once the threads exist:
//! policy and real-time priority, nice value, CPU affinity (read back: a mask naming CPUs this
//! machine does not have fails the tree instead of running on fewer CPUs), I/O priority.

use crate::RestoreError;
use seamless_image::records::ThreadSched;

/// Sets the attributes of every thread of process `pid` that has a record.
pub fn restore(pid: i32, sched: &[ThreadSched]) -> Result<(), RestoreError> {
    for t in sched {
        let tid = t.tid;
        let err = |e| RestoreError::sys(pid, format!("scheduling attributes of thread {tid}"), e);
        // Validation proved policy and priority small (0..=5, 0..=99).
        let mut policy = t.policy.cast_signed();
        if t.reset_on_fork {
            policy |= seamless_sys::sched::RESET_ON_FORK;
        }
        seamless_sys::sched::set_scheduler(tid, policy, t.priority.cast_signed()).map_err(err)?;
        seamless_sys::sched::set_nice(tid, t.nice).map_err(err)?;
        if !t.affinity.is_empty() {
            seamless_sys::sched::set_affinity(tid, &t.affinity).map_err(err)?;
            let now = seamless_sys::sched::affinity(tid).map_err(err)?;
            let mut want = t.affinity.clone();
            while want.last() == Some(&0) {
                want.pop();
            }
            if now != want {
                return Err(RestoreError::Failed {
                    pid,
                    what: format!(
                        "thread {tid}: CPU affinity {want:x?} cannot be restored, the kernel gives {now:x?} (CPUs missing on this machine)"
                    ),
                });
            }
        }
        if t.ioprio != 0 {
            seamless_sys::sched::set_ioprio(tid, t.ioprio).map_err(err)?;
        }
    }
    Ok(())
}
