//! Key material in memory: buffers that are overwritten with zeros when they are dropped or
//! wiped, by volatile writes followed by a compiler fence, so the zeroing is not removed as a
//! dead store (a plain `fill(0)` before a `free` may be).

use std::sync::atomic::{compiler_fence, Ordering};

/// Overwrites `buf` with zeros in a way the compiler must keep.
///
/// Man page: none, no system call (`std::ptr::write_volatile`, then a compiler fence).
pub fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to one byte of `buf`.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    compiler_fence(Ordering::SeqCst);
}

/// Bytes that must not outlive their use (a volume key, a table line holding one): wiped on
/// drop, never printed (`Debug` shows the length only). Built at its final size so no
/// reallocation leaves a copy behind.
#[derive(Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes `bytes` over (their buffer is the one wiped later).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// A copy of `bytes` in a buffer of exactly their size.
    pub fn copy_of(bytes: &[u8]) -> Self {
        let mut v = Vec::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        Self(v)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, to fill in place.
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Appends `bytes` if the buffer has room for them without growing (so no copy is left
    /// behind by a reallocation); `None` when it has not.
    pub fn push_within(&mut self, bytes: &[u8]) -> Option<()> {
        if self.0.capacity() - self.0.len() < bytes.len() {
            return None;
        }
        self.0.extend_from_slice(bytes);
        Some(())
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every byte is zero (a key wiped in the region reads so).
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }

    /// The bytes as lowercase hex, itself secret (the form a device-mapper table line takes).
    pub fn to_hex(&self) -> Secret {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut v = Vec::with_capacity(self.0.len() * 2);
        for &b in &self.0 {
            v.push(HEX[usize::from(b >> 4)]);
            v.push(HEX[usize::from(b & 15)]);
        }
        Secret(v)
    }

    /// Parses hex digits (upper or lower case) into a secret; `None` for an odd length or
    /// another character.
    pub fn from_hex(hex: &[u8]) -> Option<Secret> {
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = Secret(Vec::with_capacity(hex.len() / 2));
        for pair in hex.chunks_exact(2) {
            out.0.push(digit(pair[0])? << 4 | digit(pair[1])?);
        }
        Some(out)
    }

    /// Wipes the bytes now and empties the buffer.
    pub fn wipe(&mut self) {
        wipe(&mut self.0);
        self.0.clear();
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_wipe() {
        let s = Secret::from_hex(b"00ff10Ab").unwrap();
        assert_eq!(s.as_bytes(), &[0, 0xff, 0x10, 0xab]);
        assert_eq!(s.to_hex().as_bytes(), b"00ff10ab");
        assert!(Secret::from_hex(b"abc").is_none());
        assert!(Secret::from_hex(b"zz").is_none());
        assert_eq!(format!("{s:?}"), "Secret(4 bytes)");
        let mut buf = vec![7u8; 32];
        wipe(&mut buf);
        assert!(buf.iter().all(|&b| b == 0));
        let mut s = Secret::copy_of(&[1, 2, 3]);
        assert!(!s.is_zero());
        s.wipe();
        assert!(s.is_empty());
    }
}
