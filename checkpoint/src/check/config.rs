//! Can the new kernel restore what the trees hold? The running kernel says nothing about the
//! target, so this reads the target kernel's build configuration: `config-RELEASE` beside the
//! kernel image (`/boot/config-RELEASE`, or `config` in `/usr/lib/modules/RELEASE/` for the
//! split packages of Debian 13), or the file given with `--kernel-config`. Every feature the
//! preserved processes need (the restore itself, the time namespace, each kind of descriptor,
//! the network lock, the pmem region) must be built in or a module the target has; a missing
//! one is named before anything is frozen.

use super::{CheckOptions, Verdict};
use seamless_image::records::{FileDesc, FileKind, SockState};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A kernel build configuration (`CONFIG_X=y|m|value`; `# CONFIG_X is not set` and absent
/// options are off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The kernel version its header names (`6.12.117`), when it has one.
    pub version: Option<String>,
    values: BTreeMap<String, String>,
}

impl KernelConfig {
    /// Parses the text of a config file.
    pub fn parse(path: &Path, text: &str) -> KernelConfig {
        let mut values = BTreeMap::new();
        let mut version = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("# Linux/") {
                // "# Linux/x86 6.12.117 Kernel Configuration"
                version = version.or_else(|| rest.split_whitespace().nth(1).map(String::from));
            } else if let Some((k, v)) = line.split_once('=') {
                let v = v.trim_matches('"');
                if k.starts_with("CONFIG_") && !v.is_empty() && v != "n" {
                    values.insert(k.to_string(), v.to_string());
                }
            }
        }
        KernelConfig { path: path.to_path_buf(), version, values }
    }

    /// Reads and parses `path`.
    pub fn read(path: &Path) -> std::io::Result<KernelConfig> {
        Ok(KernelConfig::parse(path, &std::fs::read_to_string(path)?))
    }

    /// The value of `option` (`y`, `m`, ...), `None` when it is off.
    pub fn get(&self, option: &str) -> Option<&str> {
        self.values.get(option).map(String::as_str)
    }
}

/// The release a bzImage names in its header (`6.12.117+deb12-amd64`): the boot protocol's
/// `kernel_version` field (offset 0x20e) points at the version string, 0x200 bytes on.
pub fn bzimage_release(image: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(image).ok()?;
    let mut hdr = [0u8; 0x210];
    f.read_exact(&mut hdr).ok()?;
    if &hdr[0x202..0x206] != b"HdrS" {
        return None;
    }
    let off = u16::from_le_bytes([hdr[0x20e], hdr[0x20f]]) as u64;
    if off == 0 {
        return None;
    }
    f.seek(SeekFrom::Start(off + 0x200)).ok()?;
    let mut s = [0u8; 128];
    let n = f.read(&mut s).ok()?;
    let text = String::from_utf8_lossy(&s[..n]);
    text.split([' ', '\0']).next().filter(|r| !r.is_empty()).map(String::from)
}

/// Where the config of the kernel `image` may be, in order: `config-RELEASE` in its
/// directory, `config` in its directory (`/usr/lib/modules/RELEASE/vmlinuz`), then by the
/// release (from the file name `vmlinuz-RELEASE` or the image header) in `/boot` and the
/// modules directories.
pub fn config_candidates(image: &Path) -> Vec<PathBuf> {
    let dir = image.parent().unwrap_or(Path::new("/"));
    let name = image.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut releases = Vec::new();
    if let Some(r) = name.strip_prefix("vmlinuz-").or_else(|| name.strip_prefix("bzImage-")) {
        releases.push(r.to_string());
    }
    if let Some(r) = bzimage_release(image) {
        if !releases.contains(&r) {
            releases.push(r);
        }
    }
    let mut out = Vec::new();
    for r in &releases {
        out.push(dir.join(format!("config-{r}")));
    }
    if name == "vmlinuz" {
        out.push(dir.join("config"));
    }
    for r in &releases {
        out.push(PathBuf::from(format!("/boot/config-{r}")));
        out.push(PathBuf::from(format!("/usr/lib/modules/{r}/config")));
        out.push(PathBuf::from(format!("/lib/modules/{r}/config")));
    }
    out.dedup();
    out
}

