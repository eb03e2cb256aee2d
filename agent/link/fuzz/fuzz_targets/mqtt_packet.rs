//! MQTT packets from the broker: any bytes as what the agent's client reads from its
//! connection (`sdwan_link::client::read_packet`). Must never panic; the packets and the
//! error are the same whether the bytes arrive at once or one at a time.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::mqtt_packet(data));
