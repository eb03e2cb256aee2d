//! Starting the `sdwan-agent` binary for a test. The binary's path comes from the calling
//! test (`env!("CARGO_BIN_EXE_sdwan-agent")`), which only the agent's own tests have.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, ChildGuard};

/// A running agent serving DNS on `dns` (127.0.0.1, UDP and TCP); killed on drop.
#[derive(Debug)]
pub struct Agent {
    /// The DNS address (`--listen`).
    pub dns: SocketAddr,
    /// The process (stderr holds its log).
    pub child: ChildGuard,
}

impl Agent {
    /// Runs `bin --listen 127.0.0.1:FREE ARGS...` (RUST_LOG=info unless set) and waits until
    /// it logs that it listens on TCP (UDP is bound before that). Panics, with the agent's
    /// stderr, if it exits or is not up within 10 s.
    #[track_caller]
    pub fn start(bin: &str, args: &[&str]) -> Agent {
        let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut cmd = Command::new(bin);
        cmd.arg("--listen").arg(dns.to_string()).args(args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = ChildGuard::spawn("sdwan-agent", &mut cmd);
        child.wait_stderr(Duration::from_secs(10), &format!("listening on tcp {dns}"));
        Agent { dns, child }
    }
}
