//! Where will the image go? A pmem region big enough, with the same `memmap=` on both
//! command lines; or else the initramfs fallback.

use super::{cmdline_param, current_cmdline, CheckOptions, Verdict};
use seamless_image::pmem_devices;
use seamless_sys::chain;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Size of a block device or file in bytes.
pub fn device_size(p: &Path) -> std::io::Result<u64> {
    std::fs::File::open(p)?.seek(SeekFrom::End(0))
}

/// The region device the upgrade would use: the one asked for, else the first pmem device.
pub fn chosen(opts: &CheckOptions) -> Option<PathBuf> {
    opts.region.clone().or_else(|| pmem_devices().into_iter().next())
}

/// Verdicts on the region.
pub fn check(opts: &CheckOptions, need: u64) -> Vec<Verdict> {
    let mut v = Vec::new();
    let cur = current_cmdline();
    let new = opts.cmdline.clone().unwrap_or_else(|| cur.clone());
    let Some(dev) = chosen(opts) else {
        v.push(Verdict::warn(
            "region",
            format!(
                "no /dev/pmem* (add memmap=SIZE!OFFSET to the command line): the image (~{} MiB) goes into the new initramfs, in RAM",
                need >> 20
            ),
        ));
        return v;
    };
    match device_size(&dev) {
        Ok(size) if size >= need => {
            v.push(Verdict::ok("region", format!("{}: {} MiB, ~{} MiB needed", dev.display(), size >> 20, need >> 20)))
        }
        Ok(size) => v.push(Verdict::fail(
            "region",
            format!(
                "{}: {} MiB but ~{} MiB needed: enlarge memmap= (takes a reboot) or preserve fewer processes",
                dev.display(),
                size >> 20,
                need >> 20
            ),
        )),
        Err(e) => v.push(Verdict::fail("region", format!("{}: {}", dev.display(), chain(&e)))),
    }
    match (cmdline_param(&cur, "memmap"), cmdline_param(&new, "memmap")) {
        (Some(a), Some(b)) if a == b => v.push(Verdict::ok("memmap on new cmdline", format!("memmap={a} on both"))),
        (Some(a), other) => v.push(Verdict::fail(
            "memmap on new cmdline",
            format!(
                "current kernel has memmap={a}, the new command line has {}: the new kernel would reuse that memory and destroy the image; pass the same memmap=",
                other.map(|o| format!("memmap={o}")).unwrap_or_else(|| "none".into())
            ),
        )),
        (None, _) => v.push(Verdict::warn(
            "memmap on new cmdline",
            format!("{} is not from memmap= (no memmap= on this command line); make sure the new kernel keeps it", dev.display()),
        )),
    }
    v
}
