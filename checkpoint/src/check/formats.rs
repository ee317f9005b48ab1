//! Whether the new kernel's `seamless-init` can read the image this `seamless` is about to
//! write: the binary is taken out of the target initramfs, run with `--image-formats`, and the
//! newest format both sides know is chosen ([`seamless_image::compat::choose`]). A
//! `seamless-init` older than that option prints its usage and exits 2: it reads format 1.
//! The upgrade writes the chosen format, so a mismatch is found before anything is frozen and
//! not at boot, when the old kernel and the processes' only copy are gone.

use super::initramfs::{self, Entry};
use super::{CheckOptions, Verdict};
use seamless_image::compat::{choose, Formats, Needs};
use seamless_image::RecordKind;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the target's `seamless-init --image-formats` may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// The verdict subject.
pub const SUBJECT: &str = "image format";

/// Kinds written only for the resources or processes that need them (socket extras, queued
/// datagrams, pty pairs, inotify instances, pidfds, System V IPC objects, POSIX message queues
/// and memfds; file locks, thread scheduling attributes, group stops, seccomp filters, area
/// flags, owners of deleted files, cgroup membership, TCP close states and ended connections,
/// queued unix messages, closed unix peers and descriptors in flight, deleted FIFOs and
/// directories, executables that are memfds or deleted files, `mq_notify` registrations, journal streams; the
/// thread state of aarch64 images, written only by an aarch64 dumper): a
/// target that does not know them can still read every image without such state, so they are
/// not asked of it here; the dump refuses state that needs one the target does not know
/// (`DumpOptions::reader_kinds`).
/// The filesystems record is written only when the trees use a filesystem besides an ext2/3/4
/// root; the filesystem check refuses a target that does not know it then. The dm-crypt record
/// is written only for filesystems on dm-crypt, and that check refuses such a target too.
pub const CONDITIONAL_KINDS: [RecordKind; 31] = [
    seamless_image::records::AARCH64_REGS,
    seamless_image::records::AARCH64_FPSIMD,
    seamless_image::records::AARCH64_TLS,
    seamless_image::records::SOCKET_EXTRA,
    seamless_image::records::DATAGRAMS,
    seamless_image::records::PTY,
    seamless_image::records::INOTIFY,
    seamless_image::records::PIDFD,
    seamless_image::records::FILE_LOCKS,
    seamless_image::records::THREAD_SCHED,
    seamless_image::records::JOB_STOP,
    seamless_image::records::SECCOMP,
    seamless_image::records::SYSV_SHM,
    seamless_image::records::SYSV_SEM,
    seamless_image::records::SYSV_MSG,
    seamless_image::records::SHM_ATTACH,
    seamless_image::records::FILE_OBJECT,
    RecordKind::FILESYSTEMS,
    RecordKind::CRYPT_VOLUMES,
    seamless_image::records::VMA_FLAGS,
    seamless_image::records::GHOST_OWNER,
    seamless_image::records::CGROUP,
    seamless_image::records::UNIX_QUEUE,
    seamless_image::records::UNIX_PEER_GONE,
    seamless_image::records::UNIX_IN_FLIGHT,
    seamless_image::records::TCP_CLOSE,
    seamless_image::records::TCP_ENDED,
    seamless_image::records::DELETED_NODE,
    seamless_image::records::EXE_OBJECT,
    seamless_image::records::MQ_NOTIFY,
    seamless_image::records::JOURNAL_STREAM,
];

/// What a dump or upgrade of this build may write that a reader must know: every record kind
/// this build knows except the test pattern, the kinds it writes `IGNORABLE` (the page
/// cache's hot set, tmpfs files, [`seamless_image::records::WRITTEN_IGNORABLE`]) and the
/// [`CONDITIONAL_KINDS`].
fn needs(asked: Option<u32>) -> Needs {
    let kinds = Formats::this_build(env!("CARGO_PKG_VERSION"))
        .kinds
        .into_iter()
        .filter(|&k| {
            let k = RecordKind(k);
            ![RecordKind::PATTERN, RecordKind::PAGE_CACHE, RecordKind::TMPFS].contains(&k)
                && !seamless_image::records::WRITTEN_IGNORABLE.contains(&k)
                && !CONDITIONAL_KINDS.contains(&k)
        })
        .collect();
    Needs { version: asked, incompat: 0, kinds }
}

/// The `seamless-init` binary inside an initramfs: the hook's copy at
/// `usr/lib/seamless/seamless-init`, or `/init` when seamless-init is the init itself.
fn binary(entries: &[Entry]) -> Option<&Entry> {
    fn resolve<'a>(entries: &'a [Entry], e: &'a Entry) -> Option<&'a Entry> {
        if e.is_symlink() {
            initramfs::find(entries, e.text().trim_start_matches('/'))
        } else {
            Some(e)
        }
    }
    let is_ours = |e: &&Entry| e.data.starts_with(b"\x7fELF") && e.data.windows(13).any(|w| w == b"seamless-init");
    initramfs::find(entries, initramfs::WRAPPER_PATH)
        .and_then(|e| resolve(entries, e))
        .or_else(|| initramfs::find(entries, "init").and_then(|e| resolve(entries, e)))
        .filter(is_ours)
}

