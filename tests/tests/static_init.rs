//! The initramfs binary: static (no program interpreter), at most 2.5 MiB, and its dependency
//! tree inside the checked-in allowlist `init/deps.allow`; the same static build for aarch64
//! (cross-linked with Debian's `aarch64-linux-gnu-gcc`), an AArch64 executable within the same
//! budget that prints its usage under `qemu-aarch64-static`.

use seamless_tests::paths;
use std::collections::BTreeSet;

const MAX_SIZE: u64 = 5 << 19;
const PT_INTERP: u32 = 3;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// `e_machine` of an ELF file.
fn machine(elf: &[u8]) -> u16 {
    u16::from_le_bytes([elf[18], elf[19]])
}

/// Asserts that `bin` is a static ELF64 executable for `em` of at most [`MAX_SIZE`] bytes.
fn static_and_small(bin: &std::path::Path, em: u16) {
    let elf = std::fs::read(bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let types = program_header_types(&elf);
    assert_eq!(machine(&elf), em, "{}: wrong architecture", bin.display());
    assert!(!types.is_empty(), "no program headers");
    assert!(!types.contains(&PT_INTERP), "{} has a program interpreter: not static", bin.display());
    let size = elf.len() as u64;
    println!("{}: {size} bytes ({:.2} MiB), static", bin.display(), size as f64 / 1048576.0);
    assert!(size <= MAX_SIZE, "{} is {size} bytes, over the 2.5 MiB budget", bin.display());
}

/// Program header types of an ELF64 little-endian file.
fn program_header_types(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[0..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            u32::from_le_bytes(elf[o..o + 4].try_into().unwrap())
        })
        .collect()
}

#[test]
fn seamless_init_is_static_small_and_allowlisted() {
    paths::build_static().expect("building the static binaries");
    let bin = paths::static_init();
    static_and_small(&bin, EM_X86_64);

    let allow_text = std::fs::read_to_string(paths::repo_root().join("init/deps.allow")).unwrap();
    let allowed: BTreeSet<&str> =
        allow_text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(paths::repo_root())
        .args(["tree", "-p", "seamless-init", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let used: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    let extra: Vec<&String> = used.iter().filter(|c| !allowed.contains(c.as_str())).collect();
    assert!(extra.is_empty(), "seamless-init pulls crates outside init/deps.allow: {extra:?}");
}

#[test]
fn aarch64_builds_are_static_small_and_print_their_usage_under_qemu_user() {
    paths::build_static_for(paths::AARCH64).expect("building the static aarch64 binaries");
    let init = paths::static_init_for(paths::AARCH64);
    static_and_small(&init, EM_AARCH64);
    let seamless = std::fs::read(paths::static_seamless_for(paths::AARCH64)).expect("the aarch64 seamless binary");
    assert_eq!(machine(&seamless), EM_AARCH64);
    assert!(!program_header_types(&seamless).contains(&PT_INTERP), "the aarch64 seamless is not static");
    // Not PID 1 and not in a boot context: the usage, exit status 2. ptrace does not work under
    // qemu-user, so this is as far as the binary can run on this machine.
    let out = std::process::Command::new("qemu-aarch64-static")
        .arg(&init)
        .arg("--help")
        .output()
        .expect("running qemu-aarch64-static (package qemu-user-static)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("seamless-init"), "no usage text: {text}");
}
