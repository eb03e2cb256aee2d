//! sdwan-agent: the daemon around `sdwan-agent-core`. It owns sockets, flags, config files,
//! logging and (in other modules) MQTT and persistence; the DNS logic is all in the core.
//!
//! Layout:
//! - [`cli`]: command line (lexopt) into a [`config::Config`]; `--help` text.
//! - [`config`]: the settings, `key = value` config files, defaults.
//! - [`store`]: [`store::ZoneStore`], the zone in use (v1 or v2) behind an atomic swap,
//!   [`store::answer`] (the servers' one call), and [`store::load_payload`] (v1 payload bytes
//!   to a compiled zone).
//! - [`server`]: UDP and TCP servers, socket binding, dropping root.
//! - [`persist`]: the last good zone in `--state-dir` (atomic, durable), loaded at start: the
//!   v2 zone as its snapshot parts (`zone-v2.jsonl`), or a v1 payload (`zone.json`).
//! - [`gateway`]: gateway MQTT mode on payload v2: snapshot parts, deltas, tails, notices,
//!   resync, persisted v2 zone ([`gateway::GatewayV2`]).
//! - [`mqtt`]: MQTT mode: the connection thread (TLS via `sdwan-link`), subscriptions, status;
//!   shared by both modes through [`mqtt::Sink`].
//! - `proxy` (cargo feature `worker`): worker mode's files: written into `--proxy-dir`,
//!   checked, reloaded, rolled back on failure (`proxy::ProxyApplier`).
//! - `worker` (cargo feature `worker`): worker MQTT mode on proxy payload v2: the contract's
//!   follower, the renderer, the persisted content (`worker::WorkerV2`). The default build
//!   (the gateway's) has neither; `cli` refuses worker settings there.
//! - [`probe`]: branch autonomy (issue 14): the probe state machine, its thread, the
//!   branch view the answers read (down workers, RTT, fail closed, stale).
//! - [`status`]: the status documents (online, last will).
//! - [`tap`]: the smoltcp/TAP driver (`--tap`, cargo feature `smoltcp`): DNS through smoltcp's
//!   own UDP/IP stack on a TAP device.
//! - [`run`]: start-up order: load the zone, bind, drop privileges, serve.
//!
//! `main.rs` only parses the command line, sets up logging and calls [`run`].

pub mod cli;
pub mod config;
pub mod gateway;
pub mod mqtt;
pub mod persist;
pub mod probe;
#[cfg(feature = "worker")]
pub mod proxy;
pub mod server;
pub mod status;
pub mod store;
pub mod tap;
#[cfg(feature = "worker")]
pub mod worker;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{info, warn};
use sdwan_agent_core::PayloadError;

use config::Config;
use store::{OwnedZone, ZoneStore};

