//! Initramfs images for the scenario kernels: `seamless-init` as `/init`, the modules it needs
//! (dependencies first, computed from `modules.dep`) and the list it loads them from.

use super::kernels::Kernel;
use anyhow::{bail, Context, Result};
use seamless_image::newc;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules the early stage needs: pmem (the region), virtio disk and network, ext4 and
/// crc32c for its checksums; `virtio_pci` is a module on 6.1 only. Built-in ones are skipped.
/// `a|b` names alternatives, the first that the kernel has is taken: the crc32c algorithm's
/// module is `crc32c_generic` up to 6.x and `crc32c_cryptoapi` on 7.x (whose ext4 no longer
/// needs it, it calls the crc library).
/// The socket-diag modules are what `seamless dump` reads sockets through, and nf_tables (with
/// nfnetlink and libcrc32c) is what the network lock is built with; a full system loads them
/// on demand, but the test guest's root has no /lib/modules, so they come here.
pub const WANTED_MODULES: &[&str] = &[
    "crc32c_generic|crc32c_cryptoapi",
    "libnvdimm",
    "nd_pmem",
    "nd_e820",
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "ext4",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
    "unix_diag",
    "nf_tables",
];

/// Where the list goes in the image (read by `seamless_init::boot::modules`).
pub const LIST_PATH: &str = "etc/seamless/modules";

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The module files (relative to the modules directory) to load, in a valid order, for
/// `wanted`, given the text of `modules.dep` and `modules.builtin`.
pub fn load_order(dep: &str, builtin: &str, wanted: &[&str]) -> Result<Vec<String>> {
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for line in dep.lines() {
        let Some((m, d)) = line.split_once(':') else { continue };
        by_name.insert(module_name(m), m.to_string());
        deps.insert(m.to_string(), d.split_whitespace().map(String::from).collect());
    }
    let builtin: BTreeSet<String> = builtin.lines().map(module_name).collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(m: &str, deps: &BTreeMap<String, Vec<String>>, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        if !seen.insert(m.to_string()) {
            return;
        }
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, seen, order);
        }
        order.push(m.to_string());
    }
    for w in wanted {
        let names: Vec<String> = w.split('|').map(|n| n.replace('-', "_")).collect();
        if names.iter().any(|n| builtin.contains(n)) {
            continue;
        }
        match names.iter().find_map(|n| by_name.get(n)) {
            Some(path) => visit(path, &deps, &mut seen, &mut order),
            None => bail!("module {w} is neither in modules.dep nor built in"),
        }
    }
    Ok(order)
}

/// Options of an initramfs image.
#[derive(Debug, Clone, Default)]
pub struct InitramfsSpec {
    /// Also pack busybox as `/bin/sh`, the rescue shell of `seamless-init`.
    pub rescue_shell: bool,
    /// Build it like a distribution's initramfs with the seamless hook (as the dracut module
    /// and the mkinitcpio hook do): a shell `/init` that loads the modules, runs
    /// `seamless-init verify-root` before mounting the root filesystem, mounts it, moves /run
    /// along and switches to it, executing `init=` from the command line.
    pub distro_hooks: bool,
}

/// The `/init` of a hook-style initramfs: what a classic dracut or mkinitcpio image does, in
/// a few lines of busybox shell, with the seamless hook where those tools put it.
pub const HOOK_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 tmpfs /run
echo "hook-initramfs: started on $(uname -r)" > /dev/kmsg
while read -r m; do
    case "$m" in ''|'#'*) continue ;; esac
    m=${m%.xz}; m=${m%.zst}; m=${m%.gz}
    insmod "/lib/modules/$(uname -r)/$m" 2>/dev/null
