//! fanotify groups and the other anonymous-inode files that are not checkpointed: each is
//! refused with what it holds, as `/proc/PID/fdinfo` shows it (a fanotify group's init and
//! event flags, its marks by kind, permission events, queued events), so that the operator
//! sees why it cannot come back exactly.
//!
//! A fanotify group is not recreated: its inode marks could be placed again from their file
//! handles, but its mount marks name mount ids of the dumping kernel, permission events that
//! were read and not answered yet are not shown anywhere (a group with permission marks may
//! hold some), and queued events cannot be read without consuming them.

use super::DumpError;

/// What a fanotify group's fdinfo shows.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// `fanotify flags:` (the `fanotify_init` flags).
    pub flags: u32,
    /// `event-flags:` (the event files' open flags).
    pub event_flags: u32,
    /// Marks on inodes, mounts and filesystems.
    pub marks: [usize; 3],
    /// Some mark's mask holds permission events (`FAN_OPEN_PERM`, `FAN_ACCESS_PERM`,
    /// `FAN_OPEN_EXEC_PERM`).
    pub permission: bool,
}

/// `FAN_OPEN_PERM | FAN_ACCESS_PERM | FAN_OPEN_EXEC_PERM`.
const PERMISSION_EVENTS: u64 = 0x0001_0000 | 0x0002_0000 | 0x0004_0000;
/// `FAN_CLASS_CONTENT | FAN_CLASS_PRE_CONTENT` (the class bits of the init flags).
const CLASS_MASK: u32 = 0x0000_000c;

/// Parses the `fanotify` lines of an fdinfo text.
pub fn parse(fdinfo: &str) -> Group {
    let mut g = Group::default();
    let hex = |l: &str, k: &str| -> u64 {
        l.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0)
    };
    for l in fdinfo.lines().filter_map(|l| l.strip_prefix("fanotify ")) {
        if l.starts_with("flags:") {
            g.flags = u32::try_from(hex(l, "flags:")).unwrap_or(u32::MAX);
            g.event_flags = u32::try_from(hex(l, "event-flags:")).unwrap_or(u32::MAX);
            continue;
        }
        let kind = if l.starts_with("ino:") {
            0
        } else if l.starts_with("mnt_id:") {
            1
        } else {
            2
        };
        g.marks[kind] += 1;
        if hex(l, "mask:") & PERMISSION_EVENTS != 0 {
            g.permission = true;
        }
    }
    g
}

/// The refusal of a fanotify group held at `fd` (its fdinfo text and queued bytes).
pub fn refusal(pid: i32, fd: i32, fdinfo: &str, queued: Option<i32>) -> DumpError {
    let g = parse(fdinfo);
    let mut held = format!(
        "fanotify_init flags {:#x}, event flags {:#o}, {} inode, {} mount and {} filesystem mark(s)",
        g.flags, g.event_flags, g.marks[0], g.marks[1], g.marks[2]
    );
    if g.flags & CLASS_MASK != 0 || g.permission {
        held.push_str(", a permission class or permission events (answers still pending are not shown anywhere)");
    }
    match queued {
        Some(n) if n > 0 => held.push_str(&format!(", {n} bytes of events queued")),
        _ => {}
    }
    DumpError::Unsupported {
        pid,
        resource: format!("fd {fd} (fanotify group)"),
        reason: format!(
            "fanotify groups are not checkpointed ({held}): mount marks name mount ids of this kernel, queued events cannot be read without consuming them, and pending permission answers cannot be seen"
        ),
    }
}

/// Why another anonymous-inode file (`link` as `/proc/PID/fd` shows it) is refused.
pub fn anon_reason(link: &str) -> &'static str {
    match link {
        "anon_inode:[io_uring]" => {
            "io_uring instances are not checkpointed: their rings, registered files and buffers and in-flight requests cannot be read or recreated"
        }
        "anon_inode:[userfaultfd]" => {
            "userfaultfd is not checkpointed: its registered ranges and pending faults are not recreated"
        }
        "anon_inode:bpf-map" | "anon_inode:bpf-prog" | "anon_inode:bpf_link" => {
            "BPF objects are not checkpointed: maps, programs and links are kernel objects the image does not carry"
        }
        "anon_inode:[perf_event]" => "perf events are not checkpointed",
        _ => "anonymous-inode files other than eventfd/signalfd/timerfd/epoll/inotify/pidfd are not checkpointed",
    }
}

/// The refusal of a mapping of an aio context's ring (`io_setup`), if `name` is one.
pub fn aio_ring(name: &str) -> Option<&'static str> {
    name.starts_with("/[aio]")
        .then_some("an aio context (io_setup): its ring, in-flight requests and completions are not checkpointed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_described_by_its_marks() {
        let text = "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t5\n\
            fanotify flags:10 event-flags:8000\n\
            fanotify mnt_id:1c mflags:0 mask:3b ignored_mask:0\n\
            fanotify ino:1a2 sdev:800001 mflags:0 mask:10000 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a201000000000000\n\
            fanotify sdev:800001 mflags:0 mask:2 ignored_mask:0\n";
        let g = parse(text);
        assert_eq!(g, Group { flags: 0x10, event_flags: 0o100000, marks: [1, 1, 1], permission: true });
        let e = refusal(7, 4, text, Some(48)).to_string();
        assert!(e.contains("fd 4 (fanotify group)") && e.contains("1 inode, 1 mount and 1 filesystem"), "{e}");
        assert!(e.contains("permission") && e.contains("48 bytes of events queued"), "{e}");
        assert!(!parse("fanotify flags:0 event-flags:0\n").permission);
        assert!(anon_reason("anon_inode:[io_uring]").contains("io_uring"));
        assert!(aio_ring("/[aio] (deleted)").is_some() && aio_ring("/usr/lib/x").is_none());
    }
}
