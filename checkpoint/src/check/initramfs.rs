//! Does the new kernel's initramfs run seamless at the right point of its boot?
//!
//! The archive is read (every newc part, compressed or not) and classified from its contents:
//! which generator made it (dracut, initramfs-tools, mkinitcpio, or seamless-init itself as
//! `/init`), which flavour its `/init` is (a shell script or systemd), whether the seamless
//! hook for that generator and flavour is inside and wired so that it runs before the root
//! filesystem is checked and mounted, and whether an image appended to the initramfs (no
//! `memmap=` region) will still be reachable after the initramfs's switch to the real root.

use super::{CheckOptions, Verdict};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where the dracut module, the initramfs-tools hook and the mkinitcpio hooks install the
/// binary.
pub const WRAPPER_PATH: &str = "usr/lib/seamless/seamless-init";

/// Kernel parameters that keep every initramfs generator's fsck (and systemd's
/// `systemd-fsck-root`) off the root filesystem for the one boot into the new kernel: the
/// root was frozen clean and is verified before the mount, and must not change in between.
/// `fsck.mode=skip`: systemd-fsck (systemd initramfs of dracut and mkinitcpio, and the real
/// system) and initramfs-tools; `fastboot`: dracut's classic `mount-root` and initramfs-tools;
/// `rd.skipfsck`: dracut (both flavours). mkinitcpio's busybox `/init` honours none of them:
/// its `seamless` runtime hook replaces `fsck_root` after a positive verdict instead.
pub const FSCK_OFF: &[&str] = &["fsck.mode=skip", "fastboot", "rd.skipfsck"];

/// `cmdline` with [`FSCK_OFF`] added (each once) when the initramfs runs the seamless hook.
pub fn with_fsck_off(cmdline: &str, hooks: bool) -> String {
    let mut words: Vec<&str> = cmdline.split_whitespace().collect();
    if hooks {
        for w in FSCK_OFF {
            if !words.contains(w) {
                words.push(w);
            }
        }
    }
    words.join(" ")
}

/// One entry of an initramfs archive.
pub use seamless_image::newc::Entry;

/// The program that built the initramfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    /// dracut (`dracut-lib.sh`, `lib/dracut/`).
    Dracut,
    /// Debian's initramfs-tools (`conf/initramfs.conf`, `scripts/functions`).
    InitramfsTools,
    /// Arch's mkinitcpio (`init_functions`, `hooks/`, `VERSION` + `config`).
    Mkinitcpio,
    /// seamless-init itself is `/init` (tests/src/vm/initramfs.rs builds these).
    SeamlessInit,
    /// None of the above.
    Unknown,
}

/// What `/init` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// A shell script (dracut classic, initramfs-tools, mkinitcpio with busybox).
    Shell,
    /// systemd (dracut's systemd flavour, mkinitcpio's `systemd` hook).
    Systemd,
    /// Something else (a binary that is neither).
    Other,
}

/// What the archive tells about seamless.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The generator.
    pub generator: Generator,
    /// The flavour of `/init`.
    pub flavour: Flavour,
    /// `usr/lib/seamless/seamless-init` is inside.
    pub wrapper: bool,
    /// That seamless-init copies an appended image to `/run/seamless/` for the switch.
    pub carries_image: bool,
    /// `Ok(how it runs)` when the hook is inside and wired to run before the root mount,
    /// `Err(what is wrong and what to do)` otherwise.
    pub hook: Result<String, String>,
    /// Number of entries.
    pub entries: usize,
}

pub(crate) fn find<'a>(entries: &'a [Entry], name: &str) -> Option<&'a Entry> {
    entries.iter().find(|e| e.name == name)
}

