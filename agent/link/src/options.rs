//! [`LinkOptions`]: everything an MQTT connection needs, and what each client is made from:
//! [`client::Settings`] for the agent's blocking client, [`rumqttc::MqttOptions`] for rumqttc's
//! tokio `AsyncClient` (master) and its sync `Client` (tests).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Client, Connection, ConnectionError, EventLoop, MqttOptions, NetworkOptions,
    StateError, TlsConfiguration, Transport,
};

use crate::{client, tls, BrokerUrl, LinkError, Scheme};

/// Largest MQTT packet accepted or sent by default: a 1 MiB payload (the payload limit) plus
/// room for topic and headers, so oversized payloads reach the agent's validation and are
/// rejected there with a status instead of breaking the connection.
pub const DEFAULT_MAX_PACKET: usize = 1024 * 1024 + 64 * 1024;

/// Connection settings shared by agent and master.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// The broker.
    pub broker: BrokerUrl,
    /// CA certificates (PEM) the server certificate must chain to. `None`: the system bundle
    /// [`tls::SYSTEM_CA_BUNDLE`]. Ignored for `mqtt://`.
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM), for certificate authentication.
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub key: Option<PathBuf>,
    /// MQTT username.
    pub username: Option<String>,
    /// File whose first line is the MQTT password (never a flag: it would show in `ps`).
    pub password_file: Option<PathBuf>,
    /// MQTT client id; agents use their gateway id (a broker with `use_username_as_clientid`
    /// replaces it with the certificate's CN, which must be the same).
    pub client_id: String,
    /// Keepalive interval.
    pub keep_alive: Duration,
    /// `false` for a persistent session (the broker keeps subscriptions and queued QoS 1
    /// messages across reconnects). The default is a clean session: every payload is retained
    /// and subscribed to again on each connect, and rumqttd sends no retained messages to a
    /// resumed session (docs/mqtt.md).
    pub clean_session: bool,
    /// Largest packet in either direction.
    pub max_packet: usize,
}

/// Limit on connecting (TCP, TLS handshake, CONNACK), both clients.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Socket options for the event loop: `TCP_NODELAY` (zone payloads and status documents are
/// small writes that must not wait for Nagle's algorithm and delayed ACKs, which cost tens of
/// milliseconds per message) and a 10 s connection timeout. rumqttc keeps these on the event
/// loop, not in [`MqttOptions`]: `connection.eventloop.set_network_options(network_options())`
/// (sync) or `eventloop.set_network_options(network_options())` (async).
pub fn network_options() -> NetworkOptions {
    let mut n = NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n.set_connection_timeout(CONNECT_TIMEOUT.as_secs());
    n
}

/// Why a connection failed or dropped, as the logs and the status document say it: rumqttc's
/// text, except that a packet over our size limit `max_packet` names both sizes and where the
/// limit comes from (issue 12: such a retained message used to break the connection at every
/// delivery with only "payload size limit exceeded" to go on).
pub fn describe_error(e: &ConnectionError, max_packet: usize) -> String {
    match e {
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(n),
        )) => format!(
            "the broker sent a packet of {n} bytes, over this client's limit of {max_packet} \
             bytes (a retained message too large: set the broker's max_packet_size to \
             {max_packet} so it refuses such publishes)"
        ),
        e => e.to_string(),
    }
}

impl LinkOptions {
    /// Options with the defaults: no TLS files, 30 s keepalive, clean session.
    pub fn new(broker: BrokerUrl, client_id: &str) -> LinkOptions {
        LinkOptions {
            broker,
            ca: None,
            cert: None,
            key: None,
            username: None,
            password_file: None,
            client_id: client_id.to_string(),
            keep_alive: Duration::from_secs(30),
            clean_session: true,
            max_packet: DEFAULT_MAX_PACKET,
        }
    }

