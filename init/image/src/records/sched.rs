//! Scheduling attributes of one thread ([`super::THREAD_SCHED`], owner = pid, tag = tid):
//! policy and priority, nice value, CPU affinity, I/O priority.

use serde::{Deserialize, Serialize};

/// One thread's scheduling attributes, restored from outside (`sched_setscheduler`,
/// `setpriority`, `sched_setaffinity`, `ioprio_set` on the thread id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ThreadSched {
    /// Thread id.
    pub tid: i32,
    /// `SCHED_OTHER` (0), `SCHED_FIFO` (1), `SCHED_RR` (2), `SCHED_BATCH` (3) or `SCHED_IDLE`
    /// (5).
    pub policy: u32,
    /// `SCHED_RESET_ON_FORK`.
    pub reset_on_fork: bool,
    /// Real-time priority (1..=99 for FIFO and RR, else 0).
    pub priority: u32,
    /// Nice value (-20..=19).
    pub nice: i32,
    /// CPU affinity as a bit mask in 64-bit words (CPU n is bit n % 64 of word n / 64); empty
    /// when the thread may run on every CPU the dumper may (then it keeps the restorer's).
    pub affinity: Vec<u64>,
    /// `ioprio_get(IOPRIO_WHO_PROCESS, tid)` (class << 13 | data); 0 = none set.
    pub ioprio: u32,
}

impl ThreadSched {
    /// Highest CPU number + 1 an affinity mask may name (the kernel's `NR_CPUS` limit).
    pub const MAX_CPUS: usize = 8192;
}
