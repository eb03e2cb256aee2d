//! sdwan-discovery: the master. Watches Kubernetes, plans, publishes changed payloads over MQTT.
fn main() {}
