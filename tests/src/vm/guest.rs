//! Building a guest: the staged root directory (busybox, init scripts, seamless binaries,
//! the scenario's kernels, scenario files), the ext4 disk made from it, and the QEMU command line.

use super::kernels::Which;
use super::machine::Vm;
use super::{env, host::run};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const INITTAB: &str = include_str!("../../vm-guest/inittab");
const RCS: &str = include_str!("../../vm-guest/rcS");
const CTL: &str = include_str!("../../vm-guest/seamless-ctl");
const CTL_UNIT: &str = include_str!("../../vm-guest/seamless-ctl.service");

/// The command line of both kernels, before scenario additions.
pub const BASE_CMDLINE: &str =
    "console=ttyS0 memmap=256M!1G root=/dev/vda rw rootfstype=ext4 printk.devkmsg=on panic=-1";

/// The host side of the tap device of [`GuestBuilder::tap_peer`], inside the guest's namespace.
pub const TAP_HOST_ADDR: &str = "10.77.0.1";
/// The guest's address on the tap NIC.
pub const TAP_GUEST_ADDR: &str = "10.77.0.2";
/// The hardware address of the guest's tap NIC (seamless-init finds it by this on a new kernel).
pub const TAP_GUEST_MAC: &str = "52:54:00:77:00:02";

/// Writes one file of the staged root: path, contents, mode.
type Put<'a> = &'a dyn Fn(&str, &[u8], u32) -> Result<()>;

enum Content {
    Bytes(Vec<u8>),
    Host(PathBuf),
}

/// Describes a guest; [`GuestBuilder::start`] boots it.
pub struct GuestBuilder {
    pub(crate) name: String,
    pub(crate) boot: Which,
    kernels: Vec<Which>,
    files: Vec<(String, Content, u32)>,
    pub(crate) forwards: Vec<u16>,
    pub(crate) cmdline: String,
    disk_mib: u64,
    pub(crate) memory: String,
    pub(crate) smp: u32,
    service: bool,
    workloads: Vec<String>,
    base_root: Option<PathBuf>,
    chroot_setup: Vec<String>,
    pub(crate) tap_peer: bool,
    /// Size in MiB of a second, empty virtio disk (`/dev/vdb`), or 0 for none.
    pub(crate) extra_disk_mib: u64,
}

impl std::fmt::Debug for GuestBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestBuilder").field("name", &self.name).field("boot", &self.boot).finish_non_exhaustive()
    }
}

