//! sdwan-discovery: the master binary. Glue only: flags ([`sdwan_discovery::cli`]), logging,
//! then [`sdwan_discovery::run`] or [`sdwan_discovery::offline::run`].

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
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("sdwan-discovery {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Plan(args) => match sdwan_discovery::offline::run(&args) {
            Ok(w) => {
                for warning in &w.warnings {
                    eprintln!("warning: {warning}");
                }
                println!(
                    "wrote {} gateway zone(s) and {} node proxy payload(s) under {} (serial {})",
                    w.gateways.len(),
                    w.nodes.len(),
                    args.out.display(),
                    args.serial
                );
                ExitCode::SUCCESS
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
