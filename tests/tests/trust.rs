//! Images are private, trusted only when root alone can have written them, and never
//! restored twice (needs root): `cargo test -p seamless-tests --test trust -- --test-threads=1`.
//!
//! - what `seamless dump` and `seamless region write-pattern` create is 0700 / 0600, and a
//!   symbolic link planted at the image's name is replaced, never written through;
//! - a second dump into a directory whose lock is held is refused, naming the directory and
//!   the holder;
//! - `seamless restore` refuses an image owned by another user, a group-writable image, an
//!   image under an other-writable directory and a symbolic link, then restores the image
//!   once and refuses it the second time;
//! - an image with a record of unknown kind is refused unless the entry is marked ignorable;
//!   an image with a relative recorded path is refused, naming the pid, fd and path;
//! - a deleted-but-open file recorded set-uid/set-gid comes back nameless with that mode and
//!   its contents.

use anyhow::{bail, ensure, Context, Result};
use seamless_image::records::{self, FileDesc, FileKind, ProcessRecord};
use seamless_image::{DirStore, Entry, Reader, RecordKind, Writer, WriterInfo};
use seamless_tests::host::{proc_stat, run_logged, tail, CommandResult, Harness, Running};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const READY: Duration = Duration::from_secs(30);
const VERDICT: Duration = Duration::from_secs(30);
const GONE: Duration = Duration::from_secs(20);
const WORKLOAD: &str = "files";

fn harness() -> Result<Harness> {
    Harness::new(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("trust"))
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).map(|m| m.mode() & 0o7777).unwrap_or(u32::MAX)
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// The uid of `nobody`, from /etc/passwd.
fn nobody() -> Result<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"nobody")).then(|| f.get(2).and_then(|u| u.parse().ok())).flatten()
        })
        .context("no nobody user in /etc/passwd")
}

/// `seamless ARGS...`, logged into the run directory under `label`.
fn seamless(h: &Harness, run: &Running, label: &str, args: &[&str]) -> Result<CommandResult> {
    let mut cmd = Command::new(h.seamless()?);
    cmd.args(args);
    run_logged(cmd, &run.dir, label, Duration::from_secs(120))
}

fn expect_failure(r: &CommandResult, needles: &[&str]) -> Result<String> {
    let err = r.stderr_text();
    ensure!(!r.status.success(), "`{}` succeeded but must fail; stderr:\n{err}", r.command);
    for n in needles {
        ensure!(err.contains(n), "`{}` failed without naming {n:?}:\n{err}", r.command);
    }
    Ok(err.trim().to_string())
}

/// Starts the workload and dumps it (killing it) into `run.dir/images`; returns the run, the
/// pids of the tree and the image directory.
fn dumped(h: &Harness) -> Result<(Running, Vec<i32>, PathBuf)> {
    let mut run = h.start(WORKLOAD, &[])?;
    run.wait_ready(READY)?;
    let pids = run.snapshot_tree();
    let images = run.dir.join("images");
    let dump = h.dump(&run, &images, false)?;
    ensure!(dump.status.success(), "dump failed: {}", dump.failure());
    run.expect_gone(&pids, GONE)?;
    Ok((run, pids, images))
}

/// Restores `images` and checks the tree is back and PASSes.
fn restore_and_pass(h: &Harness, run: &mut Running, pids: &[i32], images: &Path, extra: &[&str]) -> Result<()> {
    let r = h.restore(run, images, extra)?;
    ensure!(r.status.success(), "restore failed: {}", r.failure());
    let missing: Vec<i32> = pids.iter().copied().filter(|p| proc_stat(*p).is_none()).collect();
    ensure!(missing.is_empty(), "restored, but pids {missing:?} are missing:\n{}", tail(&r.stderr, 20));
    run.snapshot_tree();
    run.terminate()?;
    run.wait_verdict(VERDICT)
}

fn no_process_of(pids: &[i32], after: &str) -> Result<()> {
    let back: Vec<i32> = pids.iter().copied().filter(|p| proc_stat(*p).is_some()).collect();
    ensure!(back.is_empty(), "after {after}, pids {back:?} of the dumped tree exist again");
    Ok(())
}

