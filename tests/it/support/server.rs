//! Fixture servers the proxy talks to: [`Acceptor`], a raw loopback server stopped on drop,
//! server-everything in its streamableHttp mode ([`everything_http`]), and the demo server
//! over HTTP ([`demo_http`]).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};

use super::{Peer, everything_js, free_port, wait_listening};

/// A raw loopback fixture server: each connection is served by `serve` on its own thread
/// (which ends when its socket does); the accept thread is stopped and joined on drop, so a
/// failing test leaves no listener behind.
pub struct Acceptor {
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Acceptor {
    pub fn start(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> Acceptor {
        use std::sync::atomic::{AtomicBool, Ordering};
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let serve = std::sync::Arc::new(serve);
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for s in l.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(s) = s else { continue };
                let serve = serve.clone();
                std::thread::spawn(move || serve(s));
            }
        });
        Acceptor {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts server-everything in streamableHttp mode and waits until it accepts connections.
pub fn everything_http() -> (Peer, SocketAddr) {
    let port = free_port();
    let child = Command::new("node")
        .arg(everything_js())
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let peer = Peer(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr);
    (peer, addr)
}

/// `shadowcat demo-server --era ERA --http 127.0.0.1:0` as a process (owned by the returned
/// [`Peer`]); its address is read from the first line it prints.
pub fn demo_http(era: &str) -> (Peer, SocketAddr) {
    use std::io::BufRead;
    let mut child = Command::new(super::exe())
        .args(["demo-server", "--era", era, "--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("demo-server starts");
    let stdout = child.stdout.take().expect("stdout");
    let peer = Peer(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("demo-server prints its address");
    let addr = line
        .trim()
        .strip_prefix("demo-server listening on http://")
        .and_then(|rest| rest.strip_suffix("/mcp"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from demo-server --http: {line:?}"));
    (peer, addr)
}
