//! Feeds arbitrary bytes to the region reader: opening, verifying and decoding every record
//! must return errors, never panic, hang or allocate without bound. Then the restore side's
//! loading: every process record decoded and validated (`seamless_image::validate`), and, for
//! an image that passes, the record-driven computations restore does before any syscall
//! (vDSO symbol parsing and patching, final registers, area and chunk arithmetic), which must
//! not panic or overflow on anything validation accepts.
//!
//! When the first byte is odd, the target first repairs the superblock, index and entry
//! checksums of the input, so that mutations reach the structural checks and the record
//! decoders behind the checksums instead of stopping at the first CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seamless_image::records::VmaKind;
use seamless_image::{MemStore, Reader, ENTRY_SIZE, SUPERBLOCK_SIZE};
use seamless_restore::{plan, threads, vdso};

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap_or_default())).unwrap_or(0)
}

fn fix_checksums(b: &mut [u8]) {
    if b.len() < SUPERBLOCK_SIZE {
        return;
    }
    let index_offset = u64_at(b, 40) as usize;
    let count = u32::from_le_bytes(b[48..52].try_into().unwrap_or_default()) as usize;
    let index_len = count.saturating_mul(ENTRY_SIZE);
    if let Some(end) = index_offset.checked_add(index_len).filter(|e| *e <= b.len()) {
        for i in 0..count {
            let at = index_offset + i * ENTRY_SIZE;
            let (off, len) = (u64_at(b, at + 16) as usize, u64_at(b, at + 24) as usize);
            if let Some(data_end) = off.checked_add(len).filter(|e| *e <= b.len()) {
                let crc = crc32c::crc32c(&b[off..data_end]);
                b[at + 32..at + 36].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&b[index_offset..end]);
        b[52..56].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b[..SUPERBLOCK_SIZE - 4]);
    b[SUPERBLOCK_SIZE - 4..SUPERBLOCK_SIZE].copy_from_slice(&crc.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    if data.first().is_some_and(|b| b & 1 == 1) {
        fix_checksums(&mut bytes);
    }
    let Ok(mut reader) = Reader::open_for_inspect(MemStore::from_bytes(bytes)) else { return };
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
    let Ok(plan) = plan::load(&mut reader) else { return };
    for p in plan.procs.values() {
        for t in &p.threads {
            let _ = threads::final_regs(t);
        }
        let vdso_area = p.mm.vmas.iter().find(|v| v.kind == VmaKind::Vdso);
        if let (Some(v), Some(_)) = (vdso_area, vdso::symbols(&p.mm.vdso)) {
            let _ = vdso::patch(&p.mm.vdso, v.start, &p.mm.vdso, v.start.wrapping_add(1 << 20));
        }
        // What restore computes from validated areas and chunks, with overflow checks on.
        let mut shm_len = std::collections::BTreeMap::new();
        for v in &p.mm.vmas {
            let len = v.end - v.start;
            if let VmaKind::SharedAnon { ino, offset } = v.kind {
                let e = shm_len.entry(ino).or_insert(0u64);
                *e = (*e).max(offset + len);
            }
        }
        for ch in &p.chunks {
            let v = p.mm.vmas.iter().find(|v| v.start <= ch.vaddr && ch.vaddr < v.end);
            let v = v.expect("validation accepted a chunk outside every area");
            assert!(ch.vaddr + ch.len <= v.end, "validation accepted a chunk past its area");
            if let VmaKind::SharedAnon { ino, offset } = v.kind {
                assert!(offset + (ch.vaddr - v.start) + ch.len <= shm_len[&ino], "chunk past its shared object");
            }
        }
    }
});
