//! The controller side of the fleet tests (`tests/tests/fleet_vm.rs`): ansible-core from PyPI
//! in a private virtual environment under the cache directory (never the host's own Python),
//! the OpenSSH client, a key pair made for the test, and commands run with a deadline.

use crate::vm::host::{cache_dir, lock, run};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The repository's `fleet/` directory.
pub fn fleet_dir() -> PathBuf {
    crate::paths::repo_root().join("fleet")
}

/// A Python 3 with `venv` for the controller: Debian's own when it is there.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The `bin/` directory of a virtual environment with what `fleet/ansible/requirements.txt`
/// pins (ansible-core), made once per content of that file in `<cache>/ansible-venv-HASH/`.
pub fn ansible_bin() -> Result<PathBuf> {
    let req = fleet_dir().join("ansible/requirements.txt");
    let pins = std::fs::read(&req).with_context(|| format!("reading {}", req.display()))?;
    let hash = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        pins.hash(&mut h);
        h.finish()
    };
    let _guard = lock("ansible-venv")?;
    let venv = cache_dir().join(format!("ansible-venv-{hash:016x}"));
    let bin = venv.join("bin");
    let marker = venv.join(".seamless-complete");
    if marker.exists() && bin.join("ansible-playbook").exists() {
        return Ok(bin);
    }
    let _ = std::fs::remove_dir_all(&venv);
    if run(Command::new(python()).args(["-c", "import ensurepip, venv"])).is_err() {
        crate::vm::host::apt_install(&["python3-venv"])?;
    }
    eprintln!("fleet: pip install -r {} into {}", req.display(), venv.display());
    run(Command::new(python()).arg("-m").arg("venv").arg(&venv)).context("python3 -m venv")?;
    run(Command::new(bin.join("pip")).args(["install", "--quiet", "--disable-pip-version-check", "-r"]).arg(&req))
        .context("pip install ansible-core")?;
    if !bin.join("ansible-playbook").exists() {
        bail!("pip install -r {} left no ansible-playbook in {}", req.display(), bin.display());
    }
    std::fs::write(&marker, "done\n")?;
    Ok(bin)
}

/// Makes sure `ssh` and `ssh-keygen` are there (Debian's openssh-client).
pub fn ensure_ssh_client() -> Result<()> {
    if Path::new("/usr/bin/ssh").exists() && Path::new("/usr/bin/ssh-keygen").exists() {
        return Ok(());
    }
    crate::vm::host::apt_install(&["openssh-client"])
}

/// A new ed25519 key pair without a passphrase at `dir/id_ed25519`; returns the private
/// key's path and the public key's line.
pub fn keypair(dir: &Path) -> Result<(PathBuf, String)> {
    ensure_ssh_client()?;
    std::fs::create_dir_all(dir)?;
    let key = dir.join("id_ed25519");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(dir.join("id_ed25519.pub"));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "seamless-fleet-test", "-f"])
        .arg(&key))?;
    let public = std::fs::read_to_string(dir.join("id_ed25519.pub"))?;
    Ok((key, public.trim().to_string()))
}

/// What a command run by [`run_logged`] did.
#[derive(Debug)]
pub struct Logged {
    /// Its exit status (`None`: killed at the deadline).
    pub status: Option<ExitStatus>,
    /// Standard output and error, as written to the log.
    pub output: String,
    /// How long it ran.
    pub took: Duration,
}

/// Runs `cmd` with stdout and stderr into `log` (and echoed line by line on stderr, so a
/// long run shows progress), killing it after `timeout`.
pub fn run_logged(cmd: &mut Command, log: &Path, timeout: Duration) -> Result<Logged> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let shown = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    let mut reader = std::fs::File::open(log)?;
    let mut pending: Vec<u8> = Vec::new();
    let mut all: Vec<u8> = Vec::new();
    let echo = |reader: &mut std::fs::File, pending: &mut Vec<u8>, all: &mut Vec<u8>| {
        let mut chunk = Vec::new();
        let _ = reader.read_to_end(&mut chunk);
        all.extend_from_slice(&chunk);
        pending.extend_from_slice(&chunk);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            eprintln!("  | {}", String::from_utf8_lossy(&pending[..nl]));
            pending.drain(..=nl);
        }
    };
    let status = loop {
        echo(&mut reader, &mut pending, &mut all);
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    echo(&mut reader, &mut pending, &mut all);
    if !pending.is_empty() {
        eprintln!("  | {}", String::from_utf8_lossy(&pending));
    }
    let output = String::from_utf8_lossy(&all).into_owned();
    Ok(Logged { status, output, took: start.elapsed() })
}

/// `s` quoted for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_survive_the_shell() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
