//! `seamless upgrade`: check, load the new kernel, freeze and dump the selected trees into
//! the region, sync and freeze the filesystems, record the root filesystem's identity, jump.
//!
//! Order matters for safety:
//! 1. pre-flight checks: a blocking verdict stops everything before anything changes;
//! 2. the kernel is loaded first: a refused load (signature, lockdown) stops nothing;
//! 3. the trees are frozen and dumped; the region is still "writing", so a crash here leaves
//!    nothing to restore;
//! 4. filesystems are synced and frozen (innermost first, root last), the root filesystem's
//!    on-disk identity is read and stored with the stage timings, then the image is completed;
//! 5. jump. If anything fails before the jump, the image is invalidated, the filesystems are
//!    thawed, the kernel is unloaded and every process resumes untouched.
//!
//! Without a pmem region the image is written into a cpio archive under `/run/seamless`,
//! appended to the new initramfs, and the kernel is loaded again with the combined initramfs
//! just before the jump.

pub mod crypt;
pub mod filesystems;
mod net;
pub mod newest;
pub mod page_cache;
mod stages;
pub mod sysctl;
pub mod tmpfs;

pub use stages::StageClock;

use crate::check::{self, CheckOptions};
use crate::dump::{self, DumpError, DumpOptions};
use crate::interrupt;
use crate::kexec::{self, FreezeTarget, KexecError};
use crate::supervisor::{self, Undo};
use seamless_image::upgrade::{read_identity, Upgrade};
use seamless_image::{BlockStore, CpioStore, ImageError, RecordKind, Store, Writer, WriterInfo};
use seamless_sys::chain;
use std::path::{Path, PathBuf};

/// Where the cpio image and the combined initramfs go when there is no region.
pub const RUN_DIR: &str = "/run/seamless";

