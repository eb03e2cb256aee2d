//! The gateway agent's core: everything between untrusted bytes and DNS answers, with no I/O
//! and no heap.
//!
//! Layout:
//! - [`payload`]: zone payload v1 (JSON, see `docs/payload.md`): schema, limits, validation,
//!   and compilation into the compact byte form a [`Zone`] reads.
//! - [`zone`]: the compiled zone ([`Zone`] over any byte storage) and name lookup.
//! - [`wire`]: DNS wire format: `Packet<T>` over bytes with checked accessors, `Repr`s that
//!   parse and emit, name compression.
//! - [`answer`]: `answer(zone, query, out, transport)`, the whole query path.
//! - [`framing`]: DNS over TCP's length prefixes, reassembled from reads of any size.
//!
//! The daemon (`sdwan-agent`) owns sockets, files, MQTT and logging and calls into this crate.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(feature = "std", test))]
extern crate std;

pub mod answer;
pub mod framing;
pub mod payload;
pub mod wire;
pub mod zone;

pub use answer::{answer, Transport};
pub use payload::{compile, compiled_size_bound, PayloadError};
pub use zone::Zone;
