//! DNS wire format.
//!
//! SKELETON: the API is fixed, the body is being written.

/// Why a message could not be read or an answer could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not even a header: the query is dropped without an answer.
    Truncated,
    /// The output buffer cannot hold even a header and question.
    NoRoom,
}
