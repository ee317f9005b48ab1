//! Golden bytes of every postcard record kind, and of every variant of the open-file record
//! (`FileKind`, `SockState`): postcard carries no field names, so adding, removing or
//! reordering a field silently changes what every older or newer reader decodes. Each sample's
//! encoding is stored in `tests/fixtures/records.golden`; a sample whose bytes differ from the
//! stored ones is a format change (see FORMAT.md, "Compatibility"): put new state into a new
//! record kind instead, or bump the format version. A new kind or variant gets a new line:
//! `SEAMLESS_WRITE_FIXTURE=1 cargo test -p seamless-image --test golden` appends the missing
//! lines and never rewrites existing ones.

use seamless_image::compat::Formats;
use seamless_image::crypt::{CryptVolume, CryptVolumes, KeyRef};
use seamless_image::filesystems::{Filesystems, FsIdentity, FsState};
use seamless_image::records::{
    self, Addr, EpollItem, EpollRecord, FileDesc, FileKind, ProcessSettings, SockOpt, SockState, SocketRecord, TcpConn,
    TimerFdRecord,
};
use seamless_image::upgrade::{
    CachedFile, NetInterface, PageCache, RootIdentity, Route4, Stage, Sysctl, TmpfsEntry, TmpfsMount, TmpfsRecord,
    Upgrade,
};
use seamless_image::validate::Decoded;
use seamless_image::RecordKind;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Debug;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/records.golden");

/// Checks that stored bytes decode back to a sample.
type Decodes = Box<dyn Fn(&[u8]) -> Result<(), String>>;

/// One sample: its name, the record kind it is stored under, its bytes, and a check that the
/// stored bytes decode back to the sample.
struct Sample {
    name: String,
    kind: RecordKind,
    bytes: Vec<u8>,
    decodes: Decodes,
}

fn sample<T: Serialize + DeserializeOwned + Debug + PartialEq + 'static>(name: &str, kind: RecordKind, v: T) -> Sample {
    let bytes = postcard::to_allocvec(&v).expect("encode");
    let decodes = Box::new(move |b: &[u8]| match postcard::from_bytes::<T>(b) {
        Ok(d) if d == v => Ok(()),
        Ok(d) => Err(format!("decodes to {d:?}")),
        Err(e) => Err(format!("does not decode: {e}")),
    });
    Sample { name: name.into(), kind, bytes, decodes }
}

fn desc(id: u32, kind: FileKind) -> FileDesc {
    FileDesc { id, flags: 0o2, pos: 77, kind }
}

fn socket(state: SockState) -> FileKind {
    FileKind::Socket(SocketRecord {
        ino: 9001,
        family: 2,
        ty: 1,
        protocol: 6,
        local: Addr::V4 { ip: [10, 0, 2, 15], port: 6379 },
        peer: Addr::V6 { ip: [0xfe; 16], port: 40000, flowinfo: 3, scope_id: 2 },
        state,
        opts: vec![SockOpt { level: 1, name: 2, value: 1 }],
        path_mode: 0o755,
    })
}