fn has(entries: &[Entry], name: &str) -> bool {
    find(entries, name).is_some()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Top-level `exit` lines in a sourced hook end the sourcing shell (dracut's `/init`).
fn has_exit_line(script: &str) -> bool {
    script.lines().any(|l| {
        let l = l.trim_start();
        l == "exit" || l.starts_with("exit ") || l.starts_with("exit;")
    })
}

fn flavour_of(entries: &[Entry]) -> Flavour {
    let Some(init) = find(entries, "init") else { return Flavour::Other };
    if init.is_symlink() {
        return if init.text().contains("systemd") { Flavour::Systemd } else { Flavour::Other };
    }
    if init.data.starts_with(b"#!") {
        return Flavour::Shell;
    }
    if init.data.starts_with(b"\x7fELF") && contains(&init.data, b"systemd") && !contains(&init.data, b"seamless-init")
    {
        return Flavour::Systemd;
    }
    Flavour::Other
}

fn generator_of(entries: &[Entry], flavour: Flavour) -> Generator {
    let any = |f: &dyn Fn(&str) -> bool| entries.iter().any(|e| f(&e.name));
    if any(&|n| n.ends_with("dracut-lib.sh") || n.starts_with("usr/lib/dracut/") || n.starts_with("lib/dracut/")) {
        return Generator::Dracut;
    }
    if has(entries, "conf/initramfs.conf") && has(entries, "scripts/functions") {
        return Generator::InitramfsTools;
    }
    if has(entries, "init_functions")
        || (has(entries, "VERSION") && has(entries, "config"))
        || any(&|n| n.starts_with("usr/lib/initcpio/") || n.starts_with("hooks/"))
    {
        return Generator::Mkinitcpio;
    }
    if flavour == Flavour::Other {
        if let Some(init) = find(entries, "init") {
            let target = find(entries, init.text().trim_start_matches('/')).filter(|_| init.is_symlink());
            let bin = target.unwrap_or(init);
            if contains(&bin.data, b"seamless-init") {
                return Generator::SeamlessInit;
            }
        }
    }
    Generator::Unknown
}

fn dracut_hook(entries: &[Entry], flavour: Flavour) -> Result<String, String> {
    let hook = entries.iter().find(|e| {
        e.name.contains("dracut/hooks/pre-mount/") && e.name.ends_with("seamless-verify-root.sh") && !e.is_symlink()
    });
    let Some(hook) = hook else {
        return Err("dracut image without the seamless pre-mount hook: install dracut/90seamless and rebuild with `dracut --force --add seamless` (or dracut/seamless.conf in /etc/dracut.conf.d/)".into());
    };
    if has_exit_line(&hook.text()) {
        return Err(format!(
            "/{} is from an older seamless: it ends with `exit`, which ends dracut's /init (emergency shell) or dracut-pre-mount early; install the current dracut/90seamless and rebuild",
            hook.name
        ));
    }
    match flavour {
        Flavour::Systemd => {
            if entries.iter().any(|e| e.name.ends_with("systemd/system/dracut-pre-mount.service")) {
                Ok(format!(
                    "/{} runs in dracut-pre-mount.service, before systemd-fsck-root and sysroot.mount",
                    hook.name
                ))
            } else {
                Err("dracut systemd image without dracut-pre-mount.service (module dracut-systemd): the pre-mount hook would never run; rebuild with dracut-systemd".into())
            }
        }
        _ => Ok(format!("/{} is sourced by /init before mount-root (fsck, mount)", hook.name)),
    }
}

fn initramfs_tools_hook(entries: &[Entry]) -> Result<String, String> {
    const SCRIPT: &str = "scripts/local-premount/seamless";
    if !has(entries, SCRIPT) {
        return Err("initramfs-tools image without /scripts/local-premount/seamless: install initramfs-tools/hooks/seamless and initramfs-tools/scripts/local-premount/seamless under /etc/initramfs-tools/ and run update-initramfs -u -k VERSION".into());
    }
    match find(entries, "scripts/local-premount/ORDER") {
        Some(order) if order.text().contains("/scripts/local-premount/seamless") => {
            Ok("/scripts/local-premount/seamless runs before checkfs and the root mount".into())
        }
        _ => Err("/scripts/local-premount/seamless is inside but not listed in /scripts/local-premount/ORDER, so initramfs-tools never runs it: rebuild with update-initramfs".into()),
    }
}

fn mkinitcpio_hook(entries: &[Entry], flavour: Flavour) -> Result<String, String> {
    let unit = "usr/lib/systemd/system/seamless-verify-root.service";
    let wants = "usr/lib/systemd/system/initrd-root-fs.target.wants/seamless-verify-root.service";
    match flavour {
        Flavour::Systemd => {
            if has(entries, unit) && has(entries, wants) {
                Ok(format!("/{unit} (sd-seamless) runs before systemd-fsck-root and sysroot.mount"))
            } else if has(entries, "hooks/seamless") {
                Err("systemd-based mkinitcpio image with the busybox hook `seamless`: no unit runs it; use `sd-seamless` in HOOKS instead (after systemd) and run mkinitcpio -P".into())
            } else {
                Err("systemd-based mkinitcpio image without sd-seamless: add `sd-seamless` to HOOKS after systemd and run mkinitcpio -P".into())
            }
        }
        _ => {
            let listed = find(entries, "config").is_some_and(|c| {
                c.text().lines().any(|l| {
                    l.trim_start().starts_with("HOOKS=")
                        && l.split(|ch: char| !(ch.is_alphanumeric() || ch == '-' || ch == '_'))
                            .any(|w| w == "seamless")
                })
            });
            if has(entries, "hooks/seamless") && listed {
                Ok("/hooks/seamless runs as a runtime hook before fsck_root and the root mount".into())
            } else if has(entries, "hooks/seamless") {
                Err("/hooks/seamless is inside but not in the image's HOOKS (/config), so /init never runs it: put `seamless` in HOOKS after block and run mkinitcpio -P".into())
            } else {
                Err("mkinitcpio image without the seamless hook: add `seamless` to HOOKS after block and run mkinitcpio -P".into())
            }
        }
    }
}

/// Classifies an initramfs from its entries.
pub fn classify(entries: &[Entry]) -> Layout {
    let flavour = flavour_of(entries);
    let generator = generator_of(entries, flavour);
    let wrapper_entry = find(entries, WRAPPER_PATH);
    let carries_image = wrapper_entry.is_some_and(|w| contains(&w.data, b"/run/seamless/region.img"));
    let hook = match generator {
        Generator::Dracut => dracut_hook(entries, flavour),
        Generator::InitramfsTools => initramfs_tools_hook(entries),
        Generator::Mkinitcpio => mkinitcpio_hook(entries, flavour),
        Generator::SeamlessInit => Ok("seamless-init is /init: it verifies, mounts and restores by itself".into()),
        Generator::Unknown => match find(entries, "init") {
            Some(init) if flavour == Flavour::Shell && init.text().contains("seamless-init verify-root") => {
                Ok("its own shell /init calls seamless-init verify-root".into())
            }
            _ => Err("initramfs of an unknown generator: seamless supports dracut, initramfs-tools and mkinitcpio (see README.md)".into()),
        },
    };
    let hook = match hook {
        Ok(h) if generator != Generator::SeamlessInit && wrapper_entry.is_none() => {
            Err(format!("the hook is inside but /{WRAPPER_PATH} is not ({h}): install seamless-init there and rebuild"))
        }
        other => other,
    };
    Layout { generator, flavour, wrapper: wrapper_entry.is_some(), carries_image, hook, entries: entries.len() }
}

impl Layout {
    /// A short name: "dracut (systemd)", "initramfs-tools", ...
    pub fn describe(&self) -> String {
        let g = match self.generator {
            Generator::Dracut => "dracut",
            Generator::InitramfsTools => "initramfs-tools",
            Generator::Mkinitcpio => "mkinitcpio",
            Generator::SeamlessInit => "seamless-init as /init",
            Generator::Unknown => "unknown generator",
        };
        let f = match self.flavour {
            Flavour::Shell => "shell /init",
            Flavour::Systemd => "systemd",
            Flavour::Other => "binary /init",
        };
        format!("{g} ({f})")
    }

    /// True when the processes are restored by seamless-init as `init=` after the
    /// distribution initramfs switched to the real root.
    pub fn hands_over(&self) -> bool {
        self.wrapper && self.generator != Generator::SeamlessInit
    }
}

/// Whether the initramfs in `entries` unlocks dm-crypt volumes before its own cryptsetup would
/// ask for their passphrases: initramfs-tools with `scripts/local-top/seamless` listed before
/// `cryptroot` in `scripts/local-top/ORDER`, or seamless-init as `/init`. dracut and mkinitcpio
/// images are not wired for it yet.
pub fn unlocks_crypt(entries: &[Entry]) -> Result<String, String> {
    let layout = classify(entries);
    match layout.generator {
        Generator::SeamlessInit => Ok("seamless-init as /init unlocks before it verifies the root".into()),
        Generator::InitramfsTools => {
            let order = find(entries, "scripts/local-top/ORDER").map(|e| e.text()).unwrap_or_default();
            let pos = |s: &str| order.lines().position(|l| l.starts_with(&format!("/scripts/local-top/{s} ")));
            match (pos("seamless"), pos("cryptroot")) {
                (Some(a), Some(c)) if a < c => Ok("/scripts/local-top/seamless runs before cryptroot".into()),
                (Some(_), None) => Ok("/scripts/local-top/seamless runs (no cryptroot in the image)".into()),
                _ => Err("the initramfs-tools image does not run /scripts/local-top/seamless before cryptroot, which would ask for the passphrase: install initramfs-tools/scripts/local-top/seamless under /etc/initramfs-tools/ and run update-initramfs -u -k VERSION".into()),
            }
        }
        g => Err(format!(
            "{}: seamless does not unlock dm-crypt volumes in {g:?} images yet (their cryptsetup would ask for the passphrase)",
            layout.describe()
        )),
    }
}

/// Verdict on the target initramfs.
pub fn check(opts: &CheckOptions) -> Vec<Verdict> {
    let Some(initrd) = &opts.initrd else {
        return vec![Verdict::warn("initramfs", "no --initrd given: not checked")];
    };
    let entries = match read(initrd) {
        Ok(e) => e,
        Err(e) => return vec![Verdict::fail("initramfs", seamless_sys::chain(&e).to_string())],
    };
    let layout = classify(&entries);
    let mut v = Vec::new();
    match &layout.hook {
        Ok(how) => v.push(Verdict::ok("initramfs", format!("{}: {}: {how}", initrd.display(), layout.describe()))),
        Err(why) => v.push(Verdict::fail(
            "initramfs",
            format!("{}: {} ({} entries): {why}", initrd.display(), layout.describe(), layout.entries),
        )),
    }
    if layout.hook.is_ok() && layout.hands_over() {
        let pmem = super::region::chosen(opts).is_some();
        if pmem {
            v.push(Verdict::ok(
                "image past switch_root",
                "the image is in the pmem region, which the init= role reads",
            ));
        } else if layout.carries_image {
            v.push(Verdict::ok(
                "image past switch_root",
                "no region: the image is appended to the initramfs; verify-root copies it to /run/seamless/region.img (RAM: /run needs room for it) before the switch",
            ));
        } else {
            v.push(Verdict::fail(
                "image past switch_root",
                format!("no memmap= region and the seamless-init inside {} predates carrying the image past switch_root: the image appended to the initramfs would be deleted before seamless-init (init=) could read it; install the current seamless-init and rebuild the initramfs, or add memmap= to both kernels", initrd.display()),
            ));
        }
        v.push(Verdict::ok(
            "fsck",
            format!("kept off the verified root for this boot: upgrade adds {}", FSCK_OFF.join(" ")),
        ));
    }
    v
}

/// Whether `seamless upgrade` must hand over through `init=` (the initramfs has the
/// seamless hook of a distribution generator rather than seamless-init as `/init`).
pub fn hands_over(path: &Path) -> bool {
    read(path).map(|e| classify(&e).hands_over()).unwrap_or(false)
}

/// Why an initramfs cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// The file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The initramfs.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Neither a newc archive nor a compressed one starts there.
    #[error("unknown data at offset {at}")]
    Unknown {
        /// Offset in the file.
        at: usize,
    },
    /// The decompressor could not be run.
    #[error("cannot run {tool} to decompress")]
    Decompressor {
        /// The tool.
        tool: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An archive is malformed.
    #[error(transparent)]
    Newc(#[from] seamless_image::newc::NewcError),
}

/// Names of all entries of an initramfs.
pub fn list(path: &Path) -> Result<Vec<String>, InitramfsError> {
    Ok(read(path)?.into_iter().map(|e| e.name).collect())
}

/// Every entry of an initramfs: concatenated newc archives, possibly followed by one
/// compressed archive (gzip, zstd, xz, lz4: decompressed by the system's tool).
pub fn read(path: &Path) -> Result<Vec<Entry>, InitramfsError> {
    let data = std::fs::read(path).map_err(|source| InitramfsError::Read { path: path.into(), source })?;
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        if data[pos] == 0 {
            pos += 1;
            continue;
        }
        if data[pos..].starts_with(b"070701") || data[pos..].starts_with(b"070702") {
            pos = parse_newc(&data, pos, &mut entries)?;
            continue;
        }
        let tool: &[&str] = match &data[pos..(pos + 4).min(data.len())] {
            [0x1f, 0x8b, ..] => &["gzip", "-dc"],
            [0x28, 0xb5, 0x2f, 0xfd] => &["zstd", "-dcq"],
            [0xfd, b'7', b'z', b'X'] => &["xz", "-dc"],
            [0x02, 0x21, 0x4c, 0x18] | [0x04, 0x22, 0x4d, 0x18] => &["lz4", "-dc"],
            _ => return Err(InitramfsError::Unknown { at: pos }),
        };
        let out = decompress(tool, &data[pos..])?;
        let mut p = 0;
        while p < out.len() {
            if out[p] == 0 {
                p += 1;
                continue;
            }
            p = parse_newc(&out, p, &mut entries)?;
        }
        break;
    }
    Ok(entries)
}

fn decompress(tool: &[&'static str], input: &[u8]) -> Result<Vec<u8>, InitramfsError> {
    let err = |source| InitramfsError::Decompressor { tool: tool[0], source };
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(err)?;
    let mut stdin = child.stdin.take().ok_or_else(|| err(std::io::ErrorKind::BrokenPipe.into()))?;
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().map_err(err)?;
    let _ = feeder.join();
    Ok(out.stdout)
}

/// Parses one newc archive starting at `pos`, up to and including its trailer.
fn parse_newc(d: &[u8], pos: usize, entries: &mut Vec<Entry>) -> Result<usize, InitramfsError> {
    Ok(seamless_image::newc::parse(d, pos, entries)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive of (name, mode, data) entries.
    fn newc(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut b = seamless_image::newc::Builder::new();
        for (name, mode, data) in entries {
            b.raw(name, *mode, data);
        }
        b.finish()
    }

    const FILE: u32 = 0o100755;
    const LINK: u32 = 0o120777;
    const WRAPPER: &[u8] = b"\x7fELF seamless-init /run/seamless/region.img";
    const OLD_WRAPPER: &[u8] = b"\x7fELF seamless-init";
    const HOOK: &str = include_str!("../../../dracut/90seamless/seamless-verify-root.sh");

    fn layout(entries: &[(&str, u32, &[u8])]) -> Layout {
        let dir = std::env::temp_dir().join(format!("seamless-initramfs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = dir.join(format!("{}.img", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        // An early uncompressed part followed by a gzip-compressed main part, like
        // distribution images with early microcode.
        let mut img = newc(&[("kernel/x86/microcode/GenuineIntel.bin", 0o100644, b"ucode")]);
        let mut gz = Command::new("gzip").arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let main = newc(entries);
        let mut stdin = gz.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || stdin.write_all(&main));
        let out = gz.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        img.extend_from_slice(&out.stdout);
        std::fs::write(&path, img).unwrap();
        let entries = read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(entries.iter().any(|e| e.name == "kernel/x86/microcode/GenuineIntel.bin"));
        classify(&entries)
    }

    #[test]
    fn dracut_classic_and_systemd_flavours() {
        let hook = ("usr/lib/dracut/hooks/pre-mount/10-seamless-verify-root.sh", FILE, HOOK.as_bytes());
        let classic = layout(&[
            ("init", FILE, b"#!/bin/sh\n. /lib/dracut-lib.sh\n"),
            ("usr/lib/dracut-lib.sh", FILE, b""),
            hook,
            (WRAPPER_PATH, FILE, WRAPPER),
        ]);
        assert_eq!((classic.generator, classic.flavour), (Generator::Dracut, Flavour::Shell));
        assert!(classic.hook.is_ok(), "{:?}", classic.hook);
        assert!(classic.hands_over() && classic.carries_image);

        let systemd = [
            ("init", LINK, b"usr/lib/systemd/systemd".as_slice()),
            ("usr/lib/systemd/systemd", FILE, b"\x7fELF systemd"),
            ("usr/lib/dracut-lib.sh", FILE, b""),
            hook,
            (WRAPPER_PATH, FILE, WRAPPER),
        ];
        let no_unit = layout(&systemd);
        assert_eq!(no_unit.flavour, Flavour::Systemd);
        assert!(no_unit.hook.unwrap_err().contains("dracut-pre-mount.service"));
        let mut with_unit = systemd.to_vec();
        with_unit.push(("usr/lib/systemd/system/dracut-pre-mount.service", 0o100644, b"[Unit]"));
        assert!(layout(&with_unit).hook.is_ok());
    }

    #[test]
    fn dracut_hook_that_exits_is_refused() {
        let old = b"#!/bin/sh\n/usr/lib/seamless/seamless-init verify-root --device \"$dev\"\nexit 0\n";
        let l = layout(&[
            ("init", FILE, b"#!/bin/sh\n"),
            ("lib/dracut-lib.sh", FILE, b""),
            ("lib/dracut/hooks/pre-mount/10-seamless-verify-root.sh", FILE, old),
            (WRAPPER_PATH, FILE, WRAPPER),
        ]);
        assert!(l.hook.unwrap_err().contains("exit"));
        assert!(!has_exit_line(HOOK), "the shipped dracut hook must not exit");
    }

    #[test]
    fn initramfs_tools_needs_the_script_in_order() {
        let base = [
            ("init", FILE, b"#!/bin/sh\n".as_slice()),
            ("conf/initramfs.conf", 0o100644, b"MODULES=most\n"),
            ("scripts/functions", 0o100644, b""),
            ("scripts/local-premount/seamless", FILE, b"#!/bin/sh\n"),
            (WRAPPER_PATH, FILE, WRAPPER),
        ];
        let l = layout(&base);
        assert_eq!(l.generator, Generator::InitramfsTools);
        assert!(l.hook.unwrap_err().contains("ORDER"));
        let mut ordered = base.to_vec();
        ordered.push((
            "scripts/local-premount/ORDER",
            0o100644,
            b"/scripts/local-premount/seamless \"$@\"\n[ -e /conf/param.conf ] && . /conf/param.conf\n",
        ));
        assert!(layout(&ordered).hook.is_ok());
        let missing = layout(&base[..3]);
        assert!(missing.hook.unwrap_err().contains("initramfs-tools/hooks/seamless"));
    }

    #[test]
    fn crypt_unlock_needs_the_local_top_script_before_cryptroot() {
        let base = [
            ("init", FILE, b"#!/bin/sh\n".as_slice()),
            ("conf/initramfs.conf", 0o100644, b"MODULES=most\n"),
            ("scripts/functions", 0o100644, b""),
            ("scripts/local-premount/seamless", FILE, b"#!/bin/sh\n"),
            (WRAPPER_PATH, FILE, WRAPPER),
        ];
        let entries = |extra: &[(&str, u32, &[u8])]| -> Vec<Entry> {
            base.iter().chain(extra).map(|&(n, m, d)| Entry { name: n.into(), mode: m, data: d.to_vec() }).collect()
        };
        let p = "[ -e /conf/param.conf ] && . /conf/param.conf\n";
        let good = format!("/scripts/local-top/seamless \"$@\"\n{p}/scripts/local-top/cryptroot \"$@\"\n{p}");
        assert!(unlocks_crypt(&entries(&[("scripts/local-top/ORDER", 0o100644, good.as_bytes())])).is_ok());
        let late = format!("/scripts/local-top/cryptroot \"$@\"\n{p}/scripts/local-top/seamless \"$@\"\n{p}");
        assert!(unlocks_crypt(&entries(&[("scripts/local-top/ORDER", 0o100644, late.as_bytes())])).is_err());
        let none = format!("/scripts/local-top/cryptroot \"$@\"\n{p}");
        assert!(unlocks_crypt(&entries(&[("scripts/local-top/ORDER", 0o100644, none.as_bytes())]))
            .unwrap_err()
            .contains("local-top/seamless"));
    }

    #[test]
    fn mkinitcpio_busybox_and_systemd() {
        let busybox = layout(&[
            ("init", FILE, b"#!/usr/bin/ash\n. /init_functions\n"),
            ("init_functions", 0o100644, b""),
            ("config", 0o100644, b"EARLYHOOKS=''\nHOOKS='udev seamless'\n"),
            ("hooks/seamless", 0o100644, b"run_hook() { :; }\n"),
            (WRAPPER_PATH, FILE, WRAPPER),
        ]);
        assert_eq!((busybox.generator, busybox.flavour), (Generator::Mkinitcpio, Flavour::Shell));
        assert!(busybox.hook.is_ok(), "{:?}", busybox.hook);

        let sd = [
            ("init", FILE, b"\x7fELF /usr/lib/systemd systemd".as_slice()),
            ("VERSION", 0o100644, b"41"),
            ("config", 0o100644, b"HOOKS='seamless'\n"),
            ("hooks/seamless", 0o100644, b"run_hook() { :; }\n"),
            (WRAPPER_PATH, FILE, WRAPPER),
        ];
        let wrong = layout(&sd);
        assert_eq!((wrong.generator, wrong.flavour), (Generator::Mkinitcpio, Flavour::Systemd));
        assert!(wrong.hook.unwrap_err().contains("sd-seamless"));
        let mut right = sd.to_vec();
        right.push(("usr/lib/systemd/system/seamless-verify-root.service", 0o100644, b"[Unit]"));
        right.push((
            "usr/lib/systemd/system/initrd-root-fs.target.wants/seamless-verify-root.service",
            LINK,
            b"../seamless-verify-root.service",
        ));
        assert!(layout(&right).hook.is_ok());
    }

    #[test]
    fn wrapper_and_carrying_are_required_where_they_matter() {
        let no_wrapper = layout(&[
            ("init", FILE, b"#!/bin/sh\n"),
            ("lib/dracut-lib.sh", FILE, b""),
            ("lib/dracut/hooks/pre-mount/10-seamless-verify-root.sh", FILE, HOOK.as_bytes()),
        ]);
        assert!(no_wrapper.hook.unwrap_err().contains(WRAPPER_PATH));
        let old = layout(&[
            ("init", FILE, b"#!/bin/sh\n"),
            ("lib/dracut-lib.sh", FILE, b""),
            ("lib/dracut/hooks/pre-mount/10-seamless-verify-root.sh", FILE, HOOK.as_bytes()),
            (WRAPPER_PATH, FILE, OLD_WRAPPER),
        ]);
        assert!(old.hook.is_ok() && !old.carries_image);
        let ours = layout(&[("init", FILE, b"\x7fELF seamless-init")]);
        assert_eq!(ours.generator, Generator::SeamlessInit);
        assert!(ours.hook.is_ok() && !ours.hands_over());
        let unknown = layout(&[("init", FILE, b"#!/bin/sh\nexec /sbin/init\n")]);
        assert!(unknown.hook.is_err());
    }

    #[test]
    fn fsck_is_kept_off_only_for_hook_images() {
        assert_eq!(with_fsck_off("root=/dev/vda ro", false), "root=/dev/vda ro");
        assert_eq!(with_fsck_off("root=/dev/vda fastboot", true), "root=/dev/vda fastboot fsck.mode=skip rd.skipfsck");
    }
}
