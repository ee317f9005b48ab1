//! Per-process records: identity and tree position, credentials, mm fields, signal
//! dispositions, limits; plus the image-wide tree record.

use serde::{Deserialize, Serialize};

/// Image-wide list of the dumped trees (owner 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TreeRecord {
    /// The pids given to `dump`, i.e. the roots of the trees.
    pub roots: Vec<i32>,
    /// Every dumped process, parents before children.
    pub pids: Vec<i32>,
    /// Kernel release the image was taken on.
    pub kernel_release: String,
}

/// Whether the process was alive or a zombie waiting for its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ProcState {
    /// Running or sleeping; fully dumped.
    #[default]
    Alive,
    /// A zombie with this raw wait status (as `waitpid` would report it).
    Zombie {
        /// Raw wait status.
        status: i32,
    },
}

/// Real, effective, saved and filesystem ids plus groups and capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Creds {
    /// uid: real, effective, saved, fs.
    pub uids: [u32; 4],
    /// gid: real, effective, saved, fs.
    pub gids: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective capabilities.
    pub cap_eff: u64,
    /// Permitted capabilities.
    pub cap_prm: u64,
    /// Inheritable capabilities.
    pub cap_inh: u64,
    /// Bounding set.
    pub cap_bnd: u64,
    /// Ambient set.
    pub cap_amb: u64,
    /// Securebits (`PR_GET_SECUREBITS`), if read.
    pub securebits: Option<u32>,
    /// `no_new_privs`.
    pub no_new_privs: bool,
}

/// Memory-layout fields of the mm (`/proc/PID/stat` fields 26-28, 45-51), as `PR_SET_MM_MAP`
/// takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MmFields {
    /// Start of the text.
    pub start_code: u64,
    /// End of the text.
    pub end_code: u64,
    /// Start of initialised data.
    pub start_data: u64,
    /// End of initialised data.
    pub end_data: u64,
    /// Start of the heap.
    pub start_brk: u64,
    /// Current program break.
    pub brk: u64,
    /// Bottom of the main stack (as recorded at exec).
    pub start_stack: u64,
    /// argv area start.
    pub arg_start: u64,
    /// argv area end.
    pub arg_end: u64,
    /// environment area start.
    pub env_start: u64,
    /// environment area end.
    pub env_end: u64,
}

/// One signal's disposition (`struct sigaction` as the kernel's `rt_sigaction` sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SigAction {
    /// Signal number.
    pub sig: u8,
    /// Handler address (0 = SIG_DFL, 1 = SIG_IGN).
    pub handler: u64,
    /// SA_* flags.
    pub flags: u64,
    /// Restorer trampoline.
    pub restorer: u64,
    /// Mask during the handler.
    pub mask: u64,
}

/// An interval timer (`getitimer`), microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ITimer {
    /// Which (ITIMER_REAL = 0, VIRTUAL = 1, PROF = 2).
    pub which: u8,
    /// Interval, microseconds.
    pub interval_us: u64,
    /// Time to the next expiry, microseconds.
    pub value_us: u64,
}

/// A POSIX timer (`timer_create`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PosixTimer {
    /// Timer id as the process knows it.
    pub id: i32,
    /// Clock id.
    pub clock: i32,
    /// Signal sent on expiry.
    pub signo: i32,
    /// SIGEV_SIGNAL (0), SIGEV_NONE (1) or SIGEV_THREAD_ID (4).
    pub notify: i32,
    /// Thread for SIGEV_THREAD_ID.
    pub tid: i32,
    /// sigev_value.
    pub value: u64,
    /// Interval, nanoseconds.
    pub interval_ns: u64,
    /// Time to the next expiry, nanoseconds (0 = disarmed).
    pub next_ns: u64,
}

/// One process: stored under [`super::PROCESS`], owner = pid. The default is a live process
/// with every field empty or zero, for building records field by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessRecord {
    /// Process id.
    pub pid: i32,
    /// Parent process id (as seen at dump time).
    pub ppid: i32,
    /// Process group.
    pub pgid: i32,
    /// Session.
    pub sid: i32,
    /// `comm`.
    pub comm: String,
    /// Alive or zombie.
    pub state: ProcState,
    /// Thread ids, the thread-group leader first.
    pub tids: Vec<i32>,
    /// Credentials.
    pub creds: Creds,
    /// umask.
    pub umask: u32,
    /// Working directory.
    pub cwd: String,
    /// Root directory.
    pub root: String,
    /// Executable path (`/proc/PID/exe`).
    pub exe: String,
    /// mm layout fields.
    pub mm: MmFields,
    /// The auxiliary vector (pairs of words, AT_NULL terminated).
    pub auxv: Vec<u64>,
    /// Resource limits, indexed by RLIMIT_* number: (soft, hard).
    pub rlimits: Vec<(u64, u64)>,
    /// `personality(0xffffffff)`.
    pub personality: u32,
    /// Dispositions of signals 1..=64 that are not SIG_DFL with no flags.
    pub sigactions: Vec<SigAction>,
    /// Process-wide pending signals, raw 128-byte siginfos.
    pub shared_pending: Vec<Vec<u8>>,
    /// Interval timers that are armed.
    pub itimers: Vec<ITimer>,
    /// `PR_GET_DUMPABLE`.
    pub dumpable: u32,
    /// `PR_GET_CHILD_SUBREAPER`.
    pub child_subreaper: bool,
    /// `PR_GET_PDEATHSIG`.
    pub pdeath_signal: u32,
    /// Signal sent to the parent at exit (field 38 of stat).
    pub exit_signal: i32,
    /// POSIX timers.
    pub posix_timers: Vec<PosixTimer>,
    /// Nice value (field 19 of stat).
    pub nice: i32,
}

/// Per-process memory-management settings ([`super::SETTINGS`], owner = pid): kept in a
/// record kind of their own (added after format 1's first release), so that an older reader
/// refuses an image that has them instead of silently dropping them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessSettings {
    /// `/proc/PID/oom_score_adj` (-1000..=1000).
    pub oom_score_adj: i32,
    /// Transparent huge pages disabled with `PR_SET_THP_DISABLE` (`THP_enabled: 0`).
    pub thp_disabled: bool,
}

/// A process that was stopped by a stop signal (group stop) when it was dumped: stored under
/// [`super::JOB_STOP`], owner = pid, at most one per live process. Not ignorable: a reader
/// without it would let the process run. The restore stops it again before it runs any
/// instruction (with SIGSTOP, the one stop signal that always stops).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JobStop {
    /// The signal that stopped it: SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU.
    pub signal: i32,
}
