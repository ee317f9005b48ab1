//! A real Debian service for the guest: `redis-server` and `redis-cli` from Debian's archive,
//! with the shared libraries they need, unpacked into a directory that is copied into the
//! guest's root disk. The packages' maintainer scripts are not run: the harness starts the
//! server itself, as root, with its configuration on the command line.

use crate::vm::host::{cache_dir, lock, run};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the guest needs from Debian to run the service.
pub const SERVICE_PACKAGES: &[&str] = &["redis-server", "redis-tools"];

/// The binaries the guest gets; everything else comes from their ELF `NEEDED` entries.
pub const SERVICE_BINARIES: &[&str] = &["usr/bin/redis-server", "usr/bin/redis-cli"];

/// A guest shell command that waits (up to about two minutes) until redis answers, then
/// stores `key1`..`key200` = `value1`..`value200` through one `redis-cli` (one process: under
/// TCG on a busy host, 200 separate `redis-cli` runs took minutes).
pub const REDIS_FILL_200: &str =
    "for i in $(seq 600); do [ \"$(redis-cli ping 2>/dev/null)\" = PONG ] && break; sleep 0.2; done; \
for i in $(seq 200); do echo \"SET key$i value$i\"; done | redis-cli >/dev/null";

/// The dependency closure of `pkgs`, keeping the packages themselves and the libraries
/// (`lib*`, except Perl's); the rest (maintainer-script tools) never runs in the guest.
pub fn closure(pkgs: &[&str]) -> Result<Vec<String>> {
    let mut cmd = Command::new("apt-cache");
    cmd.args(["depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks"]);
    cmd.args(["--no-replaces", "--no-enhances"]).args(pkgs);
    let out = match run(&mut cmd) {
        Ok(o) => o,
        Err(_) => {
            run(Command::new("apt-get").arg("update"))?;
            run(&mut cmd)?
        }
    };
    let names: BTreeSet<String> = out
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<'))
        .map(|l| l.trim().split(':').next().unwrap_or("").to_string())
        .filter(|n| pkgs.contains(&n.as_str()) || (n.starts_with("lib") && !n.contains("perl")))
        .collect();
    for p in pkgs {
        if !names.contains(*p) {
            bail!("apt-cache knows no package {p}");
        }
    }
    Ok(names.into_iter().collect())
}

/// Downloads (once, into the cache) and unpacks the service packages; returns the directory
/// holding the unpacked tree.
pub fn unpacked() -> Result<PathBuf> {
    let _guard = lock("service")?;
    let root = cache_dir().join("service-root");
    let marker = root.join(".seamless-complete");
    if marker.exists() {
        return Ok(root);
    }
    let debs = cache_dir().join("service-debs");
    std::fs::create_dir_all(&debs)?;
    let pkgs = closure(SERVICE_PACKAGES)?;
    eprintln!("service: {} packages: {}", pkgs.len(), pkgs.join(" "));
    let have = |p: &str| -> Option<PathBuf> {
        std::fs::read_dir(&debs).ok()?.flatten().map(|e| e.path()).find(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{p}_")) && n.ends_with(".deb"))
        })
    };
    let missing: Vec<&str> = pkgs.iter().map(String::as_str).filter(|p| have(p).is_none()).collect();
    if !missing.is_empty() {
        run(Command::new("apt-get").current_dir(&debs).arg("download").args(&missing))?;
    }
    let tmp = cache_dir().join("service-root.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for p in &pkgs {
        let deb = have(p).with_context(|| format!("apt-get download {p} left no .deb"))?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    }
    for bin in SERVICE_BINARIES {
        if !tmp.join(bin).exists() {
            bail!("the unpacked packages have no /{bin}");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&tmp, &root)?;
    std::fs::write(&marker, pkgs.join("\n"))?;
    Ok(root)
}

fn needed(elf: &Path) -> Result<Vec<String>> {
    let out = run(Command::new("readelf").arg("-dW").arg(elf))?;
    Ok(out
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(String::from))
        .collect())
}

fn find_lib(root: &Path, name: &str) -> Option<PathBuf> {
    ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib", "lib"]
        .iter()
        .map(|d| root.join(d).join(name))
        .find(|p| p.exists())
}

/// Copies the service binaries and every shared library they need (transitively, resolved
/// inside the unpacked packages, the dynamic loader included) into a guest staging
/// directory. Returns the paths copied, relative to the staging root.
pub fn install_into(staging: &Path) -> Result<Vec<String>> {
    let src = unpacked()?;
    let mut todo: Vec<String> = SERVICE_BINARIES.iter().map(|s| s.to_string()).collect();
    let loader = find_lib(&src, "ld-linux-x86-64.so.2").context("no dynamic loader in the unpacked libc6")?;
    let loader_rel = loader.strip_prefix(&src)?.to_string_lossy().into_owned();
    todo.push(loader_rel.clone());
    let mut done = BTreeSet::new();
    while let Some(rel) = todo.pop() {
        if !done.insert(rel.clone()) {
            continue;
        }
        let from = src.join(&rel);
        let real = std::fs::canonicalize(&from).with_context(|| format!("{} is missing", from.display()))?;
        let to = staging.join(&rel);
        std::fs::create_dir_all(to.parent().unwrap_or(staging))?;
        std::fs::copy(&real, &to).with_context(|| format!("copying {} to {}", real.display(), to.display()))?;
        for lib in needed(&real)? {
            let path =
                find_lib(&src, &lib).with_context(|| format!("{rel} needs {lib}, which no unpacked package has"))?;
            let rel_lib = path.strip_prefix(&src)?.to_string_lossy().into_owned();
            todo.push(rel_lib);
        }
    }
    // The loader path compiled into every binary.
    let lib64 = staging.join("lib64");
    std::fs::create_dir_all(&lib64)?;
    let _ = std::fs::remove_file(lib64.join("ld-linux-x86-64.so.2"));
    std::os::unix::fs::symlink(format!("/{loader_rel}"), lib64.join("ld-linux-x86-64.so.2"))?;
    Ok(done.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unpacked service runs on its own libraries: `redis-server --version` in a chroot
    /// holding nothing but what [`install_into`] copied.
    #[test]
    fn redis_runs_from_its_own_libraries() -> Result<()> {
        let stage = std::env::temp_dir().join(format!("seamless-service-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&stage);
        std::fs::create_dir_all(&stage)?;
        let copied = install_into(&stage)?;
        assert!(copied.iter().any(|p| p.contains("libc.so.6")), "{copied:?}");
        let out = run(Command::new("chroot").arg(&stage).args(["/usr/bin/redis-server", "--version"]))?;
        assert!(out.contains("Redis server v="), "{out}");
        let _ = std::fs::remove_dir_all(&stage);
        Ok(())
    }
}
