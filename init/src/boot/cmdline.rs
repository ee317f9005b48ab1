//! The kernel command line, as far as the early boot stage cares: where the root filesystem
//! is, how to mount it, which init to run, and the `seamless.*` options.

/// What `/proc/cmdline` asks of the early boot stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// `root=`: the root device (a `/dev/...` path).
    pub root: Option<String>,
    /// `rootfstype=`: the root filesystem type; tried from `/proc/filesystems` when absent.
    pub rootfstype: Option<String>,
    /// `rootflags=`: filesystem-specific mount options.
    pub rootflags: Option<String>,
    /// `ro` / `rw`: the last one wins; read-only when neither is given, like the kernel.
    pub read_only: bool,
    /// `init=`: the real init; `/sbin/init` when absent.
    pub init: Option<String>,
    /// `rootdelay=` (seconds) or `seamless.rootwait=` (milliseconds): how long to wait for the
    /// root device to appear.
    pub root_wait_ms: u64,
    /// `seamless.pmemwait=` (milliseconds): how long to wait for `/dev/pmem*` devices when the
    /// firmware map announces persistent memory.
    pub pmem_wait_ms: u64,
    /// `seamless.region=off` disables the region search; `seamless.region=PATH` looks only there.
    pub region: RegionChoice,
    /// `seamless.debug`: log debug messages too.
    pub debug: bool,
    /// `seamless.init=`: the real init when seamless-init itself is `init=` on the real root.
    pub real_init: Option<String>,
}

/// Where to look for a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionChoice {
    /// The initramfs file `/seamless/region.img`, then every `/dev/pmem*` with the magic.
    Auto,
    /// Do not look.
    Off,
    /// Only this path (a block device or a region file).
    Path(String),
}

/// Default wait for the root device.
pub const DEFAULT_ROOT_WAIT_MS: u64 = 15_000;
/// Default wait for pmem devices.
pub const DEFAULT_PMEM_WAIT_MS: u64 = 3_000;

impl Default for BootParams {
    fn default() -> Self {
        Self {
            root: None,
            rootfstype: None,
            rootflags: None,
            read_only: true,
            init: None,
            root_wait_ms: DEFAULT_ROOT_WAIT_MS,
            pmem_wait_ms: DEFAULT_PMEM_WAIT_MS,
            region: RegionChoice::Auto,
            debug: false,
            real_init: None,
        }
    }
}

