//! The image format is a contract between releases: this release reads and writes the formats
//! `OLDEST_FORMAT_VERSION..=FORMAT_VERSION`, and for each of them an image is stored under
//! `tests/fixtures/format-N/` that must keep reading and validating, and that the writer must
//! keep producing exactly, when asked for that format. A change that breaks either is a format
//! change: bump `FORMAT_VERSION`, keep the reader of the previous version, and store a fixture of
//! the new one (`SEAMLESS_WRITE_FIXTURE=1 cargo test -p seamless-image --test fixture` writes
//! the fixtures that are missing; it never rewrites one).

use seamless_image::validate::{validate, Decoded};
use seamless_image::{MemStore, Reader, Writer, WriterInfo};
use seamless_image::{Superblock, FORMAT_VERSION, OLDEST_FORMAT_VERSION, SUPERBLOCK_SIZE};
use std::path::PathBuf;

const PID: i32 = 4242;

fn fixture(version: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/format-{version}/region.img"))
}

fn build(version: u32) -> Vec<u8> {
    let info = WriterInfo { kernel_release: "6.1.0-fixture-amd64".into(), boot_id: [7; 16], release: "0.1.0".into() };
    let mut w = Writer::with_format(MemStore::new(1 << 20), info, version).expect("writer");
    Decoded::sample(PID).write_to(&mut w).expect("records");
    w.finish().expect("finish").bytes
}

fn stored(version: u32) -> Vec<u8> {
    let path = fixture(version);
    if std::env::var_os("SEAMLESS_WRITE_FIXTURE").is_some() && !path.exists() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("fixture directory");
        std::fs::write(&path, build(version)).expect("writing the fixture");
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("the stored format-{version} image {}: {e}", path.display()))
}

fn versions() -> impl Iterator<Item = u32> {
    OLDEST_FORMAT_VERSION..=FORMAT_VERSION
}

// Release N reads the formats of N and N-1.
const _: () = assert!(OLDEST_FORMAT_VERSION < FORMAT_VERSION);

#[test]
fn every_stored_format_reads_and_validates() {
    for v in versions() {
        let mut r = Reader::open(MemStore::from_bytes(stored(v))).expect("the stored image opens");
        assert_eq!(r.superblock().version, v);
        assert_eq!(r.superblock().kernel_release, "6.1.0-fixture-amd64");
        let mut d = Decoded::read(&mut r).expect("every record of the stored image decodes");
        validate(&d).expect("the stored image validates");
        // Chunk references carry the index entry they were read from; the sample has none.
        d.chunks.iter_mut().for_each(|c| c.index = 0);
        let same = format!("{d:?}") == format!("{:?}", Decoded::sample(PID));
        assert!(same, "format {v}: the stored records decode to other values than the ones they were written from");
    }
}

#[test]
fn the_writer_still_writes_every_format_byte_for_byte() {
    for v in versions() {
        same_bytes(v);
    }
}

fn same_bytes(version: u32) {
    let (now, then) = (build(version), stored(version));
    // The superblock holds the creation time; everything else is fixed.
    let sb = |b: &[u8]| {
        let mut s = Superblock::decode(b[..SUPERBLOCK_SIZE].try_into().expect("superblock"), "fixture").expect("sb");
        s.created = 0;
        format!("{s:?}")
    };
    assert_eq!(sb(&now), sb(&then), "format {version}: the superblock changed: that is a format change");
    // Byte for byte too, apart from the creation time (72..80) and the checksum that covers it.
    let fixed = |b: &[u8]| [&b[..72], &b[80..SUPERBLOCK_SIZE - 4]].concat();
    assert!(fixed(&now) == fixed(&then), "format {version}: the superblock bytes changed: that is a format change");
    assert_eq!(now.len(), then.len(), "format {version}: the image length changed: that is a format change");
    let first = now[SUPERBLOCK_SIZE..].iter().zip(&then[SUPERBLOCK_SIZE..]).position(|(a, b)| a != b);
    assert_eq!(
        first.map(|i| i + SUPERBLOCK_SIZE),
        None,
        "format {version}: the records or the index are written differently now (first differing byte): that is a format change"
    );
}