impl GuestBuilder {
    /// A guest named `name` (used for its work directory), cold-booting kernel A.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            boot: Which::A,
            kernels: vec![Which::A, Which::B],
            files: Vec::new(),
            forwards: Vec::new(),
            cmdline: BASE_CMDLINE.to_string(),
            disk_mib: 512,
            memory: "2G".into(),
            smp: 2,
            service: false,
            workloads: Vec::new(),
            base_root: None,
            chroot_setup: Vec::new(),
            tap_peer: false,
            extra_disk_mib: 0,
        }
    }

    /// Runs `command` with `sh -c` chrooted into the staged root (with /proc, /sys and /dev
    /// mounted, in a private mount namespace) after every file is in place: e.g.
    /// `update-initramfs -u -k RELEASE` the normal way, natively instead of under TCG.
    pub fn chroot_setup(mut self, command: &str) -> Self {
        self.chroot_setup.push(command.to_string());
        self
    }

    /// Starts the root disk from a copy of `dir`, a distribution root such as
    /// [`super::debian::systemd_root`] (its own `/sbin/init`, kernels and initramfs images under
    /// `/boot`), instead of busybox; the control loop runs there as the systemd unit
    /// `seamless-ctl.service` on ttyS1. The cold boot still goes through the harness's
    /// seamless-init `/init`, which hands over to the distribution's init.
    pub fn base_root(mut self, dir: &Path) -> Self {
        self.base_root = Some(dir.to_path_buf());
        self.disk_mib = self.disk_mib.max(2048);
        self.cmdline.push_str(" net.ifnames=0");
        self
    }

    /// Adds the Debian service (redis-server, redis-cli) with its shared libraries, glibc
    /// included, so dynamically linked programs run in the guest too.
    pub fn with_service(mut self) -> Self {
        self.service = true;
        self
    }

    /// Adds the named test workloads (`tests/workloads/NAME.c`) as `/usr/local/bin/NAME`.
    /// Dynamically linked ones need [`GuestBuilder::with_service`] for glibc.
    pub fn with_workloads(mut self, names: &[&str]) -> Self {
        self.workloads.extend(names.iter().map(|n| n.to_string()));
        self
    }

    /// Cold-boots kernel `w` instead of A (and installs it under /boot).
    pub fn boot_kernel(mut self, w: Which) -> Self {
        self.boot = w;
        self.with_kernel(w)
    }

    /// Also installs kernel `w` under /boot (A and B always are): its image, config and
    /// initramfs images, for an upgrade to it.
    pub fn with_kernel(mut self, w: Which) -> Self {
        if !self.kernels.contains(&w) {
            self.kernels.push(w);
        }
        self
    }

    /// Adds a file to the root disk.
    pub fn file(mut self, guest_path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push((guest_path.to_string(), Content::Bytes(contents.into()), mode));
        self
    }

    /// Copies a host file onto the root disk.
    pub fn host_file(mut self, guest_path: &str, host: &Path, mode: u32) -> Self {
        self.files.push((guest_path.to_string(), Content::Host(host.to_path_buf()), mode));
        self
    }

    /// Adds a boot hook: `/etc/seamless-rc.d/NAME.sh`, run by the guest's rcS on every boot.
    pub fn rc_script(self, name: &str, body: &str) -> Self {
        let path = format!("/etc/seamless-rc.d/{name}.sh");
        self.file(&path, format!("#!/bin/sh\n{body}\n"), 0o755)
    }

    /// Forwards a free host port on 127.0.0.1 to `guest_port` (see [`Vm::host_port`]).
    pub fn forward(mut self, guest_port: u16) -> Self {
        self.forwards.push(guest_port);
        self
    }

    /// A real outside peer: QEMU runs inside a network namespace made for this guest
    /// ([`Vm::peer_netns`]), where a tap device `tap0` has [`TAP_HOST_ADDR`]/24, and the guest
    /// gets a second NIC on it (hardware address [`TAP_GUEST_MAC`], configured with
    /// [`TAP_GUEST_ADDR`]/24 by a boot hook), so its connections to the namespace end in the host
    /// kernel's TCP stack, not in QEMU's user-mode network. The user-mode NIC stays the first
    /// one; its forwarded ports ([`GuestBuilder::forward`]) then listen inside that namespace.
    pub fn tap_peer(mut self) -> Self {
        self.tap_peer = true;
        self.rc_script(
            "tap-peer",
            &format!(
                r#"for d in /sys/class/net/*; do
    [ "$(cat "$d/address" 2>/dev/null)" = "{TAP_GUEST_MAC}" ] || continue
    n=${{d##*/}}
    ip link set "$n" up
    # Already there on a new kernel: seamless-init configured it before the restore.
    ip addr add {TAP_GUEST_ADDR}/24 dev "$n" 2>/dev/null
    echo "seamless-guest: $n ({TAP_GUEST_MAC}) has {TAP_GUEST_ADDR}/24" > /dev/kmsg
done"#
            ),
        )
    }

    /// Appends words to the kernel command line of the cold boot.
    pub fn cmdline(mut self, extra: &str) -> Self {
        self.cmdline.push(' ');
        self.cmdline.push_str(extra);
        self
    }

    /// Boots without `memmap=`: no /dev/pmem0, so an upgrade goes through the initramfs.
    pub fn without_pmem(mut self) -> Self {
        self.cmdline =
            self.cmdline.split_whitespace().filter(|w| !w.starts_with("memmap=")).collect::<Vec<_>>().join(" ");
        self
    }

    /// A second, empty virtio disk of `mib` MiB (`/dev/vdb` in the guest), for data volumes.
    pub fn extra_disk(mut self, mib: u64) -> Self {
        self.extra_disk_mib = mib;
        self
    }

    /// Size of the root disk in MiB (512 by default).
    /// Guest memory (QEMU `-m`, default `2G`).
    pub fn memory(mut self, size: &str) -> Self {
        self.memory = size.to_string();
        self
    }

    pub fn disk_mib(mut self, mib: u64) -> Self {
        self.disk_mib = mib;
        self
    }

    /// Stages the root directory in `dir`.
    fn stage(&self, dir: &Path) -> Result<()> {
        let env = env()?;
        let put = |rel: &str, data: &[u8], mode: u32| -> Result<()> {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(rel.trim_start_matches('/'));
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, data).with_context(|| format!("staging {}", p.display()))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
            Ok(())
        };
        if let Some(base) = &self.base_root {
            std::fs::create_dir_all(dir)?;
            run(Command::new("cp").arg("-a").arg(base.join(".")).arg(dir)).context("copying the base root")?;
            put("etc/seamless-ctl", CTL.as_bytes(), 0o755)?;
            put("etc/systemd/system/seamless-ctl.service", CTL_UNIT.as_bytes(), 0o644)?;
            let wants = dir.join("etc/systemd/system/multi-user.target.wants");
            std::fs::create_dir_all(&wants)?;
            let _ = std::fs::remove_file(wants.join("seamless-ctl.service"));
            std::os::unix::fs::symlink("/etc/systemd/system/seamless-ctl.service", wants.join("seamless-ctl.service"))?;
            put("usr/local/bin/seamless", &std::fs::read(&env.seamless_bin)?, 0o755)?;
            put("usr/local/bin/seamless-init", &std::fs::read(&env.init_bin)?, 0o755)?;
            put("usr/lib/seamless/seamless-init", &std::fs::read(&env.init_bin)?, 0o755)?;
            return self.stage_extras(&put);
        }
        for d in ["proc", "sys", "dev", "run", "tmp", "root", "mnt", "etc/seamless-rc.d", "usr/local/bin"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        put("bin/busybox", &std::fs::read("/bin/busybox").context("reading /bin/busybox")?, 0o755)?;
        let applets = run(Command::new("/bin/busybox").arg("--list-full"))?;
        for a in applets.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "bin/busybox") {
            let link = dir.join(a);
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if !link.exists() {
                std::os::unix::fs::symlink("/bin/busybox", &link)?;
            }
        }
        put("etc/inittab", INITTAB.as_bytes(), 0o644)?;
        put("etc/init.d/rcS", RCS.as_bytes(), 0o755)?;
        put("etc/seamless-ctl", CTL.as_bytes(), 0o755)?;
        put("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
        put("etc/group", b"root:x:0:\n", 0o644)?;
        put("usr/local/bin/seamless", &std::fs::read(&env.seamless_bin)?, 0o755)?;
        put("usr/local/bin/seamless-init", &std::fs::read(&env.init_bin)?, 0o755)?;
        // Where the dracut module and the mkinitcpio hook install it (the `init=` role).
        put("usr/lib/seamless/seamless-init", &std::fs::read(&env.init_bin)?, 0o755)?;
        for &w in &self.kernels {
            let k = env.kernel(w);
            put(&format!("boot/vmlinuz-{}", k.release), &std::fs::read(k.vmlinuz())?, 0o644)?;
            put(&format!("boot/config-{}", k.release), &std::fs::read(k.config())?, 0o644)?;
            put(&format!("boot/initrd.img-{}", k.release), &std::fs::read(env.initrd(w))?, 0o644)?;
            put(&format!("boot/initrd-hooks.img-{}", k.release), &std::fs::read(env.hook_initrd(w))?, 0o644)?;
        }
        if self.service {
            crate::service::install_into(dir)?;
        }
        self.stage_extras(&put)
    }

    /// The scenario's workloads and files.
    fn stage_extras(&self, put: Put<'_>) -> Result<()> {
        let wl_dir = crate::vm::host::cache_dir().join("guest-workloads");
        for w in &self.workloads {
            let bin = crate::workloads::build_named(w, &wl_dir)?;
            put(&format!("usr/local/bin/{w}"), &std::fs::read(&bin)?, 0o755)?;
        }
        for (path, content, mode) in &self.files {
            let data = match content {
                Content::Bytes(b) => b.clone(),
                Content::Host(h) => std::fs::read(h).with_context(|| format!("reading {}", h.display()))?,
            };
            put(path, &data, *mode)?;
        }
        Ok(())
    }

    /// Builds the root disk in `work` and returns its path.
    pub(crate) fn make_disk(&self, work: &Path) -> Result<PathBuf> {
        let staged = work.join("root");
        let _ = std::fs::remove_dir_all(&staged);
        self.stage(&staged)?;
        for c in &self.chroot_setup {
            let script = r#"set -e; R=$1; mount -t proc proc "$R/proc"; mount -t sysfs sysfs "$R/sys"; mount --bind /dev "$R/dev"; chroot "$R" /bin/sh -c "$2""#;
            run(Command::new("unshare")
                .args(["--mount", "--propagation", "private", "sh", "-c", script, "chroot-setup"])
                .arg(&staged)
                .arg(c))
            .with_context(|| format!("running {c:?} in the staged root"))?;
        }
        let disk = work.join("root.img");
        let _ = std::fs::remove_file(&disk);
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "seamless-root", "-d"])
            .arg(&staged)
            .arg(&disk)
            .arg(format!("{}M", self.disk_mib)))
        .context("making the root disk")?;
        let _ = std::fs::remove_dir_all(&staged);
        Ok(disk)
    }

    /// Builds the disk and boots the guest; returns once its control loop answers.
    pub fn start(self) -> Result<Vm> {
        Vm::start(self)
    }
}
