//! Proxies under test: in process ([`config`], [`demo_proxy`]) and as spawned processes
//! ([`spawn_proxy`]), with [`Peer`], the guard that kills and reaps a child process on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use argh::FromArgs;
use shadowcat::Shadowcat;
use shadowcat::{Cli, Command as Sub, Config};

use super::{exe, free_port, init_log, wait_listening};

/// Parses `reverse` flags the way the binary does, on port 0 unless `--bind` is given.
pub fn config(args: &[&str]) -> Config {
    let mut all = vec!["reverse"];
    if !args.contains(&"--bind") {
        all.extend(["--bind", "127.0.0.1:0"]);
    }
    all.extend(args);
    // As `main` does: `--config FILE` stands for the file's flags.
    let given: Vec<String> = all[1..].iter().map(|a| a.to_string()).collect();
    let flags = shadowcat::expand_config_file(&given).expect("config file valid");
    let all: Vec<&str> = std::iter::once("reverse")
        .chain(flags.iter().map(String::as_str))
        .collect();
    let cli = Cli::from_args(&["shadowcat"], &all).expect("flags parse");
    match cli.command {
        Sub::Reverse(r) => r.into_config(exe()).expect("config valid"),
        _ => unreachable!(),
    }
}

/// A proxy in front of the built-in demo server with extra flags.
pub fn demo_proxy(args: &[&str]) -> Shadowcat {
    init_log();
    Shadowcat::start(config(args)).expect("proxy starts")
}

/// A child process killed and reaped on drop (a proxy's own children then die of their
/// parent-death signal), so a failing test leaves nothing running.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `shadowcat reverse ARGS` as a process on a free loopback port (owned by the returned
/// [`Peer`]) and waits until it listens.
pub fn spawn_proxy(args: &[&str], stderr: Stdio, env: &[(&str, &str)]) -> (Peer, SocketAddr) {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let bind = addr.to_string();
    let child = Command::new(exe())
        .args(["reverse", "--bind", &bind])
        .args(args)
        .envs(env.iter().copied())
        .stderr(stderr)
        .spawn()
        .expect("shadowcat starts");
    let peer = Peer(child);
    wait_listening(addr);
    (peer, addr)
}
