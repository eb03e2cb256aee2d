//! MQTT mode (`--broker`): one thread that keeps a TLS connection to the broker, subscribes to
//! the agent's payload topic (QoS 1, clean session), hands each payload to a [`Sink`] and
//! publishes the retained status document on connect and after every apply or rejection. The
//! last will is the offline document. Both modes share this loop:
//! - gateway mode (`--gateway-id ID`): payload v2 (`docs/payload-v2.md`) into
//!   [`crate::gateway::GatewayV2`]: `P/gateways/ID/v2/delta` always, `v2/tail` and
//!   `v2/part/+` while it needs a snapshot ([`Sink::subscriptions`]); status on
//!   `P/gateways/ID/status`, client id = gateway id;
//! - worker mode (`--node-id NODE`): proxy payload v2 into [`crate::worker::WorkerV2`]:
//!   `P/nodes/NODE/v2/delta` always, `v2/tail` and `v2/part/+` while it resyncs; status on
//!   `P/nodes/NODE/status`, client id = node id.
//!
//! Connection set-up (URL, TLS with server verification, files) and the blocking client
//! (`sdwan_link::client`) are `sdwan_link`'s; this module
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
use sdwan_link::client::{Client, Incoming, Settings};
use sdwan_link::{Backoff, BrokerUrl, LinkError, LinkOptions, Status, Topics};

use crate::config::Config;
use crate::status;

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
    settings: Settings,
    broker: BrokerUrl,
    /// Client id: the gateway id or the node id.
    id: String,
    /// The topic tree.
    topics: Topics,
    /// Where the status goes.
    status_topic: String,
}

/// What the MQTT loop feeds messages to: the gateway's payload v2 state machine
/// ([`crate::gateway::GatewayV2`]) or the worker's ([`crate::worker::WorkerV2`]).
pub trait Sink: Send + 'static {
    /// The topics to be subscribed to right now (the loop subscribes to new ones and
    /// unsubscribes from dropped ones after each connect, message and tick).
    fn subscriptions(&self) -> Vec<String>;
    /// A connection is up (subscriptions are about to be made again: clean session).
    fn connected(&mut self, _now: Instant) {}
    /// The connection is down (a connect failed or the connection dropped).
    fn disconnected(&mut self) {}
    /// Handles one message; true when the status document must be published.
    fn handle(&mut self, topic: &str, payload: &[u8], now: Instant) -> bool;
    /// Called about once a second; true when the status document must be published.
    fn tick(&mut self, _now: Instant) -> bool {
        false
    }
    /// The online status document (without `disconnect`, which the loop adds).
    fn status(&self) -> Status;
}