fn samples() -> Vec<Sample> {
    let d = Decoded::sample(4242);
    let mut s = vec![
        sample("tree", records::TREE, d.trees[0].clone()),
        sample("process", records::PROCESS, d.procs[0].1.clone()),
        sample("thread", records::THREAD, d.threads[0].2.clone()),
        sample("mm", records::MM, d.mms[0].1.clone()),
        sample("fds", records::FDS, d.fd_tables[0].1.clone()),
        sample("pipe", records::PIPE, d.pipes[0].1.clone()),
        sample("settings", records::SETTINGS, ProcessSettings { oom_score_adj: -500, thp_disabled: true }),
        sample(
            "netlock",
            records::NET_LOCK,
            records::NetLockRecord {
                table: "seamless-lock-4242".into(),
                conns: vec![
                    records::LockedConn {
                        local: Addr::V4 { ip: [10, 0, 2, 15], port: 6379 },
                        peer: Addr::V4 { ip: [10, 0, 2, 2], port: 40000 },
                    },
                    records::LockedConn {
                        local: Addr::V6 { ip: [0xfd; 16], port: 80, flowinfo: 0, scope_id: 0 },
                        peer: Addr::V6 { ip: [0xfe; 16], port: 50000, flowinfo: 1, scope_id: 2 },
                    },
                ],
            },
        ),
        sample("stages", RecordKind::STAGES, vec![10u32, 20]),
        sample(
            "pattern",
            RecordKind::PATTERN,
            seamless_image::pattern::Pattern { seed: 0x5eed, chunks: 3, bytes: 3 << 16 },
        ),
        sample(
            "upgrade",
            RecordKind::UPGRADE,
            Upgrade {
                target_release: "6.12.0-fixture-amd64".into(),
                cmdline: "console=ttyS0 memmap=256M!1G".into(),
                root: Some(RootIdentity {
                    device: "/dev/vda".into(),
                    fstype: "ext4".into(),
                    options: "rw,relatime".into(),
                    uuid: Some([0xab; 16]),
                    needs_recovery: false,
                    fingerprint: 0xdead_beef,
                }),
                trees: vec![4242],
                jump_realtime_ns: 1_700_000_000_000_000_000,
                jump_monotonic_ns: 123_456_789,
                jump_boottime_ns: 223_456_789,
                stages: vec![Stage { name: "dump".into(), micros: 1500 }],
                interfaces: vec![NetInterface {
                    name: "eth0".into(),
                    mac: vec![0x52, 0x54, 0, 0x12, 0x34, 0x56],
                    addrs: vec![(vec![10, 0, 2, 15], 24)],
                }],
                routes: vec![Route4 { dest: [0; 4], prefix: 0, gateway: [10, 0, 2, 2], dev: "eth0".into() }],
                sysctls: vec![Sysctl { name: "net/ipv4/ping_group_range".into(), value: "0\t0".into() }],
            },
        ),
    ];
    s.push(sample(
        "page-cache",
        RecordKind::PAGE_CACHE,
        PageCache {
            budget_ms: 15_000,
            files: vec![CachedFile {
                path: "/var/lib/redis/dump.rdb".into(),
                ino: 1234,
                size: 3 << 20,
                mtime_ns: 1_700_000_000_123_456_789,
                ranges: vec![(0, 1 << 20), (2 << 20, 4096)],
            }],
        },
    ));
    s.push(sample(
        "filesystems",
        RecordKind::FILESYSTEMS,
        Filesystems {
            filesystems: vec![
                FsIdentity {
                    mountpoint: "/srv/data".into(),
                    device: "/dev/mapper/vg0-data".into(),
                    dm_uuid: "LVM-Xa1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6Ya1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6".into(),
                    fstype: "xfs".into(),
                    mount_options: "rw,nosuid,nodev,relatime".into(),
                    fs_options: "rw,attr2,inode64,logbufs=8,logbsize=32k,noquota".into(),
                    uuid: [0x5a; 16],
                    state: FsState::Xfs {
                        log_clean: true,
                        unmount_record: false,
                        tail_lsn: (1 << 32) | 8,
                        head_lsn: (1 << 32) | 10,
                    },
                    fingerprint: 0x1234_5678,
                },
                FsIdentity {
                    mountpoint: "/home".into(),
                    device: "/dev/vdc".into(),
                    dm_uuid: String::new(),
                    fstype: "btrfs".into(),
                    mount_options: "rw,relatime".into(),
                    fs_options: "rw,space_cache=v2,subvolid=256,subvol=/home".into(),
                    uuid: [0xb7; 16],
                    state: FsState::Btrfs { generation: 4711, log_root: 0 },
                    fingerprint: 0x8765_4321,
                },
                FsIdentity {
                    mountpoint: "/".into(),
                    device: "/dev/vda".into(),
                    dm_uuid: String::new(),
                    fstype: "ext4".into(),
                    mount_options: "rw,relatime".into(),
                    fs_options: "rw,errors=remount-ro".into(),
                    uuid: [0xab; 16],
                    state: FsState::Ext { needs_recovery: false },
                    fingerprint: 0xdead_beef,
                },
            ],
        },
    ));
    s.push(sample(
        "crypt-volumes",
        RecordKind::CRYPT_VOLUMES,
        CryptVolumes {
            volumes: vec![
                CryptVolume {
                    name: "cryptroot".into(),
                    dm_uuid: "CRYPT-LUKS2-0f1e2d3c4b5a69788796a5b4c3d2e1f0-cryptroot".into(),
                    luks_uuid: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
                    luks_version: 2,
                    header_seqid: 3,
                    device: "/dev/vda2".into(),
                    length: 2_031_616,
                    cipher: "aes-xts-plain64".into(),
                    key_ref: KeyRef::Keyring {
                        key_type: "logon".into(),
                        description: "cryptsetup:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-d0".into(),
                    },
                    key: (0..64).collect(),
                    iv_offset: 0,
                    data_offset: 32768,
                    options: vec!["allow_discards".into(), "sector_size:4096".into()],
                    read_only: false,
                },
                CryptVolume {
                    name: "data".into(),
                    dm_uuid: "CRYPT-LUKS1-a1b2c3d4e5f60718293a4b5c6d7e8f90-data".into(),
                    luks_uuid: "a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90".into(),
                    luks_version: 1,
                    header_seqid: 0,
                    device: "/dev/vdb".into(),
                    length: 1_000_000,
                    cipher: "aes-cbc-essiv:sha256".into(),
                    key_ref: KeyRef::Inline,
                    key: vec![0xa5; 32],
                    iv_offset: 0,
                    data_offset: 4096,
                    options: vec![],
                    read_only: true,
                },
            ],
        },
    ));
    s.push(sample(
        "tmpfs",
        RecordKind::TMPFS,
        TmpfsRecord {
            mounts: vec![TmpfsMount { path: "/run".into(), options: "rw,nosuid,nodev,mode=755".into() }],
            entries: vec![
                TmpfsEntry {
                    path: "/run/redis".into(),
                    mode: 0o40750,
                    uid: 101,
                    gid: 102,
                    mtime_ns: 1_700_000_000_000_000_001,
                    target: String::new(),
                    size: 0,
                    blobs: vec![],
                },
                TmpfsEntry {
                    path: "/run/redis/redis.pid".into(),
                    mode: 0o100644,
                    uid: 101,
                    gid: 102,
                    mtime_ns: 1_700_000_000_000_000_002,
                    target: String::new(),
                    size: 5,
                    blobs: vec![3],
                },
            ],
        },
    ));
    s.push(sample(
        "socket-extra",
        records::SOCKET_EXTRA,
        records::SocketExtra {
            desc: 7,
            linger: Some(5),
            buf_lock: 3,
            filter: vec![(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (6, 0, 0, 0xffff), (6, 0, 0, 0)],
            filter_locked: true,
        },
    ));
    s.push(sample(
        "tcp-close",
        records::TCP_CLOSE,
        records::TcpCloseState { desc: 7, state: records::tcp_states::LAST_ACK, fin_sent: true },
    ));
    s.push(sample("tcp-ended", records::TCP_ENDED, records::TcpEnded { desc: 7 }));
    s.push(sample(
        "datagrams",
        records::DATAGRAMS,
        records::DatagramQueue {
            desc: 7,
            datagrams: vec![
                records::Datagram { from: Addr::V4 { ip: [10, 77, 0, 1], port: 5353 }, data: b"query".to_vec() },
                records::Datagram { from: Addr::V4 { ip: [127, 0, 0, 1], port: 40000 }, data: Vec::new() },
            ],
        },
    ));
    s.push(sample(
        "held-listeners",
        records::HELD_LISTENERS,
        records::HeldListeners {
            table: "seamless-lock-4242".into(),
            listeners: vec![
                Addr::V4 { ip: [0; 4], port: 6379 },
                Addr::V6 { ip: [0xfd; 16], port: 443, flowinfo: 0, scope_id: 0 },
            ],
        },
    ));
    s.push(sample(
        "vma-advice",
        records::VMA_ADVICE,
        records::VmaAdvice {
            areas: vec![records::AdvisedArea {
                start: 0x7f00_0000_0000,
                end: 0x7f00_0040_0000,
                flags: records::VmaAdvice::NOHUGEPAGE | records::VmaAdvice::DONTDUMP,
            }],
        },
    ));
    s.push(sample(
        "pty",
        records::PTY,
        records::PtyRecord {
            index: 3,
            master: 7,
            termios: records::Termios {
                iflag: 0o2400,
                oflag: 0o5,
                cflag: 0o277,
                lflag: 0o105073,
                line: 0,
                cc: (1..=19).collect(),
                ispeed: 38400,
                ospeed: 38400,
            },
            uid: 1000,
            gid: 5,
            mode: 0o620,
            winsize: [24, 80, 640, 480],
            locked: false,
            packet: true,
            master_exclusive: false,
            slave_exclusive: true,
            session: 4242,
            foreground: 4250,
            input: b"partial line".to_vec(),
            output: b"prompt$ ".to_vec(),
        },
    ));
    s.push(sample(
        "inotify",
        records::INOTIFY,
        records::InotifyRecord {
            desc: 7,
            watches: vec![
                records::InotifyWatch { wd: 1, path: "/etc".into(), mask: 0x300, ino: 2, dev: 0x801 },
                records::InotifyWatch { wd: 3, path: "/etc/hosts".into(), mask: 0x8000_0002, ino: 77, dev: 0x801 },
            ],
        },
    ));
    s.push(sample("pidfd", records::PIDFD, records::PidfdRecord { desc: 7, pid: 4242 }));
    s.push(sample(
        "file-locks",
        records::FILE_LOCKS,
        records::FileLocks {
            locks: vec![
                records::FileLock { fd: 10, kind: records::LockKind::Posix, write: true, start: 100, len: 50 },
                records::FileLock { fd: 12, kind: records::LockKind::Ofd, write: false, start: 20, len: 0 },
                records::FileLock { fd: 11, kind: records::LockKind::Flock, write: true, start: 0, len: 0 },
                records::FileLock { fd: 13, kind: records::LockKind::Lease, write: false, start: 0, len: 0 },
            ],
        },
    ));
    s.push(sample(
        "aarch64-regs",
        records::AARCH64_REGS,
        records::Aarch64Regs { tid: 4243, regs: (0..34u64).map(|i| i * 0x0101_0101).collect() },
    ));
    s.push(sample(
        "aarch64-fpsimd",
        records::AARCH64_FPSIMD,
        records::Aarch64Fpsimd {
            tid: 4243,
            vregs: (0..512u32).map(|i| i as u8).collect(),
            fpsr: 0x10,
            fpcr: 0x0300_0000,
        },
    ));
    s.push(sample(
        "aarch64-tls",
        records::AARCH64_TLS,
        records::Aarch64Tls { tid: 4243, tpidr_el0: 0xffff_a1b2_c3d4_e000 },
    ));
    s.push(sample(
        "thread-sched",
        records::THREAD_SCHED,
        records::ThreadSched {
            tid: 4243,
            policy: 1,
            reset_on_fork: true,
            priority: 10,
            nice: -4,
            affinity: vec![0b10],
            ioprio: (2 << 13) | 6,
        },
    ));
    s.push(sample(
        "cow-shared",
        records::COW_SHARED,
        records::CowShared {
            parent: 4242,
            ranges: vec![(0x7f00_0000_0000, 0x7f00_0400_0000), (0x7f00_0500_0000, 0x7f00_0500_1000)],
        },
    ));
    s.push(sample(
        "seccomp",
        records::SECCOMP,
        records::seccomp::SeccompRecord {
            filters: vec![
                records::seccomp::SeccompFilter { prog: vec![0x4_0000_0020, 0x7fff_0000_0000_0006], flags: 2 },
                records::seccomp::SeccompFilter { prog: vec![0x5_0001_0000_0006], flags: 0 },
            ],
            threads: vec![(4242, vec![0]), (4243, vec![0, 1])],
        },
    ));
    s.push(sample("job-stop", records::JOB_STOP, records::JobStop { signal: libc::SIGTSTP }));
    let perm = |id| records::IpcPerm { id, key: 0x5eed, uid: 1000, gid: 100, cuid: 0, cgid: 0, mode: 0o640 };
    s.push(sample(
        "sysv-shm",
        records::SYSV_SHM,
        records::ShmRecord {
            perm: records::IpcPerm { mode: 0o640 | records::ShmRecord::DEST, ..perm(32769) },
            size: 3 * 4096 + 10,
            runs: vec![(4096, 4096), (3 * 4096, 10)],
            user: 4242,
        },
    ));
    s.push(sample(
        "sysv-sem",
        records::SYSV_SEM,
        records::SemRecord { perm: perm(3), values: vec![0, 1, 32767], user: 4242 },
    ));
    s.push(sample(
        "sysv-msg",
        records::SYSV_MSG,
        records::MsgRecord {
            perm: perm(65540),
            qbytes: 16384,
            messages: vec![(2, b"second".to_vec()), (1, Vec::new())],
            user: 4242,
        },
    ));
    s.push(sample(
        "shm-attach",
        records::SHM_ATTACH,
        records::ShmAttachments {
            areas: vec![records::ShmArea { start: 0x7f00_0000_0000, end: 0x7f00_0000_4000, shmid: 32769, prot: 1 }],
        },
    ));
    s.push(sample(
        "file-object/posix-mq",
        records::FILE_OBJECT,
        records::FileObject::PosixMq(records::PosixMq {
            name: "jobs".into(),
            unlinked: false,
            mode: 0o640,
            uid: 1000,
            gid: 100,
            maxmsg: 10,
            msgsize: 8192,
            messages: vec![(7, b"urgent".to_vec()), (0, Vec::new())],
            descs: vec![7, 8],
        }),
    ));
    s.push(sample(
        "file-object/memfd",
        records::FILE_OBJECT,
        records::FileObject::Memfd(records::Memfd {
            name: "wayland-shm".into(),
            dev: 1,
            ino: 4242,
            mode: 0o100777,
            uid: 1000,
            gid: 100,
            size: 12288 + 10,
            runs: vec![(4096, 4096), (12288, 10)],
            seals: 0xf,
            descs: vec![9],
        }),
    ));
    s.push(sample(
        "file-object/deleted",
        records::FILE_OBJECT,
        records::FileObject::Deleted(records::DeletedFile {
            path: "/var/tmp/spool.db".into(),
            dev: 0xfe01,
            ino: 77,
            mode: 0o100640,
            uid: 1000,
            gid: 100,
            size: 1 << 20,
            atime_ns: 1_700_000_000_000_000_001,
            mtime_ns: 1_700_000_000_000_000_002,
            runs: vec![(0, 4096), (65536, 8192)],
            descs: vec![7, 8],
        }),
    ));
    s.push(sample(
        "vma-account",
        records::VMA_ACCOUNT,
        records::VmaAccount {
            charged: vec![records::AccountArea { start: 0x7f00_0000_0000, end: 0x7f00_0000_4000 }],
            uncharged: vec![records::AccountArea { start: 0x7f00_0040_0000, end: 0x7f00_0080_0000 }],
        },
    ));
    s.push(sample(
        "vma-flags",
        records::VMA_FLAGS,
        records::VmaFlags {
            areas: vec![
                records::FlaggedArea {
                    start: 0x7f00_0000_0000,
                    end: 0x7f00_0000_1000,
                    flags: records::VmaFlags::MAY_WRITE,
                },
                records::FlaggedArea {
                    start: 0x7f00_0040_0000,
                    end: 0x7f00_0044_0000,
                    flags: records::VmaFlags::LOCKED | records::VmaFlags::LOCK_ONFAULT,
                },
            ],
        },
    ));
    s.push(sample(
        "cgroup",
        records::CGROUP,
        records::CgroupMembership {
            path: "/system.slice/app.service".into(),
            limits: vec![records::CgroupLimit {
                cgroup: "/system.slice/app.service".into(),
                file: "pids.max".into(),
                value: "4915".into(),
            }],
        },
    ));
    s.push(sample("ghost-owner", records::GHOST_OWNER, records::GhostOwner { uid: 1234, gid: 1235 }));
    s.push(sample(
        "unix-queue",
        records::UNIX_QUEUE,
        records::UnixQueue {
            desc: 7,
            messages: vec![
                records::UnixMessage {
                    from: Addr::Unix { path: b"/run/app.sock".to_vec() },
                    data: b"hello".to_vec(),
                    creds: Some((4242, 1000, 100)),
                },
                records::UnixMessage {
                    from: Addr::Unix { path: b"\0abstract".to_vec() },
                    data: Vec::new(),
                    creds: None,
                },
                records::UnixMessage { from: Addr::Unix { path: Vec::new() }, data: b"x".to_vec(), creds: None },
            ],
        },
    ));
    s.push(sample(
        "unix-peer-gone",
        records::UNIX_PEER_GONE,
        records::UnixPeerGone { desc: 8, peer: Addr::Unix { path: b"/run/app.sock".to_vec() }, accepted: false },
    ));
    s.push(sample(
        "unix-in-flight",
        records::UNIX_IN_FLIGHT,
        records::UnixInFlight { desc: 7, messages: vec![(0, vec![9, 10]), (2, vec![9])] },
    ));
    s.push(sample(
        "deleted-node",
        records::DELETED_NODE,
        records::DeletedNode {
            id: 1,
            path: "/run/app/ctl.fifo".into(),
            mode: records::DeletedNode::FIFO | 0o640,
            uid: 1234,
            gid: 1235,
            pipe: 31338,
            descs: vec![7, 8],
            cwd_of: Vec::new(),
        },
    ));
    s.push(sample("exe-object", records::EXE_OBJECT, records::ExeObject { dev: 0x1a, ino: 4711 }));
    s.push(sample(
        "mq-notify",
        records::MQ_NOTIFY,
        records::MqNotify {
            regs: vec![
                records::MqNotification {
                    fd: 5,
                    notify: records::MqNotification::SIGEV_SIGNAL,
                    signo: 37,
                    value: 0x5eed,
                },
                records::MqNotification { fd: 6, notify: records::MqNotification::SIGEV_NONE, signo: 0, value: 0 },
            ],
        },
    ));
    s.push(sample(
        "journal-stream",
        records::JOURNAL_STREAM,
        records::JournalStream {
            desc: 3,
            identifier: "memcached".into(),
            unit: "memcached.service".into(),
            priority: 6,
            level_prefix: true,
            forward_to_syslog: false,
            forward_to_kmsg: true,
            forward_to_console: false,
        },
    ));
    let file = |name: &str, kind: FileKind| sample(&format!("file/{name}"), records::FILE_DESC, desc(7, kind));
    s.push(file("regular", FileKind::Regular { path: "/var/lib/redis/dump.rdb".into(), size: 4096, mode: 0o100640 }));
    s.push(file("ghost", FileKind::Ghost { path: "/tmp/gone".into(), size: 12, mode: 0o100600 }));
    s.push(file("pipe", FileKind::Pipe { pipe: 31337 }));
    s.push(file("fifo", FileKind::Fifo { path: "/run/fifo".into(), pipe: 31338 }));
    s.push(file("chardev", FileKind::CharDev { path: "/dev/null".into(), rdev: 0x103 }));
    s.push(file("eventfd", FileKind::EventFd { count: 5, semaphore: true }));
    s.push(file("signalfd", FileKind::SignalFd { mask: 1 << 9 }));
    s.push(file(
        "timerfd",
        FileKind::TimerFd(TimerFdRecord { clock: 1, value_ns: 5_000, interval_ns: 1_000, ticks: 2, settime_flags: 1 }),
    ));
    s.push(file(
        "epoll",
        FileKind::Epoll(EpollRecord {
            owner: 4242,
            items: vec![EpollItem { tfd: 5, target: 8, events: 0x19, data: 0xfeed }],
        }),
    ));
    s.push(file("socket/unconnected", socket(SockState::Unconnected)));
    s.push(file("socket/listen", socket(SockState::Listen { backlog: 511 })));
    s.push(file("socket/connected", socket(SockState::Connected)));
    s.push(file(
        "socket/unix-pair",
        socket(SockState::UnixPair { peer: 9002, queue: b"queued".to_vec(), shutdown: 1 }),
    ));
    s.push(file(
        "socket/tcp",
        socket(SockState::Tcp(TcpConn {
            snd_seq: 1000,
            rcv_seq: 2000,
            send_queue: b"unacked".to_vec(),
            unsent: 3,
            recv_queue: b"unread".to_vec(),
            mss: 1448,
            wscale: Some((7, 7)),
            sack: true,
            timestamps: true,
            tsval: 99,
            window: [1, 2, 3, 4, 5],
        })),
    ));
    s
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn stored() -> BTreeMap<String, Vec<u8>> {
    let text = std::fs::read_to_string(GOLDEN).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, bytes) = l.split_once(' ').expect("'name hex' lines");
            (name.to_string(), unhex(bytes))
        })
        .collect()
}

