//! The image format is a contract between releases: an image written by this release's format
//! (stored under `tests/fixtures/format-1/`) must keep reading and validating, and the writer
//! must keep producing exactly its bytes. A change that breaks either is a format change: bump
//! `FORMAT_VERSION`, keep a reader for version 1, and store a fixture of the new version
//! (`SEAMLESS_WRITE_FIXTURE=1 cargo test -p seamless-image --test fixture` rewrites it).

use seamless_image::validate::{validate, Decoded};
use seamless_image::{MemStore, Reader, Writer, WriterInfo};
use seamless_image::{Superblock, FORMAT_VERSION, SUPERBLOCK_SIZE};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-1/region.img");
const PID: i32 = 4242;

fn build() -> Vec<u8> {
    let info = WriterInfo { kernel_release: "6.1.0-fixture-amd64".into(), boot_id: [7; 16], release: "0.1.0".into() };
    let mut w = Writer::new(MemStore::new(1 << 20), info).expect("writer");
    Decoded::sample(PID).write_to(&mut w).expect("records");
    w.finish().expect("finish").bytes
}

fn stored() -> Vec<u8> {
    if std::env::var_os("SEAMLESS_WRITE_FIXTURE").is_some() {
        std::fs::write(FIXTURE, build()).expect("writing the fixture");
    }
    std::fs::read(FIXTURE).expect("the stored format-1 image")
}

#[test]
fn the_stored_format_1_image_reads_and_validates() {
    assert_eq!(FORMAT_VERSION, 1, "a new format version needs its own fixture, and a reader for version 1");
    let mut r = Reader::open(MemStore::from_bytes(stored())).expect("the stored image opens");
    assert_eq!(r.superblock().version, 1);
    assert_eq!(r.superblock().kernel_release, "6.1.0-fixture-amd64");
    let mut d = Decoded::read(&mut r).expect("every record of the stored image decodes");
    validate(&d).expect("the stored image validates");
    // Chunk references carry the index entry they were read from; the sample has none.
    d.chunks.iter_mut().for_each(|c| c.index = 0);
    let same = format!("{d:?}") == format!("{:?}", Decoded::sample(PID));
    assert!(same, "the stored records decode to other values than the ones they were written from");
}

#[test]
fn the_writer_still_writes_format_1_byte_for_byte() {
    let (now, then) = (build(), stored());
    // The superblock holds the creation time; everything else is fixed.
    let sb = |b: &[u8]| {
        let mut s = Superblock::decode(b[..SUPERBLOCK_SIZE].try_into().expect("superblock"), "fixture").expect("sb");
        s.created = 0;
        format!("{s:?}")
    };
    assert_eq!(sb(&now), sb(&then), "the superblock changed: that is a format change");
    assert_eq!(now.len(), then.len(), "the image length changed: that is a format change");
    let first = now[SUPERBLOCK_SIZE..].iter().zip(&then[SUPERBLOCK_SIZE..]).position(|(a, b)| a != b);
    assert_eq!(
        first.map(|i| i + SUPERBLOCK_SIZE),
        None,
        "the records or the index are written differently now (first differing byte): that is a format change"
    );
}
