//! Round trips through every store and one test per corruption class: each must give a typed
//! error that names what failed, never a panic.

use seamless_image::{
    pattern, CpioStore, DirStore, FileStore, ImageError, MemStore, Reader, RecordKind, State, Store, Writer,
    WriterInfo, PAGE_SIZE, SUPERBLOCK_SIZE,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Meta {
    name: String,
    values: Vec<u64>,
}

fn info() -> WriterInfo {
    WriterInfo { kernel_release: "6.1.0-test".into(), boot_id: [7; 16], release: "0.1.0".into() }
}

/// Writes one record and two page chunks; returns the pages written.
fn write_sample<S: Store>(store: S) -> (S, Vec<u8>) {
    let mut w = Writer::new(store, info()).unwrap();
    w.put_record(RecordKind::PATTERN, 42, 0, &Meta { name: "init".into(), values: vec![1, 2, 3] }).unwrap();
    let mut pages = vec![0u8; 3 * PAGE_SIZE];
    pattern::fill(9, 0x7000_0000, &mut pages);
    w.put_pages(42, 0x7000_0000, &pages[..PAGE_SIZE]).unwrap();
    w.put_record(RecordKind::STAGES, 0, 1, &vec![10u32, 20]).unwrap();
    w.put_pages(42, 0x7000_1000, &pages[PAGE_SIZE..]).unwrap();
    (w.finish().unwrap(), pages)
}

fn check_sample<S: Store>(store: S, pages: &[u8]) -> Reader<S> {
    let mut r = Reader::open(store).unwrap();
    assert_eq!(r.superblock().kernel_release, "6.1.0-test");
    assert_eq!(r.superblock().state, State::Complete);
    assert_eq!(r.entries().len(), 4);
    let (idx, _) = r.find(RecordKind::PATTERN).next().unwrap();
    let m: Meta = r.record(idx).unwrap();
    assert_eq!(m, Meta { name: "init".into(), values: vec![1, 2, 3] });
    let chunks: Vec<_> = r.find(RecordKind::PAGE_CHUNK).map(|(i, e)| (i, *e)).collect();
    assert_eq!(chunks.len(), 2);
    let mut got = Vec::new();
    for (i, e) in chunks {
        assert_eq!(e.offset % PAGE_SIZE as u64, 0, "page chunks are page-aligned");
        let mut buf = vec![0u8; e.len as usize];
        r.read_pages(i, &mut buf).unwrap();
        got.extend_from_slice(&buf);
    }
    assert_eq!(got, pages);
    assert!(r.verify().iter().all(|c| c.result.is_ok()));
    r
}

fn dir_image(dir: &Path) -> Vec<u8> {
    let (_, pages) = write_sample(DirStore::create(dir, 1 << 30).unwrap());
    pages
}

fn region_path(dir: &Path) -> std::path::PathBuf {
    dir.join("region.img")
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("seamless-image-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn flip(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn dir_store_round_trip_and_consume() {
    let d = tmp("dir");
    let pages = dir_image(&d);
    let mut r = check_sample(DirStore::open(&d).unwrap(), &pages);
    r.mark_consumed().unwrap();
    match Reader::open(DirStore::open(&d).unwrap()) {
        Err(ImageError::WrongState { found: State::Consumed, .. }) => {}
        other => panic!("a consumed image must not open for restore: {other:?}"),
    }
    // Inspection still works after consumption.
    let mut r = Reader::open_for_inspect(DirStore::open(&d).unwrap()).unwrap();
    r.wipe_data().unwrap();
    assert!(r.verify().iter().any(|c| c.result.is_err()), "wiped data no longer matches");
}

#[test]
fn raw_file_store_same_bytes_as_dir_store() {
    let d = tmp("raw");
    let pages = dir_image(&d);
    check_sample(FileStore::open_file(&region_path(&d), false).unwrap(), &pages);
    let any = seamless_image::open_any(&d).unwrap();
    check_sample(any, &pages);
}

#[test]
fn cpio_store_round_trip() {
    let d = tmp("cpio");
    let path = d.join("region.cpio");
    let (_, pages) = write_sample(CpioStore::create(&path, 1 << 30).unwrap());
    check_sample(CpioStore::open(&path).unwrap(), &pages);
    check_sample(seamless_image::open_any(&path).unwrap(), &pages);
    // The archive carries exactly the region: same bytes as a directory store.
    let d2 = tmp("cpio-dir");
    let _ = dir_image(&d2);
    let raw = std::fs::read(region_path(&d2)).unwrap();
    let archive = std::fs::read(&path).unwrap();
    let sb_at = archive.windows(8).position(|w| w == b"SEAMLESS").unwrap();
    // Timestamps differ between the two images; compare everything after the superblock.
    assert_eq!(&archive[sb_at + SUPERBLOCK_SIZE..sb_at + raw.len()], &raw[SUPERBLOCK_SIZE..]);
    assert!(archive.ends_with(&[0]) || archive.windows(10).any(|w| w == b"TRAILER!!!"));
}

#[test]
fn cpio_appended_to_an_initrd_is_found_by_cpio_tools() {
    let d = tmp("append");
    let region = d.join("region.cpio");
    let _ = write_sample(CpioStore::create(&region, 1 << 20).unwrap());
    let base = d.join("base.img");
    std::fs::write(&base, b"odd-length-base").unwrap();
    let out = d.join("combined.img");
    seamless_image::append_to_initrd(&base, &region, &out).unwrap();
    let combined = std::fs::read(&out).unwrap();
    let at = combined.windows(6).position(|w| w == b"070701").unwrap();
    assert_eq!(at % 4, 0, "appended archive starts 4-byte aligned");
    assert_eq!(&combined[at..], &std::fs::read(&region).unwrap()[..]);
}

#[test]
fn bad_magic() {
    let d = tmp("magic");
    let _ = dir_image(&d);
    flip(&region_path(&d), 0);
    assert!(matches!(Reader::open(DirStore::open(&d).unwrap()), Err(ImageError::BadMagic { .. })));
}

#[test]
fn unknown_version() {
    let d = tmp("version");
    let _ = dir_image(&d);
    let p = region_path(&d);
    let mut b = std::fs::read(&p).unwrap();
    b[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&p, b).unwrap();
    match Reader::open(DirStore::open(&d).unwrap()) {
        Err(ImageError::UnsupportedVersion { found: 99, oldest: 1, newest: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn flipped_superblock_byte() {
    let d = tmp("sb");
    let _ = dir_image(&d);
    flip(&region_path(&d), 100);
    assert!(matches!(Reader::open(DirStore::open(&d).unwrap()), Err(ImageError::SuperblockChecksum { .. })));
}

#[test]
fn truncated_region() {
    let d = tmp("trunc");
    let _ = dir_image(&d);
    let p = region_path(&d);
    let len = std::fs::metadata(&p).unwrap().len();
    for cut in [len - 1, len / 2, 100, 0] {
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(cut).unwrap();
        let err = Reader::open(DirStore::open(&d).unwrap()).unwrap_err();
        assert!(matches!(err, ImageError::Truncated { .. }), "cut at {cut}: {err}");
    }
}

#[test]
fn incomplete_image_is_refused() {
    let d = tmp("incomplete");
    let mut w = Writer::new(DirStore::create(&d, 1 << 20).unwrap(), info()).unwrap();
    w.put_pages(1, 0x1000, &[1u8; PAGE_SIZE]).unwrap();
    drop(w); // a crash before finish()
    match Reader::open(DirStore::open(&d).unwrap()) {
        Err(ImageError::WrongState { found: State::Writing, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn flipped_record_byte_names_the_record() {
    let d = tmp("record");
    let _ = dir_image(&d);
    let r = Reader::open(DirStore::open(&d).unwrap()).unwrap();
    let (idx, e) = r.find(RecordKind::PATTERN).next().map(|(i, e)| (i, *e)).unwrap();
    drop(r);
    flip(&region_path(&d), e.offset + 2);
    let mut r = Reader::open(DirStore::open(&d).unwrap()).unwrap();
    match r.record::<Meta>(idx) {
        Err(ImageError::EntryChecksum { index, kind, owner: 42, .. }) => {
            assert_eq!((index, kind), (idx, RecordKind::PATTERN))
        }
        other => panic!("{other:?}"),
    }
    let failed: Vec<_> = r.verify().into_iter().filter(|c| c.result.is_err()).map(|c| c.index).collect();
    assert_eq!(failed, vec![idx]);
}

#[test]
fn flipped_page_byte_names_the_chunk() {
    let d = tmp("page");
    let _ = dir_image(&d);
    let r = Reader::open(DirStore::open(&d).unwrap()).unwrap();
    let (idx, e) = r.find(RecordKind::PAGE_CHUNK).nth(1).map(|(i, e)| (i, *e)).unwrap();
    drop(r);
    flip(&region_path(&d), e.offset + 5000);
    let mut r = Reader::open(DirStore::open(&d).unwrap()).unwrap();
    let mut buf = vec![0u8; e.len as usize];
    match r.read_pages(idx, &mut buf) {
        Err(err @ ImageError::EntryChecksum { tag: 0x7000_1000, .. }) => {
            assert!(err.to_string().contains("page-chunk"), "{err}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn flipped_index_byte() {
    let d = tmp("index");
    let _ = dir_image(&d);
    let p = region_path(&d);
    let len = std::fs::metadata(&p).unwrap().len();
    flip(&p, len - 10);
    assert!(matches!(Reader::open(DirStore::open(&d).unwrap()), Err(ImageError::IndexChecksum { .. })));
}

#[test]
fn record_of_wrong_type_is_a_decode_error() {
    let d = tmp("decode");
    let _ = dir_image(&d);
    let mut r = Reader::open(DirStore::open(&d).unwrap()).unwrap();
    let (idx, _) = r.find(RecordKind::STAGES).next().unwrap();
    assert!(matches!(r.record::<Meta>(idx), Err(ImageError::Decode { .. })));
    assert!(matches!(r.record_of::<Meta>(idx, RecordKind::PATTERN), Err(ImageError::WrongKind { .. })));
}

#[test]
fn region_full_is_refused() {
    let d = tmp("full");
    let mut w = Writer::new(DirStore::create(&d, 3 * PAGE_SIZE as u64).unwrap(), info()).unwrap();
    w.put_pages(1, 0, &[0u8; PAGE_SIZE]).unwrap();
    assert!(matches!(w.put_pages(1, 0x1000, &[0u8; 2 * PAGE_SIZE]), Err(ImageError::NoSpace { .. })));
}

#[test]
fn unaligned_pages_are_refused() {
    let d = tmp("unaligned");
    let mut w = Writer::new(DirStore::create(&d, 1 << 20).unwrap(), info()).unwrap();
    assert!(matches!(w.put_pages(1, 0, &[0u8; 100]), Err(ImageError::UnalignedChunk { .. })));
}

#[test]
fn every_single_byte_flip_is_detected_or_harmless() {
    // Flip each byte of a small image in turn, every one of them: opening and verifying must
    // never panic, and any flip inside checksummed data must be reported.
    let d = tmp("exhaustive");
    let _ = dir_image(&d);
    let orig = std::fs::read(region_path(&d)).unwrap();
    for at in 0..orig.len() {
        let mut b = orig.clone();
        b[at] ^= 0xff;
        match Reader::open(MemStore::from_bytes(b)) {
            Err(_) => {}
            Ok(mut r) => {
                let bad = r.verify().iter().any(|c| c.result.is_err());
                let in_padding = r.entries().iter().all(|e| !(e.offset..e.offset + e.len).contains(&(at as u64)));
                assert!(bad || in_padding, "flip at {at} went unnoticed");
            }
        }
    }
}

/// A record rewritten in place (a volume key wiped by seamless-init) keeps the image valid:
/// checksums of the entry and of the index follow, and the old bytes are gone from the store.
#[test]
fn rewritten_record_keeps_the_image_valid() {
    let d = tmp("rewrite");
    let mut w = Writer::new(DirStore::create(&d, 1 << 30).unwrap(), info()).unwrap();
    let secret = Meta { name: "volume-key".into(), values: vec![0x005e_c2e7; 8] };
    let idx = w.put_record(RecordKind::CRYPT_VOLUMES, 0, 0, &secret).unwrap();
    w.put_record(RecordKind::STAGES, 0, 1, &vec![10u32, 20]).unwrap();
    w.finish().unwrap();
    let mut r = Reader::open(DirStore::open(&d).unwrap()).unwrap();
    let wiped = Meta { name: "volume-key".into(), values: vec![0x007e_2e7a; 8] };
    let bytes = postcard::to_allocvec(&wiped).unwrap();
    assert!(r.rewrite_record(idx, &bytes[..bytes.len() - 1]).is_err(), "another length is refused");
    r.rewrite_record(idx, &bytes).unwrap();
    drop(r);
    let mut r = Reader::open(DirStore::open(&d).unwrap()).unwrap();
    r.verify_all().unwrap();
    assert_eq!(r.record::<Meta>(idx).unwrap(), wiped);
    let old = postcard::to_allocvec(&secret).unwrap();
    let raw = std::fs::read(region_path(&d)).unwrap();
    assert!(!raw.windows(old.len()).any(|w| w == old.as_slice()), "the old bytes are still in the store");
}

/// Invalidating an image (an upgrade abandoned after the image was complete) zeroes the
/// dm-crypt record's bytes, not only the superblock.
#[test]
fn invalidate_zeroes_secret_records() {
    let d = tmp("invalidate-secrets");
    let mut w = Writer::new(DirStore::create(&d, 1 << 30).unwrap(), info()).unwrap();
    let secret = Meta { name: "volume-key-bytes".into(), values: vec![0x005e_c2e7; 8] };
    w.put_record(RecordKind::CRYPT_VOLUMES, 0, 0, &secret).unwrap();
    w.put_record(RecordKind::STAGES, 0, 1, &vec![10u32, 20]).unwrap();
    let mut store = w.finish().unwrap();
    seamless_image::invalidate(&mut store).unwrap();
    drop(store);
    let raw = std::fs::read(region_path(&d)).unwrap();
    let old = postcard::to_allocvec(&secret).unwrap();
    assert!(!raw.windows(old.len()).any(|w| w == old.as_slice()), "the secret record survived invalidation");
}