#[test]
fn every_record_kind_and_variant_keeps_its_bytes() {
    let samples = samples();
    let mut golden = stored();
    if std::env::var_os("SEAMLESS_WRITE_FIXTURE").is_some() {
        let mut text = std::fs::read_to_string(GOLDEN).unwrap_or_else(|_| {
            "# name, then the postcard bytes of tests/golden.rs's sample (never rewrite a line)\n".into()
        });
        for s in samples.iter().filter(|s| !golden.contains_key(&s.name)) {
            text.push_str(&format!("{} {}\n", s.name, hex(&s.bytes)));
        }
        std::fs::write(GOLDEN, text).expect("writing the golden file");
        golden = stored();
    }
    let mut failures = Vec::new();
    for s in &samples {
        match golden.get(&s.name) {
            None => {
                failures.push(format!("{}: no stored bytes (a new kind or variant: add them, see the header)", s.name))
            }
            Some(b) if *b != s.bytes => failures.push(format!(
                "{}: encodes to {} but format {} stored {}: a format change",
                s.name,
                hex(&s.bytes),
                seamless_image::FORMAT_VERSION,
                hex(b)
            )),
            Some(b) => {
                if let Err(e) = (s.decodes)(b) {
                    failures.push(format!("{}: the stored bytes {e}", s.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_postcard_kind_has_a_sample() {
    let covered: Vec<RecordKind> = samples().iter().map(|s| s.kind).collect();
    let missing: Vec<String> = Formats::this_build("test")
        .kinds
        .into_iter()
        .map(RecordKind)
        .filter(|k| !k.is_raw() && !covered.contains(k))
        .map(|k| k.to_string())
        .collect();
    assert!(missing.is_empty(), "record kinds without golden bytes: {}", missing.join(", "));
}
