//! The Debian kernels of the scenarios, picked at run time by a release pattern (old point
//! releases leave the archive): kernel A (newest 6.1), B (newest 6.12), P (the 6.12 point
//! release before B that is still in the archive) and C (newest 7.x built for Debian 13).
//!
//! Each is fetched once with `apt-get download`, unpacked with `dpkg-deb -x`, indexed with
//! `depmod -b`, and cached. Two package layouts are handled: one `linux-image-RELEASE`
//! package holding `/boot/vmlinuz-RELEASE` and `/lib/modules/RELEASE` (Debian 12), and the
//! split one of Debian 13's 7.x kernels, where `linux-image-RELEASE` only depends on
//! `linux-binary-RELEASE` (`/usr/lib/modules/RELEASE/vmlinuz`), `linux-modules-RELEASE` and
//! `linux-base-RELEASE` (`config`, `modules.builtin`); both are unpacked into the first
//! layout. Kernels of suites the host does not list (trixie-backports, sid) come through a
//! private apt configuration under the cache (`<cache>/apt/`), never the host's own sources;
//! it points at the Debian archive the host's sources use (or `SEAMLESS_DEBIAN_MIRROR`).

use super::host::{cache_dir, lock, run};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One unpacked kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The Debian image package it came from (`linux-image-...`).
    pub package: String,
    /// Every package unpacked for it (the image package and, for the split layout, its
    /// binary, modules and base packages).
    pub packages: Vec<String>,
    /// The unpacked package tree (holds `boot/` and `lib/modules/<release>/`).
    pub root: PathBuf,
}

impl Kernel {
    /// The bzImage.
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }
    /// The kernel's build configuration (`/boot/config-RELEASE` once installed).
    pub fn config(&self) -> PathBuf {
        self.root.join(format!("boot/config-{}", self.release))
    }
    /// `lib/modules/<release>` of the unpacked tree.
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
    /// The release's numbers (`6.12.117+deb12-amd64` -> [6, 12, 117, 12]), for ordering.
    pub fn version(&self) -> Vec<u64> {
        version_key(&self.release)
    }
}

/// The kernels of the scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Which {
    /// Debian 12's own 6.1 kernel (newest `6.1.0-N`).
    A,
    /// The 6.12 point release before [`Which::B`] that the archive still has.
    P,
    /// The 6.12 kernel of Debian 12 (newest `6.12.M+deb12`).
    B,
    /// The newest 7.x kernel built for Debian 13 (suites trixie-backports and sid).
    C,
}

/// Where a kernel's packages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The host's own apt sources.
    Host,
    /// A private apt configuration with these suites of the Debian archive.
    Private(&'static [&'static str]),
}

/// The suites the 7.x kernels come from.
const DEBIAN13_SUITES: &[&str] = &["trixie-backports", "sid"];

impl Which {
    /// Every kernel, oldest series first.
    pub const ALL: [Which; 4] = [Which::A, Which::P, Which::B, Which::C];

    /// One letter for tables and logs.
    pub fn label(self) -> &'static str {
        match self {
            Which::A => "A",
            Which::P => "P",
            Which::B => "B",
            Which::C => "C",
        }
    }

    /// Image package names of the family (an `apt-cache search --names-only` pattern).
    fn regex(self) -> &'static str {
        match self {
            Which::A => r"^linux-image-6\.1\.0-[0-9]+-amd64(-unsigned)?$",
            Which::B | Which::P => r"^linux-image-6\.12\.[0-9]+\+deb12-amd64(-unsigned)?$",
            Which::C => r"^linux-image-7\.[0-9]+\.[0-9]+\+deb13-amd64(-unsigned)?$",
        }
    }

    fn source(self) -> Source {
        match self {
            Which::C => Source::Private(DEBIAN13_SUITES),
            _ => Source::Host,
        }
    }

    /// The environment variable that pins the release (e.g. `SEAMLESS_KERNEL_C=7.2.12+deb13-amd64`).
    pub fn pin_var(self) -> &'static str {
        match self {
            Which::A => "SEAMLESS_KERNEL_A",
            Which::P => "SEAMLESS_KERNEL_P",
            Which::B => "SEAMLESS_KERNEL_B",
            Which::C => "SEAMLESS_KERNEL_C",
        }
    }
}

