//! Kernel ABI structures that injected system calls take by pointer, built as bytes for the
//! tracee (x86-64 layout, little endian). Each builder names the C structure and the man page
//! that documents it, so no call site spells out a layout by hand.

/// A C `int` (a descriptor, pid, signal, flag word, clock) in a system call's argument
/// register: sign-extended to 64 bits as the C calling convention does; the kernel reads the
/// low 32 bits.
#[allow(clippy::cast_sign_loss)]
pub const fn int(v: i32) -> u64 {
    v as i64 as u64
}

/// The bits of a C `int` as unsigned (how the image stores flag words).
pub const fn bits(v: i32) -> u32 {
    u32::from_ne_bytes(v.to_ne_bytes())
}

/// A flag word of the image (stored unsigned) as the C `int` the kernel takes.
pub const fn signed(v: u32) -> i32 {
    i32::from_ne_bytes(v.to_ne_bytes())
}

/// `_LINUX_CAPABILITY_VERSION_3` (`<linux/capability.h>`): 64-bit capability sets as two
/// 32-bit data words each.
pub const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct { __u32 version; int pid; }` for `capset(2)`, naming the
/// calling thread (pid 0).
pub fn cap_header() -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&CAPABILITY_VERSION_3.to_le_bytes());
    h
}

/// The two `struct __user_cap_data_struct { effective, permitted, inheritable }` of
/// `capset(2)` with version 3: low 32 bits of each set first, then the high 32 bits.
pub fn cap_data(effective: u64, permitted: u64, inheritable: u64) -> [u8; 24] {
    let mut d = [0u8; 24];
    let words = [effective, permitted, inheritable, effective >> 32, permitted >> 32, inheritable >> 32];
    for (slot, w) in d.chunks_exact_mut(4).zip(words) {
        // The low 32 bits, little endian.
        slot.copy_from_slice(&w.to_le_bytes()[..4]);
    }
    d
}

/// `CLONE_ARGS_SIZE_VER2`: `struct clone_args` up to and including `cgroup` (`clone3(2)`).
pub const CLONE_ARGS_SIZE: u64 = 88;

/// `struct clone_args` of `clone3(2)`, as its eleven 64-bit fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneArgs {
    /// `CLONE_*` flags.
    pub flags: u64,
    /// Where to store a pidfd (`CLONE_PIDFD`).
    pub pidfd: u64,
    /// `CLONE_CHILD_SETTID` / `CLONE_CHILD_CLEARTID` address.
    pub child_tid: u64,
    /// `CLONE_PARENT_SETTID` address.
    pub parent_tid: u64,
    /// Signal sent to the parent on exit.
    pub exit_signal: u64,
    /// Lowest byte of the stack.
    pub stack: u64,
    /// Stack size.
    pub stack_size: u64,
    /// `CLONE_SETTLS` value.
    pub tls: u64,
    /// Address of the `pid_t` array of wanted ids, one per pid namespace level.
    pub set_tid: u64,
    /// Entries in `set_tid`.
    pub set_tid_size: u64,
    /// `CLONE_INTO_CGROUP` descriptor.
    pub cgroup: u64,
}

impl CloneArgs {
    /// The structure as the kernel reads it.
    pub fn words(&self) -> [u64; 11] {
        [
            self.flags,
            self.pidfd,
            self.child_tid,
            self.parent_tid,
            self.exit_signal,
            self.stack,
            self.stack_size,
            self.tls,
            self.set_tid,
            self.set_tid_size,
            self.cgroup,
        ]
    }
}

/// `sizeof(struct epoll_event)` on x86-64, where the structure is packed.
pub const EPOLL_EVENT_SIZE: usize = 12;

/// `struct epoll_event { __u32 events; __u64 data; }` (packed on x86-64; `epoll_ctl(2)`).
pub fn epoll_event(events: u32, data: u64) -> [u8; EPOLL_EVENT_SIZE] {
    let mut e = [0u8; EPOLL_EVENT_SIZE];
    e[..4].copy_from_slice(&events.to_le_bytes());
    e[4..].copy_from_slice(&data.to_le_bytes());
    e
}

/// `sizeof(struct prctl_mm_map)` (`<linux/prctl.h>`): eleven addresses, the auxv pointer,
/// the auxv size and the exe descriptor as two 32-bit words.
pub const PRCTL_MM_MAP_SIZE: u64 = 104;

/// `struct prctl_mm_map` for `prctl(PR_SET_MM, PR_SET_MM_MAP)` (`PR_SET_MM(2const)`):
/// `fields` are start_code, end_code, start_data, end_data, start_brk, brk, start_stack,
/// arg_start, arg_end, env_start, env_end.
pub fn prctl_mm_map(fields: [u64; 11], auxv: u64, auxv_size: u32, exe_fd: u32) -> [u64; 13] {
    let mut w = [0u64; 13];
    w[..11].copy_from_slice(&fields);
    w[11] = auxv;
    w[12] = u64::from(auxv_size) | (u64::from(exe_fd) << 32);
    w
}

/// An upper bound of the auxiliary vector `PR_SET_MM_MAP` takes, in 64-bit words: the kernel
/// refuses one longer than its `saved_auxv`, which holds less than this.
pub const AUXV_MAX_WORDS: usize = 2 * 46;

/// `sizeof(sigset_t)` as the kernel's `rt_sig*` calls take it (64 signals).
pub const KERNEL_SIGSET_SIZE: u64 = 8;

/// The kernel's `struct sigaction` for `rt_sigaction(2)`: handler, flags, restorer, mask.
pub fn kernel_sigaction(handler: u64, flags: u64, restorer: u64, mask: u64) -> [u64; 4] {
    [handler, flags, restorer, mask]
}

/// `stack_t { void *ss_sp; int ss_flags; size_t ss_size; }` for `sigaltstack(2)` (the flags
/// word padded to 64 bits).
pub fn stack_t(sp: u64, flags: i32, size: u64) -> [u64; 3] {
    [sp, u64::from(bits(flags)), size]
}

/// `struct itimerval` (`setitimer(2)`) or `struct itimerspec` (`timer_settime(2)`): interval
/// then value, each as seconds and a sub-second part of `unit` per second (1e6 for
/// microseconds, 1e9 for nanoseconds).
pub fn interval_value(interval: u64, value: u64, unit: u64) -> [u64; 4] {
    [interval / unit, interval % unit, value / unit, value % unit]
}

/// `sizeof(struct sigevent)` on x86-64 (`sigevent(3type)`).
pub const SIGEVENT_SIZE: usize = 64;

/// `struct sigevent` for `timer_create(2)`: `sigev_value`, `sigev_signo`, `sigev_notify`
/// and the thread id of `SIGEV_THREAD_ID`, the rest zero.
pub fn sigevent(value: u64, signo: i32, notify: i32, tid: i32) -> [u8; SIGEVENT_SIZE] {
    let mut ev = [0u8; SIGEVENT_SIZE];
    ev[0..8].copy_from_slice(&value.to_le_bytes());
    ev[8..12].copy_from_slice(&signo.to_le_bytes());
    ev[12..16].copy_from_slice(&notify.to_le_bytes());
    ev[16..20].copy_from_slice(&tid.to_le_bytes());
    ev
}

/// Words as the little-endian bytes the tracee reads.
pub fn word_bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capset_header_and_data_layout() {
        // The bytes the restorer used to spell out by hand: version 3, pid 0.
        assert_eq!(cap_header(), [0x22, 0x05, 0x08, 0x20, 0, 0, 0, 0]);
        let d = cap_data(0x1_0000_0002, 0x3, 0x4_0000_0000);
        let w: Vec<u32> = d.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(w, [2, 3, 0, 1, 0, 4]);
    }

    #[test]
    fn struct_sizes_match_the_kernel() {
        assert_eq!(CloneArgs::default().words().len() as u64 * 8, CLONE_ARGS_SIZE);
        assert_eq!(prctl_mm_map([0; 11], 0, 0, 0).len() as u64 * 8, PRCTL_MM_MAP_SIZE);
        assert_eq!(epoll_event(1, 2)[4..], 2u64.to_le_bytes());
        assert_eq!(std::mem::size_of::<libc::epoll_event>(), EPOLL_EVENT_SIZE);
        assert_eq!(std::mem::size_of::<libc::sigevent>(), SIGEVENT_SIZE);
        assert_eq!(std::mem::size_of::<libc::stack_t>(), stack_t(0, 0, 0).len() * 8);
        assert_eq!(std::mem::size_of::<libc::itimerspec>(), 32);
        assert_eq!(prctl_mm_map([0; 11], 7, 16, 5)[12], 16 | 5 << 32);
    }
}
