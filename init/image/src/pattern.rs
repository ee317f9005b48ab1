//! A test pattern: deterministic page contents derived from a seed and an address, used to
//! prove that a region survives a kexec byte for byte.

use serde::{Deserialize, Serialize};

/// The record describing a pattern image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pattern {
    /// Seed of the generator.
    pub seed: u64,
    /// Number of page chunks written.
    pub chunks: u32,
    /// Total bytes of page data.
    pub bytes: u64,
}

/// Fills `buf` with the pattern for `seed` at address `addr` (splitmix64 per 8-byte word).
pub fn fill(seed: u64, addr: u64, buf: &mut [u8]) {
    for (i, w) in buf.chunks_mut(8).enumerate() {
        let mut z = seed ^ (addr + 8 * i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let b = z.to_le_bytes();
        w.copy_from_slice(&b[..w.len()]);
    }
}
