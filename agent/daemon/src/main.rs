//! sdwan-agent: the gateway/worker agent daemon (sockets, flags, config, MQTT, persistence); glue around sdwan-agent-core.
fn main() {}