/// One feature a tree needs from the new kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The config option (`CONFIG_TIME_NS`).
    pub option: &'static str,
    /// The module that provides it when it is `=m` (checked in the target's modules).
    pub module: Option<&'static str>,
    /// What needs it (`pid 123 fd 4: eventfd`).
    pub why: String,
    /// The Linux version that introduced it, for a feature no config option selects (then
    /// `option` names the feature, e.g. `F_SEAL_EXEC`).
    pub since: Option<[u64; 2]>,
}

fn need(option: &'static str, module: Option<&'static str>, why: impl Into<String>) -> Need {
    Need { option, module, why: why.into(), since: None }
}

/// `F_SEAL_EXEC` (Linux 6.3).
const F_SEAL_EXEC: u32 = 0x20;

/// The features of a memfd that exist only from some Linux version: its seals (`F_SEAL_EXEC`,
/// which `MFD_NOEXEC_SEAL` also sets, came with 6.3).
pub fn object_needs(root: i32, objects: &[seamless_image::records::FileObject]) -> Vec<Need> {
    objects
        .iter()
        .filter_map(|o| match o {
            seamless_image::records::FileObject::Memfd(m) if m.seals & F_SEAL_EXEC != 0 => Some(Need {
                option: "F_SEAL_EXEC",
                module: None,
                why: format!("the tree of pid {root}: memfd:{} sealed with F_SEAL_EXEC (MFD_NOEXEC_SEAL)", m.name),
                since: Some([6, 3]),
            }),
            _ => None,
        })
        .collect()
}

/// What a tree holds, as far as the new kernel's features go.
#[derive(Debug, Clone, Default)]
pub struct TreeFacts {
    /// The tree's root pid.
    pub root: i32,
    /// Some thread registered an rseq area (glibc does in every thread).
    pub rseq: bool,
    /// Some process has POSIX timers.
    pub posix_timers: bool,
}

