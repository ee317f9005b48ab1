//! `mq_notify(3)` registrations on POSIX message queues.

use serde::{Deserialize, Serialize};

/// The registrations a process holds on POSIX message queues: stored under
/// [`super::MQ_NOTIFY`], owner = pid of the registered process (the kernel's notification
/// owner), at most one record per process. The restore registers each again from that process,
/// through its descriptor [`MqNotification::fd`] of the queue, once the queue holds its
/// messages again (a registration fires only when a message arrives in an empty queue). Not
/// `IGNORABLE`: a reader that skipped it would restore the queues without their registrations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MqNotify {
    /// One per queue, ascending by descriptor.
    pub regs: Vec<MqNotification>,
}

/// One registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqNotification {
    /// A descriptor of the queue in the process (a description of a POSIX message queue
    /// object of the image).
    pub fd: i32,
    /// `sigev_notify`: [`Self::SIGEV_SIGNAL`] or [`Self::SIGEV_NONE`].
    pub notify: i32,
    /// `sigev_signo` (for `SIGEV_SIGNAL`; 0 otherwise).
    pub signo: i32,
    /// `sigev_value` (the `si_value` the signal carries; 0 for `SIGEV_NONE`).
    pub value: u64,
}

impl MqNotification {
    /// `SIGEV_SIGNAL`.
    pub const SIGEV_SIGNAL: i32 = 0;
    /// `SIGEV_NONE`.
    pub const SIGEV_NONE: i32 = 1;
    /// Signals whose delivery stops, continues or kills the process: a registration for one of
    /// them is refused by the dump (firing it to read its value would act on the process).
    pub const REFUSED_SIGNALS: [i32; 7] = [9, 19, 18, 20, 21, 22, 0];
}
