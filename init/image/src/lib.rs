//! The seamless image format. See `FORMAT.md` beside this crate for the byte-level contract.