/// The features the tree `facts` with the descriptors `descs` needs from the new kernel.
pub fn tree_needs(facts: &TreeFacts, descs: &[FileDesc], tcp_pending: bool) -> Vec<Need> {
    let root = facts.root;
    let mut out = vec![
        need("CONFIG_CHECKPOINT_RESTORE", None, format!("the restore of the tree of pid {root} (clone3 with set_tid)")),
        need(
            "CONFIG_TIME_NS",
            None,
            format!("the tree of pid {root}: CLOCK_MONOTONIC and CLOCK_BOOTTIME continue through a time namespace"),
        ),
    ];
    if facts.rseq {
        out.push(need("CONFIG_RSEQ", None, format!("the tree of pid {root}: threads with a registered rseq area")));
    }
    if facts.posix_timers {
        out.push(need("CONFIG_POSIX_TIMERS", None, format!("the tree of pid {root}: POSIX timers")));
    }
    let mut tcp = tcp_pending;
    for d in descs {
        let n = match &d.kind {
            FileKind::EventFd { .. } => Some(("CONFIG_EVENTFD", None, "an eventfd")),
            FileKind::SignalFd { .. } => Some(("CONFIG_SIGNALFD", None, "a signalfd")),
            FileKind::TimerFd(_) => Some(("CONFIG_TIMERFD", None, "a timerfd")),
            FileKind::Epoll(_) => Some(("CONFIG_EPOLL", None, "an epoll instance")),
            FileKind::Socket(s) => {
                tcp |= matches!(s.state, SockState::Tcp(_));
                match s.family {
                    libc::AF_UNIX => Some(("CONFIG_UNIX", Some("unix"), "a unix socket")),
                    libc::AF_INET => Some(("CONFIG_INET", None, "an IPv4 socket")),
                    libc::AF_INET6 => Some(("CONFIG_IPV6", Some("ipv6"), "an IPv6 socket")),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some((option, module, what)) = n {
            out.push(need(option, module, format!("the tree of pid {root}: {what}")));
        }
    }
    if tcp {
        let why = format!("the tree of pid {root}: established TCP connections, held by the network lock");
        out.push(need("CONFIG_NF_TABLES", Some("nf_tables"), why.clone()));
        out.push(need("CONFIG_NF_TABLES_INET", None, why));
    }
    out
}

/// What the pmem region needs from the new kernel (it must find the region again).
pub fn region_needs(dev: &Path) -> Vec<Need> {
    let why = format!("the region {}: the new kernel finds the image in it", dev.display());
    vec![
        need("CONFIG_LIBNVDIMM", Some("libnvdimm"), why.clone()),
        need("CONFIG_BLK_DEV_PMEM", Some("nd_pmem"), why.clone()),
        need("CONFIG_X86_PMEM_LEGACY", Some("nd_e820"), why),
    ]
}

/// The oldest kernel that has clone3 with `set_tid` (every restored process's pid).
const OLDEST_TARGET: [u64; 2] = [5, 5];

fn version_numbers(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

/// The modules the new kernel can load: those in its initramfs and in its modules directory
/// on this system.
#[derive(Debug, Clone, Default)]
pub struct Modules {
    /// Where they were looked for.
    pub places: Vec<String>,
    names: std::collections::BTreeSet<String>,
}

fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.contains(".ko").then(|| file.split(".ko").next().unwrap_or(file).replace('-', "_"))
}

impl Modules {
    /// Adds the module files among `paths` (any `NAME.ko*`) found in `place`.
    pub fn add<'a>(&mut self, place: impl Into<String>, paths: impl IntoIterator<Item = &'a str>) {
        self.places.push(place.into());
        self.names.extend(paths.into_iter().filter_map(module_name));
    }
    /// Whether module `name` is there.
    pub fn has(&self, name: &str) -> bool {
        self.names.contains(&name.replace('-', "_"))
    }
}

/// The verdicts for `needs` against `config`; the modules of `=m` options are looked for in
/// `modules` (none: not checked).
pub fn judge(config: &KernelConfig, modules: Option<&Modules>, needs: &[Need]) -> Vec<Verdict> {
    let mut v = Vec::new();
    let file = config.path.display().to_string();
    if let Some(ver) = &config.version {
        if version_numbers(ver).as_slice() < OLDEST_TARGET.as_slice() {
            v.push(Verdict::fail(
                "new kernel syscalls",
                format!("{file} is for Linux {ver}: restoring pids needs clone3 with set_tid (Linux 5.5 or newer)"),
            ));
        }
    }
    // Features of a kernel version: refused where the target is older (unknown: not judged).
    let known = config.version.as_deref().map(version_numbers);
    for n in needs {
        if let (Some(since), Some(have)) = (n.since, &known) {
            if have.as_slice() < since.as_slice() {
                v.push(Verdict::fail(
                    format!("new kernel {}", n.option),
                    format!(
                        "{file} is for Linux {}, which has no {} (Linux {}.{} or newer); needed by {}: that kernel cannot restore it, that tree would not be restored",
                        config.version.as_deref().unwrap_or("?"),
                        n.option,
                        since[0],
                        since[1],
                        n.why
                    ),
                ));
            }
        }
    }
    // One verdict per option, naming everything that needs it.
    let mut by_option: BTreeMap<&str, (Option<&str>, Vec<&str>)> = BTreeMap::new();
    for n in needs.iter().filter(|n| n.since.is_none()) {
        let e = by_option.entry(n.option).or_insert((n.module, Vec::new()));
        if !e.1.contains(&n.why.as_str()) {
            e.1.push(&n.why);
        }
    }
    let mut fine = Vec::new();
    for (option, (module, whys)) in &by_option {
        let whys = whys.join("; ");
        match config.get(option) {
            None => v.push(Verdict::fail(
                format!("new kernel {option}"),
                format!("{option} is not set in {file}; needed by {whys}: that kernel cannot restore it; upgrade to a kernel built with {option}, or leave that tree out"),
            )),
            Some("m") => match (module, modules) {
                (Some(m), Some(mods)) if !mods.has(m) => v.push(Verdict::fail(
                    format!("new kernel {option}"),
                    format!(
                        "{option}=m in {file}, but the module {m} is in none of {}; needed by {whys}: add it to the new initramfs or install the new kernel's modules",
                        mods.places.join(", ")
                    ),
                )),
                _ => fine.push(format!("{option}=m")),
            },
            Some(val) => fine.push(format!("{option}={val}")),
        }
    }
    if !fine.is_empty() || v.is_empty() {
        v.push(Verdict::ok(
            "new kernel config",
            if fine.is_empty() {
                format!("{file}: nothing the trees hold needs an optional feature")
            } else {
                format!(
                    "{file}{}: {}",
                    config.version.as_ref().map(|x| format!(" (Linux {x})")).unwrap_or_default(),
                    fine.join(" ")
                )
            },
        ));
    }
    v
}

/// The config of the target: `--kernel-config`, else the first candidate beside the kernel.
pub fn find(opts: &CheckOptions) -> Result<KernelConfig, String> {
    if let Some(p) = &opts.kernel_config {
        return KernelConfig::read(p).map_err(|e| format!("{}: {e}", p.display()));
    }
    let Some(kernel) = &opts.kernel else { return Err("no --kernel given".into()) };
    let tried = config_candidates(kernel);
    for p in &tried {
        if let Ok(c) = KernelConfig::read(p) {
            return Ok(c);
        }
    }
    Err(format!(
        "no config of {} found (looked for {})",
        kernel.display(),
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    ))
}

/// The modules the target can load: its initramfs's and its modules directory's
/// (`/lib/modules/RELEASE`, `/usr/lib/modules/RELEASE`) on this system; `None` when neither
/// can be read.
fn target_modules(opts: &CheckOptions) -> Option<Modules> {
    let mut m = Modules::default();
    if let Some(initrd) = &opts.initrd {
        if let Ok(names) = super::initramfs::list(initrd) {
            m.add(initrd.display().to_string(), names.iter().map(String::as_str));
        }
    }
    let release = opts.kernel.as_ref().and_then(|k| {
        bzimage_release(k).or_else(|| k.file_name()?.to_str()?.strip_prefix("vmlinuz-").map(String::from))
    });
    if let Some(release) = release {
        for d in ["/lib/modules", "/usr/lib/modules"] {
            let dep = Path::new(d).join(&release).join("modules.dep");
            if let Ok(text) = std::fs::read_to_string(&dep) {
                m.add(dep.display().to_string(), text.lines().filter_map(|l| l.split_once(':')).map(|(p, _)| p));
                break;
            }
        }
    }
    (!m.places.is_empty()).then_some(m)
}

/// Verdicts on the new kernel's features for `needs` (from [`tree_needs`] and
/// [`region_needs`]).
pub fn check(opts: &CheckOptions, needs: &[Need]) -> Vec<Verdict> {
    if opts.kernel.is_none() && opts.kernel_config.is_none() {
        return Vec::new();
    }
    match find(opts) {
        Ok(config) => judge(&config, target_modules(opts).as_ref(), needs),
        Err(e) if needs.is_empty() => vec![Verdict::warn("new kernel config", e)],
        Err(e) => vec![Verdict::warn(
            "new kernel config",
            format!("{e}: cannot tell whether the new kernel has what the trees need; pass --kernel-config FILE"),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str =
        "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.12.117 Kernel Configuration\n#\n\
        CONFIG_CHECKPOINT_RESTORE=y\nCONFIG_TIME_NS=y\nCONFIG_RSEQ=y\nCONFIG_EVENTFD=y\nCONFIG_NF_TABLES=m\n\
        CONFIG_NF_TABLES_INET=y\n# CONFIG_SIGNALFD is not set\nCONFIG_LOCALVERSION=\"\"\n";

    fn tree() -> Vec<Need> {
        let facts = TreeFacts { root: 42, rseq: true, posix_timers: false };
        let desc = |kind| FileDesc { id: 1, flags: 0, pos: 0, kind };
        tree_needs(&facts, &[desc(FileKind::EventFd { count: 1, semaphore: false })], true)
    }

    #[test]
    fn parses_values_and_version() {
        let c = KernelConfig::parse(Path::new("/boot/config-x"), CONFIG);
        assert_eq!(c.version.as_deref(), Some("6.12.117"));
        assert_eq!(c.get("CONFIG_TIME_NS"), Some("y"));
        assert_eq!(c.get("CONFIG_NF_TABLES"), Some("m"));
        assert_eq!(c.get("CONFIG_SIGNALFD"), None);
        assert_eq!(c.get("CONFIG_LOCALVERSION"), None);
    }

    #[test]
    fn a_config_with_everything_passes() {
        let c = KernelConfig::parse(Path::new("/boot/config-x"), CONFIG);
        let v = judge(&c, None, &tree());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].status, super::super::Status::Ok);
        assert!(v[0].detail.contains("CONFIG_TIME_NS=y") && v[0].detail.contains("CONFIG_NF_TABLES=m"), "{v:?}");
    }

    #[test]
    fn a_missing_option_is_named() {
        let c = KernelConfig::parse(Path::new("/boot/config-x"), &CONFIG.replace("CONFIG_TIME_NS=y\n", ""));
        let v = judge(&c, None, &tree());
        let fail: Vec<&Verdict> = v.iter().filter(|v| v.status == super::super::Status::Fail).collect();
        assert_eq!(fail.len(), 1, "{v:?}");
        assert_eq!(fail[0].subject, "new kernel CONFIG_TIME_NS");
        assert!(fail[0].detail.contains("not set in /boot/config-x") && fail[0].detail.contains("pid 42"), "{v:?}");
        // A signalfd needs an option this config lacks, too.
        let facts = TreeFacts { root: 7, ..Default::default() };
        let sfd = FileDesc { id: 1, flags: 0, pos: 0, kind: FileKind::SignalFd { mask: 1 } };
        let v = judge(&c, None, &tree_needs(&facts, &[sfd], false));
        assert!(v.iter().any(|v| v.subject == "new kernel CONFIG_SIGNALFD" && v.status == super::super::Status::Fail));
    }

    #[test]
    fn a_module_the_target_lacks_is_named() {
        let mut m = Modules::default();
        m.add("initrd.img", ["lib/modules/6.12/kernel/net/netfilter/nfnetlink.ko.xz", "etc/seamless/modules"]);
        let c = KernelConfig::parse(Path::new("/boot/config-x"), CONFIG);
        let v = judge(&c, Some(&m), &tree());
        assert!(
            v.iter().any(|v| v.status == super::super::Status::Fail
                && v.detail.contains("module nf_tables is in none of initrd.img")),
            "{v:?}"
        );
        m.add("modules.dep", ["kernel/net/netfilter/nf_tables.ko.xz"]);
        assert!(judge(&c, Some(&m), &tree()).iter().all(|v| v.status == super::super::Status::Ok));
    }

    #[test]
    fn a_memfd_seal_the_target_lacks_is_named() {
        use seamless_image::records::{FileObject, Memfd};
        let m = |seals| {
            FileObject::Memfd(Memfd {
                name: "noexec".into(),
                dev: 1,
                ino: 2,
                mode: 0o100666,
                uid: 0,
                gid: 0,
                size: 0,
                runs: Vec::new(),
                seals,
                descs: Vec::new(),
            })
        };
        let needs = object_needs(7, &[m(0xf), m(0x2f)]);
        assert_eq!(needs.len(), 1);
        let old = KernelConfig::parse(Path::new("/boot/config-6.1"), "# Linux/x86 6.1.0 Kernel Configuration\n");
        let v = judge(&old, None, &needs);
        assert!(v.iter().any(|v| v.detail.contains("no F_SEAL_EXEC") && v.detail.contains("memfd:noexec")), "{v:?}");
        let new = KernelConfig::parse(Path::new("/boot/config-6.12"), "# Linux/x86 6.12.57 Kernel Configuration\n");
        assert!(!judge(&new, None, &needs).iter().any(|v| v.detail.contains("F_SEAL_EXEC")));
    }

    #[test]
    fn an_old_kernel_lacks_clone3_set_tid() {
        let c = KernelConfig::parse(Path::new("/boot/config-4"), &CONFIG.replace("6.12.117", "4.19.0"));
        let v = judge(&c, None, &tree());
        assert!(v.iter().any(|v| v.status == super::super::Status::Fail && v.detail.contains("clone3")), "{v:?}");
    }

    #[test]
    fn candidates_beside_the_image() {
        let c = config_candidates(Path::new("/boot/vmlinuz-6.12.117+deb12-amd64"));
        assert_eq!(c[0], PathBuf::from("/boot/config-6.12.117+deb12-amd64"));
        let c = config_candidates(Path::new("/usr/lib/modules/7.3.4+deb13-amd64/vmlinuz"));
        assert!(c.contains(&PathBuf::from("/usr/lib/modules/7.3.4+deb13-amd64/config")), "{c:?}");
    }
}
