//! `seamless inspect` on real images: a clean one, and one with a flipped byte, which must be
//! named exactly (entry index, kind, owner, address).

use seamless_image::{pattern, DirStore, Reader, RecordKind, Writer, WriterInfo, PAGE_SIZE};
use std::path::Path;
use std::process::Command;

fn write_image(dir: &Path) {
    let mut w = Writer::new(DirStore::create(dir, 1 << 30).unwrap(), WriterInfo::current("test")).unwrap();
    let mut page = vec![0u8; 4 * PAGE_SIZE];
    pattern::fill(1, 0x40_0000, &mut page);
    w.put_record(RecordKind::PATTERN, 0, 0, &pattern::Pattern { seed: 1, chunks: 1, bytes: page.len() as u64 })
        .unwrap();
    w.put_pages(4242, 0x40_0000, &page).unwrap();
    w.put_blob(4242, 7, b"ghost file contents").unwrap();
    w.finish().unwrap();
}

fn inspect(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_seamless")).arg("inspect").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn clean_and_corrupted_images() {
    let dir = std::env::temp_dir().join(format!("seamless-inspect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_image(&dir);
    let d = dir.to_str().unwrap();

    let (code, text) = inspect(&[d]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("pid 4242"), "{text}");
    assert!(text.contains("16384 bytes of pages"), "{text}");
    assert!(text.contains("all 3 OK"), "{text}");

    let (code, json) = inspect(&[d, "--json"]);
    assert_eq!(code, 0, "{json}");
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(parsed["failed"], 0, "{json}");

    let chunk = {
        let r = Reader::open(DirStore::open(&dir).unwrap()).unwrap();
        let found = r.find(RecordKind::PAGE_CHUNK).next().map(|(i, e)| (i, *e)).unwrap();
        found
    };
    let img = dir.join("region.img");
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[chunk.1.offset as usize + 3 * PAGE_SIZE + 17] ^= 1;
    std::fs::write(&img, bytes).unwrap();

    let (code, text) = inspect(&[d]);
    assert_eq!(code, 2, "{text}");
    let line = format!("entry {} (page-chunk, owner 4242, tag 0x400000) checksum mismatch", chunk.0);
    assert!(text.contains(&line), "expected {line:?} in:\n{text}");
    assert!(text.contains("1 of 3 FAILED"), "{text}");

    let (code, text) = inspect(&["/nonexistent/image"]);
    assert_eq!(code, 1);
    assert!(text.contains("cannot read the image at /nonexistent/image"), "{text}");
}
