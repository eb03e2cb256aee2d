//! A real dnsmasq, as branch routers run it: a forwarder that sends one domain to the agent,
//! optionally validating DNSSEC with the root trust anchor (OpenWrt's `option dnssec 1`).

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, require_tool, wait_until, ChildGuard};

/// A running dnsmasq on 127.0.0.1 (killed on drop).
#[derive(Debug)]
pub struct Dnsmasq {
    /// Where it listens, UDP and TCP.
    pub addr: SocketAddr,
    /// The process.
    pub child: ChildGuard,
}

/// The root zone's DNSSEC trust anchor as Debian's dnsmasq-base ships it (OpenWrt's dnsmasq
/// package has the same file as `/usr/share/dnsmasq/trust-anchors.conf`).
pub const ROOT_TRUST_ANCHORS: &str = "/usr/share/dnsmasq-base/trust-anchors.conf";

impl Dnsmasq {
    /// Starts dnsmasq on a free loopback port forwarding `domain` (e.g. `k8s.internal`)
    /// to `upstream` (`server=/domain/IP#PORT`), with no other upstream, no cache (so every
    /// query reaches the agent), and `extra` arguments appended. Waits until it accepts TCP.
    #[track_caller]
    pub fn start(domain: &str, upstream: SocketAddr, extra: &[&str]) -> Dnsmasq {
        Self::start_inner(domain, upstream, &[&["--cache-size=0"], extra].concat())
    }

    /// [`Dnsmasq::start`] with DNSSEC validation on, as OpenWrt renders `option dnssec 1`:
    /// `--dnssec`, the root trust anchor of Debian's dnsmasq-base
    /// ([`ROOT_TRUST_ANCHORS`]), `--dnssec-check-unsigned` (the default, said explicitly) and
    /// the default cache (dnsmasq refuses a smaller one with DNSSEC).
    #[track_caller]
    pub fn start_validating(domain: &str, upstream: SocketAddr, extra: &[&str]) -> Dnsmasq {
        assert!(
            Path::new(ROOT_TRUST_ANCHORS).exists(),
            "{ROOT_TRUST_ANCHORS} missing: apt-get install dnsmasq-base"
        );
        let anchors = format!("--conf-file={ROOT_TRUST_ANCHORS}");
        let args = [
            &[
                "--dnssec",
                &anchors,
                "--dnssec-check-unsigned",
                "--log-queries",
            ],
            extra,
        ]
        .concat();
        Self::start_inner(domain, upstream, &args)
    }

    #[track_caller]
    fn start_inner(domain: &str, upstream: SocketAddr, extra: &[&str]) -> Dnsmasq {
        let bin = require_tool("dnsmasq");
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-hosts",
            "--no-resolv",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--log-facility=-",
            "--pid-file=",
            "--user=",
            "--group=",
        ])
        .arg(format!("--port={port}"))
        .arg(format!(
            "--server=/{domain}/{}#{}",
            upstream.ip(),
            upstream.port()
        ))
        // Keep private-range answers, as OpenWrt's rebind_domain does for this suffix.
        .arg(format!("--rebind-domain-ok=/{domain}/"))
        .args(extra);
        let mut child = ChildGuard::spawn("dnsmasq", &mut cmd);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until(Duration::from_secs(10), "dnsmasq to accept TCP", || {
            if let Some(st) = child.try_exit() {
                panic!("dnsmasq exited ({st}): {}", child.stderr());
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        Dnsmasq { addr, child }
    }
}
