//! Scheduling attributes of a thread, read and set from outside by thread id: policy and
//! real-time priority, nice value, CPU affinity, I/O priority.

use crate::error::check;
use crate::SysResult;

/// `SCHED_RESET_ON_FORK`, or-ed into the policy.
pub const RESET_ON_FORK: i32 = 0x4000_0000;

/// Words of the affinity masks read and written here (8192 CPUs, the kernel's largest
/// `NR_CPUS`).
const MASK_WORDS: usize = 128;

/// The policy of thread `tid` (with [`RESET_ON_FORK`] or-ed in when set) and its real-time
/// priority.
///
/// Man page: `sched_getscheduler(2)`, `sched_getparam(2)`.
pub fn scheduler(tid: i32) -> SysResult<(i32, i32)> {
    // SAFETY: takes a thread id, touches no memory.
    let policy = unsafe { libc::syscall(libc::SYS_sched_getscheduler, tid) };
    let policy = check(policy, "sched_getscheduler", || format!("tid {tid}"))?;
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, writable sched_param.
    let r = unsafe { libc::syscall(libc::SYS_sched_getparam, tid, &mut param as *mut libc::sched_param) };
    check(r, "sched_getparam", || format!("tid {tid}"))?;
    Ok((policy as i32, param.sched_priority))
}

/// Sets the policy (with [`RESET_ON_FORK`] or-ed in when wanted) and real-time priority of
/// thread `tid`.
///
/// Man page: `sched_setscheduler(2)`.
pub fn set_scheduler(tid: i32, policy: i32, priority: i32) -> SysResult<()> {
    let param = libc::sched_param { sched_priority: priority };
    // SAFETY: `param` is a valid sched_param, only read by the kernel.
    let r = unsafe { libc::syscall(libc::SYS_sched_setscheduler, tid, policy, &param as *const libc::sched_param) };
    check(r, "sched_setscheduler", || format!("tid {tid} policy {policy:#x} priority {priority}")).map(|_| ())
}

/// The nice value of thread `tid`.
///
/// Man page: `getpriority(2)` (the raw system call returns 20 - nice).
pub fn nice(tid: i32) -> SysResult<i32> {
    // SAFETY: scalar arguments only.
    let r = unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, tid) };
    let r = check(r, "getpriority", || format!("tid {tid}"))?;
    Ok(20 - r as i32)
}

/// Sets the nice value of thread `tid`.
///
/// Man page: `setpriority(2)`.
pub fn set_nice(tid: i32, nice: i32) -> SysResult<()> {
    // SAFETY: scalar arguments only.
    let r = unsafe { libc::syscall(libc::SYS_setpriority, libc::PRIO_PROCESS, tid, nice) };
    check(r, "setpriority", || format!("tid {tid} nice {nice}")).map(|_| ())
}

/// The CPU affinity of thread `tid` as 64-bit words (bit n % 64 of word n / 64 is CPU n),
/// without trailing zero words.
///
/// Man page: `sched_getaffinity(2)`.
pub fn affinity(tid: i32) -> SysResult<Vec<u64>> {
    let mut mask = vec![0u64; MASK_WORDS];
    // SAFETY: `mask` is writable for MASK_WORDS * 8 bytes, the length passed.
    let r = unsafe { libc::syscall(libc::SYS_sched_getaffinity, tid, MASK_WORDS * 8, mask.as_mut_ptr()) };
    check(r, "sched_getaffinity", || format!("tid {tid}"))?;
    while mask.last() == Some(&0) {
        mask.pop();
    }
    Ok(mask)
}

/// Sets the CPU affinity of thread `tid` (words as [`affinity`] returns them).
///
/// Man page: `sched_setaffinity(2)`.
pub fn set_affinity(tid: i32, mask: &[u64]) -> SysResult<()> {
    // SAFETY: `mask` is readable for its length in bytes, the length passed.
    let r = unsafe { libc::syscall(libc::SYS_sched_setaffinity, tid, std::mem::size_of_val(mask), mask.as_ptr()) };
    check(r, "sched_setaffinity", || format!("tid {tid} mask {mask:x?}")).map(|_| ())
}

const IOPRIO_WHO_PROCESS: i32 = 1;

/// The I/O priority of thread `tid` (class << 13 | data).
///
/// Man page: `ioprio_get(2)`.
pub fn ioprio(tid: i32) -> SysResult<u32> {
    // SAFETY: scalar arguments only.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid) };
    check(r, "ioprio_get", || format!("tid {tid}")).map(|v| v as u32)
}

/// Sets the I/O priority of thread `tid`.
///
/// Man page: `ioprio_set(2)`.
pub fn set_ioprio(tid: i32, ioprio: u32) -> SysResult<()> {
    // SAFETY: scalar arguments only.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid, ioprio) };
    check(r, "ioprio_set", || format!("tid {tid} ioprio {ioprio:#x}")).map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_attributes() {
        let tid = crate::proc::own_pid();
        let (policy, prio) = super::scheduler(tid).unwrap();
        assert_eq!((policy & !super::RESET_ON_FORK, prio), (libc::SCHED_OTHER, 0));
        assert!((-20..=19).contains(&super::nice(tid).unwrap()));
        let mask = super::affinity(tid).unwrap();
        assert!(mask.iter().any(|w| *w != 0));
        super::set_affinity(tid, &mask).unwrap();
        assert_eq!(super::affinity(tid).unwrap(), mask);
        super::ioprio(tid).unwrap();
    }
}
