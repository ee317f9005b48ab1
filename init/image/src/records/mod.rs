//! Record types of the process image (postcard-encoded). Each module defines the records of
//! one resource kind and the [`RecordKind`](crate::RecordKind) numbers (16 and up) they are
//! stored under.
//!
//! Contract with the rest of the crate: [`kind_name`] names every kind defined here, and
//! [`describe`] turns a record's bytes into a one-line summary for `seamless inspect` (it
//! decodes with postcard and must fail gracefully on bad bytes; the fuzzer calls it).

use crate::RecordKind;

/// Names of the record kinds defined in this module tree, for listings.
pub fn kind_name(kind: RecordKind) -> Option<&'static str> {
    let _ = kind;
    None
}

/// A one-line human summary of a record of a kind defined here; `None` for other kinds or
/// bytes that do not decode.
pub fn describe(kind: RecordKind, bytes: &[u8]) -> Option<String> {
    let _ = (kind, bytes);
    None
}
