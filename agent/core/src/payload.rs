//! Zone payload v1: the JSON document the master publishes per gateway (`docs/payload.md`).
//!
//! SKELETON: the API is fixed, the body is being written.

use core::fmt;

/// Largest payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 512 * 1024;

/// Why a payload was rejected; `record` is the index of the offending record, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    /// Index into `records`, or `None` for document-level errors.
    pub record: Option<u16>,
    /// The reason.
    pub kind: PayloadErrorKind,
}

/// The reasons a payload can be rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadErrorKind {
    /// Not valid JSON, or not the v1 schema.
    Malformed,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.kind)
    }
}

/// Upper bound of the compiled size of a payload of `payload_len` bytes: a buffer this large
/// always suffices for [`compile`].
pub const fn compiled_size_bound(payload_len: usize) -> usize {
    payload_len + 1024
}

/// Validates `payload` fully and writes the compiled zone into `out`, returning its length.
/// Read it back with [`crate::Zone::from_compiled`].
pub fn compile(payload: &[u8], out: &mut [u8]) -> Result<usize, PayloadError> {
    let _ = (payload, out);
    Err(PayloadError {
        record: None,
        kind: PayloadErrorKind::Malformed,
    })
}
