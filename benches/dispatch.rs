//! What capability-aware dispatch costs (issue #14): closed-loop `tools/call echo` from sessions
//! whose clients declare nothing (plain: they share their child freely) and from sessions that
//! declare `sampling` (exclusive: each call runs without other sessions' calls on its child),
//! against a running proxy, side by side in one run.
//!
//! ```text
//! cargo bench --bench dispatch -- URL SESSIONS SECONDS MIX...
//! ```
//!
//! Each MIX is `plain`, `capable` or `half` (half the sessions of each kind), run in the order
//! given; one line of JSON per MIX: requests per second of each kind, p50 and p99 latency in
//! µs, errors. One keep-alive connection and thread per session; a 1 s warm-up is not counted.
//! `scripts/bench-dispatch` starts the proxies and runs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const PLAIN: &str = "{}";
const CAPABLE: &str = r#"{"sampling":{}}"#;

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
    host: String,
    path: String,
}

impl Conn {
    fn open(url: &str) -> std::io::Result<Conn> {
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let s = TcpStream::connect(host)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            r: BufReader::new(s.try_clone()?),
            w: s,
            host: host.to_owned(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        })
    }

    /// Ends session `sid` (its answer is read and ignored).
    fn delete(&mut self, sid: &str) -> std::io::Result<()> {
        let head = format!(
            "DELETE {} HTTP/1.1\r\nHost: {}\r\nMcp-Session-Id: {sid}\r\n\
             MCP-Protocol-Version: 2025-11-25\r\nContent-Length: 0\r\n\r\n",
            self.path, self.host
        );
        self.w.write_all(head.as_bytes())?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        Ok(())
    }

    /// POSTs `body`; returns the status, the session id header and the body.
    fn post(
        &mut self,
        sid: Option<&str>,
        body: &str,
    ) -> std::io::Result<(u16, Option<String>, Vec<u8>)> {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.path,
            self.host,
            body.len()
        );
        if let Some(s) = sid {
            head.push_str(&format!(
                "Mcp-Session-Id: {s}\r\nMCP-Protocol-Version: 2025-11-25\r\n"
            ));
        }
        head.push_str("\r\n");
        head.push_str(body);
        self.w.write_all(head.as_bytes())?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (mut len, mut chunked, mut session) = (0usize, false, None);
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => len = v.parse().unwrap_or(0),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "mcp-session-id" => session = Some(v.to_owned()),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..n]);
            }
        } else {
            out.resize(len, 0);
            self.r.read_exact(&mut out)?;
        }
        Ok((status, session, out))
    }
}

struct Tally {
    latencies: Vec<u32>,
    errors: u64,
}

fn session(url: &str, caps: &str, warm: Instant, end: Instant, stop: &AtomicBool) -> Tally {
    let mut t = Tally {
        latencies: Vec::with_capacity(1 << 16),
        errors: 0,
    };
    let Ok(mut c) = Conn::open(url) else {
        t.errors += 1;
        return t;
    };
    let init = format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{caps},"clientInfo":{{"name":"dispatch-bench","version":"1"}}}}}}"#
    );
    let sid = match c.post(None, &init) {
        Ok((200, Some(sid), _)) => sid,
        _ => {
            t.errors += 1;
            return t;
        }
    };
    if !matches!(
        c.post(
            Some(&sid),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        ),
        Ok((202, _, _))
    ) {
        t.errors += 1;
        return t;
    }
    let mut id = 1u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"hello"}}}}}}"#
        );
        id += 1;
        let started = Instant::now();
        let ok = matches!(c.post(Some(&sid), &body), Ok((200, _, ref b)) if b.windows(5).any(|w| w == b"hello"));
        if started < warm {
            continue;
        }
        if ok {
            t.latencies
                .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
        } else {
            t.errors += 1;
        }
    }
    let _ = c.delete(&sid);
    t
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(url: &str, sessions: usize, seconds: f64, mix: &str) {
    let capable = match mix {
        "plain" => 0,
        "capable" => sessions,
        "half" => sessions / 2,
        other => panic!("unknown mix {other}: plain, capable or half"),
    };
    let warm = Instant::now() + Duration::from_secs(1);
    let end = warm + Duration::from_secs_f64(seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..sessions)
        .map(|i| {
            let (url, stop) = (url.to_owned(), stop.clone());
            let caps = if i < capable { CAPABLE } else { PLAIN };
            let kind = if i < capable { "capable" } else { "plain" };
            (
                kind,
                thread::spawn(move || session(&url, caps, warm, end, &stop)),
            )
        })
        .collect();
    let mut by_kind: Vec<(&str, Vec<u32>, u64)> = Vec::new();
    for (kind, h) in handles {
        let t = h.join().unwrap_or(Tally {
            latencies: Vec::new(),
            errors: 1,
        });
        match by_kind.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, l, e)) => {
                l.extend(t.latencies);
                *e += t.errors;
            }
            None => by_kind.push((kind, t.latencies, t.errors)),
        }
    }
    let mut parts = Vec::new();
    for (kind, mut l, errors) in by_kind {
        l.sort_unstable();
        parts.push(format!(
            r#""{kind}":{{"sessions":{},"rps":{:.0},"p50_us":{},"p99_us":{},"errors":{errors}}}"#,
            if kind == "capable" {
                capable
            } else {
                sessions - capable
            },
            l.len() as f64 / seconds,
            percentile(&l, 0.5),
            percentile(&l, 0.99),
        ));
    }
    println!(r#"{{"mix":"{mix}",{}}}"#, parts.join(","));
}

fn main() {
    // `cargo bench` passes `--bench`; anything starting with `--` is skipped.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.len() < 4 {
        eprintln!("usage: cargo bench --bench dispatch -- URL SESSIONS SECONDS MIX...");
        return;
    }
    let sessions: usize = args[1].parse().expect("SESSIONS");
    let seconds: f64 = args[2].parse().expect("SECONDS");
    for mix in &args[3..] {
        run(&args[0], sessions, seconds, mix);
    }
}