done < /etc/seamless/modules
root=/dev/vda init=/sbin/init
for w in $(cat /proc/cmdline); do
    case "$w" in root=*) root=${w#root=} ;; init=*) init=${w#init=} ;; esac
done
while [ ! -b "$root" ]; do sleep 0.05; done
# The seamless hook (dracut pre-mount / mkinitcpio run_hook).
/usr/lib/seamless/seamless-init verify-root --device "$root" || echo "hook-initramfs: root not verified" > /dev/kmsg
mount -t ext4 -o rw "$root" /newroot
mount --move /run /newroot/run
mount --move /dev /newroot/dev
umount /sys /proc
echo "hook-initramfs: switching root, init $init" > /dev/kmsg
exec switch_root /newroot "$init"
"#;

/// Builds the initramfs of `kernel` with `init_bin` as `/init` into `out`. Returns the
/// module list it carries.
pub fn build(kernel: &Kernel, init_bin: &Path, spec: &InitramfsSpec, out: &Path) -> Result<Vec<String>> {
    let mdir = kernel.modules_dir();
    let read = |f: &str| std::fs::read_to_string(mdir.join(f)).with_context(|| format!("{}/{f}", mdir.display()));
    let order = load_order(&read("modules.dep")?, &read("modules.builtin")?, WANTED_MODULES)?;
    let mut c = newc::Builder::new();
    for d in ["dev", "proc", "sys", "run", "newroot", "etc/seamless", "tmp"] {
        c.dir(d);
    }
    c.char_dev("dev/console", 0o600, 5, 1);
    c.char_dev("dev/kmsg", 0o644, 1, 11);
    c.char_dev("dev/null", 0o666, 1, 3);
    let init = std::fs::read(init_bin).with_context(|| format!("reading {}", init_bin.display()))?;
    if spec.distro_hooks {
        c.file("init", 0o755, HOOK_INIT.as_bytes());
        c.dir("usr/lib/seamless");
        c.file("usr/lib/seamless/seamless-init", 0o755, &init);
    } else {
        c.file("init", 0o755, &init);
    }
    let base = format!("lib/modules/{}", kernel.release);
    for m in &order {
        let mut data = std::fs::read(mdir.join(m)).with_context(|| format!("reading module {m}"))?;
        let mut name = m.clone();
        if spec.distro_hooks {
            // busybox insmod takes plain modules: Debian's are xz-compressed, other
            // kernels' may be zstd or gzip.
            if let Some((ext, tool)) =
                [(".xz", "xz"), (".zst", "zstd"), (".gz", "gzip")].into_iter().find(|(ext, _)| m.ends_with(ext))
            {
                data = decompress(tool, &mdir.join(m))?;
                name.truncate(name.len() - ext.len());
            }
        }
        c.file(&format!("{base}/{name}"), 0o644, &data);
    }
    let mut list = String::from("# Loaded in order by seamless-init (dependencies first).\n");
    for m in &order {
        list.push_str(m);
        list.push('\n');
    }
    c.file(LIST_PATH, 0o644, list.as_bytes());
    if spec.rescue_shell || spec.distro_hooks {
        let bb = std::fs::read("/bin/busybox").context("reading /bin/busybox")?;
        c.file("bin/busybox", 0o755, &bb);
        c.symlink("bin/sh", "busybox");
    }
    std::fs::write(out, c.finish()).with_context(|| format!("writing {}", out.display()))?;
    Ok(order)
}

fn decompress(tool: &str, path: &Path) -> Result<Vec<u8>> {
    let out =
        std::process::Command::new(tool).arg("-dc").arg(path).output().with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!("{tool} -dc {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_first_and_builtins_are_skipped() {
        let dep = "kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/jbd2/jbd2.ko.xz\n\
                   kernel/lib/crc16.ko.xz:\nkernel/fs/jbd2/jbd2.ko.xz:\n\
                   kernel/drivers/nvdimm/nd_pmem.ko.xz: kernel/drivers/nvdimm/nd_btt.ko.xz kernel/drivers/nvdimm/libnvdimm.ko.xz\n\
                   kernel/drivers/nvdimm/nd_btt.ko.xz: kernel/drivers/nvdimm/libnvdimm.ko.xz\n\
                   kernel/drivers/nvdimm/libnvdimm.ko.xz:\n";
        let order =
            load_order(dep, "kernel/drivers/virtio/virtio_pci.ko\n", &["nd_pmem", "virtio_pci", "ext4"]).unwrap();
        assert_eq!(
            order,
            vec![
                "kernel/drivers/nvdimm/nd_btt.ko.xz".to_string().replace("nd_btt", "libnvdimm"),
                "kernel/drivers/nvdimm/nd_btt.ko.xz".into(),
                "kernel/drivers/nvdimm/nd_pmem.ko.xz".into(),
                "kernel/lib/crc16.ko.xz".into(),
                "kernel/fs/jbd2/jbd2.ko.xz".into(),
                "kernel/fs/ext4/ext4.ko.xz".into(),
            ]
        );
        assert!(load_order(dep, "", &["nonexistent"]).is_err());
        // Alternatives: the first the kernel has.
        let dep7 = "kernel/crypto/crc32c-cryptoapi.ko.xz:\n";
        assert_eq!(
            load_order(dep7, "", &["crc32c_generic|crc32c_cryptoapi"]).unwrap(),
            vec!["kernel/crypto/crc32c-cryptoapi.ko.xz".to_string()]
        );
        assert!(load_order(dep7, "kernel/crypto/crc32c_generic.ko\n", &["crc32c_generic|crc32c_cryptoapi"])
            .unwrap()
            .is_empty());
        assert!(load_order(dep7, "", &["crc32c_generic|crc32c_intel"]).is_err());
    }
}
