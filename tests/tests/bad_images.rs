//! Images whose checksums are right but whose records are not: `seamless restore --images DIR`
//! must refuse them before it forks anything, with an error naming the process, the thread
//! and the field, and must not panic. Regression tests for three records that used to panic
//! the restorer (as PID 1: a kernel panic) or make it write outside a mapping: a pending
//! signal shorter than a siginfo, a 4-byte saved vDSO, a shared-memory page chunk longer
//! than its area. The images are written with the image crate's writer (valid CRCs) from
//! [`Decoded::sample`], one field broken each. Needs root (restore seizes processes).

use anyhow::{ensure, Result};
use seamless_image::records::VmaKind;
use seamless_image::validate::{validate, Decoded};
use seamless_image::{DirStore, Writer, WriterInfo};
use seamless_tests::host::{run_logged, seamless_bin, COMMAND_TIMEOUT};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A pid no test process uses (below the default pid_max of 4194304).
const PID: i32 = 3_999_001;

fn dir(name: &str) -> Result<PathBuf> {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad_images").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn write(d: &Decoded, images: &Path) -> Result<()> {
    let info = WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [9; 16], release: "test".into() };
    let mut w = Writer::new(DirStore::create(images, 8 << 20)?, info)?;
    d.write_to(&mut w)?;
    w.finish()?;
    Ok(())
}

/// Writes the sample broken by `breaks`, restores it and checks the refusal mentions `needle`.
fn refused(name: &str, needle: &str, breaks: impl FnOnce(&mut Decoded)) -> Result<()> {
    let mut d = Decoded::sample(PID);
    validate(&d)?;
    breaks(&mut d);
    let why = validate(&d).expect_err("the broken sample must not validate").to_string();
    let images = dir(name)?;
    write(&d, &images)?;
    let mut cmd = Command::new(seamless_bin()?);
    cmd.arg("restore").arg("--images").arg(&images);
    let r = run_logged(cmd, &images, "restore", COMMAND_TIMEOUT)?;
    let err = r.stderr_text();
    eprintln!("{name}: {} in {:.3} s: {}", r.status, r.elapsed.as_secs_f64(), err.trim());
    ensure!(r.status.code() == Some(1), "{name}: expected exit status 1, got {}", r.failure());
    ensure!(!err.contains("panicked"), "{name}: the restorer panicked: {err}");
    ensure!(err.contains("image refused before anything was changed"), "{name}: not refused by validation: {err}");
    ensure!(err.contains(&why), "{name}: the message does not carry the validation error `{why}`: {err}");
    ensure!(err.contains(needle), "{name}: the message does not name `{needle}`: {err}");
    ensure!(!Path::new(&format!("/proc/{PID}")).exists(), "{name}: pid {PID} was created");
    Ok(())
}

#[test]
fn short_pending_signal_info() -> Result<()> {
    refused("short_pending", "pid 3999001 thread 3999001: pending is 2 long", |d| {
        d.threads[0].2.pending.push(vec![10, 0]);
    })
}

#[test]
fn four_byte_saved_vdso() -> Result<()> {
    refused("short_vdso", "saved vdso is 4 long", |d| d.mms[0].1.vdso.truncate(4))
}

#[test]
fn shared_memory_chunk_longer_than_its_area() -> Result<()> {
    refused("long_shm_chunk", "page chunk 0x11f000-0x121000", |d| {
        let v = &mut d.mms[0].1.vmas[0];
        v.kind = VmaKind::SharedAnon { ino: 9, offset: 0 };
        v.shared = true;
        d.chunks[0].vaddr = 0x11_f000;
        d.chunks[0].len = 0x2000;
    })
}
