//! Real `redis-server` and `haproxy` for the tests: each on a free loopback port, started
//! here, killed and reaped on drop (nothing left running), bounded in time. The binaries are
//! the Debian packages `scripts/lib.sh` installs (`ensure_redis`, `ensure_haproxy`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Peer, TempDir, free_port, wait_listening};

/// The path of `name` in the usual system directories, or a failure with the install hint.
fn binary(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: apt-get install {package} (scripts/test does it: ensure_{name})");
}

/// A `redis-server` on a free loopback port, in memory only (no RDB, no AOF).
pub struct Redis {
    peer: Option<Peer>,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let mut r = Redis { peer: None, port };
        r.restart();
        r
    }

    /// (Re)starts the server on its port.
    pub fn restart(&mut self) {
        let bin = binary("redis-server", "redis-server");
        let child = Command::new(bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.peer = Some(Peer(child));
        wait_listening(self.addr());
    }

    /// Kills the server (its counters are lost).
    pub fn stop(&mut self) {
        self.peer = None;
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// One inline command (`PING`, `DBSIZE`), its reply line.
    pub fn command(&self, cmd: &str) -> String {
        let mut s =
            TcpStream::connect_timeout(&self.addr(), Duration::from_secs(2)).expect("redis");
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        s.write_all(format!("{cmd}\r\n").as_bytes()).expect("write");
        let mut buf = [0u8; 8192];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).trim().to_string()
    }
}

/// An `haproxy` in the foreground (`-db`) with a config written to a temp dir.
pub struct HaProxy {
    _peer: Peer,
    _dir: TempDir,
}

impl HaProxy {
    /// Starts HAProxy with `config` (which must bind `addr`) and waits until it listens.
    pub fn start(config: &str, addr: SocketAddr) -> HaProxy {
        let bin = binary("haproxy", "haproxy");
        let dir = TempDir::new("haproxy");
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let check = Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("haproxy -c");
        assert!(
            check.status.success(),
            "haproxy rejects the config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(&bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        let peer = Peer(child);
        wait_listening(addr);
        HaProxy {
            _peer: peer,
            _dir: dir,
        }
    }
}

/// `examples/haproxy.cfg` made to run here: the frontend on `front`, the servers `web1`…
/// at `backends` (in order), health checks every `inter_ms`.
pub fn haproxy_config(front: SocketAddr, backends: &[SocketAddr], inter_ms: u64) -> String {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/haproxy.cfg");
    let mut cfg = std::fs::read_to_string(example).expect("examples/haproxy.cfg");
    cfg = cfg.replace("bind 127.0.0.1:8080", &format!("bind {front}"));
    for (i, b) in backends.iter().enumerate() {
        cfg = cfg.replace(&format!("127.0.0.1:{}", 8081 + i), &b.to_string());
    }
    cfg = cfg.replace("inter 1s", &format!("inter {inter_ms}ms"));
    // The example's stats socket and pid file live in system directories.
    cfg.lines()
        .filter(|l| !l.trim_start().starts_with("stats socket"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Waits until `f` holds, at most `within`.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
