//! The agent's settings: one [`Config`] filled from a `key = value` file (`--config FILE`) and
//! then from the command line, with the same key names (a flag `--gateway-id X` is the key
//! `gateway-id = X`). Flags win over the file; a repeatable key (`listen`) given on the command
//! line replaces the file's list instead of adding to it (see `cli.rs`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The listen address used when neither the command line nor the config file names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5353";
/// Default MQTT topic prefix (`P` in `P/gateways/ID/zone`).
pub const DEFAULT_TOPIC_PREFIX: &str = "sdwan/v1/default";
/// Default TCP idle timeout (RFC 7766 recommends seconds, not minutes).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on concurrent TCP connections, over all listen addresses.
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 64;
/// Default `stale-after`: answers are marked stale after this long without the broker.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(300);
/// Largest config file read, in bytes: a config file has a few dozen lines; a bigger one
/// (or `/dev/zero`) is refused before it is read into memory.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Every setting of the agent. `None` means "not given".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `listen`: addresses to serve DNS on, UDP and TCP each (repeatable).
    pub listen: Vec<SocketAddr>,
    /// `zone-file`: a zone payload v1 (JSON) to serve at start.
    pub zone_file: Option<PathBuf>,
    /// `broker`: MQTT broker URL, `mqtts://HOST:PORT` (or `mqtt://`, with a warning).
    pub broker: Option<String>,
    /// `ca`: PEM file of the CA that signed the broker's certificate.
    pub ca: Option<PathBuf>,
    /// `cert`: PEM client certificate.
    pub cert: Option<PathBuf>,
    /// `key`: PEM private key of the client certificate.
    pub key: Option<PathBuf>,
    /// `username`: MQTT user name.
    pub username: Option<String>,
    /// `password-file`: file whose first line is the MQTT password.
    pub password_file: Option<PathBuf>,
    /// `gateway-id`: this gateway's id (topic `P/gateways/ID/zone`).
    pub gateway_id: Option<String>,
    /// `topic-prefix`: MQTT topic prefix.
    pub topic_prefix: String,
    /// `state-dir`: where the last good zone is persisted.
    pub state_dir: Option<PathBuf>,
    /// `node-id`: worker mode: this worker node's name (topics `P/nodes/NODE/v2/...`, proxy payload v2).
    pub node_id: Option<String>,
    /// `proxy-dir`: worker mode: directory the proxy files are written to.
    pub proxy_dir: Option<PathBuf>,
    /// `check-cmd`: worker mode: command that checks the written proxy configuration.
    pub check_cmd: Option<String>,
    /// `reload-cmd`: worker mode: command that reloads the proxy.
    pub reload_cmd: Option<String>,
    /// `user`: drop to this user (and its primary group) after binding the sockets.
    pub user: Option<String>,
    /// `tcp-idle-timeout`: seconds a TCP connection may stay idle.
    pub tcp_idle_timeout: Duration,
    /// `tcp-max-connections`: concurrent TCP connections; a new one beyond this (or beyond a
    /// quarter of it from one address) closes the oldest idle connection.
    pub tcp_max_connections: usize,
    /// `tap`, `tap-address`, `tap-gateway`, `tap-port`: the smoltcp/TAP driver.
    pub tap: crate::tap::TapSettings,
    /// `probe`: probe the workers (issue 14; `off` disables).
    pub probe: bool,
    /// `probe-port`: the port probed on every worker instead of the zone's `probe` field.
    pub probe_port: Option<u16>,
    /// `probe-port = service`: each service's NodePort on each of its candidates instead.
    pub probe_services: bool,
    /// `fail-closed`: a name whose candidates are all down gets SERVFAIL (EDE 23).
    pub fail_closed: bool,
    /// `rtt-order`: the probes' RTT reorders candidates within a tier.
    pub rtt_order: bool,
    /// `stale-after`: answers are stale after this long without the broker (`None`: never).
    pub stale_after: Option<Duration>,
}

/// Keys that are switches on the command line: `--fail-closed` alone means `true`.
pub const SWITCHES: &[&str] = &["fail-closed", "rtt-order"];

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Vec::new(),
            zone_file: None,
            broker: None,
            ca: None,
            cert: None,
            key: None,
            username: None,
            password_file: None,
            gateway_id: None,
            topic_prefix: DEFAULT_TOPIC_PREFIX.to_string(),
            state_dir: None,
            node_id: None,
            proxy_dir: None,
            check_cmd: None,
            reload_cmd: None,
            user: None,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            tcp_max_connections: DEFAULT_TCP_MAX_CONNECTIONS,
            tap: Default::default(),
            probe: true,
            probe_port: None,
            probe_services: false,
            fail_closed: false,
            rtt_order: false,
            stale_after: Some(DEFAULT_STALE_AFTER),
        }
    }
}

