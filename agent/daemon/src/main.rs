//! `sdwan-agent` binary: parse the command line, set up logging, run [`sdwan_agent::run`].
//! Exit status: 0 for --help/--version, 2 for a bad command line or config file, 1 for any
//! other error (zone file rejected, address in use, ...).

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
        Command::Help => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("sdwan-agent {}", sdwan_agent::VERSION);
            return ExitCode::SUCCESS;
        }
        Command::Run(config) => config,
    };
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
