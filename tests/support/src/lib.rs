//! Test harness shared by the integration tests: temp dirs, free ports, waiting with
//! deadlines, child processes that are always reaped, and real peers (dig/kdig, dnsmasq; more
//! peers such as mosquitto live in their own modules).
//!
//! Layout:
//! - [`alloc`]: [`alloc::CountingAllocator`], a global allocator counting chosen threads.
//! - [`agent`]: [`Agent`]: the `sdwan-agent` binary on a free loopback port, up and listening.
//! - [`wait`]: [`wait_until`] / [`wait_for`]: poll a condition until a deadline, then panic
//!   with what was awaited. Never sleep-and-hope.
//! - [`net`]: [`free_port`] (free for both UDP and TCP on loopback).
//! - [`tmp`]: [`TempDir`], removed on drop (kept, and its path printed, when the test failed).
//! - [`child`]: [`ChildGuard`]: a spawned process in its own process group, stopped (with its
//!   own signal, then SIGKILL of the group) and reaped on drop with all it forked, its
//!   stdout/stderr in files that are printed when the test fails.
//! - [`tools`]: [`require_tool`]: the path of an installed tool, or a panic saying which
//!   Debian package to install.
//! - [`mod@dig`]: run `dig`/`kdig` and parse the answer ([`DigAnswer`]).
//! - [`dnsmasq`]: start a real dnsmasq forwarding a domain to a port.
//! - [`certs`]: test PKI with rcgen (CA, server and client certificates as PEM files).
//! - [`mosquitto`]: a real mosquitto broker (plain or TLS, client certificates, ACL).
//! - [`fuzz`]: [`fuzz::check_fuzz_inputs`]: fuzz targets' checks over the kept corpus and
//!   crash inputs (each crate's `tests/regressions.rs`).
//! - [`nginx`]: a real nginx in its own prefix directory, HTTP backends standing in for
//!   NodePorts, a raw HTTP GET.
//! - [`rng`]: [`Rng`], a seeded SplitMix64 for synthetic clusters and mutations.

pub mod agent;
pub mod alloc;
pub mod certs;
pub mod child;
pub mod dig;
pub mod dnsmasq;
pub mod fuzz;
pub mod mosquitto;
pub mod net;
pub mod nginx;
pub mod rng;
pub mod tmp;
pub mod tools;
pub mod wait;

pub use agent::Agent;
pub use child::ChildGuard;
pub use dig::{dig, kdig, DigAnswer, Rr};
pub use dnsmasq::Dnsmasq;
pub use net::free_port;
pub use rng::Rng;
pub use tmp::TempDir;
pub use tools::require_tool;
pub use wait::{wait_for, wait_until};