/// Numbers of a release, for ordering (`6.12.117+deb12-amd64` -> [6, 12, 117, 12]).
fn version_key(release: &str) -> Vec<u64> {
    release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

/// The release of an image package name (`linux-image-6.12.9+deb12-amd64-unsigned` ->
/// `6.12.9+deb12-amd64`).
fn release_of(name: &str) -> Option<&str> {
    Some(name.strip_prefix("linux-image-")?.trim_end_matches("-unsigned"))
}

/// Picks the newest release among package names matched by `apt-cache search`, preferring the
/// unsigned image package of that release. Returns (release, package).
pub fn pick_newest(names: &[&str]) -> Option<(String, String)> {
    pick_below(names, None)
}

/// [`pick_newest`] among the releases older than `below` (when given): the previous point
/// release of a series.
pub fn pick_below(names: &[&str], below: Option<&str>) -> Option<(String, String)> {
    let limit = below.map(version_key);
    let mut best: Option<(Vec<u64>, String, String)> = None;
    for name in names {
        let Some(release) = release_of(name) else { continue };
        let unsigned = name.ends_with("-unsigned");
        let key = version_key(release);
        if limit.as_ref().is_some_and(|l| key >= *l) {
            continue;
        }
        let better = match &best {
            None => true,
            Some((k, r, p)) => key > *k || (key == *k && r == release && unsigned && !p.ends_with("-unsigned")),
        };
        if better {
            best = Some((key, release.to_string(), name.to_string()));
        }
    }
    best.map(|(_, r, p)| (r, p))
}

/// The packages of `release` that `Depends:` text (of its image package) names: the split
/// layout's `linux-binary-`, `linux-modules-` and `linux-base-RELEASE`; none for the single
/// package layout.
pub fn split_packages(depends: &str, release: &str) -> Vec<String> {
    let mut out = Vec::new();
    for dep in depends.split(',').flat_map(|alt| alt.split('|')) {
        let name = dep.split_whitespace().next().unwrap_or("");
        let part = ["linux-binary-", "linux-modules-", "linux-base-"]
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(|r| r == release));
        if part && !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// The Debian archive the host's own apt sources use (the URI of a source for a Debian
/// suite, not the security archive), for the extra suites; `SEAMLESS_DEBIAN_MIRROR` overrides.
fn debian_mirror() -> Result<String> {
    if let Ok(m) = std::env::var("SEAMLESS_DEBIAN_MIRROR") {
        return Ok(m);
    }
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "sources" || e == "list")) {
            texts.push(std::fs::read_to_string(f).unwrap_or_default());
        }
    }
    texts
        .iter()
        .find_map(|t| mirror_in(t))
        .context("no Debian archive in the host's apt sources to fetch other suites from (set SEAMLESS_DEBIAN_MIRROR)")
}

/// The archive URI in one apt sources file (one-line `deb` or deb822 format) whose suites
/// include a Debian release's main suite.
fn mirror_in(text: &str) -> Option<String> {
    const SUITES: &[&str] = &["bookworm", "trixie", "forky", "sid", "stable", "testing", "unstable"];
    let is_main =
        |suite: &str| SUITES.contains(&suite) || suite.strip_suffix("-updates").is_some_and(|s| SUITES.contains(&s));
    for line in text.lines().map(str::trim).filter(|l| l.starts_with("deb ")) {
        let rest = line["deb ".len()..].trim_start();
        // `deb [options] URI suite components...`
        let rest = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']').map(|(_, after)| after).unwrap_or(""),
            None => rest,
        };
        if let [uri, suite, ..] = rest.split_whitespace().collect::<Vec<_>>().as_slice() {
            if is_main(suite) {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()));
        let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else { continue };
        let enabled = field("Enabled:").is_none_or(|e| e != "no");
        if enabled
            && field("Types:").is_none_or(|t| t.split_whitespace().any(|t| t == "deb"))
            && suites.split_whitespace().any(is_main)
        {
            return uris.split_whitespace().next().map(|u| u.trim_end_matches('/').to_string());
        }
    }
    None
}

/// apt with the host's sources, or with a private configuration of extra suites.
struct Apt {
    opts: Vec<String>,
    private: Option<PathBuf>,
}