/// A private directory for the extracted binary, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("seamless-check-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Why the formats a `seamless-init` reads cannot be learnt.
#[derive(Debug, thiserror::Error)]
pub enum FormatsCheckError {
    /// The binary could not be started or waited for.
    #[error("cannot run {} --image-formats", bin.display())]
    Run {
        /// The binary.
        bin: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// It did not finish in time.
    #[error("{} --image-formats did not finish within {RUN_TIMEOUT:?}", bin.display())]
    Timeout {
        /// The binary.
        bin: PathBuf,
    },
    /// It printed something that is not a format list.
    #[error("{} --image-formats printed something else", bin.display())]
    Parse {
        /// The binary.
        bin: PathBuf,
        /// What is wrong with it.
        #[source]
        source: seamless_image::compat::FormatsError,
    },
    /// It failed.
    #[error("{} --image-formats failed ({status}): {stderr}", bin.display())]
    Failed {
        /// The binary.
        bin: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on standard error.
        stderr: String,
    },
    /// The initramfs cannot be read.
    #[error(transparent)]
    Initramfs(#[from] initramfs::InitramfsError),
    /// The initramfs holds no seamless-init.
    #[error("no seamless-init binary in {}", initrd.display())]
    NoBinary {
        /// The initramfs.
        initrd: PathBuf,
    },
    /// Running the binary of an initramfs failed.
    #[error("the seamless-init of {} ({name})", initrd.display())]
    Of {
        /// The initramfs.
        initrd: PathBuf,
        /// The binary's name in it.
        name: String,
        /// Why.
        #[source]
        source: Box<FormatsCheckError>,
    },
    /// The binary could not be written out to run it.
    #[error("cannot write {} to run it", path.display())]
    Copy {
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The memfd to run it from could not be made.
    #[error(transparent)]
    Memfd(#[from] seamless_sys::SysError),
}

/// Runs `bin --image-formats` and reads what it prints.
pub fn run_binary(bin: &Path) -> Result<Formats, FormatsCheckError> {
    let run = |source| FormatsCheckError::Run { bin: bin.into(), source };
    let mut child = Command::new(bin)
        .arg("--image-formats")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(run)?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() < RUN_TIMEOUT => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(FormatsCheckError::Timeout { bin: bin.into() });
            }
            Err(e) => return Err(run(e)),
        }
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    match status.code() {
        Some(0) => Formats::parse(&out).map_err(|source| FormatsCheckError::Parse { bin: bin.into(), source }),
        Some(2) if err.starts_with("usage: seamless-init") => Ok(Formats::predating()),
        _ => Err(FormatsCheckError::Failed { bin: bin.into(), status, stderr: err.trim().to_string() }),
    }
}

/// What the `seamless-init` inside `initrd` reads. The binary runs from a memfd (nothing
/// written to a filesystem that may be missing or `noexec` on the old system), or, where
/// memfds may not be executed (`vm.memfd_noexec`), from a private temporary directory.
pub fn target_formats(initrd: &Path) -> Result<Formats, FormatsCheckError> {
    let entries = initramfs::read(initrd)?;
    let Some(bin) = binary(&entries) else {
        return Err(FormatsCheckError::NoBinary { initrd: initrd.into() });
    };
    let context = |e| FormatsCheckError::Of { initrd: initrd.into(), name: bin.name.clone(), source: Box::new(e) };
    match run_from_memfd(&bin.data) {
        Ok(f) => return Ok(f),
        Err(e) => {
            log::debug!("running the target's seamless-init from a memfd: {}; trying a file", seamless_sys::chain(&e))
        }
    }
    let scratch =
        Scratch::new().map_err(|source| context(FormatsCheckError::Copy { path: std::env::temp_dir(), source }))?;
    let path = scratch.0.join("seamless-init");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o700).open(&path)?;
        f.write_all(&bin.data)
    };
    write().map_err(|source| context(FormatsCheckError::Copy { path: path.clone(), source }))?;
    run_binary(&path).map_err(context)
}

fn run_from_memfd(data: &[u8]) -> Result<Formats, FormatsCheckError> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let fd = seamless_sys::proc::memfd_create("seamless-init")?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let mut file = std::fs::File::from(fd);
    file.write_all(data).map_err(|source| FormatsCheckError::Copy { path: path.clone(), source })?;
    let formats = run_binary(&path);
    drop(file);
    formats
}

/// The `image format` verdict, the format to write (`None` when none fits) and the record
/// kinds the target reads. Without an initramfs (a same-kernel dump) the reader is this build.
pub fn check(opts: &CheckOptions) -> (Vec<Verdict>, Option<u32>, Option<Vec<u16>>) {
    let me = Formats::this_build(env!("CARGO_PKG_VERSION"));
    let Some(initrd) = &opts.initrd else {
        return match choose(&me, &me, &needs(opts.image_format)) {
            Ok(v) => (Vec::new(), Some(v), Some(me.kinds)),
            Err(m) => (vec![Verdict::fail(SUBJECT, m.to_string())], None, None),
        };
    };
    let target = match target_formats(initrd) {
        Ok(t) => t,
        Err(e) => {
            let why = format!("{}: cannot tell which image formats it reads", seamless_sys::chain(&e));
            return (vec![Verdict::fail(SUBJECT, why)], None, None);
        }
    };
    match choose(&me, &target, &needs(opts.image_format)) {
        Ok(v) => {
            let detail = format!(
                "writes format {v}: the target's seamless-init ({}) reads formats {}..{}, this seamless ({}) writes {}..{}",
                target.release, target.oldest, target.newest, me.release, me.oldest, me.newest
            );
            (vec![Verdict::ok(SUBJECT, detail)], Some(v), Some(target.kinds))
        }
        Err(m) => (vec![Verdict::fail(SUBJECT, m.to_string())], None, Some(target.kinds)),
    }
}
