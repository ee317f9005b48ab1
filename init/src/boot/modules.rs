//! Loading the kernel modules listed in the initramfs, in order.
//!
//! The list is `/etc/seamless/modules`: one module file per line, relative to
//! `/lib/modules/$(uname -r)/` unless absolute; blank lines and `#` comments are skipped. The
//! image builder orders it so that every module comes after its dependencies.

use seamless_sys::module::{load_module_file, Loaded};
use std::path::{Path, PathBuf};

/// Where the list lives in the initramfs.
pub const MODULE_LIST: &str = "/etc/seamless/modules";

/// What loading the list did.
#[derive(Debug, Default)]
pub struct ModulesReport {
    /// Modules inserted.
    pub inserted: usize,
    /// Modules that were already there.
    pub present: usize,
    /// Modules that failed, with the reason.
    pub failed: Vec<String>,
}

/// The module files named by the list text, resolved against the modules directory.
pub fn parse_list(text: &str, modules_dir: &Path) -> Vec<PathBuf> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| if l.starts_with('/') { PathBuf::from(l) } else { modules_dir.join(l) })
        .collect()
}

/// Loads every module of the list. A missing list is not an error (a kernel with everything
/// built in needs none).
pub fn load_listed(release: &str) -> ModulesReport {
    let mut report = ModulesReport::default();
    let text = match std::fs::read_to_string(MODULE_LIST) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::debug!("no {MODULE_LIST}: no modules to load");
            return report;
        }
        Err(e) => {
            report.failed.push(format!("{MODULE_LIST}: {e}"));
            return report;
        }
    };
    let dir = Path::new("/lib/modules").join(release);
    for path in parse_list(&text, &dir) {
        match load_module_file(&path, "") {
            Ok(Loaded::Inserted) => {
                log::debug!("loaded {}", path.display());
                report.inserted += 1;
            }
            Ok(Loaded::AlreadyLoaded) => report.present += 1,
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    report
}

/// The name a module file gives its module (`nf_tables.ko.xz` -> `nf_tables`; `-` and `_`
/// are the same in module names).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// The files to load, dependencies first, for module `name` according to the text of
/// `modules.dep` (a line `path: deps...`, whose dependencies modprobe loads from the last to
/// the first); `None` when the module is not listed.
pub fn dep_order(modules_dep: &str, name: &str) -> Option<Vec<String>> {
    let want = name.replace('-', "_");
    modules_dep.lines().find_map(|l| {
        let (path, deps) = l.split_once(':')?;
        if module_name(path.trim()) != want {
            return None;
        }
        let mut order: Vec<String> = deps.split_whitespace().rev().map(str::to_string).collect();
        order.push(path.trim().to_string());
        Some(order)
    })
}

/// Loads module `name` and its dependencies from `/lib/modules/RELEASE` (for modules a
/// subsystem needs later, e.g. nf_tables for the network lock, where no `modprobe` can load
/// them on demand). Returns how many were inserted; a module built into the kernel (listed in
/// `modules.builtin`) needs nothing.
pub fn load_with_deps(release: &str, name: &str) -> Result<usize, String> {
    let dir = Path::new("/lib/modules").join(release);
    let dep_file = dir.join("modules.dep");
    let deps = std::fs::read_to_string(&dep_file).map_err(|e| format!("{}: {e}", dep_file.display()))?;
    let Some(order) = dep_order(&deps, name) else {
        let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        if builtin.lines().any(|l| module_name(l) == name.replace('-', "_")) {
            return Ok(0);
        }
        return Err(format!("module {name} is not in {}", dep_file.display()));
    };
    let mut inserted = 0;
    for rel in order {
        match load_module_file(&dir.join(&rel), "") {
            Ok(Loaded::Inserted) => {
                log::info!("loaded module {rel}");
                inserted += 1;
            }
            Ok(Loaded::AlreadyLoaded) => {}
            Err(e) => return Err(format!("loading {rel} (for {name}): {e}")),
        }
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_resolves_relative_paths() {
        let l = parse_list("# deps first\nkernel/a.ko\n\n /x/b.ko.xz \n", Path::new("/lib/modules/6.1"));
        assert_eq!(l, vec![PathBuf::from("/lib/modules/6.1/kernel/a.ko"), PathBuf::from("/x/b.ko.xz")]);
    }

    #[test]
    fn dependencies_come_first() {
        let dep = "kernel/net/netfilter/nfnetlink.ko.xz:\n\
                   kernel/net/netfilter/nf_tables.ko.xz: kernel/net/netfilter/nfnetlink.ko.xz kernel/lib/libcrc32c.ko.xz\n";
        assert_eq!(
            dep_order(dep, "nf_tables").unwrap(),
            vec![
                "kernel/lib/libcrc32c.ko.xz",
                "kernel/net/netfilter/nfnetlink.ko.xz",
                "kernel/net/netfilter/nf_tables.ko.xz"
            ]
        );
        assert_eq!(dep_order(dep, "nf-tables").unwrap().len(), 3);
        assert!(dep_order(dep, "nft").is_none());
    }
}
