//! Writes small valid images into the directory given as argument, as a seed corpus for the
//! decoder fuzzer (`tests/run fuzz`): random bytes almost never pass the magic and checksums.
//! One of them holds a small valid process, for the record validation behind the decoder.

use seamless_image::{pattern, MemStore, RecordKind, Writer, WriterInfo, PAGE_SIZE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: fuzz_seeds DIR")?;
    std::fs::create_dir_all(&dir)?;
    let info = WriterInfo { kernel_release: "6.1.0-seed".into(), boot_id: [1; 16], release: "seed".into() };
    for (n, chunks) in [0usize, 1, 2].into_iter().enumerate() {
        let mut w = Writer::new(MemStore::new(1 << 20), info.clone())?;
        w.put_record(RecordKind::PATTERN, 0, 0, &pattern::Pattern { seed: 5, chunks: chunks as u32, bytes: 0 })?;
        for c in 0..chunks {
            let mut page = vec![0u8; PAGE_SIZE];
            pattern::fill(5, c as u64 * 0x1000, &mut page);
            w.put_pages(100 + c as u32, c as u64 * 0x1000, &page)?;
        }
        w.put_blob(7, 1, b"blob")?;
        w.put_record(RecordKind::STAGES, 0, 0, &vec![1u32, 2, 3])?;
        let store = w.finish()?;
        std::fs::write(format!("{dir}/seed-{n}"), &store.bytes)?;
    }
    // A valid process image, so that mutations reach record validation.
    let mut w = Writer::new(MemStore::new(1 << 20), info)?;
    seamless_image::validate::Decoded::sample(4242).write_to(&mut w)?;
    std::fs::write(format!("{dir}/seed-process"), &w.finish()?.bytes)?;
    Ok(())
}
