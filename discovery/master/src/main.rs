//! sdwan-discovery: the master binary. Glue only: flags ([`sdwan_discovery::cli`]), logging,
//! then [`sdwan_discovery::run`] or [`sdwan_discovery::offline::run`].
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::process::ExitCode;

use sdwan_discovery::cli::{self, Command};

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,rumqttd=off,tracing::span=off"),
    )
    .init();
    let cmd = match cli::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sdwan-discovery: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match cmd {
        Command::Help => print_out(cli::USAGE),
        Command::Version => print_out(&format!("sdwan-discovery {}\n", env!("CARGO_PKG_VERSION"))),
        Command::Plan(args) => match sdwan_discovery::offline::run(&args) {
            Ok(w) => {
                for warning in &w.warnings {
                    eprintln!("warning: {warning}");
                }
                if w.gateways.is_empty() {
                    eprintln!("warning: topology: no [[gateway]]: no zone written");
                }
                print_out(&format!(
                    "wrote {} gateway zone(s) (payload v1 <id>.json and v2 <id>.v2.jsonl) and {} node proxy payload(s) under {} (serial {})\n",
                    w.gateways.len(),
                    w.nodes.len(),
                    args.out.display(),
                    args.serial
                ))
            }
            Err(e) => {
                eprintln!("sdwan-discovery plan: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("sdwan-discovery: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let shutdown = async {
                // SIGTERM is how Kubernetes stops a pod; SIGINT is ^C.
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => log::info!("interrupted, stopping"),
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {
                        log::info!("terminated, stopping");
                    }
                }
            };
            let result = rt.block_on(sdwan_discovery::run(*args, shutdown, |_| {}));
            // Tasks still running (watchers, the MQTT loop) are dropped; never wait long for
            // blocking ones.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sdwan-discovery: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Writes `text` to stdout. A reader that went away (`sdwan-discovery --help | head`) is no
/// error: exit 0 with nothing on stderr; any other write error is reported, exit 1.
fn print_out(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sdwan-discovery: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
