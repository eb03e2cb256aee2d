//! `sdwan-agent` binary: parse the command line, set up logging, run [`sdwan_agent::run`].
//! Exit status: 0 for --help/--version (also into a closed pipe), 2 for a bad command line or
//! config file, 1 for any other error (settings that do not fit together, such as
//! `--gateway-id` without `--broker`; zone file rejected; state directory not writable; address
//! in use, ...).
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::process::ExitCode;

use sdwan_agent::cli::{self, Command};

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sdwan-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match command {
        Command::Help => return print_out(cli::HELP),
        Command::Version => {
            return print_out(&format!("sdwan-agent {}\n", sdwan_agent::VERSION));
        }
        Command::Run(config) => config,
    };
    if let Some(why) = cli::mqtt_settings_without_broker(&config) {
        eprintln!("sdwan-agent: {why}");
        return ExitCode::from(1);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    match sdwan_agent::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Writes `text` to stdout. A reader that went away (`sdwan-agent --help | head`) is no error:
/// exit 0 with nothing on stderr; any other write error is reported, exit 1.
fn print_out(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sdwan-agent: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}
