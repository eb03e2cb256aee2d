//! The checks behind the fuzz targets, one function per target: each takes the fuzzer's
//! bytes and panics when a property does not hold. Shared with the crate's regression test
//! (`tests/regressions.rs`), which runs them over the seed corpus and every input a fuzzer
//! found (`tests/regressions/TARGET/`).

// Each fuzz target uses one of these.
#![allow(dead_code)]

use sdwan_agent::cli::{parse, Command};
use sdwan_agent::config::{Config, ConfigError};
use std::time::Duration;

/// The `key = value` config file: any text as `--config FILE`. Must never panic; an error
/// names a line of the file; an accepted file leaves every setting inside its documented range.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut c = Config::default();
    match c.apply_file_text("agent.conf", text) {
        Ok(()) => {
            let t = c.tcp_idle_timeout;
            assert!(t >= Duration::from_secs(1) && t <= Duration::from_secs(3600));
            assert!((1..=10_000).contains(&c.tcp_max_connections));
            assert!(!c.topic_prefix.is_empty());
            if let Some(b) = &c.broker {
                assert!(b.starts_with("mqtts://") || b.starts_with("mqtt://"));
            }
            for s in [&c.gateway_id, &c.node_id, &c.user, &c.username]
                .into_iter()
                .flatten()
            {
                assert!(!s.is_empty());
            }
            c.finish();
            // Worker mode serves no DNS; with the TAP driver DNS may be on the TAP device only.
            assert!(!c.listen.is_empty() || c.worker_mode() || c.tap.is_set());
        }
        Err(e) => {
            let place = match &e {
                ConfigError::UnknownKey { place, .. }
                | ConfigError::BadValue { place, .. }
                | ConfigError::BadLine { place } => place,
                ConfigError::Read { .. } => panic!("no file was read: {e}"),
            };
            let line: usize = place
                .strip_prefix("agent.conf:")
                .and_then(|l| l.parse().ok())
                .unwrap_or_else(|| panic!("place {place:?}"));
            assert!(line >= 1 && line <= text.lines().count(), "{e}");
            assert!(e.to_string().starts_with(place.as_str()));
        }
    }
}

/// The command line: the input split at NUL bytes into arguments. Must never panic (bad
/// arguments are an error naming the flag). `--config` is left out: it reads a file, and the
/// file's text is the `config` target's.
pub fn cli(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.is_empty() {
        return;
    }
    let args: Vec<&str> = text.split('\0').collect();
    if args.iter().any(|a| a.contains("config")) {
        return;
    }
    match parse(args.iter().copied()) {
        Ok(Command::Run(c)) => {
            assert!(!c.listen.is_empty() || c.worker_mode() || c.tap.is_set())
        }
        Ok(_) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