    /// The rustls configuration for this link (`None` for `mqtt://`): verifies the server
    /// against [`LinkOptions::ca`] and presents the client certificate if one is set.
    pub fn tls_config(&self) -> Result<Option<rustls::ClientConfig>, LinkError> {
        let client = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (Some(c), None) => {
                return Err(LinkError::CertKeyPair {
                    given: c.clone(),
                    missing: "--key",
                })
            }
            (None, Some(k)) => {
                return Err(LinkError::CertKeyPair {
                    given: k.clone(),
                    missing: "--cert",
                })
            }
            (None, None) => None,
        };
        match self.broker.scheme {
            Scheme::Plain => Ok(None),
            Scheme::Tls => tls::client_config(self.ca.as_deref(), client).map(Some),
        }
    }

    /// The password: the first line of [`LinkOptions::password_file`], if one is given.
    pub fn password(&self) -> Result<Option<String>, LinkError> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let bytes = tls::read_file("password file", path)?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.split('\n').next().unwrap_or_default();
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.is_empty() {
            return Err(LinkError::EmptyPassword { path: path.clone() });
        }
        Ok(Some(text.to_string()))
    }

    /// A tokio client and event loop (the master's), with [`network_options`] applied.
    /// `cap` is the request channel capacity. A last will, if wanted, must be set on
    /// [`LinkOptions::mqtt_options`] and [`AsyncClient::new`] used instead.
    pub fn async_client(&self, cap: usize) -> Result<(AsyncClient, EventLoop), LinkError> {
        let (client, mut eventloop) = AsyncClient::new(self.mqtt_options()?, cap);
        eventloop.set_network_options(network_options());
        Ok((client, eventloop))
    }

    /// A blocking client and connection (rumqttc runs its own current-thread runtime), with
    /// [`network_options`] applied.
    pub fn sync_client(&self, cap: usize) -> Result<(Client, Connection), LinkError> {
        let (client, mut connection) = Client::new(self.mqtt_options()?, cap);
        connection.eventloop.set_network_options(network_options());
        Ok((client, connection))
    }

    /// The client id, checked: 1..=64 characters.
    fn checked_client_id(&self) -> Result<&str, LinkError> {
        if self.client_id.is_empty() || self.client_id.chars().count() > 64 {
            return Err(LinkError::BadClientId {
                client_id: self.client_id.clone(),
            });
        }
        Ok(&self.client_id)
    }

    /// Username and password, checked (a password file needs a username).
    fn login(&self) -> Result<Option<(String, String)>, LinkError> {
        match (&self.username, self.password()?) {
            (Some(u), p) => Ok(Some((u.clone(), p.unwrap_or_default()))),
            (None, Some(_)) => Err(LinkError::PasswordWithoutUsername),
            (None, None) => Ok(None),
        }
    }

    /// Settings for the agent's blocking [`client::Client`]: the same transport, credentials,
    /// keepalive, session and packet size as [`LinkOptions::mqtt_options`], with `will` (topic,
    /// payload) as the retained QoS 1 last will. Reads the TLS and password files now.
    pub fn client_settings(
        &self,
        will: Option<(String, Vec<u8>)>,
    ) -> Result<client::Settings, LinkError> {
        let client_id = self.checked_client_id()?.to_string();
        Ok(client::Settings {
            host: self.broker.host.clone(),
            port: self.broker.port,
            tls: self.tls_config()?.map(Arc::new),
            client_id,
            keep_alive: self.keep_alive.max(Duration::from_secs(1)),
            clean_session: self.clean_session,
            login: self.login()?,
            will,
            max_packet: self.max_packet,
            connect_timeout: CONNECT_TIMEOUT,
        })
    }

    /// rumqttc options: transport (TLS with [`LinkOptions::tls_config`] or TCP), credentials,
    /// keepalive, session, packet size. Reads the TLS and password files now, so every file
    /// problem shows at start-up. Add a last will with `set_last_will` before connecting.
    pub fn mqtt_options(&self) -> Result<MqttOptions, LinkError> {
        let mut o = MqttOptions::new(
            self.checked_client_id()?.to_string(),
            self.broker.host.clone(),
            self.broker.port,
        );
        o.set_keep_alive(self.keep_alive.max(Duration::from_secs(1)));
        o.set_clean_session(self.clean_session);
        o.set_max_packet_size(self.max_packet, self.max_packet);
        if let Some(cfg) = self.tls_config()? {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(cfg),
            )));
        }
        if let Some((u, p)) = self.login()? {
            o.set_credentials(u, p);
        }
        Ok(o)
    }
}
