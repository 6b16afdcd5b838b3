//! The `shadowcat` binary: parse, initialise logging, run, map the error to an exit code.
//!
//! Exit codes: 0 clean stop, 1 runtime failure (and `tape diff` finding differences), 2
//! invalid configuration or input file.
//!
//! `shadowcat --version` (or `-V`) prints the version and the git revision it was built from
//! (`build.rs`; `unknown` when built outside a git checkout).

use std::process::ExitCode;

use shadowcat::{Cli, Command};

/// `shadowcat 0.1.0 (git 0123456789ab)`.
const VERSION: &str = concat!(
    "shadowcat ",
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("SHADOWCAT_GIT_REV"),
    ")"
);

fn main() -> ExitCode {
    let (cli, reverse_args) = match parse_args() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let (name, result) = match cli.command {
        Command::DemoServer(args) => {
            init_logging("warn", false);
            (
                "shadowcat demo-server",
                shadowcat::tools::demo::run_with(&args),
            )
        }
        Command::Bench(args) => {
            init_logging("warn", false);
            ("shadowcat bench", shadowcat::tools::bench::run(args))
        }
        Command::Tape(args) => {
            init_logging("warn", false);
            ("shadowcat tape", shadowcat::tools::tape::run(args))
        }
        Command::Replay(args) => {
            init_logging("warn", false);
            ("shadowcat replay", shadowcat::tools::tape::replay(args))
        }
        Command::CheckConfig(args) => {
            init_logging("warn", false);
            let exe = std::env::current_exe()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "shadowcat".into());
            let checked = args.run(&exe).map(|json| {
                println!("{json}");
                eprintln!("{}: valid", args.file);
            });
            ("shadowcat check-config", checked)
        }
        Command::Reverse(args) => {
            init_logging("info", args.log_format == "json");
            let exe = std::env::current_exe()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "shadowcat".into());
            // The command line as given, so that a reload reads its --config file again.
            let source = shadowcat::ConfigSource {
                args: reverse_args,
                self_exe: exe.clone(),
            };
            (
                "shadowcat",
                args.into_config(&exe)
                    .and_then(|config| shadowcat::run_from(config, Some(source))),
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Like `argh::from_env`, but `--help` or an error printed into a closed pipe
/// (`shadowcat reverse --help | head`) ends quietly instead of panicking. Also returns
/// `reverse`'s arguments as given (before `--config FILE` is expanded).
fn parse_args() -> Result<(Cli, Vec<String>), ExitCode> {
    use std::io::Write;
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .first()
        .map_or("shadowcat", |a| a.rsplit('/').next().unwrap_or(a));
    let mut given: Vec<String> = args.iter().skip(1).cloned().collect();
    let mut reverse_args = Vec::new();
    if given.first().is_some_and(|a| a == "reverse") {
        reverse_args = given[1..].to_vec();
        // `--config FILE` stands for the file's flags (keys are flags without --).
        match shadowcat::expand_config_file(&given[1..]) {
            Ok(flags) => {
                given.truncate(1);
                given.extend(flags);
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "shadowcat: {e}");
                return Err(ExitCode::from(e.exit_code()));
            }
        }
    }
    let rest: Vec<&str> = given.iter().map(String::as_str).collect();
    if matches!(rest.as_slice(), ["--version"] | ["-V"]) {
        let _ = writeln!(std::io::stdout(), "{VERSION}");
        return Err(ExitCode::SUCCESS);
    }
    let cli = argh::FromArgs::from_args(&[name], &rest).map_err(|early| {
        if early.status.is_ok() {
            let _ = writeln!(std::io::stdout(), "{}", early.output);
            ExitCode::SUCCESS
        } else {
            let _ = writeln!(
                std::io::stderr(),
                "{}\nRun {name} --help for more information.",
                early.output
            );
            ExitCode::from(2)
        }
    })?;
    Ok((cli, reverse_args))
}

/// env_logger on stderr, `RUST_LOG` overriding `default`. With `json`, every line is one JSON
/// object: access lines carry their fields, other lines `level`, `target` and `message`.
fn init_logging(default: &str, json: bool) {
    let mut b =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    if json {
        b.format(|buf, record| {
            use std::io::Write;
            let ts = buf.timestamp_millis().to_string();
            let msg = record.args().to_string();
            // Access lines are JSON objects already; other lines are wrapped.
            let access = record.target() == "shadowcat::access";
            let parsed = access.then(|| serde_json::from_str::<serde_json::Value>(&msg));
            let mut obj = match parsed {
                Some(Ok(serde_json::Value::Object(o))) => o,
                _ => {
                    let mut o = serde_json::Map::new();
                    o.insert("message".into(), msg.into());
                    o
                }
            };
            obj.insert("ts".into(), ts.into());
            obj.insert("level".into(), record.level().as_str().into());
            obj.insert("target".into(), record.target().into());
            writeln!(buf, "{}", serde_json::Value::Object(obj))
        });
    } else {
        b.format_timestamp_millis();
    }
    b.init();
}
