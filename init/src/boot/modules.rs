//! Loading the kernel modules listed in the initramfs, in order.
//!
//! The list is `/etc/seamless/modules`: one module file per line, relative to
//! `/lib/modules/$(uname -r)/` unless absolute; blank lines and `#` comments are skipped. The
//! image builder orders it so that every module comes after its dependencies.

use seamless_sys::chain;
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
            report.failed.push(format!("{MODULE_LIST}: {}", chain(&e)));
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
            Err(e) => report.failed.push(chain(&e).to_string()),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_resolves_relative_paths() {
        let l = parse_list("# deps first\nkernel/a.ko\n\n /x/b.ko.xz \n", Path::new("/lib/modules/6.1"));
        assert_eq!(l, vec![PathBuf::from("/lib/modules/6.1/kernel/a.ko"), PathBuf::from("/x/b.ko.xz")]);
    }
}