impl Apt {
    fn new(source: Source) -> Result<Apt> {
        let Source::Private(suites) = source else { return Ok(Apt { opts: Vec::new(), private: None }) };
        let dir = cache_dir().join("apt");
        for d in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(dir.join(d)).with_context(|| format!("creating {}", dir.join(d).display()))?;
        }
        let mirror = debian_mirror()?;
        let mut list = String::new();
        for s in suites {
            list.push_str(&format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {s} main\n"
            ));
        }
        let sources = dir.join("sources.list");
        if std::fs::read_to_string(&sources).ok().as_deref() != Some(list.as_str()) {
            std::fs::write(&sources, &list)?;
            // Other suites: the lists must be fetched again.
            let _ = std::fs::remove_file(dir.join("updated"));
        }
        let opts = vec![
            format!("-o=Dir::Etc::sourcelist={}", sources.display()),
            "-o=Dir::Etc::sourceparts=-".into(),
            format!("-o=Dir::State::Lists={}", dir.join("lists").display()),
            format!("-o=Dir::Cache={}", dir.join("cache").display()),
            // The downloads land in the root-owned cache, which apt's sandbox user cannot write.
            "-o=APT::Sandbox::User=root".into(),
        ];
        Ok(Apt { opts, private: Some(dir) })
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(&self.opts);
        c
    }

    /// `apt-get update`; for the private configuration also when its lists are a day old.
    fn update(&self) -> Result<()> {
        run(self.cmd("apt-get").arg("update")).map(|_| ())?;
        if let Some(dir) = &self.private {
            std::fs::write(dir.join("updated"), "")?;
        }
        Ok(())
    }

    fn stale(&self) -> bool {
        let Some(dir) = &self.private else { return false };
        let age = std::fs::metadata(dir.join("updated")).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        age.is_none_or(|a| a > std::time::Duration::from_secs(24 * 3600))
    }

    fn search(&self, regex: &str) -> Result<Vec<String>> {
        let out = run(self.cmd("apt-cache").args(["search", "--names-only", regex]))?;
        Ok(out.lines().filter_map(|l| l.split(" - ").next()).map(str::trim).map(String::from).collect())
    }

    fn depends(&self, package: &str) -> Result<String> {
        let out = run(self.cmd("apt-cache").args(["show", "--no-all-versions", package]))?;
        Ok(out.lines().filter_map(|l| l.strip_prefix("Depends:")).collect::<Vec<_>>().join(","))
    }
}

/// The release of `which` to fetch: pinned by its variable, else picked from the archive.
fn choose(which: Which, apt: &Apt) -> Result<(String, String)> {
    let mut names = apt.search(which.regex())?;
    if names.is_empty() || apt.stale() {
        apt.update()?;
        names = apt.search(which.regex())?;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    if let Ok(pin) = std::env::var(which.pin_var()) {
        let pinned: Vec<&str> = refs.iter().copied().filter(|n| release_of(n) == Some(pin.as_str())).collect();
        return pick_newest(&pinned)
            .with_context(|| format!("{}={pin}: no such package in apt-cache", which.pin_var()));
    }
    let below = match which {
        // The point release before B (B's own pin included).
        Which::P => Some(choose(Which::B, apt)?.0),
        _ => None,
    };
    pick_below(&refs, below.as_deref()).with_context(|| {
        format!(
            "no package matches {}{} in apt-cache",
            which.regex(),
            below.map(|b| format!(" below {b}")).unwrap_or_default()
        )
    })
}

fn find_deb(debs: &Path, package: &str) -> Option<PathBuf> {
    std::fs::read_dir(debs).ok()?.flatten().map(|e| e.path()).find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
    })
}

/// Moves what the split layout keeps in `usr/lib/modules/RELEASE` to where the single package
/// layout has it: `lib/modules/RELEASE`, `boot/vmlinuz-`, `boot/config-`, `boot/System.map-`.
fn normalize_layout(tree: &Path, release: &str) -> Result<()> {
    let usr = tree.join("usr/lib/modules").join(release);
    let lib = tree.join("lib/modules").join(release);
    if usr.is_dir() && !lib.exists() {
        std::fs::create_dir_all(tree.join("lib/modules"))?;
        std::fs::rename(&usr, &lib).with_context(|| format!("moving {} to {}", usr.display(), lib.display()))?;
    }
    std::fs::create_dir_all(tree.join("boot"))?;
    for (inside, boot) in [("vmlinuz", "vmlinuz"), ("config", "config"), ("System.map", "System.map")] {
        let from = lib.join(inside);
        let to = tree.join(format!("boot/{boot}-{release}"));
        if from.is_file() && !to.exists() {
            std::fs::rename(&from, &to)?;
        }
    }
    Ok(())
}

