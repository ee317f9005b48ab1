//! Scratch memory in a tracee, handed out by a bump allocator.
//!
//! Injected system calls take their arguments and out-parameters through pointers into the
//! tracee, so the tracer maps a few pages there and lays the structures of one step out in
//! them. [`Bump`] hands out non-overlapping, aligned pieces of such an area, so no call site
//! picks an offset by hand; a step that is done starts a new `Bump` over the same area.

/// Alignment of every piece: enough for any kernel ABI structure (`struct clone_args` wants 8,
/// an XSAVE area would want 64 but never goes through scratch).
pub const ALIGN: u64 = 16;

/// A bump allocator over the scratch area `[start, start + len)` of a tracee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bump {
    next: u64,
    end: u64,
}

impl Bump {
    /// An empty allocator over `len` bytes at `start`.
    pub fn new(start: u64, len: u64) -> Self {
        Self { next: start, end: start.saturating_add(len) }
    }

    /// The address of `len` fresh bytes aligned to [`ALIGN`], or `None` when the area is full.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        let at = self.next.checked_add(ALIGN - 1)? & !(ALIGN - 1);
        let end = at.checked_add(len)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(at)
    }

    /// Bytes still free (before alignment).
    pub fn left(&self) -> u64 {
        self.end.saturating_sub(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::Bump;

    #[test]
    fn pieces_are_aligned_disjoint_and_bounded() {
        let mut b = Bump::new(0x1000, 64);
        let a = b.alloc(3).unwrap();
        let c = b.alloc(16).unwrap();
        assert_eq!((a, c), (0x1000, 0x1010));
        assert_eq!(b.alloc(32), Some(0x1020));
        assert_eq!(b.left(), 0);
        assert_eq!(b.alloc(1), None, "full");
        assert_eq!(Bump::new(0x1000, 64).alloc(65), None, "larger than the area");
        assert_eq!(Bump::new(u64::MAX - 8, 8).alloc(4), None, "no overflow past the address space");
    }
}
