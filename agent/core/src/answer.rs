//! The query path: `answer(zone, query, out, transport)`.
//!
//! SKELETON: the API is fixed, the body is being written.

use crate::{wire, Zone};

/// The transport a query came in on: it sets the size limit of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// 512 bytes, or the client's EDNS size capped at 1232; TC set when the answer does not fit.
    Udp,
    /// Up to `out.len()` (at most 65535).
    Tcp,
}

/// Answers `query` from `zone` into `out`, returning the length of the response.
/// With no zone loaded, every question gets REFUSED. `Err` means: send nothing.
pub fn answer<S: AsRef<[u8]>>(
    zone: Option<&Zone<S>>,
    query: &[u8],
    out: &mut [u8],
    transport: Transport,
) -> Result<usize, wire::Error> {
    let _ = (zone, query, out, transport);
    Err(wire::Error::Truncated)
}