/// Splits a command line into words, honouring double quotes (`key="a b"`).
pub fn split(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

impl BootParams {
    /// Parses a kernel command line. Unknown words are ignored; malformed numbers keep the
    /// default and are reported in the returned warnings.
    pub fn parse(cmdline: &str) -> (Self, Vec<String>) {
        let mut p = Self::default();
        let mut warnings = Vec::new();
        let mut num = |key: &str, v: &str, scale: u64, slot: &mut u64| match v.parse::<u64>() {
            Ok(n) => *slot = n.saturating_mul(scale),
            Err(_) => warnings.push(format!("ignoring {key}={v}: not a number")),
        };
        for w in split(cmdline) {
            let (k, v) = match w.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (w.as_str(), None),
            };
            match (k, v) {
                ("root", Some(v)) => p.root = Some(v.to_string()),
                ("rootfstype", Some(v)) => p.rootfstype = Some(v.to_string()),
                ("rootflags", Some(v)) => p.rootflags = Some(v.to_string()),
                ("init", Some(v)) => p.init = Some(v.to_string()),
                ("ro", None) => p.read_only = true,
                ("rw", None) => p.read_only = false,
                ("rootdelay", Some(v)) => num("rootdelay", v, 1000, &mut p.root_wait_ms),
                ("seamless.rootwait", Some(v)) => num("seamless.rootwait", v, 1, &mut p.root_wait_ms),
                ("seamless.pmemwait", Some(v)) => num("seamless.pmemwait", v, 1, &mut p.pmem_wait_ms),
                ("seamless.region", Some("off")) => p.region = RegionChoice::Off,
                ("seamless.region", Some(v)) => p.region = RegionChoice::Path(v.to_string()),
                ("seamless.debug", None) => p.debug = true,
                ("seamless.init", Some(v)) => p.real_init = Some(v.to_string()),
                _ => {}
            }
        }
        (p, warnings)
    }

    /// The init to execute after the switch.
    pub fn init_path(&self) -> &str {
        self.init.as_deref().unwrap_or("/sbin/init")
    }

    /// The root device as a path, for a caller that runs after udev made the `/dev/disk/by-*`
    /// links (a distribution initramfs): `root=UUID=...`, `LABEL=`, `PARTUUID=`, `PARTLABEL=`
    /// map to those links, `block:/dev/...` and `/dev/...` are taken as they are. `None` for
    /// no `root=` or one that names no local block device (`root=nfs...`, `root=zfs:...`).
    pub fn root_device_path(&self) -> Option<String> {
        let spec = self.root.as_deref()?;
        let spec = spec.strip_prefix("block:").unwrap_or(spec);
        if spec.starts_with('/') {
            return Some(spec.to_string());
        }
        let (tag, value) = spec.split_once('=')?;
        let dir = match tag {
            "UUID" => "by-uuid",
            "LABEL" => "by-label",
            "PARTUUID" => "by-partuuid",
            "PARTLABEL" => "by-partlabel",
            _ => return None,
        };
        if value.is_empty() || value.contains('/') {
            return None;
        }
        let value = if tag == "PARTUUID" { value.to_ascii_lowercase() } else { value.to_string() };
        Some(format!("/dev/disk/{dir}/{value}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_device_path_maps_tags_to_udev_links() {
        let path = |c: &str| BootParams::parse(c).0.root_device_path();
        assert_eq!(path("root=/dev/vda1 ro").as_deref(), Some("/dev/vda1"));
        assert_eq!(path("root=block:/dev/sda2").as_deref(), Some("/dev/sda2"));
        assert_eq!(path("root=UUID=1234-ab").as_deref(), Some("/dev/disk/by-uuid/1234-ab"));
        assert_eq!(path("root=LABEL=rootfs").as_deref(), Some("/dev/disk/by-label/rootfs"));
        assert_eq!(path("root=PARTUUID=ABCD-01").as_deref(), Some("/dev/disk/by-partuuid/abcd-01"));
        assert_eq!(path("root=PARTLABEL=root").as_deref(), Some("/dev/disk/by-partlabel/root"));
        assert_eq!(path("root=zfs:rpool/ROOT"), None);
        assert_eq!(path("root=LABEL=../../x"), None);
        assert_eq!(path("root=UUID="), None);
        assert_eq!(path("quiet"), None);
    }

    #[test]
    fn parses_root_options() {
        let (p, w) = BootParams::parse(
            "console=ttyS0 memmap=256M!1G root=/dev/vda rootfstype=ext4 rw init=/bin/sh rootdelay=2 seamless.pmemwait=50\n",
        );
        assert!(w.is_empty());
        assert_eq!(p.root.as_deref(), Some("/dev/vda"));
        assert_eq!(p.rootfstype.as_deref(), Some("ext4"));
        assert!(!p.read_only);
        assert_eq!(p.init_path(), "/bin/sh");
        assert_eq!(p.root_wait_ms, 2000);
        assert_eq!(p.pmem_wait_ms, 50);
        assert_eq!(p.region, RegionChoice::Auto);
    }

    #[test]
    fn defaults_and_last_flag_wins() {
        let (p, _) = BootParams::parse("rw ro seamless.region=off");
        assert!(p.read_only);
        assert_eq!(p.init_path(), "/sbin/init");
        assert_eq!(p.region, RegionChoice::Off);
        let (p, w) = BootParams::parse("rootdelay=x seamless.region=/dev/pmem1");
        assert_eq!(w.len(), 1);
        assert_eq!(p.root_wait_ms, DEFAULT_ROOT_WAIT_MS);
        assert_eq!(p.region, RegionChoice::Path("/dev/pmem1".into()));
    }

    #[test]
    fn quotes_group_words() {
        assert_eq!(split(r#"a "b c" d="e f"  "#), vec!["a", "b c", "d=e f"]);
    }
}
