//! MQTT mode (`--broker`): one thread that keeps a TLS connection to the broker, subscribes to
//! the agent's payload topic (QoS 1, clean session), hands each payload to a [`Sink`] and
//! publishes the retained status document on connect and after every apply or rejection. The
//! last will is the offline document. Both modes share this loop:
//! - gateway mode (`--gateway-id ID`): `P/gateways/ID/zone` into the [`Applier`] (DNS zone),
//!   status on `P/gateways/ID/status`, client id = gateway id;
//! - worker mode (`--node-id NODE`): `P/nodes/NODE/proxy` into the proxy applier
//!   (`crate::proxy`), status on `P/nodes/NODE/status`, client id = node id.
//!
//! Connection set-up (URL, TLS with server verification, files) is `sdwan_link`'s; this module
//! is the loop. [`Link::prepare`] reads every file at start-up, so configuration mistakes stop
//! the agent at once; [`Link::spawn`] starts the thread. Reconnects wait a capped exponential
//! backoff with jitter that starts over only after a connection stayed up
//! [`sdwan_link::backoff::STABLE_AFTER`]; each connect and each disconnect is logged once, with
//! its reason, and the reason of the last drop goes into the status document (`disconnect`).
//!
//! The session is clean (issue 12): the payload is retained, so subscribing on every connect
//! brings the latest one on any broker, while rumqttd did not send retained messages to a
//! resumed session, so an agent restarted with an empty state directory never got its zone.

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use sdwan_link::rumqttc::{
    Client, ConnectReturnCode, Connection, Event, LastWill, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use sdwan_link::{Backoff, BrokerUrl, LinkError, LinkOptions, Status, Topics};

use crate::apply::{Applier, Outcome};
use crate::config::Config;
use crate::{status, VERSION};

/// Why MQTT mode could not start.
#[derive(Debug)]
pub enum MqttError {
    /// `--broker` given without `--gateway-id` (or `--node-id` in worker mode).
    NoGatewayId,
    /// The gateway id cannot be used in a topic.
    BadGatewayId(String),
    /// The node id cannot be used in a topic.
    BadNodeId(String),
    /// Broker URL, TLS files, password file or topic prefix rejected (names the file or flag).
    Link(LinkError),
}

impl fmt::Display for MqttError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MqttError::NoGatewayId => {
                write!(
                    f,
                    "--broker needs --gateway-id (or --node-id in worker mode)"
                )
            }
            MqttError::BadNodeId(id) => write!(
                f,
                "--node-id {id:?}: must be 1..=64 characters of A-Z a-z 0-9 . _ -"
            ),
            MqttError::BadGatewayId(id) => write!(
                f,
                "--gateway-id {id:?}: must be 1..=64 characters of A-Z a-z 0-9 . _ -"
            ),
            MqttError::Link(e) => write!(f, "MQTT: {e}"),
        }
    }
}

impl std::error::Error for MqttError {}

impl From<LinkError> for MqttError {
    fn from(e: LinkError) -> Self {
        MqttError::Link(e)
    }
}

/// Checks a gateway id: 1..=64 characters of `[A-Za-z0-9._-]` (the payload's rule).
pub fn valid_gateway_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A prepared connection: options built, files read, not connected yet.
#[derive(Debug)]
pub struct Link {
    options: MqttOptions,
    broker: BrokerUrl,
    /// Client id: the gateway id or the node id.
    id: String,
    /// Where payloads come from.
    payload_topic: String,
    /// Where the status goes.
    status_topic: String,
}

/// What the MQTT loop feeds payloads to: the gateway's zone [`Applier`] or the worker's proxy
/// applier.
pub trait Sink: Send + 'static {
    /// Handles one payload; true when the status document changed and must be published.
    fn handle_payload(&mut self, payload: &[u8]) -> bool;
    /// Serial in use, for the status document.
    fn serial(&self) -> Option<u32>;
    /// Last error, for the status document; `None` after a successful apply.
    fn last_error(&self) -> Option<&str>;
}

impl Sink for Applier {
    fn handle_payload(&mut self, payload: &[u8]) -> bool {
        !matches!(self.handle(payload), Outcome::Unchanged(_))
    }
    fn serial(&self) -> Option<u32> {
        Applier::serial(self)
    }
    fn last_error(&self) -> Option<&str> {
        Applier::last_error(self)
    }
}

impl Link {
    /// Builds the connection options from the config; `None` when `--broker` is not given.
    pub fn prepare(config: &Config) -> Result<Option<Link>, MqttError> {
        let Some(url) = &config.broker else {
            return Ok(None);
        };
        let topics = Topics::new(&config.topic_prefix)?;
        let (id, payload_topic, status_topic) = if let Some(node) = &config.node_id {
            if !valid_gateway_id(node) {
                return Err(MqttError::BadNodeId(node.clone()));
            }
            (
                node.clone(),
                topics.node_proxy(node),
                topics.node_status(node),
            )
        } else {
            let gateway_id = config.gateway_id.clone().ok_or(MqttError::NoGatewayId)?;
            if !valid_gateway_id(&gateway_id) {
                return Err(MqttError::BadGatewayId(gateway_id));
            }
            let zone = topics.gateway_zone(&gateway_id);
            let status = topics.gateway_status(&gateway_id);
            (gateway_id, zone, status)
        };
        let broker = BrokerUrl::parse(url)?;
        let mut link = LinkOptions::new(broker.clone(), &id);
        link.ca = config.ca.clone();
        link.cert = config.cert.clone();
        link.key = config.key.clone();
        link.username = config.username.clone();
        link.password_file = config.password_file.clone();
        // Clean session: see the module documentation.
        link.clean_session = true;
        let mut options = link.mqtt_options()?;
        options.set_last_will(LastWill::new(
            status_topic.clone(),
            status::last_will(),
            QoS::AtLeastOnce,
            true,
        ));
        Ok(Some(Link {
            options,
            broker,
            id,
            payload_topic,
            status_topic,
        }))
    }