#[test]
fn dump_creates_private_directories_and_files() -> Result<()> {
    let h = harness()?;
    let mut run = h.start(WORKLOAD, &[])?;
    run.wait_ready(READY)?;
    // A directory that does not exist yet (with a missing parent): 0700; one that exists
    // with mode 0755 keeps it (region.img is 0600 anyway).
    let fresh = run.dir.join("new").join("images");
    let existing = run.dir.join("existing");
    std::fs::create_dir(&existing)?;
    chmod(&existing, 0o755)?;
    for (dir, want) in [(&fresh, 0o700), (&existing, 0o755)] {
        let d = h.dump(&run, dir, true)?;
        ensure!(d.status.success(), "dump into {} failed: {}", dir.display(), d.failure());
        let img = dir.join("region.img");
        ensure!(mode(dir) == want, "{} has mode {:04o}, expected {want:04o}", dir.display(), mode(dir));
        ensure!(mode(&img) == 0o600, "{} has mode {:04o}, expected 0600", img.display(), mode(&img));
        let names: Vec<String> =
            std::fs::read_dir(dir)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        ensure!(names == ["region.img"], "{} holds {names:?}, expected only region.img", dir.display());
    }
    // An existing directory others may write is refused, and left alone.
    let shared = run.dir.join("shared");
    std::fs::create_dir(&shared)?;
    chmod(&shared, 0o1777)?;
    let d = h.dump(&run, &shared, true)?;
    let err = expect_failure(&d, &[&shared.display().to_string(), "writable by others"])?;
    eprintln!("refused as expected: {err}");
    ensure!(
        mode(&shared) == 0o1777 && std::fs::read_dir(&shared)?.next().is_none(),
        "the refused dump changed {}",
        shared.display()
    );
    let parent = run.dir.join("new");
    ensure!(mode(&parent) == 0o700, "created parent {} has mode {:04o}", parent.display(), mode(&parent));
    // The cpio store of `seamless region write-pattern` (the one seamless upgrade uses).
    let cpio = run.dir.join("region.cpio");
    let r = seamless(&h, &run, "write-pattern", &["region", "write-pattern", &cpio.to_string_lossy(), "--mib", "1"])?;
    ensure!(r.status.success(), "write-pattern failed: {}", r.failure());
    ensure!(mode(&cpio) == 0o600, "{} has mode {:04o}, expected 0600", cpio.display(), mode(&cpio));
    run.terminate()?;
    run.wait_verdict(VERDICT)?;
    run.finish();
    Ok(())
}

#[test]
fn planted_symlinks_are_never_followed() -> Result<()> {
    let h = harness()?;
    let mut run = h.start(WORKLOAD, &[])?;
    run.wait_ready(READY)?;
    // A link at DIR/region.img to a root-owned file: the dump replaces the link.
    let victim = run.dir.join("victim");
    std::fs::write(&victim, "root's data\n")?;
    chmod(&victim, 0o644)?;
    let images = run.dir.join("images");
    std::fs::create_dir(&images)?;
    std::os::unix::fs::symlink(&victim, images.join("region.img"))?;
    let d = h.dump(&run, &images, true)?;
    ensure!(d.status.success(), "dump failed: {}", d.failure());
    ensure!(std::fs::read_to_string(&victim)? == "root's data\n", "the dump wrote through the planted link");
    ensure!(mode(&victim) == 0o644, "the link's target changed mode to {:04o}", mode(&victim));
    let meta = std::fs::symlink_metadata(images.join("region.img"))?;
    ensure!(meta.file_type().is_file() && meta.mode() & 0o7777 == 0o600, "region.img is not a private file now");
    // A link as the image directory itself: refused.
    let real = run.dir.join("real-dir");
    std::fs::create_dir(&real)?;
    let link = run.dir.join("link-dir");
    std::os::unix::fs::symlink(&real, &link)?;
    let d = h.dump(&run, &link, true)?;
    let err = expect_failure(&d, &["link-dir", "symbolic link"])?;
    eprintln!("refused as expected: {err}");
    ensure!(std::fs::read_dir(&real)?.next().is_none(), "the refused dump wrote into the link's target");
    run.terminate()?;
    run.wait_verdict(VERDICT)?;
    run.finish();
    Ok(())
}

#[test]
fn second_dump_into_a_locked_directory_is_refused() -> Result<()> {
    let h = harness()?;
    let mut run = h.start(WORKLOAD, &[])?;
    run.wait_ready(READY)?;
    let pids = run.snapshot_tree();
    let images = run.dir.join("images");
    let lock = seamless_image::DirLock::acquire(&images)?;
    let d = h.dump(&run, &images, false)?;
    let me = std::process::id().to_string();
    let err = expect_failure(&d, &[&images.display().to_string(), "locked", &format!("pid {me}")])?;
    eprintln!("refused as expected: {err}");
    ensure!(!images.join("region.img").exists(), "the refused dump created region.img");
    run.expect_running_untraced(&pids)?;
    drop(lock);
    let d = h.dump(&run, &images, true)?;
    ensure!(d.status.success(), "dump after the lock was released failed: {}", d.failure());
    run.terminate()?;
    run.wait_verdict(VERDICT)?;
    run.finish();
    Ok(())
}

