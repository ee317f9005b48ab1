//! Loading kernel modules from files with `finit_module(2)`.

use crate::error::{SysError, SysResult};
use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `MODULE_INIT_COMPRESSED_FILE`: the file is compressed (xz, zstd or gzip) and the kernel
/// decompresses it itself (needs `CONFIG_MODULE_DECOMPRESS`).
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// How a load ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The module was inserted.
    Inserted,
    /// A module of that name is already loaded (`EEXIST`).
    AlreadyLoaded,
}

/// Loads the module in `path` with parameters `params` (e.g. `""`). Compressed files
/// (`.ko.xz`, `.ko.zst`, `.ko.gz`) are handed to the kernel with
/// [`MODULE_INIT_COMPRESSED_FILE`].
///
/// Man page: `finit_module(2)`.
pub fn load_module_file(path: &Path, params: &str) -> SysResult<Loaded> {
    const CALL: &str = "finit_module";
    let subject = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| SysError::new("open", subject.clone(), e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let compressed = [".ko.xz", ".ko.zst", ".ko.gz"].iter().any(|s| name.ends_with(s));
    let flags = if compressed { MODULE_INIT_COMPRESSED_FILE } else { 0 };
    let params = CString::new(params)
        .map_err(|_| SysError::new(CALL, subject.clone(), io::Error::from(io::ErrorKind::InvalidInput)))?;
    // SAFETY: finit_module takes an open file descriptor (kept alive by `file` for the whole
    // call), a NUL-terminated parameter string alive for the call, and integer flags. It does
    // not retain the pointer.
    let rc =
        unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), libc::c_ulong::from(flags)) };
    if rc == 0 {
        return Ok(Loaded::Inserted);
    }
    let err = SysError::last(CALL, subject);
    if err.errno() == Some(libc::EEXIST) {
        return Ok(Loaded::AlreadyLoaded);
    }
    Err(err)
}

/// Why a module and its dependencies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// `modules.dep` cannot be read.
    #[error("cannot read {}", path.display())]
    DepFile {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The module is neither in `modules.dep` nor built in.
    #[error("module {name} is not in {}", dep_file.display())]
    NotListed {
        /// The module.
        name: String,
        /// The `modules.dep` looked in.
        dep_file: std::path::PathBuf,
    },
    /// A file of the chain failed to load.
    #[error("loading {file} (for {name})")]
    Load {
        /// The module file, relative to the modules directory.
        file: String,
        /// The module wanted.
        name: String,
        /// The failure.
        #[source]
        source: SysError,
    },
}

/// The name a module file gives its module (`nf_tables.ko.xz` -> `nf_tables`; `-` and `_`
/// are the same in module names).
pub fn module_name(path: &str) -> String {
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
pub fn load_with_deps(release: &str, name: &str) -> Result<usize, ModuleError> {
    let dir = Path::new("/lib/modules").join(release);
    let dep_file = dir.join("modules.dep");
    let deps =
        std::fs::read_to_string(&dep_file).map_err(|source| ModuleError::DepFile { path: dep_file.clone(), source })?;
    let Some(order) = dep_order(&deps, name) else {
        let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        if builtin.lines().any(|l| module_name(l) == name.replace('-', "_")) {
            return Ok(0);
        }
        return Err(ModuleError::NotListed { name: name.to_string(), dep_file });
    };
    let mut inserted = 0;
    for rel in order {
        match load_module_file(&dir.join(&rel), "") {
            Ok(Loaded::Inserted) => {
                log::info!("loaded module {rel}");
                inserted += 1;
            }
            Ok(Loaded::AlreadyLoaded) => {}
            Err(source) => return Err(ModuleError::Load { file: rel, name: name.to_string(), source }),
        }
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::dep_order;

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
