//! The gateway agent's core: everything between untrusted bytes and DNS answers, with no I/O
//! and no heap.
//!
//! Layout:
//! - [`payload`]: zone payload v1 (JSON, see `docs/payload.md`): schema, limits, validation,
//!   and compilation into the compact byte form a [`Zone`] reads.
//! - [`zone`]: the compiled zone ([`Zone`] over any byte storage) and name lookup.
//! - [`wire`]: DNS wire format: `Packet<T>` over bytes with checked accessors, `Repr`s that
//!   parse and emit, name compression.
//! - [`v2zone`]: the v2 zone (`docs/payload-v2.md`): assembled from snapshot parts, changed
//!   by deltas into a copy, digest kept, held in caller-owned storage.
//! - [`mod@answer`]: `answer(zone, query, out, transport)`, the whole query path, and
//!   `answer_v2(zone, query, out, transport, health)` for a v2 zone.
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
pub mod v2zone;
pub mod wire;
pub mod zone;

pub use answer::{answer, answer_v2, Transport};
pub use payload::{compile, compiled_size_bound, PayloadError};
pub use v2zone::{Health, ZoneV2, NO_BASE};
pub use zone::Zone;