/// Why an upgrade stopped. Before the jump, everything was put back as it was.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// A pre-flight check failed.
    #[error("pre-flight checks failed, nothing was changed:\n{0}")]
    Check(check::Report),
    /// Loading the kernel failed.
    #[error("loading the new kernel failed; nothing was changed")]
    Load(#[source] KexecError),
    /// The region could not be opened or written.
    #[error("writing the image failed; the processes were resumed")]
    Image(#[from] ImageError),
    /// Dumping failed.
    #[error("dump failed, every process was resumed")]
    Dump(#[from] DumpError),
    /// Freezing filesystems failed.
    #[error("freezing the filesystems failed; the processes were resumed")]
    Freeze(#[source] KexecError),
    /// The operator (or a service manager) asked seamless to stop.
    #[error("{0}; the filesystems were thawed, the kernel unloaded and every process resumed")]
    Interrupted(crate::interrupt::Interrupted),
    /// A failure injected for testing.
    #[error("failure injected at stage {0}; everything was resumed")]
    Injected(String),
    /// The jump itself failed.
    #[error("the jump into the new kernel failed; filesystems were thawed and the processes resumed")]
    Jump(#[source] seamless_sys::SysError),
    /// Reading the root filesystem's identity failed.
    #[error("cannot record the root filesystem's identity; the processes were resumed")]
    RootIdentity(#[source] ImageError),
    /// A filesystem the trees use cannot be recorded for verification on the new kernel.
    #[error("cannot record the filesystems the preserved processes use; the processes were resumed")]
    Filesystems(#[source] filesystems::FsRecordError),
    /// A dm-crypt volume below a used filesystem cannot be carried.
    #[error("cannot carry the dm-crypt volumes below the preserved processes' filesystems; nothing was frozen")]
    Crypt(#[source] crypt::CryptRecordError),
}

impl From<crate::interrupt::Interrupted> for UpgradeError {
    fn from(i: crate::interrupt::Interrupted) -> Self {
        Self::Interrupted(i)
    }
}

/// What to upgrade to, and what to keep.
#[derive(Debug, Clone, Default)]
pub struct UpgradeOptions {
    /// New kernel image.
    pub kernel: PathBuf,
    /// Its initramfs (must carry seamless-init).
    pub initrd: PathBuf,
    /// Its command line.
    pub cmdline: String,
    /// Root pids of the trees to preserve.
    pub roots: Vec<i32>,
    /// Region device (default: the first /dev/pmem*; none: the initramfs fallback).
    pub region: Option<PathBuf>,
    /// Use the initramfs even if a region exists.
    pub force_initramfs: bool,
    /// Testing aid: fail on purpose at this stage (`dump`, `freeze`, `jump`).
    pub inject_failure: Option<String>,
    /// Skip the pre-flight checks (their verdicts are still logged).
    pub force: bool,
    /// The image format version asked for (`None`: the newest the target's seamless-init
    /// reads, as the pre-flight check found).
    pub image_format: Option<u32>,
    /// Paths whose cached contents the new kernel reads back too (files, or directories
    /// walked), besides the files the preserved processes have mapped or open.
    pub warm: Vec<PathBuf>,
    /// How long the new kernel may spend re-reading the page cache's hot set before it hands
    /// over to the real init (zero: the hot set is not recorded).
    pub rewarm_budget: std::time::Duration,
    /// Paths on tmpfs carried to the new kernel too (files, or directories walked), besides the
    /// tmpfs files the preserved processes hold open, map or bind sockets in.
    pub keep: Vec<PathBuf>,
    /// The record kinds the target's seamless-init reads, as the pre-flight check found them
    /// (set by the upgrade itself; `None`: not known).
    pub reader_kinds: Option<Vec<u16>>,
    /// Passphrases or key files of dm-crypt volumes whose key is in the kernel keyring
    /// (`--crypt-key NAME=FILE`): seamless derives the volume key from the LUKS header with them.
    pub crypt_keys: Vec<crypt::CryptKey>,
    /// Copy the trees' memory while they run before freezing them (`dump::precopy`), so
    /// the frozen dump copies only what changed since.
    pub pre_copy: bool,
}

enum Target {
    Region(PathBuf),
    Initramfs { cpio: PathBuf, combined: PathBuf },
}

/// Testing aid: `--inject-failure pause-before-jump[=SECONDS]` holds the upgrade just before
/// the jump, with the filesystems frozen, the image complete and the kernel loaded (default
/// 30 s), so that a test can kill or interrupt it there; an interrupting signal ends the
/// pause and rolls back, and when the pause ends the upgrade fails as at stage `jump`.
fn testing_pause(opts: &UpgradeOptions) -> Option<std::time::Duration> {
    let v = opts.inject_failure.as_deref()?.strip_prefix("pause-before-jump")?;
    let secs = v.strip_prefix('=').and_then(|s| s.parse().ok()).unwrap_or(30);
    Some(std::time::Duration::from_secs(secs))
}

fn injected(opts: &UpgradeOptions, stage: &str) -> Result<(), UpgradeError> {
    let paused_before = stage == "jump" && testing_pause(opts).is_some();
    if opts.inject_failure.as_deref() == Some(stage) || paused_before {
        log::warn!("injecting a failure at stage {stage}, as asked");
        return Err(UpgradeError::Injected(stage.into()));
    }
    Ok(())
}

fn thaw(targets: &[FreezeTarget]) {
    for msg in kexec::thaw_all(targets) {
        log::error!("{msg}; run `fsfreeze --unfreeze` on that mount point");
    }
}

/// Runs the upgrade. Returns only on failure (with everything resumed), since success ends in
/// the new kernel.
pub fn upgrade(opts: &UpgradeOptions) -> Result<std::convert::Infallible, UpgradeError> {
    let mut clock = StageClock::new();
    let region = if opts.force_initramfs {
        None
    } else {
        opts.region.clone().or_else(|| check::region::chosen(&CheckOptions::default()))
    };
    let report = check::run(&CheckOptions {
        kernel: Some(opts.kernel.clone()),
        initrd: Some(opts.initrd.clone()),
        cmdline: Some(opts.cmdline.clone()),
        pids: opts.roots.clone(),
        region: region.clone(),
        trial_load: false,
        image_format: opts.image_format,
        kernel_config: None,
        crypt_keys: opts.crypt_keys.clone(),
    });
    for v in &report.verdicts {
        log::debug!("check {}: {:?}: {}", v.subject, v.status, v.detail);
    }
    if !report.passed() && !opts.force {
        return Err(UpgradeError::Check(report));
    }
    clock.stage("check");
    // Progress before anything is frozen (later, stderr may be a file on a frozen filesystem).
    eprintln!("seamless: pre-flight checks passed in {:.1} s; loading the kernel", clock.last_secs());
    interrupt::check("the pre-flight checks")?;

    let hooks = check::initramfs::hands_over(&opts.initrd);
    let cmdline = check::initramfs::with_fsck_off(&handover_cmdline(&opts.cmdline, hooks), hooks);
    // The format the check chose for the target's seamless-init (with --force and no fit: the
    // one asked for, or the newest).
    let image_format = Some(report.image_format.or(opts.image_format).unwrap_or(seamless_image::FORMAT_VERSION));
    let opts = &UpgradeOptions { cmdline, image_format, reader_kinds: report.target_kinds.clone(), ..opts.clone() };
    if hooks {
        eprintln!("seamless: the new initramfs has the seamless hook; command line: {}", opts.cmdline);
    }
    let was_loaded = kexec::is_loaded();
    kexec::load(&opts.kernel, Some(&opts.initrd), &opts.cmdline).map_err(UpgradeError::Load)?;
    if !was_loaded {
        supervisor::note(&Undo::KernelLoaded);
    }
    clock.stage("load");
    eprintln!("seamless: kernel {} loaded in {:.1} s; dumping", opts.kernel.display(), clock.last_secs());
    let result = interrupt::check("the kernel load")
        .map_err(UpgradeError::from)
        .and_then(|()| dump_and_jump(opts, region, &mut clock));
    if !was_loaded && kexec::unload().is_ok() {
        supervisor::note(&Undo::KernelUnloaded);
    }
    result
}

/// The path of seamless-init on the real root in the `init=` role.
pub const INIT_WRAPPER: &str = "/usr/lib/seamless/seamless-init";

/// With an initramfs that has the seamless hook (dracut module, mkinitcpio hook), the
/// processes are restored after the switch to the real root, by seamless-init as `init=`,
/// which then executes the real init named by `seamless.init=`. Rewrites the command line
/// accordingly (keeping a given `init=` as the real init); leaves it alone otherwise, or when
/// it already names `seamless.init=`.
pub fn handover_cmdline(cmdline: &str, hooks: bool) -> String {
    if !hooks || cmdline.split_whitespace().any(|w| w.starts_with("seamless.init=")) {
        return cmdline.to_string();
    }
    let mut real_init = "/sbin/init".to_string();
    let mut words: Vec<String> = Vec::new();
    for w in cmdline.split_whitespace() {
        match w.strip_prefix("init=") {
            Some(i) if i != INIT_WRAPPER => real_init = i.to_string(),
            Some(_) => {}
            None => words.push(w.to_string()),
        }
    }
    words.push(format!("init={INIT_WRAPPER}"));
    words.push(format!("seamless.init={real_init}"));
    words.join(" ")
}

fn dump_and_jump(
    opts: &UpgradeOptions,
    region: Option<PathBuf>,
    clock: &mut StageClock,
) -> Result<std::convert::Infallible, UpgradeError> {
    let target = match region {
        Some(dev) => Target::Region(dev),
        None => Target::Initramfs {
            cpio: Path::new(RUN_DIR).join("region.cpio"),
            combined: Path::new(RUN_DIR).join("initrd.img"),
        },
    };
    // Without a region, the cpio image and the combined initramfs are made in RUN_DIR: mode
    // 0700, locked for the whole upgrade, files created privately (never through a link).
    let _run_lock = match &target {
        Target::Region(_) => None,
        Target::Initramfs { .. } => Some(seamless_image::DirLock::acquire(Path::new(RUN_DIR))?),
    };
    let store: Box<dyn Store> = match &target {
        Target::Region(dev) => Box::new(BlockStore::open(dev)?),
        Target::Initramfs { cpio, .. } => {
            let cap = check::process::estimate_image_bytes(&opts.roots) * 2 + (64 << 20);
            Box::new(CpioStore::create(cpio, cap)?)
        }
    };
    let format = opts.image_format.unwrap_or(seamless_image::FORMAT_VERSION);
    let mut writer = Writer::with_format(store, WriterInfo::current(env!("CARGO_PKG_VERSION")), format)?;
    eprintln!(
        "seamless: freezing and dumping {} tree(s) into {}",
        opts.roots.len(),
        match &target {
            Target::Region(d) => d.display().to_string(),
            Target::Initramfs { cpio, .. } => cpio.display().to_string(),
        }
    );
    // Before anything is frozen (deriving a key from its header takes the key derivation
    // function's time): the dm-crypt volumes below the used filesystems, with their keys,
    // written into the region last, just before the image is completed.
    let crypt_targets = kexec::current_freeze_targets().map_err(UpgradeError::Freeze)?;
    let crypt = crypt::read_all(&crypt_targets, &opts.roots, &opts.crypt_keys, opts.reader_kinds.as_deref())
        .map_err(UpgradeError::Crypt)?;
    if !crypt.volumes.is_empty() {
        let names: Vec<&str> = crypt.volumes.iter().map(|v| v.name.as_str()).collect();
        eprintln!("seamless: dm-crypt volumes unlocked by seamless-init on the new kernel: {}", names.join(", "));
    }
    clock.stage("crypt");
    if !opts.rewarm_budget.is_zero() {
        let hot = page_cache::record(&opts.roots, &opts.warm, opts.rewarm_budget);
        eprintln!(
            "seamless: page cache: {} MiB of {} file(s) to read back on the new kernel (budget {} s)",
            hot.bytes() >> 20,
            hot.files.len(),
            opts.rewarm_budget.as_secs_f64()
        );
        writer.put_ignorable_record(RecordKind::PAGE_CACHE, 0, 0, &hot)?;
        clock.stage("page-cache");
        interrupt::check("recording the page cache")?;
    }
    let pre = if opts.pre_copy {
        let pre = dump::precopy::run(&opts.roots, &mut writer, &Default::default())?;
        eprintln!(
            "seamless: pre-copy: {} MiB in {} pass(es) while the trees ran ({})",
            (pre.pages() * 4096) >> 20,
            pre.passes.len(),
            pre.passes.iter().map(|p| format!("{} MiB", (p.pages * 4096) >> 20)).collect::<Vec<_>>().join(", ")
        );
        clock.stage("pre-copy");
        Some(pre)
    } else {
        None
    };
    let summary = dump::dump_trees_with(
        &opts.roots,
        &mut writer,
        &DumpOptions {
            progress: true,
            carry_clocks: true,
            reader_kinds: opts.reader_kinds.clone(),
            ..Default::default()
        },
        pre,
    )?;
    clock.stage("dump");
    // With the trees frozen: the tmpfs files they use, which the new kernel starts without.
    let tmp = tmpfs::record(&opts.roots, &opts.keep, &mut writer)?;
    if !tmp.entries.is_empty() {
        let bytes: u64 = tmp.entries.iter().map(|e| e.size).sum();
        eprintln!(
            "seamless: tmpfs: {} entr(ies), {} KiB carried ({})",
            tmp.entries.len(),
            bytes >> 10,
            tmp.mounts.iter().map(|m| m.path.as_str()).collect::<Vec<_>>().join(", ")
        );
        writer.put_ignorable_record(RecordKind::TMPFS, 0, 0, &tmp)?;
    }
    clock.stage("tmpfs");
    eprintln!(
        "seamless: dumped {} process(es), {} thread(s), {} MiB of pages, {} open file(s)",
        summary.processes,
        summary.threads,
        (summary.pages * 4096) >> 20,
        summary.files
    );
    injected(opts, "dump")?;
    interrupt::check("the dump")?;

    let targets = kexec::current_freeze_targets().map_err(UpgradeError::Freeze)?;
    kexec::freeze_all(&targets).map_err(UpgradeError::Freeze)?;
    clock.stage("sync+freeze");
    let completed = complete_image(opts, &target, writer, &targets, clock, summary.clock_offsets, &crypt);
    drop(crypt);
    let mut store = match completed {
        Ok(store) => store,
        Err(e) => {
            if let Target::Initramfs { cpio, .. } = &target {
                // The image may have been completed before the failure: it must never be restored.
                if let Ok(mut s) = CpioStore::open(cpio) {
                    if seamless_image::invalidate(&mut s).is_ok() {
                        supervisor::note(&Undo::ImageInvalidated);
                    }
                }
            }
            thaw(&targets);
            return Err(e);
        }
    };
    if let Some(pause) = testing_pause(opts) {
        eprintln!(
            "seamless: testing: paused {} s with the filesystems frozen and the image complete (pid {})",
            pause.as_secs(),
            std::process::id()
        );
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until && interrupt::check("the pause before the jump").is_ok() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let err = interrupt::check("the last step before the jump")
        .map_err(UpgradeError::from)
        .and_then(|()| injected(opts, "jump"))
        .err()
        .map(Ok)
        .unwrap_or_else(|| {
            eprintln!("seamless: jumping into the loaded kernel {}", opts.kernel.display());
            // A serial console would lose what is still in its UART at the jump.
            seamless_sys::proc::drain_tty(1);
            seamless_sys::proc::drain_tty(2);
            Err(seamless_sys::kexec::kexec_reboot())
        });
    // Still here: the jump did not happen. Make sure the image is never restored.
    match seamless_image::invalidate(&mut store) {
        Ok(()) => supervisor::note(&Undo::ImageInvalidated),
        Err(e) => log::error!("could not invalidate the image ({}); wipe it with `seamless region wipe`", chain(&e)),
    }
    if let Target::Initramfs { combined, .. } = &target {
        // Its copy of the image (dm-crypt keys included) must not stay in /run.
        let _ = std::fs::remove_file(combined);
    }
    thaw(&targets);
    drop(summary); // resumes every process
    Err(match err {
        Ok(injected) => injected,
        Err(sys) => UpgradeError::Jump(sys),
    })
}

/// With filesystems frozen: records the root filesystem, the stage timings, completes the
/// image and, without a region, rebuilds the initramfs and reloads the kernel with it.
/// `clock_offsets` say how far the dumped processes' clocks run ahead of this process's (a
/// time namespace from an earlier upgrade): the clocks recorded for the jump are theirs.
fn complete_image(
    opts: &UpgradeOptions,
    target: &Target,
    mut writer: Writer<Box<dyn Store>>,
    frozen: &[FreezeTarget],
    clock: &mut StageClock,
    clock_offsets: (i64, i64),
    crypt_volumes: &seamless_image::crypt::CryptVolumes,
) -> Result<Box<dyn Store>, UpgradeError> {
    injected(opts, "freeze")?;
    let root = match frozen.iter().find(|t| t.mountpoint == Path::new("/")) {
        Some(t) => Some(read_identity(Path::new(&t.source), &t.fstype, "").map_err(UpgradeError::RootIdentity)?),
        None => None,
    };
    clock.stage("root-identity");
    let used = filesystems::record(frozen, &opts.roots).map_err(UpgradeError::Filesystems)?;
    if filesystems::needed(&used) {
        let names: Vec<String> = used.filesystems.iter().map(|f| f.summary()).collect();
        if opts.reader_kinds.as_ref().is_some_and(|k| !k.contains(&RecordKind::FILESYSTEMS.0)) {
            return Err(UpgradeError::Filesystems(filesystems::FsRecordError::Unverifiable(names.join("; "))));
        }
        eprintln!("seamless: filesystems verified on the new kernel: {}", names.join("; "));
        writer.put_record(RecordKind::FILESYSTEMS, 0, 0, &used)?;
    }
    clock.stage("filesystems");
    let record = Upgrade {
        target_release: kernel_release_of(&opts.kernel).unwrap_or_default(),
        cmdline: opts.cmdline.clone(),
        root,
        trees: opts.roots.iter().map(|p| *p as u32).collect(),
        jump_realtime_ns: stages::realtime_ns(),
        jump_monotonic_ns: seamless_sys::timens::monotonic_ns().map_or(0, |t| t.saturating_add(clock_offsets.0)),
        jump_boottime_ns: seamless_sys::timens::boottime_ns().map_or(0, |t| t.saturating_add(clock_offsets.1)),
        stages: clock.stages(),
        interfaces: net::interfaces(),
        routes: net::routes(),
        sysctls: sysctl::record(),
    };
    writer.put_record(RecordKind::UPGRADE, 0, 0, &record)?;
    crypt::write(crypt_volumes, &mut writer).map_err(UpgradeError::Crypt)?;
    let store = writer.finish()?;
    supervisor::note(&match target {
        Target::Region(dev) => Undo::RegionImage(dev.clone()),
        Target::Initramfs { cpio, .. } => Undo::CpioImage(cpio.clone()),
    });
    clock.stage("complete");
    if let Target::Initramfs { cpio, combined } = target {
        seamless_image::append_to_initrd(&opts.initrd, cpio, combined)?;
        kexec::load(&opts.kernel, Some(combined), &opts.cmdline).map_err(UpgradeError::Load)?;
        clock.stage("reload");
    }
    eprint!("{}", clock.table());
    Ok(store)
}

/// The release (`uname -r` on that kernel) of an x86 bzImage: the first word of the
/// version string its setup header points to (boot protocol 2.00+: `HdrS` at 0x202, the
/// string at 0x200 + the 16-bit pointer at 0x20e). `None` if the file is not such an image.
pub fn kernel_release_of(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path).ok()?.take(0x8000 + 0x200).read_to_end(&mut head).ok()?;
    release_from_header(&head)
}

fn release_from_header(head: &[u8]) -> Option<String> {
    if head.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([*head.get(0x20e)?, *head.get(0x20f)?]) as usize;
    let text = head.get(0x200 + ptr..)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ').unwrap_or(text.len()).min(64);
    let release = std::str::from_utf8(&text[..end]).ok()?;
    (!release.is_empty()).then(|| release.to_string())
}

#[cfg(test)]
mod tests {
    use super::{handover_cmdline, release_from_header};

    #[test]
    fn bzimage_release() {
        let mut h = vec![0u8; 0x1000];
        assert_eq!(release_from_header(&h), None);
        h[0x202..0x206].copy_from_slice(b"HdrS");
        h[0x20e..0x210].copy_from_slice(&0x0400u16.to_le_bytes());
        let v = b"6.12.12-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        h[0x600..0x600 + v.len()].copy_from_slice(v);
        assert_eq!(release_from_header(&h).as_deref(), Some("6.12.12-amd64"));
        h[0x20e..0x210].copy_from_slice(&0xff00u16.to_le_bytes());
        assert_eq!(release_from_header(&h), None);
    }

    #[test]
    fn hook_initramfs_gets_the_init_wrapper() {
        assert_eq!(handover_cmdline("root=/dev/vda rw", false), "root=/dev/vda rw");
        assert_eq!(
            handover_cmdline("root=/dev/vda rw", true),
            "root=/dev/vda rw init=/usr/lib/seamless/seamless-init seamless.init=/sbin/init"
        );
        assert_eq!(
            handover_cmdline("init=/lib/systemd/systemd quiet", true),
            "quiet init=/usr/lib/seamless/seamless-init seamless.init=/lib/systemd/systemd"
        );
        let done = "init=/usr/lib/seamless/seamless-init seamless.init=/bin/x";
        assert_eq!(handover_cmdline(done, true), done);
    }
}