/// The agent's version (`--version`, status documents).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the agent stopped or could not start.
#[derive(Debug)]
pub enum Error {
    /// The zone file cannot be read.
    ZoneFileRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The zone file is not a valid zone payload v1.
    ZoneFileInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the record (boxed: it carries the record's name).
        error: Box<PayloadError>,
    },
    /// The zone file is not a whole, valid payload v2 snapshot (of `--gateway-id`, if given).
    ZoneFileInvalidV2 {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the line.
        error: String,
    },
    /// A listen address cannot be bound.
    Bind(server::BindError),
    /// `--user` failed.
    User(server::user::UserError),
    /// A server thread could not be started or stopped on a socket error.
    Server(std::io::Error),
    /// MQTT mode cannot start (no gateway id, bad broker URL, TLS or password file).
    Mqtt(mqtt::MqttError),
    /// `--state-dir` cannot be created or written (by the user the agent runs as).
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The smoltcp/TAP driver cannot start or stopped (or this build has none).
    Tap(tap::TapError),
    /// Worker mode settings that cannot work together (names the flag).
    Worker(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ZoneFileRead { path, error } => {
                write!(f, "cannot read zone file {}: {error}", path.display())
            }
            Error::ZoneFileInvalid { path, error } => {
                write!(f, "zone file {} rejected: {error}", path.display())
            }
            Error::ZoneFileInvalidV2 { path, error } => write!(
                f,
                "zone file {} rejected as a payload v2 snapshot: {error}",
                path.display()
            ),
            Error::Bind(e) => e.fmt(f),
            Error::User(e) => e.fmt(f),
            Error::Server(e) => write!(f, "server stopped: {e}"),
            Error::Mqtt(e) => e.fmt(f),
            Error::StateDir { path, error } => write!(
                f,
                "--state-dir {}: cannot create or write it: {error} (it must be a directory the \
                 agent's user can write; the agent creates it when its parent allows)",
                path.display()
            ),
            Error::Tap(e) => e.fmt(f),
            Error::Worker(why) => write!(f, "worker mode: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// A duration in log messages with one decimal, `12.3`, in milliseconds or seconds (rounded
/// down), written with integers: the agent formats no floats, so core's float formatting
/// (~15 KB on mips) stays out of the binary (issue 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenths(u128);

impl Tenths {
    /// `d` in milliseconds.
    pub fn millis(d: std::time::Duration) -> Tenths {
        Tenths(d.as_micros() / 100)
    }

    /// `d` in seconds.
    pub fn secs(d: std::time::Duration) -> Tenths {
        Tenths(d.as_millis() / 100)
    }
}

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// Whether a zone file is a payload v2 snapshot: its first line is a v2 part, or at least
/// starts as one (`{"schema":`, how the encoder begins every v2 message), so that a cut or
/// damaged v2 file is reported with the v2 rules, not as a v1 payload it never was.
fn is_v2_snapshot(bytes: &[u8]) -> bool {
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut scratch = sdwan_contract::v2::decode::Scratch::new();
    first.trim_ascii_start().starts_with(br#"{"schema":"#)
        || gateway::peek(first, &mut scratch)
            .is_ok_and(|e| e.kind == sdwan_contract::v2::Kind::Part)
}

/// A zone file's content: payload v1 or a payload v2 snapshot.
pub enum ZoneFile {
    /// A zone payload v1.
    V1(OwnedZone),
    /// A payload v2 snapshot (its parts, one per line).
    V2(Box<store::OwnedZoneV2>),
}

impl fmt::Debug for ZoneFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZoneFile::V1(z) => write!(
                f,
                "ZoneFile::V1(gateway {}, serial {})",
                z.gateway(),
                z.serial()
            ),
            ZoneFile::V2(z) => write!(f, "ZoneFile::V2(gateway {})", z.gateway()),
        }
    }
}

/// Reads and validates a zone file: a zone payload v1, or a payload v2 snapshot, one part
/// per line (`sdwan-discovery plan`'s `<id>.v2.jsonl`, the state dir's `zone-v2.jsonl`), of
/// `gateway` when given. Which one it is comes from its first line: a v2 part says so in its
/// envelope. At most one byte more than the larger of the two may hold is read, so a huge
/// file (or `/dev/zero`) is refused as too large without filling the memory.
pub fn load_zone_file(path: &Path, gateway: Option<&str>) -> Result<ZoneFile, Error> {
    let max = sdwan_agent_core::payload::MAX_PAYLOAD_BYTES.max(persist::V2_STATE_MAX);
    let read = std::fs::File::open(path)
        .and_then(|f| persist::read_at_most(f, max))
        .map_err(|error| Error::ZoneFileRead {
            path: path.to_path_buf(),
            error,
        })?;
    let Some(bytes) = read else {
        let len = std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map_or(max + 1, |m| m.len() as usize);
        return Err(Error::ZoneFileInvalid {
            path: path.to_path_buf(),
            error: Box::new(PayloadError {
                record: None,
                name: sdwan_agent_core::payload::Text::EMPTY,
                kind: sdwan_agent_core::payload::PayloadErrorKind::TooLarge { len },
            }),
        });
    };
    if is_v2_snapshot(&bytes) {
        let mut work = Box::new(sdwan_agent_core::v2zone::Work::new());
        return persist::parse_v2(&bytes, gateway, gateway::heap(), &mut work)
            .map(ZoneFile::V2)
            .map_err(|error| Error::ZoneFileInvalidV2 {
                path: path.to_path_buf(),
                error,
            });
    }
    store::load_payload(&bytes)
        .map(ZoneFile::V1)
        .map_err(|error| Error::ZoneFileInvalid {
            path: path.to_path_buf(),
            error: Box::new(error),
        })
}

/// Logs what a newly loaded zone holds.
pub fn log_zone(source: &str, zone: &OwnedZone) {
    info!(
        "zone loaded from {source}: gateway {}, origin {}, serial {}, {} records",
        zone.gateway(),
        zone.origin(),
        zone.serial(),
        zone.record_count()
    );
}

/// Logs what a newly loaded payload v2 zone holds.
pub fn log_zone_v2(source: &str, zone: &store::OwnedZoneV2) {
    if let Some(h) = zone.held() {
        info!(
            "zone loaded from {source}: gateway {}, version {} digest {}, {} services",
            zone.gateway(),
            h.version.0,
            h.digest,
            zone.service_count()
        );
    }
}

/// Runs the agent: loads the zone, binds every listen address, drops privileges, serves.
/// Returns only on an error.
pub fn run(config: &Config) -> Result<(), Error> {
    info!("sdwan-agent {VERSION} starting");
    if config.worker_mode() {
        #[cfg(feature = "worker")]
        return run_worker(config);
        #[cfg(not(feature = "worker"))]
        return Err(Error::Worker(cli::NO_WORKER.into()));
    }
    let view = config.probe_settings().map(|s| {
        (
            s,
            Arc::new(probe::BranchView::new(
                config.fail_closed,
                config.rtt_order,
                s.port == probe::driver::PortChoice::Services,
            )),
        )
    });
    let store = Arc::new(match &view {
        Some((_, v)) => ZoneStore::with_view(v.clone()),
        None => ZoneStore::new(),
    });
    if let Some(path) = &config.zone_file {
        let source = path.display().to_string();
        match load_zone_file(path, config.gateway_id.as_deref())? {
            ZoneFile::V1(zone) => {
                log_zone(&source, &zone);
                store.swap(zone);
            }
            ZoneFile::V2(zone) => {
                log_zone_v2(&source, &zone);
                store.swap_v2(zone);
            }
        }
    }
    // MQTT mode: the persisted zone is served at once, before and without the broker: the
    // v2 zone when there is one, else a v1 payload a previous version left.
    if let Some(dir) = &config.state_dir {
        let v2 = config
            .gateway_id
            .as_deref()
            .and_then(|id| persist::load_v2_zone(dir, id));
        if let Some(zone) = v2 {
            log_zone_v2(
                &dir.join(persist::V2_STATE_FILE).display().to_string(),
                &zone,
            );
            store.swap_v2(zone);
        } else if let Some((zone, _)) = persist::load(dir, config.gateway_id.as_deref()) {
            if store.serial().is_none_or(|s| s < zone.serial()) {
                log_zone(&persist::state_file(dir).display().to_string(), &zone);
                store.swap(zone);
            }
        }
    }
    let link = mqtt::Link::prepare(config).map_err(Error::Mqtt)?;

    let bound = server::bind(&config.listen).map_err(Error::Bind)?;
    let tap = tap::open(&config.tap).map_err(Error::Tap)?;
    if let Some(user) = &config.user {
        let (uid, gid) = server::user::switch_to(user).map_err(Error::User)?;
        info!("running as user {user} (uid {uid}, gid {gid})");
    }
    if let Some(dir) = &config.state_dir {
        persist::prepare_dir(dir).map_err(|error| Error::StateDir {
            path: dir.clone(),
            error,
        })?;
    }
    if store.is_empty() {
        warn!("no zone loaded: every query is answered REFUSED until a zone arrives");
    }
    let limits = server::TcpLimits {
        idle_timeout: config.tcp_idle_timeout,
        max_connections: config.tcp_max_connections,
    };
    let running = server::spawn(bound, store.clone(), limits).map_err(Error::Server)?;
    if let Some((settings, v)) = &view {
        probe::driver::spawn(*settings, store.clone(), v.clone()).map_err(Error::Server)?;
    }
    if let Some(link) = link {
        let id = config.gateway_id.as_deref().unwrap_or_default();
        let mut sink = gateway::GatewayV2::new(
            id,
            link.topics(),
            config.state_dir.clone(),
            store.clone(),
            std::time::Instant::now(),
        );
        sink.set_view(view.as_ref().map(|(_, v)| v.clone()));
        link.spawn(sink).map_err(Error::Server)?;
    }
    match tap {
        None => Err(Error::Server(running.wait())),
        Some(tap) => Err(tap::serve(
            tap,
            store,
            (!config.listen.is_empty()).then_some(running),
        )),
    }
}

/// Worker mode: no DNS; the MQTT thread follows the node's proxy payload v2 stream and puts
/// the rendered files live in `--proxy-dir`.
/// Returns only on an error.
#[cfg(feature = "worker")]
pub fn run_worker(config: &Config) -> Result<(), Error> {
    let bad = |s: &str| Err(Error::Worker(s.to_string()));
    let Some(node) = &config.node_id else {
        return bad("--node-id is required");
    };
    let Some(dir) = &config.proxy_dir else {
        return bad("--proxy-dir is required");
    };
    if config.broker.is_none() {
        return bad("--broker is required (proxy payloads come from the broker)");
    }
    if !config.listen.is_empty()
        || config.zone_file.is_some()
        || config.gateway_id.is_some()
        || config.tap.is_set()
    {
        return bad(
            "serves no DNS: --listen, --zone-file, --gateway-id and --tap belong to a gateway \
             agent (run a second sdwan-agent for that)",
        );
    }
    if !dir.is_dir() {
        return Err(Error::Worker(format!(
            "--proxy-dir {} is not a directory",
            dir.display()
        )));
    }
    if config.check_cmd.is_none() {
        warn!("no --check-cmd: proxy configurations are reloaded without being checked");
    }
    if config.reload_cmd.is_none() {
        warn!("no --reload-cmd: files are written but the proxy is not told to reload");
    }
    let link = mqtt::Link::prepare(config)
        .map_err(Error::Mqtt)?
        .expect("--broker checked above");
    let applier =
        proxy::ProxyApplier::new(dir, config.check_cmd.clone(), config.reload_cmd.clone());
    info!(
        "worker mode: node {node}, proxy directory {}",
        dir.display()
    );
    let sink = worker::WorkerV2::new(node, link.topics(), dir, applier, std::time::Instant::now());
    let handle = link.spawn(sink).map_err(Error::Server)?;
    let _ = handle.join();
    Err(Error::Server(std::io::Error::other("MQTT thread stopped")))
}

#[cfg(test)]
mod tests {
    use super::Tenths;
    use std::time::Duration;

    #[test]
    fn tenths_print_like_one_decimal_rounded_down() {
        let cases = [
            (Tenths::millis(Duration::from_micros(12_345)), "12.3"),
            (Tenths::millis(Duration::from_micros(99)), "0.0"),
            (Tenths::millis(Duration::from_millis(7)), "7.0"),
            (Tenths::secs(Duration::from_millis(61_290)), "61.2"),
            (Tenths::secs(Duration::ZERO), "0.0"),
        ];
        for (t, want) in cases {
            assert_eq!(t.to_string(), want);
        }
    }
}
