//! The contract between the master (`sdwan-discovery`) and the agents (`sdwan-agent`): what
//! both sides must agree on, in one crate that both use. no_std, no heap, no unsafe.
//!
//! Layout:
//! - [`json`]: the one checked door for JSON documents from the network or from files. A
//!   single non-recursive pass checks RFC 8259 syntax with bounded size and nesting depth and
//!   no raw control characters in strings, before any (recursive) deserializer sees the bytes.
//!   The limits of the doors both sides share are here too: [`json::ZONE_V1`],
//!   [`json::PROXY_V1`], [`json::STATUS`] (`docs/security.md`).
//! - [`v2`]: payload v2 (`docs/payload-v2.md`): limits, id rules, versions, the content
//!   digest, the agent's heap-free decoder and (feature `alloc`) the master's encoder.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(feature = "std", test))]
extern crate std;

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod json;
pub mod v2;
