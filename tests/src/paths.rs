//! Where the repository, its target directory and the built binaries are.

use std::path::PathBuf;

/// The repository root (parent of `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// The cargo target directory: `CARGO_TARGET_DIR` if set, else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

/// The static `seamless-init` built with the `initramfs` profile (`SEAMLESS_INIT_BIN` overrides).
pub fn static_init() -> PathBuf {
    std::env::var_os("SEAMLESS_INIT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("x86_64-unknown-linux-gnu/initramfs/seamless-init"))
}

/// The static `seamless` built with the `initramfs` profile (`SEAMLESS_STATIC_BIN` overrides).
pub fn static_seamless() -> PathBuf {
    std::env::var_os("SEAMLESS_STATIC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("x86_64-unknown-linux-gnu/initramfs/seamless"))
}

/// Builds both static binaries (`seamless-init` and `seamless`) with the `initramfs` profile.
pub fn build_static() -> std::io::Result<()> {
    build_static_for("x86_64-unknown-linux-gnu")
}

/// The target triple of the aarch64 builds.
pub const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// The static `seamless-init` built with the `initramfs` profile for target `triple`.
pub fn static_init_for(triple: &str) -> PathBuf {
    target_dir().join(triple).join("initramfs/seamless-init")
}

/// The static `seamless` built with the `initramfs` profile for target `triple`.
pub fn static_seamless_for(triple: &str) -> PathBuf {
    target_dir().join(triple).join("initramfs/seamless")
}

/// Builds both static binaries with the `initramfs` profile for target `triple`; for
/// aarch64 the linker is Debian's cross compiler `aarch64-linux-gnu-gcc` (packages
/// `gcc-aarch64-linux-gnu` and `libc6-dev-arm64-cross`, installed by `tests/run unit`).
pub fn build_static_for(triple: &str) -> std::io::Result<()> {
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(repo_root())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc")
        .args(["build", "--profile", "initramfs", "--target", triple])
        .args(["-p", "seamless-init", "-p", "seamless"])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("static build failed: {status}")))
    }
}
