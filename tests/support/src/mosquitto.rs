//! A real mosquitto broker for tests, on a free loopback port, killed on drop.
//!
//! [`MosquittoConfig`] describes the listener: plain or TLS, with `require_certificate`,
//! `use_identity_as_username` (certificate CN = username) and `use_username_as_clientid`
//! (the session is named after the certificate, so one gateway cannot take over another's
//! client id), an ACL file and a `max_packet_size`. [`Mosquitto::start`]
//! writes `mosquitto.conf` into the given directory, starts the broker and waits (with a
//! deadline) until it accepts TCP connections. [`Mosquitto::restart`] stops and starts it on
//! the same port; with `persistence` it keeps retained messages and sessions across that.
//!
//! Panics with a clear message when the `mosquitto` binary is missing (Debian package
//! `mosquitto`; the tests must fail, not pass, without it).

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::certs::CertFiles;
use crate::free_port;

/// Where Debian installs the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// TLS settings of the listener.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    /// CA that client certificates must chain to.
    pub ca: PathBuf,
    /// The broker's certificate and key.
    pub server: CertFiles,
    /// `require_certificate true` + `use_identity_as_username true` +
    /// `use_username_as_clientid true` (docs/mqtt.md, "Broker ACL").
    pub require_client_cert: bool,
}

/// One broker's configuration.
#[derive(Debug, Clone, Default)]
pub struct MosquittoConfig {
    /// TLS, or plain TCP when `None`.
    pub tls: Option<BrokerTls>,
    /// ACL file contents (`pattern read ...`, `user master` ...); none = everyone may do all.
    pub acl: Option<String>,
    /// Keep retained messages and sessions across [`Mosquitto::restart`].
    pub persistence: bool,
    /// `max_packet_size` in bytes (none: mosquitto's default, no limit).
    pub max_packet_size: Option<u32>,
}

impl MosquittoConfig {
    /// The ACL of the design for `prefix`, the one docs/mqtt.md and docs/operations.md give
    /// (a unit test compares them): each gateway (certificate CN = gateway id) reads its own
    /// zone and writes its own status; user `master` reads and writes zones and proxies (it
    /// subscribes to them at start and on taking over as leader, to continue their serials)
    /// and reads statuses.
    pub fn design_acl(prefix: &str) -> String {
        format!(
            "pattern read {prefix}/gateways/%u/zone\n\
             pattern read {prefix}/gateways/%u/v2/#\n\
             pattern write {prefix}/gateways/%u/status\n\
             pattern read {prefix}/nodes/%u/proxy\n\
             pattern read {prefix}/nodes/%u/v2/#\n\
             pattern write {prefix}/nodes/%u/status\n\
             \n\
             user master\n\
             topic readwrite {prefix}/gateways/+/zone\n\
             topic readwrite {prefix}/gateways/+/v2/#\n\
             topic read {prefix}/gateways/+/status\n\
             topic readwrite {prefix}/nodes/+/proxy\n\
             topic readwrite {prefix}/nodes/+/v2/#\n\
             topic read {prefix}/nodes/+/status\n"
        )
    }
}

/// A running mosquitto, killed on drop.
#[derive(Debug)]
pub struct Mosquitto {
    dir: PathBuf,
    port: u16,
    tls: bool,
    child: Option<Child>,
}

impl Mosquitto {
    /// Writes the config into `dir` and starts the broker on a free port of 127.0.0.1.
    pub fn start(dir: &Path, config: &MosquittoConfig) -> Mosquitto {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} not found: install the Debian package `mosquitto` (tests/setup.sh does)"
        );
        let port = free_port();
        let mut conf = String::new();
        let _ = writeln!(conf, "per_listener_settings false");
        let _ = writeln!(conf, "user root");
        let _ = writeln!(
            conf,
            "log_dest file {}",
            dir.join("mosquitto.log").display()
        );
        let _ = writeln!(conf, "log_type all");
        let _ = writeln!(conf, "connection_messages true");
        // Small messages must not wait for Nagle + delayed ACK (tens of ms each).
        let _ = writeln!(conf, "set_tcp_nodelay true");
        if config.persistence {
            let _ = writeln!(conf, "persistence true");
            let _ = writeln!(conf, "persistence_location {}/", dir.display());
            let _ = writeln!(conf, "autosave_interval 1");
        }
        let _ = writeln!(conf, "listener {port} 127.0.0.1");
        match &config.tls {
            Some(t) => {
                let _ = writeln!(conf, "cafile {}", t.ca.display());
                let _ = writeln!(conf, "certfile {}", t.server.cert.display());
                let _ = writeln!(conf, "keyfile {}", t.server.key.display());
                if t.require_client_cert {
                    let _ = writeln!(conf, "require_certificate true");
                    let _ = writeln!(conf, "use_identity_as_username true");
                    let _ = writeln!(conf, "use_username_as_clientid true");
                }
                let _ = writeln!(conf, "allow_anonymous {}", !t.require_client_cert);
            }
            None => {
                let _ = writeln!(conf, "allow_anonymous true");
            }
        }
        if let Some(n) = config.max_packet_size {
            let _ = writeln!(conf, "max_packet_size {n}");
        }
        if let Some(acl) = &config.acl {
            let acl_path = dir.join("acl");
            fs::write(&acl_path, acl).unwrap();
            let _ = writeln!(conf, "acl_file {}", acl_path.display());
        }
        fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        let mut m = Mosquitto {
            dir: dir.to_path_buf(),
            port,
            tls: config.tls.is_some(),
            child: None,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {MOSQUITTO}: {e}"));
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "mosquitto exited ({status}) at start; its log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {addr} within 10 s; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtts://127.0.0.1:PORT` (or `mqtt://` for a plain listener).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker (SIGTERM, so a persistent broker saves its database) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Whether the broker process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the broker again after [`Mosquitto::stop`], on the same port and config.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "mosquitto is still running");
        self.spawn();
    }

    /// Stop, then start on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- mosquitto log ----\n{}----", self.log());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ACL lines of the fenced block that follows `heading` in a docs page, whitespace
    /// normalised, comments and blank lines dropped, sorted.
    fn documented_acl(page: &str, heading: &str) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(page);
        let text = fs::read_to_string(&path).unwrap();
        let start = text
            .find(heading)
            .unwrap_or_else(|| panic!("{page}: no {heading:?}"));
        let acl_block = text[start..]
            .split("```")
            .skip(1)
            .step_by(2)
            .find(|b| b.contains("user master"))
            .unwrap_or_else(|| panic!("{page}: no ACL block after {heading:?}"));
        normalise(acl_block)
    }

    fn normalise(acl: &str) -> Vec<String> {
        let mut lines: Vec<String> = acl
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        lines.sort();
        lines
    }

    /// The test ACL is the documented one: the master reads the zone and proxy topics at start
    /// (retained payloads, to continue their serials), so it needs readwrite there.
    #[test]
    fn design_acl_is_the_documented_acl() {
        let ours = normalise(&MosquittoConfig::design_acl("sdwan/v1/prod"));
        assert!(ours.contains(&"topic readwrite sdwan/v1/prod/gateways/+/zone".to_string()));
        assert_eq!(
            documented_acl("mqtt.md", "## Broker ACL"),
            ours,
            "docs/mqtt.md"
        );
        let ours_p = normalise(&MosquittoConfig::design_acl("P"));
        assert_eq!(
            documented_acl("operations.md", "The ACL model"),
            ours_p,
            "docs/operations.md"
        );
    }
}
