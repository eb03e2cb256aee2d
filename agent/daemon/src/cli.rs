//! Command line: `--KEY VALUE` for every config key (see [`crate::config::KEYS`]), plus
//! `--config FILE`, `--help` and `--version`. Parsed with lexopt (small, no clap).
//!
//! Precedence: defaults, then the config file, then the flags. A `--listen` on the command line
//! replaces the file's `listen` lines.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use crate::config::{Config, ConfigError, KEYS};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the agent with this configuration.
    Run(Box<Config>),
    /// Print [`help`] and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// A command line that cannot be used.
#[derive(Debug)]
pub enum CliError {
    /// lexopt's own error (unknown flag, missing value, stray argument, non-UTF-8 value).
    Syntax(String),
    /// A flag's value, or the config file, is bad.
    Config(ConfigError),
    /// Worker-mode settings given to a build without the `worker` feature (the flags, then
    /// [`NO_WORKER`]).
    NoWorker(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Syntax(s) => write!(f, "{s} (see --help)"),
            CliError::Config(e) => e.fmt(f),
            CliError::NoWorker(flags) => write!(f, "{flags}: {NO_WORKER}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Config(e)
    }
}

impl From<lexopt::Error> for CliError {
    fn from(e: lexopt::Error) -> Self {
        CliError::Syntax(e.to_string())
    }
}

/// Why a gateway build (without the `worker` cargo feature) refuses worker settings.
pub const NO_WORKER: &str = "this sdwan-agent is a gateway build, without worker mode (cargo \
feature `worker`); on a worker node install the sdwan-agent-worker package";

/// `sdwan-agent --help` of a build with every feature; [`help`] leaves out the sections of
/// features this build lacks.
pub const HELP: &str = "\
sdwan-agent: authoritative DNS for the SD-WAN service names on a branch gateway; in builds
with worker mode, also the applier of the reverse proxy configuration on a worker node.

Usage: sdwan-agent [--config FILE] [--listen ADDR]... [--zone-file FILE] [OPTIONS]

Serves the zone it holds on every --listen address over UDP and TCP. With --zone-file it
serves that zone file (payload v1, or a payload v2 snapshot); with --broker, the zone the
master publishes (payload v2); with no zone at all it answers REFUSED.

DNS:
  --listen ADDR             IP:PORT to serve on, UDP and TCP; repeatable; IPv6 as [::1]:5353
                            (default 127.0.0.1:5353)
  --zone-file FILE          zone to serve from the start: a zone payload v1 (JSON), or a payload
                            v2 snapshot, one part per line (`sdwan-discovery plan`'s
                            gateways/<id>.v2.jsonl, or a state dir's zone-v2.jsonl)
  --tcp-idle-timeout SECS   close a TCP connection with no query answered this long (default 10)
  --tcp-max-connections N   concurrent TCP connections, a quarter of them per client address;
                            beyond that the oldest idle one is closed (default 64)
  --user USER               after binding, switch to USER and its primary group

DNS through smoltcp on a TAP device (builds with the smoltcp feature only):
  --tap IFNAME              serve DNS over UDP on this existing TAP device, through smoltcp's
                            own IPv4 stack; without --listen, DNS is served only there
  --tap-address IP/PREFIX   the agent's own address on the TAP link, e.g. 10.99.0.2/24
  --tap-gateway IP          default route for clients beyond the TAP link
  --tap-port PORT           UDP port served on the TAP device (default 53)

MQTT (zones pushed by sdwan-discovery):
  --broker URL              mqtts://HOST:PORT (mqtt:// only for tests, with a warning)
  --ca FILE                 CA certificate (PEM) that signed the broker's certificate
  --cert FILE               client certificate (PEM)
  --key FILE                client private key (PEM)
  --username NAME           MQTT user name
  --password-file FILE      file holding the MQTT password
  --gateway-id ID           this gateway's id: zones come from PREFIX/gateways/ID/v2/...
                            (payload v2: snapshot parts, tail, deltas)
  --topic-prefix PREFIX     topic prefix (default sdwan/v1/default)
  --state-dir DIR           keep the last good zone here and serve it at start

Branch autonomy (gateway; docs/agent.md, section Probing):
  --probe on|off            probe the workers the zone may answer with (default on): TCP
                            connects every 0.8-1 s, a worker is down after 10 failures in a
                            row (failover within 3 s) and up after 3 successes; answers
                            skip down workers
  --probe-port N|service    port probed on every worker (default: the zone's probe port, the
                            workers' nginx port; without either, nothing is probed);
                            service: each service's NodePort (first TCP port) on each of
                            its workers, at most 512 pairs; answers skip a worker for the
                            services whose port it does not answer
  --fail-closed             a name whose candidates are all down answers SERVFAIL with EDE 23
                            (default: fail open, the nearest candidate as planned)
  --rtt-order               the probes' RTT reorders candidates within one tier of the plan
  --stale-after SECS        with no broker this long, answers carry EDE 3 (Stale Answer) and
                            TTLs of at most 30 s; 0 = never (default 300)

Worker mode (proxy configuration sink beside nginx; no DNS; needs --broker, docs/proxy.md):
  --node-id NODE            this worker's node name: proxy content from PREFIX/nodes/NODE/v2/...
  --proxy-dir DIR           directory the files sdwan.conf and help.html are written to
  --check-cmd CMD           run with sh -c after writing, e.g. 'nginx -t'; on failure the
                            previous files are restored and nothing is reloaded
  --reload-cmd CMD          run with sh -c after a good check, e.g. 'nginx -s reload'

Other:
  --config FILE             read 'key = value' lines (same keys as the flags, without --);
                            flags given on the command line win
  -h, --help                print this help
  -V, --version             print the version

Logging goes to stderr; set the level with RUST_LOG (default info), e.g. RUST_LOG=debug.
";

/// `--help` of this build: [`help_for`] with this build's features.
pub fn help() -> String {
    help_for(cfg!(feature = "worker"), cfg!(feature = "smoltcp"))
}

/// [`HELP`] without the worker mode section (`worker` false: a line saying where worker mode
/// is instead) and without the TAP section (`tap` false).
pub fn help_for(worker: bool, tap: bool) -> String {
    HELP.split("\n\n")
        .filter_map(|section| {
            if section.starts_with("Worker mode") && !worker {
                Some(
                    "Worker mode: not in this build (a gateway build); worker nodes run the\n\
                      sdwan-agent-worker package.",
                )
            } else if section.starts_with("DNS through smoltcp") && !tap {
                None
            } else {
                Some(section)
            }
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The worker-mode settings given (as `--flag, --flag`), when this build has no worker mode
/// (`worker_built` false): such a command line is refused ([`CliError::NoWorker`]).
pub fn worker_settings_not_built(config: &Config, worker_built: bool) -> Option<String> {
    if worker_built || !config.worker_mode() {
        return None;
    }
    let given: Vec<&str> = [
        ("--node-id", config.node_id.is_some()),
        ("--proxy-dir", config.proxy_dir.is_some()),
        ("--check-cmd", config.check_cmd.is_some()),
        ("--reload-cmd", config.reload_cmd.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    Some(given.join(", "))
}

/// The MQTT settings that only a connection to a broker uses: given without `broker` they
/// would be silently ignored. Worker-mode settings are checked by worker mode itself.
pub fn mqtt_settings_without_broker(config: &Config) -> Option<String> {
    if config.broker.is_some() {
        return None;
    }
    let given: Vec<&str> = [
        ("gateway-id", config.gateway_id.is_some()),
        (
            "topic-prefix",
            config.topic_prefix != crate::config::DEFAULT_TOPIC_PREFIX,
        ),
        ("ca", config.ca.is_some()),
        ("cert", config.cert.is_some()),
        ("key", config.key.is_some()),
        ("username", config.username.is_some()),
        ("password-file", config.password_file.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if given.is_empty() {
        return None;
    }
    let list = given
        .iter()
        .map(|k| format!("--{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "{list}: only used with --broker (zones pushed over MQTT); add --broker mqtts://HOST:PORT \
         or remove {}",
        if given.len() == 1 { "it" } else { "them" }
    ))
}

/// Parses the process's arguments (without the program name).
pub fn parse<I>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut config_file: Option<PathBuf> = None;
    let mut flags: Vec<(&'static str, String)> = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("config") => config_file = Some(parser.value()?.into()),
            Long(name) => {
                let Some(key) = KEYS.iter().find(|k| **k == name) else {
                    return Err(arg.unexpected().into());
                };
                let value = if crate::config::SWITCHES.contains(key) {
                    match parser.optional_value() {
                        Some(v) => v.string()?,
                        None => "true".to_string(),
                    }
                } else {
                    parser.value()?.string()?
                };
                flags.push((key, value));
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let mut config = Config::default();
    if let Some(path) = &config_file {
        config.read_file(path)?;
    }
    if flags.iter().any(|(k, _)| *k == "listen") {
        config.listen.clear();
    }
    for (key, value) in &flags {
        config.set(&format!("--{key}"), key, value)?;
    }
    config.finish();
    if let Some(flags) = worker_settings_not_built(&config, cfg!(feature = "worker")) {
        return Err(CliError::NoWorker(flags));
    }
    Ok(Command::Run(Box::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse(args.iter().copied()) {
            Ok(Command::Run(c)) => Ok(*c),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:5353".parse().unwrap()]);
        assert_eq!(c.topic_prefix, "sdwan/v1/default");
        assert_eq!(c.zone_file, None);
    }

    #[test]
    fn every_key_is_a_flag_and_appears_in_help() {
        let help = help_for(true, true);
        assert_eq!(help, HELP, "a build with every feature shows all of HELP");
        for key in KEYS {
            assert!(
                help.contains(&format!("--{key} ")),
                "--{key} missing in --help"
            );
        }
        let c = run(&[
            "--listen=[::1]:53",
            "--listen",
            "127.0.0.1:53",
            "--zone-file",
            "z.json",
            "--broker",
            "mqtts://broker:8883",
            "--gateway-id",
            "gw-espoo",
            "--topic-prefix",
            "sdwan/v1/prod",
            "--check-cmd",
            "nginx -t",
            "--fail-closed",
            "--rtt-order=false",
            "--probe-port",
            "8080",
            "--stale-after",
            "0",
        ])
        .unwrap();
        assert!(c.fail_closed && !c.rtt_order);
        assert_eq!((c.probe_port, c.stale_after), (Some(8080), None));
        assert!(!c.probe_services);
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.broker.as_deref(), Some("mqtts://broker:8883"));
        assert_eq!(c.topic_prefix, "sdwan/v1/prod");
        assert_eq!(c.check_cmd.as_deref(), Some("nginx -t"));
        let c = run(&["--probe-port", "8080", "--probe-port", "service"]).unwrap();
        let port = c.probe_settings().map(|s| s.port);
        assert_eq!(port, Some(crate::probe::driver::PortChoice::Services));
    }

    /// Issue 15: `--help` of a gateway build (no `worker`, no `smoltcp` feature) shows no
    /// worker or TAP flag, and says where worker mode is.
    #[test]
    fn gateway_build_help_shows_only_what_it_has() {
        let help = help_for(false, false);
        for key in KEYS {
            let worker_or_tap = ["node-id", "proxy-dir", "check-cmd", "reload-cmd"].contains(key)
                || key.starts_with("tap");
            assert_eq!(
                help.contains(&format!("--{key} ")),
                !worker_or_tap,
                "--{key} in the gateway build's --help"
            );
        }
        assert!(help.contains("Worker mode: not in this build"), "{help}");
        assert!(help.contains("sdwan-agent-worker package"), "{help}");
        assert!(
            help.contains("\n\nOther:\n"),
            "sections still apart: {help}"
        );
        let worker_only = help_for(true, false);
        assert!(worker_only.contains("--node-id ") && !worker_only.contains("--tap "));
    }

    /// Issue 15: a gateway build refuses worker settings, naming them and the package to
    /// install (main exits 2 on it); a worker build takes them.
    #[test]
    fn worker_settings_in_a_gateway_build_are_refused() {
        let worker = run(&[
            "--node-id",
            "w1",
            "--proxy-dir",
            "/srv/p",
            "--broker",
            "mqtt://b",
        ])
        .unwrap();
        let gateway = run(&["--gateway-id", "gw", "--broker", "mqtt://b"]).unwrap();
        assert_eq!(worker_settings_not_built(&worker, true), None);
        assert_eq!(worker_settings_not_built(&gateway, false), None);
        let flags = worker_settings_not_built(&worker, false).unwrap();
        assert_eq!(flags, "--node-id, --proxy-dir");
        let text = CliError::NoWorker(flags).to_string();
        assert!(
            text.starts_with("--node-id, --proxy-dir: this sdwan-agent is a gateway build")
                && text.contains("install the sdwan-agent-worker package"),
            "{text}"
        );
    }

    #[test]
    fn mqtt_settings_without_broker_are_named() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (&["--zone-file", "z.json", "--state-dir", "/tmp/s"], None),
            (
                &["--gateway-id", "gw"],
                Some("--gateway-id: only used with --broker"),
            ),
            (
                &["--topic-prefix", "sdwan/v1/lab", "--ca", "ca.pem"],
                Some("--topic-prefix, --ca: only used with --broker"),
            ),
            (&["--topic-prefix", "sdwan/v1/default"], None),
            (&["--broker", "mqtts://b:8883", "--gateway-id", "gw"], None),
        ];
        for (args, want) in cases {
            let got = mqtt_settings_without_broker(&run(args).unwrap());
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!(g.starts_with(w), "{args:?}: {g}"),
                (g, w) => panic!("{args:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn bad_command_lines() {
        let cases: &[(&[&str], &str)] = &[
            (&["--lisen", "x"], "invalid option '--lisen'"),
            (&["--listen"], "missing argument for option '--listen'"),
            (
                &["--listen", "localhost:53"],
                "--listen: bad value 'localhost:53'",
            ),
            (&["stray"], "unexpected argument"),
            (
                &["--tcp-max-connections", "0"],
                "--tcp-max-connections: bad value '0'",
            ),
            (
                &["--config", "/nonexistent/agent.conf"],
                "cannot read config file",
            ),
            (&["--probe", "maybe"], "--probe: bad value 'maybe'"),
            (&["--probe-port", "0"], "--probe-port: bad value '0'"),
            (&["--fail-closed=yes"], "--fail-closed: bad value 'yes'"),
        ];
        for (args, want) in cases {
            let err = run(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: got {err:?}, want {want:?}");
        }
    }
}