impl Link {
    /// Builds the connection options from the config; `None` when `--broker` is not given.
    pub fn prepare(config: &Config) -> Result<Option<Link>, MqttError> {
        let Some(url) = &config.broker else {
            return Ok(None);
        };
        let topics = Topics::new(&config.topic_prefix)?;
        let (id, status_topic) = if let Some(node) = &config.node_id {
            if !valid_gateway_id(node) {
                return Err(MqttError::BadNodeId(node.clone()));
            }
            (node.clone(), topics.node_status(node))
        } else {
            let gateway_id = config.gateway_id.clone().ok_or(MqttError::NoGatewayId)?;
            if !valid_gateway_id(&gateway_id) {
                return Err(MqttError::BadGatewayId(gateway_id));
            }
            let status = topics.gateway_status(&gateway_id);
            (gateway_id, status)
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
        let settings =
            link.client_settings(Some((status_topic.clone(), status::last_will().into())))?;
        Ok(Some(Link {
            settings,
            broker,
            id,
            topics,
            status_topic,
        }))
    }

    /// The topic tree (`--topic-prefix`).
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Starts the MQTT thread feeding `sink`; it runs for the life of the process.
    pub fn spawn<S: Sink>(self, sink: S) -> std::io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || self.run(sink))
    }

    fn run<S: Sink>(self, mut sink: S) {
        let status_topic = self.status_topic.clone();
        let mut client = Client::new(self.settings);
        let mut backoff = Backoff::with_seed(seed());
        let mut session = Session::default();
        // What the broker was asked to deliver on this connection.
        let mut subscribed: Vec<String> = Vec::new();
        let mut next_tick = Instant::now() + TICK;
        info!(
            "connecting to {} as {} (topics {})",
            self.broker,
            self.id,
            sink.subscriptions().join(", ")
        );
        loop {
            let event = if client.is_connected() {
                let now = Instant::now();
                if now >= next_tick {
                    next_tick = now + TICK;
                    if sink.tick(now) {
                        publish_status(&mut client, &status_topic, &sink, &session);
                    }
                }
                client.poll(next_tick.saturating_duration_since(now))
            } else {
                // A connection attempt (a TLS handshake on a slow router) is never cut short
                // by a tick; it has its own time limit.
                match client.connect() {
                    Ok(session_present) => {
                        info!(
                            "connected to {} (session present: {session_present})",
                            self.broker
                        );
                        session.connected();
                        backoff.connected(Instant::now());
                        sink.connected(Instant::now());
                        next_tick = Instant::now() + TICK;
                        // The status first: it must reach the broker even when what the
                        // subscription brings breaks the connection (an over-size retained
                        // message), since it says why the previous connection dropped.
                        publish_status(&mut client, &status_topic, &sink, &session);
                        // Subscribe on every connect (clean session).
                        subscribed.clear();
                        sync_subscriptions(&mut client, &sink, &mut subscribed);
                        continue;
                    }
                    Err(e) => Err(e),
                }
            };
            match event {
                Ok(None) => {}
                Ok(Some(Incoming::SubAck { refused })) => {
                    if refused {
                        warn!(
                            "broker refused a subscription to {} (check its ACL)",
                            subscribed.join(", ")
                        );
                    }
                }
                Ok(Some(Incoming::UnsubAck)) => {
                    info!("unsubscription confirmed by the broker");
                }
                Ok(Some(Incoming::Publish(p))) => {
                    if sink.handle(&p.topic, &p.payload, Instant::now()) {
                        publish_status(&mut client, &status_topic, &sink, &session);
                    }
                    sync_subscriptions(&mut client, &sink, &mut subscribed);
                }
                Err(reason) => {
                    client.close();
                    // What is due (a debounced write) is done before waiting.
                    sink.disconnected();
                    sink.tick(Instant::now());
                    let (delay, up) = backoff.disconnected(Instant::now());
                    session.failed(&self.broker, &reason.to_string(), up, delay);
                    thread::sleep(delay);
                }
            }
        }
    }
}

/// How often the loop calls [`Sink::tick`].
const TICK: Duration = Duration::from_secs(1);

/// Subscribes to the topics `sink` wants that are not subscribed yet (in one SUBSCRIBE, in
/// the sink's order: the broker sends retained messages in that order), and unsubscribes
/// from those it no longer wants.
fn sync_subscriptions<S: Sink>(client: &mut Client, sink: &S, subscribed: &mut Vec<String>) {
    let wanted = sink.subscriptions();
    let new: Vec<String> = wanted
        .iter()
        .filter(|t| !subscribed.contains(t))
        .cloned()
        .collect();
    for gone in subscribed.iter().filter(|t| !wanted.contains(t)) {
        debug!("unsubscribing from {gone}");
        client.unsubscribe(gone);
    }
    if !new.is_empty() {
        debug!("subscribing to {}", new.join(", "));
        client.subscribe(&new);
    }
    *subscribed = wanted;
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
                "disconnected from {broker}: {reason} (connection was up {} s; reconnecting in {} s)",
                crate::Tenths::secs(up.unwrap_or_default()),
                crate::Tenths::secs(delay)
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

/// Publishes the retained status document (a write error shows at the next poll).
fn publish_status<S: Sink>(client: &mut Client, topic: &str, sink: &S, session: &Session) {
    let mut doc = sink.status();
    doc.disconnect = session.last_drop.clone();
    let doc = status::online_doc(doc);
    client.publish(topic, doc.as_bytes(), true);
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