    /// Starts the MQTT thread feeding `sink`; it runs for the life of the process.
    pub fn spawn<S: Sink>(self, sink: S) -> std::io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || self.run(sink))
    }

    fn run<S: Sink>(self, mut applier: S) {
        let zone_topic = self.payload_topic.clone();
        let status_topic = self.status_topic.clone();
        let (client, mut connection) = Client::new(self.options.clone(), 64);
        connection
            .eventloop
            .set_network_options(sdwan_link::options::network_options());
        let mut backoff = Backoff::with_seed(seed());
        let mut session = Session::default();
        let max_packet = self.options.max_packet_size();
        info!(
            "connecting to {} as {} (payload topic {zone_topic})",
            self.broker, self.id
        );
        loop {
            let event = next_event(&mut connection, max_packet);
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code != ConnectReturnCode::Success {
                        continue; // reported as an error by the next poll
                    }
                    info!(
                        "connected to {} (session present: {})",
                        self.broker, ack.session_present
                    );
                    session.connected();
                    backoff.connected(Instant::now());
                    // The status first: it must reach the broker even when what the
                    // subscription brings breaks the connection (an over-size retained
                    // message), since it says why the previous connection dropped.
                    publish_status(&client, &status_topic, &applier, &session);
                    // Subscribe on every connect (clean session).
                    if let Err(e) = client.try_subscribe(zone_topic.clone(), QoS::AtLeastOnce) {
                        warn!("cannot queue subscription to {zone_topic}: {e}");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure))
                    {
                        warn!("broker refused the subscription to {zone_topic} (check its ACL)");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.topic != zone_topic {
                        debug!("ignoring message on {}", p.topic);
                        continue;
                    }
                    if applier.handle_payload(&p.payload) {
                        publish_status(&client, &status_topic, &applier, &session);
                    }
                }
                Ok(_) => {}
                Err(reason) => {
                    let (delay, up) = backoff.disconnected(Instant::now());
                    session.failed(&self.broker, &reason, up, delay);
                    thread::sleep(delay);
                }
            }
        }
    }
}

/// The next event, or why the connection failed or dropped (described by
/// [`sdwan_link::options::describe_error`], which names both sizes of an over-size packet); a
/// closed request channel cannot happen (we hold the client).
fn next_event(connection: &mut Connection, max_packet: usize) -> Result<Event, String> {
    match connection.recv() {
        Ok(Ok(ev)) => Ok(ev),
        Ok(Err(e)) => Err(sdwan_link::options::describe_error(&e, max_packet)),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// Logs connects and disconnects once each: the first failure after a connection is the
/// disconnect; repeated identical connect failures are logged once until the reason changes.
/// Keeps the reason of the last drop for the status document.
#[derive(Debug, Default)]
struct Session {
    connected: bool,
    last_failure: Option<String>,
    /// Why the last connection dropped (for the status document).
    last_drop: Option<String>,
}

impl Session {
    fn connected(&mut self) {
        self.connected = true;
        self.last_failure = None;
    }

    fn failed(&mut self, broker: &BrokerUrl, reason: &str, up: Option<Duration>, delay: Duration) {
        if self.connected {
            warn!(
                "disconnected from {broker}: {reason} (connection was up {:.1} s; reconnecting in {:.1} s)",
                up.unwrap_or_default().as_secs_f64(),
                delay.as_secs_f64()
            );
            self.connected = false;
            self.last_failure = Some(reason.to_string());
            self.last_drop = Some(reason.to_string());
        } else if self.last_failure.as_deref() != Some(reason) {
            warn!("cannot connect to {broker}: {reason}; retrying with backoff");
            self.last_failure = Some(reason.to_string());
        } else {
            debug!("still cannot connect to {broker}: {reason}");
        }
    }
}

fn publish_status<S: Sink>(client: &Client, topic: &str, applier: &S, session: &Session) {
    let mut doc = Status::online(
        applier.serial(),
        applier.last_error().map(str::to_string),
        VERSION,
    );
    doc.disconnect = session.last_drop.clone();
    let doc = doc.to_json();
    if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, true, doc) {
        warn!("cannot queue status on {topic}: {e}");
    }
}

/// Jitter seed: differs between agents and restarts.
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    (t.as_nanos() as u64) ^ ((std::process::id() as u64) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_ids() {
        for ok in ["gw-espoo", "a", "A.b_c-9", &"x".repeat(64)] {
            assert!(valid_gateway_id(ok), "{ok}");
        }
        for bad in ["", "gw/1", "gw+", "gw#", "gw 1", "é", &"x".repeat(65)] {
            assert!(!valid_gateway_id(bad), "{bad}");
        }
    }

    #[test]
    fn broker_without_gateway_id_is_refused() {
        let config = Config {
            broker: Some("mqtt://127.0.0.1:1".into()),
            ..Config::default()
        };
        assert!(matches!(
            Link::prepare(&config),
            Err(MqttError::NoGatewayId)
        ));
    }

    #[test]
    fn missing_ca_is_named() {
        let config = Config {
            broker: Some("mqtts://127.0.0.1:8883".into()),
            gateway_id: Some("gw-a".into()),
            ca: Some("/nonexistent/ca.pem".into()),
            ..Config::default()
        };
        let e = Link::prepare(&config).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
