//! The embedded MQTT broker (rumqttd), run when no `--broker` is given: plain MQTT 3.1.1 on a
//! loopback address, retained messages kept in memory.

use std::net::SocketAddr;

use serde_json::json;

/// Why the embedded broker could not start.
#[derive(Debug)]
pub enum BrokerError {
    /// The listen address is taken or not bindable.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// rumqttd refused the configuration.
    Config(String),
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerError::Bind { addr, source } => write!(
                f,
                "embedded broker: cannot listen on {addr}: {source} (use --embedded-broker ADDR or --broker URL)"
            ),
            BrokerError::Config(e) => write!(f, "embedded broker: bad configuration: {e}"),
        }
    }
}

impl std::error::Error for BrokerError {}

/// Starts rumqttd on `addr` in its own threads (it runs until the process exits). Returns the
/// address it listens on (a port 0 in `addr` is resolved first).
pub fn start(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    // rumqttd reports bind errors only in its logs: bind once here to give a clear error.
    let probe =
        std::net::TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
    let addr = probe
        .local_addr()
        .map_err(|source| BrokerError::Bind { addr, source })?;
    drop(probe);
    let config = json!({
        "id": 0,
        "router": {
            "max_connections": 10010,
            "max_outgoing_packet_count": 200,
            "max_segment_size": 104_857_600,
            "max_segment_count": 10,
        },
        "v4": {"1": {
            "name": "v4-1",
            "listen": addr.to_string(),
            "next_connection_delay_ms": 1,
            "connections": {
                "connection_timeout_ms": 60000,
                "max_payload_size": sdwan_link::options::DEFAULT_MAX_PACKET,
                "max_inflight_count": 100,
                "dynamic_filters": true,
            },
        }},
    });
    let config: rumqttd::Config =
        serde_json::from_value(config).map_err(|e| BrokerError::Config(e.to_string()))?;
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                log::error!("embedded broker stopped: {e}");
            }
        })
        .map_err(|e| BrokerError::Config(e.to_string()))?;
    Ok(addr)
}
