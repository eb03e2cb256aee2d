//! The incremental planner: bytes decoded into batches of watch events (nodes, services and
//! EndpointSlices applied and deleted, over small name pools so that they collide). After every
//! batch the planner's plan must equal planning the same snapshot from scratch, every changed
//! payload must be reported, and every zone payload must be accepted by the agent core.
#![no_main]

#[path = "../checks.rs"]
mod checks;
#[path = "../../tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::planner(data));
