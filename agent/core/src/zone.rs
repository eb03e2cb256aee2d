//! The compiled zone: a compact, read-only byte form made by [`crate::compile`].
//!
//! SKELETON: the API is fixed, the body is being written.

/// A compiled zone over any byte storage (`Vec<u8>`, `&[u8]`, `heapless::Vec`).
#[derive(Debug, Clone)]
pub struct Zone<S: AsRef<[u8]>> {
    storage: S,
}

/// The storage does not hold a zone made by [`crate::compile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadZone;

impl<S: AsRef<[u8]>> Zone<S> {
    /// Wraps bytes written by [`crate::compile`], checking their header.
    pub fn from_compiled(storage: S) -> Result<Self, BadZone> {
        Ok(Zone { storage })
    }
    /// The payload's serial (also the SOA serial).
    pub fn serial(&self) -> u32 {
        let _ = self.storage.as_ref();
        0
    }
    /// The payload's `gateway` field.
    pub fn gateway(&self) -> &str {
        ""
    }
    /// The origin, without a trailing dot.
    pub fn origin(&self) -> &str {
        ""
    }
    /// Number of records (not counting the SOA and NS the agent adds).
    pub fn record_count(&self) -> usize {
        0
    }
}
