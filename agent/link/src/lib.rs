//! MQTT over TLS for sdwan-agent and sdwan-discovery: broker URL, rustls client setup, topics, backoff, status documents.
