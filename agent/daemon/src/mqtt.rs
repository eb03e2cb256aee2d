//! MQTT mode (`--broker`): one thread that keeps a TLS connection to the broker, subscribes to
//! `P/gateways/ID/zone` (QoS 1, persistent session, client id = gateway id), hands each payload
//! to the [`Applier`] and publishes the retained status document on `P/gateways/ID/status`
//! on connect and after every apply or rejection. The last will is the offline document.
//!
//! Connection set-up (URL, TLS with server verification, files) is `sdwan_link`'s; this module
//! is the loop. [`Link::prepare`] reads every file at start-up, so configuration mistakes stop
//! the agent at once; [`Link::spawn`] starts the thread. Reconnects wait a capped exponential
//! backoff with jitter; each connect and each disconnect is logged once, with its reason.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use log::{debug, info, warn};
use sdwan_link::rumqttc::{
    Client, ConnectReturnCode, Connection, Event, LastWill, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use sdwan_link::{Backoff, BrokerUrl, LinkError, LinkOptions, Topics};

use crate::apply::{Applier, Outcome};
use crate::config::Config;
use crate::status;
use crate::store::ZoneStore;

/// Why MQTT mode could not start.
#[derive(Debug)]
pub enum MqttError {
    /// `--broker` given without `--gateway-id`.
    NoGatewayId,
    /// The gateway id cannot be used in a topic.
    BadGatewayId(String),
    /// Broker URL, TLS files, password file or topic prefix rejected (names the file or flag).
    Link(LinkError),
}

impl fmt::Display for MqttError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MqttError::NoGatewayId => write!(f, "--broker needs --gateway-id"),
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
    gateway_id: String,
    topics: Topics,
    state_dir: Option<PathBuf>,
}

impl Link {
    /// Builds the connection options from the config; `None` when `--broker` is not given.
    pub fn prepare(config: &Config) -> Result<Option<Link>, MqttError> {
        let Some(url) = &config.broker else {
            return Ok(None);
        };
        let gateway_id = config.gateway_id.clone().ok_or(MqttError::NoGatewayId)?;
        if !valid_gateway_id(&gateway_id) {
            return Err(MqttError::BadGatewayId(gateway_id));
        }
        let broker = BrokerUrl::parse(url)?;
        let topics = Topics::new(&config.topic_prefix)?;
        let mut link = LinkOptions::new(broker.clone(), &gateway_id);
        link.ca = config.ca.clone();
        link.cert = config.cert.clone();
        link.key = config.key.clone();
        link.username = config.username.clone();
        link.password_file = config.password_file.clone();
        let mut options = link.mqtt_options()?;
        options.set_last_will(LastWill::new(
            topics.gateway_status(&gateway_id),
            status::last_will(),
            QoS::AtLeastOnce,
            true,
        ));
        Ok(Some(Link {
            options,
            broker,
            gateway_id,
            topics,
            state_dir: config.state_dir.clone(),
        }))
    }

    /// Starts the MQTT thread; it runs for the life of the process.
    pub fn spawn(self, store: Arc<ZoneStore>) -> std::io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || self.run(store))
    }

    fn run(self, store: Arc<ZoneStore>) {
        let zone_topic = self.topics.gateway_zone(&self.gateway_id);
        let status_topic = self.topics.gateway_status(&self.gateway_id);
        let mut applier = Applier::new(&self.gateway_id, self.state_dir.clone(), store);
        let (client, mut connection) = Client::new(self.options.clone(), 64);
        connection
            .eventloop
            .set_network_options(sdwan_link::options::network_options());
        let mut backoff = Backoff::with_seed(seed());
        let mut session = Session::default();
        info!(
            "connecting to {} as {} (zone topic {zone_topic})",
            self.broker, self.gateway_id
        );
        loop {
            let event = next_event(&mut connection);
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
                    backoff.reset();
                    // Subscribe on every connect: a restarted broker may have lost the session.
                    if let Err(e) = client.try_subscribe(zone_topic.clone(), QoS::AtLeastOnce) {
                        warn!("cannot queue subscription to {zone_topic}: {e}");
                    }
                    publish_status(&client, &status_topic, &applier);
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
                    match applier.handle(&p.payload) {
                        Outcome::Unchanged(_) => {}
                        Outcome::Applied(_) | Outcome::Rejected => {
                            publish_status(&client, &status_topic, &applier)
                        }
                    }
                }
                Ok(_) => {}
                Err(reason) => {
                    session.failed(&self.broker, &reason);
                    let delay = backoff.next_delay();
                    debug!("reconnecting in {delay:?}");
                    thread::sleep(delay);
                }
            }
        }
    }
}

/// The next event; a closed request channel cannot happen (we hold the client).
fn next_event(connection: &mut Connection) -> Result<Event, String> {
    match connection.recv() {
        Ok(Ok(ev)) => Ok(ev),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// Logs connects and disconnects once each: the first failure after a connection is the
/// disconnect; repeated identical connect failures are logged once until the reason changes.
#[derive(Debug, Default)]
struct Session {
    connected: bool,
    last_failure: Option<String>,
}

impl Session {
    fn connected(&mut self) {
        self.connected = true;
        self.last_failure = None;
    }

    fn failed(&mut self, broker: &BrokerUrl, reason: &str) {
        if self.connected {
            warn!("disconnected from {broker}: {reason}");
            self.connected = false;
            self.last_failure = Some(reason.to_string());
        } else if self.last_failure.as_deref() != Some(reason) {
            warn!("cannot connect to {broker}: {reason}; retrying with backoff");
            self.last_failure = Some(reason.to_string());
        } else {
            debug!("still cannot connect to {broker}: {reason}");
        }
    }
}

fn publish_status(client: &Client, topic: &str, applier: &Applier) {
    let doc = status::online(applier.serial(), applier.last_error());
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
