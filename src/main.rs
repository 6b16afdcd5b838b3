//! The `shadowcat` binary: parse, initialise logging, run, map the error to an exit code.
//!
//! Exit codes: 0 clean stop, 1 runtime failure, 2 invalid configuration.

use std::process::ExitCode;

use shadowcat::config::{Cli, Command};
use shadowcat::error::Error;

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    match cli.command {
        Command::DemoServer(args) => {
            init_logging("warn");
            match shadowcat::demo::run_with(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ Error::Config(_)) => {
                    eprintln!("shadowcat demo-server: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("shadowcat demo-server: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Bench(args) => {
            init_logging("warn");
            match shadowcat::bench::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ Error::Config(_)) => {
                    eprintln!("shadowcat bench: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("shadowcat bench: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Reverse(args) => {
            init_logging("info");
            let exe = std::env::current_exe()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "shadowcat".into());
            match args.into_config(&exe).and_then(shadowcat::run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ Error::Config(_)) => {
                    eprintln!("shadowcat: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("shadowcat: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn init_logging(default: &str) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_millis()
        .init();
}
