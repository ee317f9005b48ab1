//! Initramfs images made by Debian's own generators (initramfs-tools 0.142, dracut 059) with
//! the seamless hooks of this repository installed the way an operator installs them.
//!
//! The generators run for real in a throw-away chroot inside a private mount namespace
//! (`unshare -m`): its `/usr` and `/etc` are overlays whose lower layer is the host's own and
//! whose upper layer receives the generator's packages (fetched with `apt-get download` into
//! `<cache>/generator-debs/`, unpacked with `dpkg-deb`) and the kernel's modules. Nothing is
//! installed on the host, so dracut never replaces the host's initramfs-tools, and every
//! mount disappears with the namespace.

use super::host::{cache_dir, lock, run};
use super::Kernel;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// How the image is made. Every image is gzip-compressed (the distributions' default is zstd,
/// which `seamless check` reads as well) so that the test guest's busybox can read it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    /// `mkinitramfs` with `/etc/initramfs-tools/hooks/seamless` and
    /// `/etc/initramfs-tools/scripts/local-premount/seamless` installed.
    InitramfsTools,
    /// `dracut --force` with the module in `modules.d` but not asked for.
    DracutPlain,
    /// `dracut --force` with the module asked for by `dracut/seamless.conf` in
    /// `/etc/dracut.conf.d/` (systemd flavour, dracut's default when systemd is there).
    DracutConf,
    /// `dracut --force --add seamless --omit systemd`: the classic shell `/init`.
    DracutClassic,
    /// `dracut --force --add seamless`: the systemd flavour.
    DracutSystemd,
}

impl Generator {
    /// The Debian packages the generator needs beyond what the host has.
    fn packages(self) -> &'static [&'static str] {
        match self {
            // With udev and systemd of one version: the host has systemd but no udev, which
            // both generators put into the image to load the disk's modules.
            Generator::InitramfsTools => &[
                "initramfs-tools-core",
                "initramfs-tools",
                "klibc-utils",
                "libklibc",
                "udev",
                "systemd",
                "libsystemd-shared",
                "libsystemd0",
                "libudev1",
            ],
            _ => &["dracut-core", "dracut", "udev", "systemd", "libsystemd-shared", "libsystemd0", "libudev1"],
        }
    }

    /// The shell commands, run in the chroot's parent with `$R` the chroot, `$K` the kernel
    /// release and `$REPO` the repository, that install the hooks and make `$R/tmp/out.img`.
    fn script(self) -> &'static str {
        match self {
            Generator::InitramfsTools => {
                r#"install -D -m 0755 "$REPO/initramfs-tools/hooks/seamless" "$R/etc/initramfs-tools/hooks/seamless"
install -D -m 0755 "$REPO/initramfs-tools/scripts/local-premount/seamless" "$R/etc/initramfs-tools/scripts/local-premount/seamless"
chroot "$R" mkinitramfs -c gzip -o /tmp/out.img "$K""#
            }
            Generator::DracutPlain => {
                r#"cp -r "$REPO/dracut/90seamless" "$R/usr/lib/dracut/modules.d/"
chroot "$R" dracut --no-hostonly --force --compress gzip --kver "$K" /tmp/out.img"#
            }
            Generator::DracutConf => {
                r#"cp -r "$REPO/dracut/90seamless" "$R/usr/lib/dracut/modules.d/"
install -D -m 0644 "$REPO/dracut/seamless.conf" "$R/etc/dracut.conf.d/90-seamless.conf"
chroot "$R" dracut --no-hostonly --force --compress gzip --kver "$K" /tmp/out.img"#
            }
            Generator::DracutClassic => {
                r#"cp -r "$REPO/dracut/90seamless" "$R/usr/lib/dracut/modules.d/"
chroot "$R" dracut --no-hostonly --force --compress gzip --add seamless --omit systemd --kver "$K" /tmp/out.img"#
            }
            Generator::DracutSystemd => {
                r#"cp -r "$REPO/dracut/90seamless" "$R/usr/lib/dracut/modules.d/"
chroot "$R" dracut --no-hostonly --force --compress gzip --add seamless --kver "$K" /tmp/out.img"#
            }
        }
    }
}