/// Every key (= long flag name) that takes a value, in the order `--help` lists them.
pub const KEYS: &[&str] = &[
    "listen",
    "zone-file",
    "broker",
    "ca",
    "cert",
    "key",
    "username",
    "password-file",
    "gateway-id",
    "topic-prefix",
    "state-dir",
    "node-id",
    "proxy-dir",
    "check-cmd",
    "reload-cmd",
    "user",
    "tcp-idle-timeout",
    "tcp-max-connections",
    "tap",
    "tap-address",
    "tap-gateway",
    "tap-port",
    "probe",
    "probe-port",
    "fail-closed",
    "rtt-order",
    "stale-after",
];

/// A bad setting, in a config file or on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A key (or flag) that does not exist.
    UnknownKey {
        /// Where: `--flag` on the command line or `FILE:LINE`.
        place: String,
        /// The key as written.
        key: String,
    },
    /// A key whose value does not parse.
    BadValue {
        /// Where: `--flag` on the command line or `FILE:LINE`.
        place: String,
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A line of a config file that is not `key = value`, a comment or blank.
    BadLine {
        /// `FILE:LINE`.
        place: String,
    },
    /// The config file cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownKey { place, key } => {
                write!(f, "{place}: unknown setting '{key}' (see --help)")
            }
            ConfigError::BadValue {
                place,
                key,
                value,
                reason,
            } => write!(f, "{place}: bad value '{value}' for '{key}': {reason}"),
            ConfigError::BadLine { place } => {
                write!(
                    f,
                    "{place}: expected 'key = value', a '#' comment or a blank line"
                )
            }
            ConfigError::Read { path, error } => {
                write!(f, "cannot read config file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Sets `key` to `value`. `place` names where it came from, for the error message.
    /// `listen` appends; every other key replaces.
    pub fn set(&mut self, place: &str, key: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |reason: &str| ConfigError::BadValue {
            place: place.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let non_empty = || {
            if value.is_empty() {
                Err(bad("must not be empty"))
            } else {
                Ok(value.to_string())
            }
        };
        match key {
            "listen" => {
                let addr: SocketAddr = value
                    .parse()
                    .map_err(|_| bad("expected IP:PORT, e.g. 127.0.0.1:5353 or [::1]:5353"))?;
                self.listen.push(addr);
            }
            "zone-file" => self.zone_file = Some(non_empty()?.into()),
            "broker" => {
                if !(value.starts_with("mqtts://") || value.starts_with("mqtt://")) {
                    return Err(bad("expected mqtts://HOST:PORT (or mqtt://HOST:PORT)"));
                }
                self.broker = Some(value.to_string());
            }
            "ca" => self.ca = Some(non_empty()?.into()),
            "cert" => self.cert = Some(non_empty()?.into()),
            "key" => self.key = Some(non_empty()?.into()),
            "username" => self.username = Some(non_empty()?),
            "password-file" => self.password_file = Some(non_empty()?.into()),
            "gateway-id" => self.gateway_id = Some(non_empty()?),
            "topic-prefix" => {
                if value.is_empty()
                    || value.starts_with('/')
                    || value.ends_with('/')
                    || value.contains(['+', '#', '\0'])
                {
                    return Err(bad(
                        "expected a topic prefix like sdwan/v1/default (no wildcards, no leading or trailing '/')",
                    ));
                }
                self.topic_prefix = value.to_string();
            }
            "state-dir" => self.state_dir = Some(non_empty()?.into()),
            "node-id" => self.node_id = Some(non_empty()?),
            "proxy-dir" => self.proxy_dir = Some(non_empty()?.into()),
            "check-cmd" => self.check_cmd = Some(non_empty()?),
            "reload-cmd" => self.reload_cmd = Some(non_empty()?),
            "user" => self.user = Some(non_empty()?),
            "tcp-idle-timeout" => {
                let secs: u64 = value
                    .parse()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .ok_or_else(|| bad("expected whole seconds, 1 to 3600"))?;
                self.tcp_idle_timeout = Duration::from_secs(secs);
            }
            "tcp-max-connections" => {
                self.tcp_max_connections = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| bad("expected a number, 1 to 10000"))?;
            }
            "probe" => {
                self.probe = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad("expected on or off")),
                }
            }
            "probe-port" => {
                self.probe_services = value == "service";
                self.probe_port = match value {
                    "service" => None,
                    _ => Some(
                        value
                            .parse()
                            .ok()
                            .filter(|&p| p > 0)
                            .ok_or_else(|| bad("expected a port, 1 to 65535, or service"))?,
                    ),
                }
            }
            "fail-closed" | "rtt-order" => {
                let on = match value {
                    "true" | "on" => true,
                    "false" | "off" => false,
                    _ => return Err(bad("expected true or false")),
                };
                if key == "fail-closed" {
                    self.fail_closed = on;
                } else {
                    self.rtt_order = on;
                }
            }
            "stale-after" => {
                let secs: u64 = value
                    .parse()
                    .ok()
                    .filter(|s| *s <= 30 * 86_400)
                    .ok_or_else(|| bad("expected whole seconds, 0 (never) to 2592000"))?;
                self.stale_after = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "tap" | "tap-address" | "tap-gateway" | "tap-port" => {
                self.tap.set(key, value).map_err(|r| bad(&r))?
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    place: place.to_string(),
                    key: key.to_string(),
                })
            }
        }
        Ok(())
    }

    /// Reads a config file: `key = value` lines, `#` comments, blank lines. A value may be
    /// wrapped in double quotes (which are removed). Keys as in [`KEYS`]; `listen` may repeat.
    /// At most [`MAX_CONFIG_BYTES`] are read.
    pub fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let err = |error: String| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        };
        let bytes = std::fs::File::open(path)
            .and_then(|f| crate::persist::read_at_most(f, MAX_CONFIG_BYTES as usize))
            .map_err(|e| err(e.to_string()))?
            .ok_or_else(|| {
                err(format!(
                    "larger than {MAX_CONFIG_BYTES} bytes (a config file holds a few dozen lines)"
                ))
            })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| err("stream did not contain valid UTF-8".to_string()))?;
        self.apply_file_text(&path.display().to_string(), &text)
    }

    /// [`Config::read_file`] on text already read; `name` is used in error messages.
    pub fn apply_file_text(&mut self, name: &str, text: &str) -> Result<(), ConfigError> {
        for (i, line) in text.lines().enumerate() {
            let place = format!("{name}:{}", i + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(ConfigError::BadLine { place });
            };
            let key = key.trim();
            let mut value = value.trim();
            if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
                value = &value[1..value.len() - 1];
            }
            if key.is_empty() {
                return Err(ConfigError::BadLine { place });
            }
            self.set(&place, key, value)?;
        }
        Ok(())
    }

    /// Fills in what must have a value after both sources were read (the default listen
    /// address, unless the TAP driver is on: then no `listen` means DNS only on the TAP device;
    /// nor in worker mode, which serves no DNS).
    pub fn finish(&mut self) {
        if self.listen.is_empty() && !self.tap.is_set() && !self.worker_mode() {
            self.listen
                .push(DEFAULT_LISTEN.parse().expect("valid default"));
        }
    }

    /// The prober's settings (issue 14): `None` in worker mode or with `probe = off`.
    /// Answers go stale only for an agent with a broker.
    pub fn probe_settings(&self) -> Option<crate::probe::driver::Settings> {
        use crate::probe::driver::{PortChoice, Settings};
        (self.probe && !self.worker_mode()).then(|| Settings {
            port: match self.probe_port {
                _ if self.probe_services => PortChoice::Services,
                Some(p) => PortChoice::Fixed(p),
                None => PortChoice::Zone,
            },
            params: crate::probe::Params::default(),
            stale_after: self.stale_after.filter(|_| self.broker.is_some()),
        })
    }

    /// True when any worker-mode (proxy sink) setting is given.
    pub fn worker_mode(&self) -> bool {
        self.node_id.is_some()
            || self.proxy_dir.is_some()
            || self.check_cmd.is_some()
            || self.reload_cmd.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_quotes_comments_and_repeats() {
        let mut c = Config::default();
        c.apply_file_text(
            "agent.conf",
            "# gateway\n\nlisten = 127.0.0.1:5353\nlisten=[::1]:5353\n\
             gateway-id = gw-espoo\ncheck-cmd = \"nginx -t -c /etc/nginx/nginx.conf\"\n\
             tcp-idle-timeout = 5\n",
        )
        .unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.listen[1], "[::1]:5353".parse().unwrap());
        assert_eq!(c.gateway_id.as_deref(), Some("gw-espoo"));
        assert_eq!(
            c.check_cmd.as_deref(),
            Some("nginx -t -c /etc/nginx/nginx.conf")
        );
        assert_eq!(c.tcp_idle_timeout, Duration::from_secs(5));
    }

    /// Issue 12: every file the agent reads has a bounded size; a huge or endless config file
    /// is a clear error, not an out-of-memory.
    #[test]
    fn oversized_config_file_is_refused_with_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("sdwan-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.conf");
        let line = "# comment\n".repeat(MAX_CONFIG_BYTES as usize / 10 + 1);
        std::fs::write(&big, &line).unwrap();
        let e = Config::default().read_file(&big).unwrap_err().to_string();
        assert!(e.contains("big.conf: larger than 65536 bytes"), "{e}");
        std::fs::write(&big, &line[..MAX_CONFIG_BYTES as usize]).unwrap();
        Config::default().read_file(&big).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let e = Config::default()
            .read_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/dev/zero"), "{e}");
    }

    #[test]
    fn file_errors_name_the_line() {
        let cases = [
            (
                "listen = 127.0.0.1",
                "agent.conf:1: bad value '127.0.0.1' for 'listen'",
            ),
            ("\nbrokr = x", "agent.conf:2: unknown setting 'brokr'"),
            ("gateway-id", "agent.conf:1: expected 'key = value'"),
            ("topic-prefix = a/#", "agent.conf:1: bad value 'a/#'"),
            (
                "broker = http://x",
                "agent.conf:1: bad value 'http://x' for 'broker'",
            ),
        ];
        for (text, want) in cases {
            let err = Config::default()
                .apply_file_text("agent.conf", text)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(want),
                "{text:?}: got {err:?}, want {want:?}"
            );
        }
    }
}