/// Finds, fetches and unpacks the kernel `which` (or the release pinned by its variable,
/// [`Which::pin_var`]).
pub fn fetch(which: Which) -> Result<Kernel> {
    let _guard = lock("kernels")?;
    let apt = Apt::new(which.source())?;
    let (release, package) = choose(which, &apt)?;
    let cache = cache_dir();
    let root = cache.join("kernels").join(&release);
    let marker = root.join(".seamless-complete");
    if let Ok(text) = std::fs::read_to_string(&marker) {
        let packages: Vec<String> = text.lines().map(String::from).collect();
        return Ok(Kernel { release, package, packages, root });
    }
    let mut packages = vec![package.clone()];
    packages.extend(split_packages(&apt.depends(&package)?, &release));
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs)?;
    let missing: Vec<&String> = packages.iter().filter(|p| find_deb(&debs, p).is_none()).collect();
    if !missing.is_empty() {
        eprintln!("vm: downloading {}", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "));
        run(apt.cmd("apt-get").current_dir(&debs).arg("download").args(&missing))?;
    }
    let tmp = cache.join("kernels").join(format!("{release}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for p in &packages {
        let deb =
            find_deb(&debs, p).with_context(|| format!("apt-get download {p} left no .deb in {}", debs.display()))?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    }
    normalize_layout(&tmp, &release)?;
    run(Command::new("depmod").arg("-b").arg(&tmp).arg(&release))?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&tmp, &root)?;
    let k = Kernel { release, package, packages, root };
    for needed in [k.vmlinuz(), k.config(), k.modules_dir().join("modules.dep")] {
        if !needed.exists() {
            bail!("{} left no {}", k.packages.join(" "), needed.display());
        }
    }
    std::fs::write(&marker, k.packages.join("\n") + "\n")?;
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_release_and_unsigned_preferred() {
        let names = [
            "linux-image-6.12.9+deb12-amd64",
            "linux-image-6.12.117+deb12-amd64",
            "linux-image-6.12.117+deb12-amd64-unsigned",
            "linux-image-6.12.100+deb12-amd64-unsigned",
        ];
        assert_eq!(
            pick_newest(&names),
            Some(("6.12.117+deb12-amd64".into(), "linux-image-6.12.117+deb12-amd64-unsigned".into()))
        );
        let a = ["linux-image-6.1.0-9-amd64", "linux-image-6.1.0-56-amd64"];
        assert_eq!(pick_newest(&a).map(|p| p.0), Some("6.1.0-56-amd64".into()));
        // The point release before the newest.
        assert_eq!(
            pick_below(&names, Some("6.12.117+deb12-amd64")),
            Some(("6.12.100+deb12-amd64".into(), "linux-image-6.12.100+deb12-amd64-unsigned".into()))
        );
        assert_eq!(pick_below(&names, Some("6.12.9+deb12-amd64")), None);
        let c = ["linux-image-7.2.12+deb13-amd64", "linux-image-7.3.4+deb13-amd64", "linux-image-7.10.1+deb13-amd64"];
        assert_eq!(pick_newest(&c).map(|p| p.0), Some("7.10.1+deb13-amd64".into()));
    }

    #[test]
    fn split_layout_parts_come_from_depends() {
        let r = "7.3.4+deb13-amd64";
        let d = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), linux-binary-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), linux-modules-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1)";
        assert_eq!(
            split_packages(d, r),
            ["linux-base-7.3.4+deb13-amd64", "linux-binary-7.3.4+deb13-amd64", "linux-modules-7.3.4+deb13-amd64"]
        );
        // The single-package layout depends on nothing of its release.
        assert!(split_packages("kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2)", "6.1.0-57-amd64")
            .is_empty());
        // Another release's parts are not taken.
        assert!(split_packages("linux-binary-7.3.40+deb13-amd64", r).is_empty());
    }

    #[test]
    fn the_mirror_comes_from_the_host_sources() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(mirror_in(deb822).as_deref(), Some("http://mirror.example/debian"));
        let security_first = "Types: deb\nURIs: http://s.example/debian-security\nSuites: bookworm-security\n\n\
                              Types: deb\nURIs: http://m.example/debian/\nSuites: bookworm\n";
        assert_eq!(mirror_in(security_first).as_deref(), Some("http://m.example/debian"));
        let one_line = "# comment\ndeb [signed-by=/k.gpg] http://m.example/debian bookworm main\n";
        assert_eq!(mirror_in(one_line).as_deref(), Some("http://m.example/debian"));
        assert_eq!(mirror_in("deb http://m.example/debian bookworm main").as_deref(), Some("http://m.example/debian"));
        assert_eq!(mirror_in("deb https://packages.example/apt cloud-sdk main\n"), None);
    }

    #[test]
    fn split_layout_is_normalized() {
        let t = std::env::temp_dir().join(format!("seamless-kernels-{}", std::process::id()));
        let m = t.join("usr/lib/modules/7.3.4+deb13-amd64");
        std::fs::create_dir_all(m.join("kernel")).unwrap();
        for f in ["vmlinuz", "config", "System.map", "modules.builtin"] {
            std::fs::write(m.join(f), f).unwrap();
        }
        normalize_layout(&t, "7.3.4+deb13-amd64").unwrap();
        assert_eq!(std::fs::read_to_string(t.join("boot/vmlinuz-7.3.4+deb13-amd64")).unwrap(), "vmlinuz");
        assert_eq!(std::fs::read_to_string(t.join("boot/config-7.3.4+deb13-amd64")).unwrap(), "config");
        assert!(t.join("lib/modules/7.3.4+deb13-amd64/modules.builtin").exists());
        assert!(t.join("lib/modules/7.3.4+deb13-amd64/kernel").is_dir());
        std::fs::remove_dir_all(&t).unwrap();
    }
}
