//! The page cache's hot set on the running kernel (needs root, for `drop_caches`): what
//! `seamless upgrade` records (`checkpoint/src/upgrade/page_cache.rs`) names the cached ranges of
//! a file a process has open and of a `--warm` path, skips a changed file, and seamless-init's
//! re-warm (`init/src/page_cache.rs`) makes exactly those ranges resident again after the cache
//! was dropped. The upgrade itself is in the VM scenario `h_page_cache_is_warm_after_the_upgrade`.

use seamless::upgrade::page_cache;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn resident(path: &std::path::Path) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let size = f.metadata().unwrap().len();
    seamless_sys::pagecache::resident_ranges(&f, size).unwrap().iter().map(|r| r.1).sum()
}

fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "1\n").expect("drop_caches (needs root)");
}

#[test]
fn the_hot_set_is_recorded_and_read_back() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("page-cache");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("warm")).unwrap();
    let (held, named, changed) = (dir.join("held.bin"), dir.join("warm/named.bin"), dir.join("warm/changed.bin"));
    for p in [&held, &named, &changed] {
        let mut f = std::fs::File::create(p).unwrap();
        f.write_all(&vec![0x5a; (8 * MIB) as usize]).unwrap();
        f.sync_all().unwrap();
    }
    drop_caches();
    // A process holds `held` open; of it, only the second and fourth MiB are in the cache.
    let mut holder =
        Command::new("sh").arg("-c").arg(format!("exec 3<{} && sleep 60", held.display())).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let f = std::fs::File::open(&held).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    for mib in [1, 3] {
        f.read_exact_at(&mut buf, mib * MIB).unwrap();
    }
    std::fs::read(&named).unwrap();
    std::fs::read(&changed).unwrap();
    let set = page_cache::record(&[holder.id() as i32], &[dir.join("warm")], Duration::from_secs(30));
    let _ = holder.kill();
    let _ = holder.wait();
    let of = |p: &PathBuf| set.files.iter().find(|f| f.path == p.to_str().unwrap()).cloned();
    let h = of(&held).expect("the held file is in the hot set");
    assert_eq!(h.ranges, vec![(MIB, MIB), (3 * MIB, MIB)], "the held file's cached ranges");
    assert_eq!(of(&named).expect("the --warm file").ranges, vec![(0, 8 * MIB)]);
    set.check().expect("the record is valid");
    // The shell's binary and libraries are in it too; the rest of the test reads back only
    // the test's own files.
    assert!(set.files.len() > 2, "only {} files recorded: the holder's own binary is missing", set.files.len());
    let mut set = set;
    set.files.retain(|f| f.path.starts_with(dir.to_str().unwrap()));
    // One file changes after the recording: it must be skipped, not read.
    std::fs::OpenOptions::new().append(true).open(&changed).unwrap().write_all(b"more").unwrap();
    drop_caches();
    assert!(resident(&held) + resident(&named) < MIB, "the cache was not dropped");
    let summary = seamless_init::page_cache::start(set.clone()).finish();
    assert_eq!((summary.files, summary.skipped, summary.out_of_time), (2, 1, false), "{summary:?}");
    assert_eq!(summary.bytes, 10 * MIB, "{summary:?}");
    assert_eq!(resident(&held), 2 * MIB, "the held file's ranges are resident again");
    assert_eq!(resident(&named), 8 * MIB);
    println!(
        "re-warm: {} MiB of {} files in {:.1} ms",
        summary.bytes / MIB,
        summary.files,
        summary.micros as f64 / 1000.0
    );
    // A zero budget reads nothing and says so.
    drop_caches();
    let none = seamless_init::page_cache::start(seamless_image::upgrade::PageCache { budget_ms: 0, ..set }).finish();
    assert!(none.out_of_time && none.bytes == 0, "{none:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
