//! Feeds arbitrary bytes to the region reader: opening, verifying and decoding every record
//! must return errors, never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seamless_image::{MemStore, Reader};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = Reader::open_for_inspect(MemStore::from_bytes(data.to_vec())) else { return };
    let _ = reader.verify();
    let entries: Vec<_> = reader.entries().to_vec();
    for (i, e) in entries.iter().enumerate() {
        let i = i as u32;
        if e.kind.is_raw() {
            let _ = reader.blob(i);
        } else {
            let _ = reader.record::<seamless_image::pattern::Pattern>(i);
            if let Ok(bytes) = reader.record_bytes(i) {
                let _ = seamless_image::records::describe(e.kind, &bytes);
            }
        }
    }
});
