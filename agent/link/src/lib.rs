//! MQTT over TLS for sdwan-agent and sdwan-discovery: broker URL, rustls client setup, topics,
//! backoff, status documents. Both programs build their MQTT connection from this crate, so the
//! TLS rules (always verify the server certificate and host name, ring provider) live in one place.
//!
//! Layout:
//! - [`url`]: [`BrokerUrl`], `mqtts://host:port` (default port 8883) or `mqtt://` (1883, plain,
//!   warned about).
//! - [`tls`]: rustls [`rustls::ClientConfig`] from CA / client certificate / key PEM files
//!   (ring crypto provider; no switch to skip server verification exists).
//! - [`options`]: [`LinkOptions`], everything a connection needs, turned into
//!   [`client::Settings`] for the agent's [`client::Client`], or [`rumqttc::MqttOptions`] for
//!   rumqttc's `AsyncClient` (master, tokio) and sync `Client` (tests);
//!   `LinkOptions::{sync_client, async_client}` also set `TCP_NODELAY` on the event loop.
//! - [`client`]: the agent's blocking MQTT client ([`client::Client`]: one connection driven
//!   by the thread that owns it, rumqttc's packet codec, rustls by hand; no runtime).
//! - [`topics`]: [`Topics`], the four topic builders under a prefix, and topic parsing.
//! - [`backoff`]: [`Backoff`], capped exponential reconnect delay with seeded jitter.
//! - [`status`]: [`Status`], the retained status document agents publish.
//! - [`error`]: [`LinkError`], every way setting up a link can fail, naming the file or field.
//!
//! `rumqttc` and `rustls` are re-exported so users build against the same versions.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod client;
pub mod error;
pub mod options;
pub mod status;
pub mod tls;
pub mod topics;
pub mod url;

pub use backoff::Backoff;
pub use error::LinkError;
pub use options::LinkOptions;
pub use status::{State, Status};
pub use topics::{TopicKind, Topics, DEFAULT_PREFIX};
pub use url::{BrokerUrl, Scheme};

pub use rumqttc;
pub use rustls;
