//! Record types of the process image (postcard-encoded). Each module defines the records of
//! one resource kind and the [`RecordKind`](crate::RecordKind) numbers they are stored under.

use crate::RecordKind;

/// Names of the record kinds defined in this module tree, for listings.
pub fn kind_name(kind: RecordKind) -> Option<&'static str> {
    let _ = kind;
    None
}