#[test]
fn restore_trusts_only_root_written_images_and_only_once() -> Result<()> {
    let h = harness()?;
    let nobody = nobody()?;
    let (mut run, pids, images) = dumped(&h)?;
    let img = images.join("region.img");
    let refuse = |run: &Running, why: &str, needles: &[&str]| -> Result<()> {
        let r = h.restore(run, &images, &[])?;
        let err = expect_failure(&r, needles).with_context(|| why.to_string())?;
        eprintln!("{why}: refused as expected: {err}");
        no_process_of(&pids, why)
    };
    // Owned by another user.
    std::os::unix::fs::chown(&img, Some(nobody), None)?;
    refuse(&run, "image owned by nobody", &[&img.display().to_string(), &format!("uid {nobody}")])?;
    std::os::unix::fs::chown(&img, Some(0), None)?;
    // Writable by its group.
    chmod(&img, 0o620)?;
    refuse(&run, "group-writable image", &[&img.display().to_string(), "writable by its group"])?;
    chmod(&img, 0o600)?;
    // Under a directory others may write.
    chmod(&images, 0o1777)?;
    refuse(&run, "other-writable directory", &[&images.display().to_string(), "writable by others"])?;
    chmod(&images, 0o700)?;
    // Under a directory owned by another user.
    std::os::unix::fs::chown(&images, Some(nobody), None)?;
    refuse(&run, "directory owned by nobody", &[&images.display().to_string(), &format!("uid {nobody}")])?;
    std::os::unix::fs::chown(&images, Some(0), None)?;
    // A symbolic link at region.img (to the real image).
    let moved = images.join("real.img");
    std::fs::rename(&img, &moved)?;
    std::os::unix::fs::symlink(&moved, &img)?;
    refuse(&run, "symbolic link", &[&img.display().to_string(), "symbolic link"])?;
    std::fs::remove_file(&img)?;
    std::fs::rename(&moved, &img)?;
    // Trusted: restored once ...
    restore_and_pass(&h, &mut run, &pids, &images, &[])?;
    // ... and refused the second time.
    let state = Reader::open_for_inspect(DirStore::open(&images)?)?.superblock().state;
    ensure!(state == seamless_image::State::Consumed, "after the restore the image is {state}, not consumed");
    run.expect_gone(&pids, GONE)?;
    let r = h.restore(&run, &images, &[])?;
    let err = expect_failure(&r, &["already restored"])?;
    eprintln!("second restore refused as expected: {err}");
    no_process_of(&pids, "a second restore")?;
    run.finish();
    Ok(())
}

/// Copies the image in `from` into a new image in `to`: `edit` may replace a postcard record
/// (return `true` once it wrote its own version), `extra` adds entries at the end.
fn rewrite(
    from: &Path,
    to: &Path,
    mut edit: impl FnMut(
        &mut Reader<seamless_image::FileStore>,
        u32,
        &Entry,
        &mut Writer<seamless_image::FileStore>,
    ) -> Result<bool>,
    extra: impl FnOnce(&mut Writer<seamless_image::FileStore>) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::open(DirStore::open(from)?)?;
    let mut w = Writer::new(DirStore::create(to, 1 << 32)?, WriterInfo::current("trust-test"))?;
    let entries = r.entries().to_vec();
    for (i, e) in entries.iter().enumerate() {
        let i = i as u32;
        if e.kind == RecordKind::PAGE_CHUNK {
            let mut buf = vec![0u8; e.len as usize];
            r.read_pages(i, &mut buf)?;
            w.put_pages(e.owner, e.tag, &buf)?;
        } else if e.kind == RecordKind::BLOB {
            let b = r.blob(i)?;
            w.put_blob(e.owner, e.tag, &b)?;
        } else if !edit(&mut r, i, e, &mut w)? {
            let bytes = r.record_bytes(i)?;
            w.put_encoded_record(e.kind, e.owner, e.tag, &bytes)?;
        }
    }
    extra(&mut w)?;
    w.finish()?;
    Ok(())
}

#[test]
fn unknown_record_kinds_are_refused_unless_ignorable() -> Result<()> {
    let h = harness()?;
    let (mut run, pids, images) = dumped(&h)?;
    let unknown = run.dir.join("unknown");
    rewrite(
        &images,
        &unknown,
        |_, _, _, _| Ok(false),
        |w| {
            w.put_record(RecordKind(999), pids[0] as u32, 0, &"state of a newer seamless")?;
            Ok(())
        },
    )?;
    let r = h.restore(&run, &unknown, &[])?;
    let err = expect_failure(&r, &["kind#999", &format!("owner {}", pids[0]), "not marked ignorable"])?;
    eprintln!("refused as expected: {err}");
    no_process_of(&pids, "a refused restore")?;
    let ignorable = run.dir.join("ignorable");
    rewrite(
        &images,
        &ignorable,
        |_, _, _, _| Ok(false),
        |w| {
            w.put_ignorable_record(RecordKind(999), pids[0] as u32, 0, &"optional state of a newer seamless")?;
            Ok(())
        },
    )?;
    // --keep-image: restored, and the image stays complete.
    restore_and_pass(&h, &mut run, &pids, &ignorable, &["--keep-image"])?;
    let state = Reader::open_for_inspect(DirStore::open(&ignorable)?)?.superblock().state;
    ensure!(state == seamless_image::State::Complete, "after restore --keep-image the image is {state}");
    run.finish();
    Ok(())
}