/// The chroot set-up shared by every generator. Arguments: chroot parent, kernel release,
/// unpacked kernel tree, seamless-init, repository, then the .deb files.
const CHROOT: &str = r#"set -euo pipefail
P=$1 K=$2 KROOT=$3 INIT=$4 REPO=$5
shift 5
R=$P/root
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p "$R" "$P/upper/usr" "$P/upper/etc" "$P/work/usr" "$P/work/etc"
mkdir -p "$R/usr" "$R/etc" "$R/proc" "$R/dev" "$R/tmp" "$R/var/tmp" "$R/run" "$R/sys" "$R/boot"
for l in bin lib lib64 sbin; do ln -sfn "usr/$l" "$R/$l"; done
mount -t overlay overlay -o "lowerdir=/usr,upperdir=$P/upper/usr,workdir=$P/work/usr" "$R/usr"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$P/upper/etc,workdir=$P/work/etc" "$R/etc"
mount --bind /dev "$R/dev"
mount -t proc proc "$R/proc"
for deb in "$@"; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$R" --keep-directory-symlink
done
mkdir -p "$R/usr/lib/modules"
cp -a "$KROOT/lib/modules/$K" "$R/usr/lib/modules/"
cp -a "$KROOT/boot/." "$R/boot/"
install -D -m 0755 "$INIT" "$R/usr/lib/seamless/seamless-init"
"#;

fn find_deb(dir: &Path, pkg: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
    })
}