#[test]
fn relative_recorded_paths_are_refused() -> Result<()> {
    let h = harness()?;
    let (mut run, pids, images) = dumped(&h)?;
    // The working directory of the root process.
    let cwd = run.dir.join("relative-cwd");
    rewrite(
        &images,
        &cwd,
        |r, i, e, w| {
            if e.kind != records::PROCESS || e.owner != pids[0] as u32 {
                return Ok(false);
            }
            let mut p: ProcessRecord = r.record(i)?;
            p.cwd = "etc".into();
            w.put_record(e.kind, e.owner, e.tag, &p)?;
            Ok(true)
        },
        |_| Ok(()),
    )?;
    let r = h.restore(&run, &cwd, &[])?;
    let err = expect_failure(&r, &[&format!("pid {}", pids[0]), "working directory", "\"etc\"", "not absolute"])?;
    eprintln!("refused as expected: {err}");
    no_process_of(&pids, "a refused restore")?;
    // An open regular file.
    let mut changed = None;
    let file = run.dir.join("relative-file");
    rewrite(
        &images,
        &file,
        |r, i, e, w| {
            if e.kind != records::FILE_DESC || changed.is_some() {
                return Ok(false);
            }
            let mut d: FileDesc = r.record(i)?;
            let FileKind::Regular { path, .. } = &mut d.kind else { return Ok(false) };
            *path = "etc/shadow".into();
            changed = Some(d.id);
            w.put_record(e.kind, e.owner, e.tag, &d)?;
            Ok(true)
        },
        |_| Ok(()),
    )?;
    let Some(id) = changed else { bail!("the image of {WORKLOAD} holds no regular open file") };
    let r = h.restore(&run, &file, &[])?;
    let err = expect_failure(&r, &[" fd ", &format!("file #{id}"), "\"etc/shadow\"", "not absolute"])?;
    eprintln!("refused as expected: {err}");
    no_process_of(&pids, "a refused restore")?;
    // The untouched image still restores.
    restore_and_pass(&h, &mut run, &pids, &images, &[])?;
    run.finish();
    Ok(())
}

#[test]
fn set_id_ghost_files_keep_their_mode_and_contents() -> Result<()> {
    let h = harness()?;
    let (mut run, pids, images) = dumped(&h)?;
    // The workload's deleted file (fd 12), recorded as set-uid and set-gid.
    let setuid = run.dir.join("setuid-ghost");
    let mut ghost = None;
    rewrite(
        &images,
        &setuid,
        |r, i, e, w| {
            // The deleted file's object (its contents, owner and mode) and its description.
            if e.kind == records::FILE_OBJECT {
                let mut o: records::FileObject = r.record(i)?;
                let records::FileObject::Deleted(d) = &mut o else { return Ok(false) };
                d.mode = 0o106_750;
                w.put_record(e.kind, e.owner, e.tag, &o)?;
                return Ok(true);
            }
            if e.kind != records::FILE_DESC {
                return Ok(false);
            }
            let mut d: FileDesc = r.record(i)?;
            let FileKind::Ghost { mode, .. } = &mut d.kind else { return Ok(false) };
            *mode = 0o106_750;
            ghost = Some(d.id);
            w.put_record(e.kind, e.owner, e.tag, &d)?;
            Ok(true)
        },
        |_| Ok(()),
    )?;
    ensure!(ghost.is_some(), "the image of {WORKLOAD} holds no deleted file");
    let r = h.restore(&run, &setuid, &[])?;
    ensure!(r.status.success(), "restore failed: {}", r.failure());
    let fd12 = format!("/proc/{}/fd/12", pids[0]);
    let meta = std::fs::metadata(&fd12).with_context(|| format!("stat {fd12}"))?;
    ensure!(
        meta.mode() & 0o7777 == 0o6750,
        "restored deleted file has mode {:04o}, expected 6750",
        meta.mode() & 0o7777
    );
    ensure!(
        meta.nlink() == 0 && meta.len() == 20000,
        "restored deleted file: {} links, {} bytes",
        meta.nlink(),
        meta.len()
    );
    let link = std::fs::read_link(&fd12)?;
    ensure!(link.to_string_lossy().ends_with(" (deleted)"), "fd 12 points to {}", link.display());
    // The workload checks the contents and offset itself.
    run.snapshot_tree();
    run.terminate()?;
    run.wait_verdict(VERDICT)?;
    run.finish();
    Ok(())
}