/// The generator's packages, downloaded once into `<cache>/generator-debs/`.
pub fn debs(generator: Generator) -> Result<Vec<PathBuf>> {
    let _guard = lock("generator-debs")?;
    let dir = cache_dir().join("generator-debs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let missing: Vec<&str> = generator.packages().iter().copied().filter(|p| find_deb(&dir, p).is_none()).collect();
    if !missing.is_empty() {
        eprintln!("debian: downloading {}", missing.join(" "));
        let download = || run(Command::new("apt-get").current_dir(&dir).arg("download").args(&missing));
        if download().is_err() {
            run(Command::new("apt-get").arg("update"))?;
            download()?;
        }
    }
    generator
        .packages()
        .iter()
        .map(|p| find_deb(&dir, p).with_context(|| format!("apt-get download {p} left no .deb in {}", dir.display())))
        .collect()
}

/// Debian 12's cryptsetup with its initramfs integration, for the LUKS scenarios
/// (`tests/tests/storage_vm.rs`), downloaded once into `<cache>/crypt-debs/` and installed into
/// a guest's copy of [`systemd_root`] (never into the cached root itself).
pub const CRYPT_PACKAGES: &[&str] =
    &["cryptsetup", "cryptsetup-bin", "cryptsetup-initramfs", "libcryptsetup12", "libpopt0", "busybox"];

/// The [`CRYPT_PACKAGES`] `.deb` files.
pub fn crypt_debs() -> Result<Vec<PathBuf>> {
    let _guard = lock("crypt-debs")?;
    let dir = cache_dir().join("crypt-debs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let missing: Vec<&str> = CRYPT_PACKAGES.iter().copied().filter(|p| find_deb(&dir, p).is_none()).collect();
    if !missing.is_empty() {
        eprintln!("debian: downloading {}", missing.join(" "));
        let download = || run(Command::new("apt-get").current_dir(&dir).arg("download").args(&missing));
        if download().is_err() {
            run(Command::new("apt-get").arg("update"))?;
            download()?;
        }
    }
    CRYPT_PACKAGES
        .iter()
        .map(|p| find_deb(&dir, p).with_context(|| format!("apt-get download {p} left no .deb in {}", dir.display())))
        .collect()
}

/// Makes an initramfs for `kernel` with `generator`, `seamless_init` as
/// `/usr/lib/seamless/seamless-init`, and writes it to `out`. Returns the generator's output.
pub fn build_initramfs(kernel: &Kernel, generator: Generator, seamless_init: &Path, out: &Path) -> Result<String> {
    let debs = debs(generator)?;
    let parent = std::env::temp_dir().join(format!("seamless-gen-{}-{:?}", std::process::id(), generator));
    let _ = std::fs::remove_dir_all(&parent);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let script = format!("{CHROOT}\n{}\ncp \"$R/tmp/out.img\" \"$P/out.img\"\n", generator.script());
    let repo = crate::paths::repo_root();
    let result = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", &script, "seamless-gen"])
        .arg(&parent)
        .arg(&kernel.release)
        .arg(&kernel.root)
        .arg(seamless_init)
        .arg(&repo)
        .args(&debs));
    // The mounts lived only in the namespace, which ended with bash: nothing of the host is
    // below `parent` any more.
    let copied = std::fs::copy(parent.join("out.img"), out);
    let _ = std::fs::remove_dir_all(&parent);
    let log = result.with_context(|| format!("{generator:?} for kernel {}", kernel.release))?;
    copied.with_context(|| format!("{generator:?} made no image"))?;
    if std::fs::metadata(out).map(|m| m.len()).unwrap_or(0) == 0 {
        bail!("{generator:?} wrote an empty image to {}", out.display());
    }
    Ok(log)
}

/// Version of the Debian root below; bump it when its package list changes.
const ROOT_VERSION: &str = "v2";

/// A Debian 12 root made by `mmdebstrap` (installed on the host with apt-get when missing):
/// systemd as init, udev, initramfs-tools, redis-server and memcached (both enabled), lvm2,
/// xfsprogs and btrfs-progs (the storage scenarios' data volumes), and the
/// two scenario kernels' own packages installed with dpkg, so their postinst made
/// `/boot/initrd.img-*` with initramfs-tools. Cached as `<cache>/hosts-debian/root-VERSION`.
pub fn systemd_root() -> Result<PathBuf> {
    let _guard = lock("hosts-debian")?;
    let dir = cache_dir().join("hosts-debian");
    let root = dir.join(format!("root-{ROOT_VERSION}"));
    let marker = dir.join(format!("root-{ROOT_VERSION}.complete"));
    if marker.exists() && root.join("sbin/init").exists() {
        return Ok(root);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if !Path::new("/usr/bin/mmdebstrap").exists() {
        run(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args([
            "install",
            "-y",
            "--no-install-recommends",
            "mmdebstrap",
        ]))?;
    }
    let debs_dir = cache_dir().join("debs");
    let mut kernel_debs = Vec::new();
    for w in [super::Which::A, super::Which::B] {
        let k = super::kernels::fetch(w)?;
        kernel_debs.push(
            find_deb(&debs_dir, &k.package)
                .with_context(|| format!("no {} .deb in {}", k.package, debs_dir.display()))?,
        );
    }
    let tmp = dir.join(format!("root-{ROOT_VERSION}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--mode=root", "--variant=minbase"])
        .arg("--include=systemd-sysv,udev,kmod,initramfs-tools,linux-base,e2fsprogs,iproute2,procps,redis-server,redis-tools,memcached,zstd,lvm2,xfsprogs,btrfs-progs")
        .arg("--customize-hook=mkdir -p \"$1/tmp/k\"");
    for d in &kernel_debs {
        cmd.arg(format!("--customize-hook=copy-in {} /tmp/k", d.display()));
    }
    cmd.arg("--customize-hook=chroot \"$1\" sh -c 'dpkg -i /tmp/k/*.deb && rm -rf /tmp/k'").arg("bookworm").arg(&tmp);
    eprintln!("debian: building the Debian 12 systemd root with mmdebstrap");
    run(&mut cmd).context("mmdebstrap")?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&tmp, &root)?;
    std::fs::write(&marker, "done\n")?;
    Ok(root)
}

/// What a preserved unit must give up for seamless today (README, "Known limits"): the
/// journal's stream sockets do not cross the jump, and a process in its own namespaces
/// (PrivateTmp=, PrivateUsers=, ProtectSystem=, ...) or under a seccomp filter
/// (SystemCallFilter=, MemoryDenyWriteExecute=, ...) is refused by the pre-check, since restore
/// recreates neither. Debian's redis-server and memcached units set all of them; this drop-in
/// resets them.
pub const UNSANDBOXED: &str = "[Service]
StandardOutput=null
StandardError=null
PrivateTmp=no
PrivateDevices=no
PrivateUsers=no
ProtectHome=no
ProtectSystem=no
ProtectClock=no
ProtectControlGroups=no
ProtectHostname=no
ProtectKernelLogs=no
ProtectKernelModules=no
ProtectKernelTunables=no
ProtectProc=default
ReadWritePaths=
ReadWriteDirectories=
NoExecPaths=
ExecPaths=
LockPersonality=no
MemoryDenyWriteExecute=no
RestrictNamespaces=no
RestrictRealtime=no
RestrictSUIDSGID=no
RestrictAddressFamilies=
SystemCallArchitectures=
SystemCallFilter=
";

/// Version of the fleet root below; bump it when its packages or set-up change.
const FLEET_ROOT_VERSION: &str = "v2";

/// What [`fleet_root`] adds to [`systemd_root`], run with the copy as `$1`: openssh-server
/// (its postinst makes the host keys; policy-rc.d keeps it from starting anything in the
/// chroot), python3 for Ansible's modules and dbus (`systemd-run --wait --pipe`, kured's
/// reboot command, talks to systemd over the system bus), installed by the root's own apt-get from
/// Debian's archive, and eth0 configured by systemd-networkd with QEMU's user-network address
/// and no route beyond that subnet.
const FLEET_SETUP: &str = r#"set -euo pipefail
R=$1
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"
mv "$R/etc/resolv.conf" "$R/etc/resolv.conf.orig" 2>/dev/null || true
cp /etc/resolv.conf "$R/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
chroot "$R" apt-get update -qq
DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -qq --no-install-recommends openssh-server python3 dbus
chroot "$R" apt-get clean
rm -f "$R/etc/resolv.conf"
mv "$R/etc/resolv.conf.orig" "$R/etc/resolv.conf" 2>/dev/null || true
rm -f "$R/usr/sbin/policy-rc.d" "$R/var/lib/apt/lists/"*_Packages "$R/var/lib/apt/lists/"*_Release*
mkdir -p "$R/etc/systemd/network"
printf '[Match]\nName=eth0\n\n[Network]\nAddress=10.0.2.15/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' > "$R/etc/systemd/network/10-eth0.network"
chroot "$R" systemctl enable systemd-networkd.service ssh.service
"#;

/// [`systemd_root`] made into a fleet host (Ansible's view of a machine): `sshd` enabled on
/// port 22 with root's key login (`/root/.ssh/authorized_keys` is the guest's to add), python3,
/// dbus, eth0 up as 10.0.2.15/24 for QEMU's host forwarding. Cached as
/// `<cache>/hosts-debian/fleet-VERSION`.
pub fn fleet_root() -> Result<PathBuf> {
    let base = systemd_root()?;
    let _guard = lock("hosts-debian-fleet")?;
    let dir = cache_dir().join("hosts-debian");
    let root = dir.join(format!("fleet-{FLEET_ROOT_VERSION}"));
    let marker = dir.join(format!("fleet-{FLEET_ROOT_VERSION}.complete"));
    if marker.exists() && root.join("usr/sbin/sshd").exists() {
        return Ok(root);
    }
    let tmp = dir.join(format!("fleet-{FLEET_ROOT_VERSION}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    run(Command::new("cp").arg("-a").arg(&base).arg(&tmp)).context("copying the Debian root")?;
    eprintln!("debian: adding openssh-server, python3 and dbus to a copy of the Debian root");
    let result = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", FLEET_SETUP, "fleet-root"])
        .arg(&tmp));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context("installing openssh-server, python3 and dbus into the fleet root"));
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&tmp, &root)?;
    std::fs::write(&marker, "done\n")?;
    Ok(root)
}
