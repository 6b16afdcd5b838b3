//! One HTTP session's client: `initialize` (keeping the session id and the negotiated
//! version), the closed loop of requests over its keep-alive connection, recovery after a
//! failure (reconnect, re-initialize after a 404), and the final DELETE; and [`Shared`], what
//! every session thread of a run shares.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::client::{Answer, Conn, roundtrip};
use super::plan::Plan;
use super::rpc::{Fail, Verdict, bad, build_request, initialize_request};
use super::stats::Stats;
use super::target::Target;
use super::{BenchOptions, DELETE_TIMEOUT, header_safe};

/// What every session thread shares.
pub(super) struct Shared {
    pub(super) target: Target,
    /// The TLS client configuration, for an `https://` target.
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
    pub(super) opts: BenchOptions,
    /// `"method":…,"params":…}`, the request body after the id; `None` with `--progress`
    /// (built per request).
    pub(super) tail: Option<Vec<u8>>,
    /// `"method":…` alone, for `--progress`.
    pub(super) method_json: String,
    /// Tickets taken in the measured phase (with `--requests`).
    pub(super) tickets: AtomicU64,
}

/// One session: initialize, report, wait for the plan, run it, DELETE.
pub(super) fn session_thread(
    index: usize,
    sh: &Shared,
    ready: Sender<Result<(), Fail>>,
    go: Receiver<Plan>,
) -> Stats {
    let mut c = Client::new(index, sh);
    let init = c.initialize(Instant::now() + sh.opts.timeout);
    let ok = init.is_ok();
    let _ = ready.send(init);
    drop(ready);
    if ok && let Ok(plan) = go.recv() {
        c.run(&plan);
    }
    c.close();
    c.stats
}

/// One session's client state.
struct Client<'a> {
    index: usize,
    sh: &'a Shared,
    conn: Option<Conn>,
    connected_once: bool,
    /// In the measured phase: reconnects and re-initializations are counted.
    measuring: bool,
    session_id: Option<String>,
    version: String,
    next_id: u64,
    /// The JSON-RPC body being sent.
    json: Vec<u8>,
    /// The whole HTTP request being sent.
    req: Vec<u8>,
    /// Response body scratch.
    body: Vec<u8>,
    stats: Stats,
}

impl<'a> Client<'a> {
    fn new(index: usize, sh: &'a Shared) -> Client<'a> {
        Client {
            index,
            sh,
            conn: None,
            connected_once: false,
            measuring: false,
            session_id: None,
            version: sh.opts.protocol_version.clone(),
            next_id: 1,
            json: Vec::with_capacity(1024),
            req: Vec::with_capacity(2048),
            body: Vec::with_capacity(4096),
            stats: Stats::default(),
        }
    }

    /// POST initialize, then notifications/initialized.
    fn initialize(&mut self, deadline: Instant) -> Result<(), Fail> {
        self.session_id = None;
        self.version = self.sh.opts.protocol_version.clone();
        self.json.clear();
        self.json
            .extend_from_slice(initialize_request(&self.sh.opts.protocol_version).as_bytes());
        let a = self.exchange("POST", true, false, Some(0), true, deadline)?;
        let version = match a.verdict {
            Verdict::Result(v) => v,
            Verdict::Error(e) => return Err(Fail::JsonRpc(format!("initialize: {e}"))),
            Verdict::Unchecked => return Err(Fail::Http(a.status, a.excerpt)),
        };
        if let Some(sid) = &a.session_id
            && !header_safe(sid)
        {
            return Err(bad("mcp-session-id is not a valid header value"));
        }
        self.session_id = a.session_id;
        if let Some(v) = version.filter(|v| header_safe(v)) {
            self.version = v;
        }
        self.json.clear();
        self.json
            .extend_from_slice(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let a = self.exchange("POST", true, true, None, false, deadline)?;
        if !(200..300).contains(&a.status) {
            return Err(Fail::Http(
                a.status,
                format!("notifications/initialized: {}", a.excerpt),
            ));
        }
        Ok(())
    }

    /// The closed loop.
    fn run(&mut self, plan: &Plan) {
        let timeout = self.sh.opts.timeout;
        loop {
            let now = Instant::now();
            if plan.measure_end.is_some_and(|e| now >= e) {
                break;
            }
            let measuring = now >= plan.measure_start;
            self.measuring = measuring;
            if measuring
                && let Some(n) = self.sh.opts.requests
                && self.sh.tickets.fetch_add(1, Ordering::Relaxed) >= n
            {
                break;
            }
            let mut deadline = now + timeout;
            if let Some(h) = plan.hard_stop {
                deadline = deadline.min(h);
            }
            let id = self.next_id;
            self.next_id += 1;
            self.build_call(id);
            let start = Instant::now();
            match self.call(id, deadline) {
                Ok(a) => {
                    if measuring {
                        self.stats.requests += 1;
                        self.stats.ok += 1;
                        self.stats.sse_replies += u64::from(a.sse);
                        let ns = a.done_at.saturating_duration_since(start).as_nanos();
                        self.stats
                            .latency
                            .record(ns.min(u128::from(u64::MAX)) as u64);
                        self.stats.last_done = Some(a.done_at);
                    }
                }
                Err(f) => {
                    if measuring {
                        self.stats.requests += 1;
                        *self.stats.errors.entry(f.kind().into_owned()).or_insert(0) += 1;
                        self.stats.last_done = Some(Instant::now());
                    }
                    log::debug!("bench session {}: {}", self.index, f.describe());
                    self.recover(&f, plan);
                }
            }
        }
    }

    /// After a failure: re-initialize on 404, back off briefly when the server is unreachable.
    fn recover(&mut self, f: &Fail, plan: &Plan) {
        let now = Instant::now();
        let mut deadline = now + self.sh.opts.timeout;
        if let Some(h) = plan.hard_stop {
            deadline = deadline.min(h);
        }
        match f {
            Fail::Http(404, _) if self.session_id.is_some() => {
                self.stats.reinitialized += u64::from(self.measuring);
                if let Err(e) = self.initialize(deadline) {
                    log::debug!(
                        "bench session {}: re-initialize failed: {}",
                        self.index,
                        e.describe()
                    );
                    pause(deadline);
                }
            }
            Fail::Connect(_) => pause(deadline),
            _ => {}
        }
    }

    /// `{"jsonrpc":"2.0","id":<id>,"method":…,"params":…}` into `self.json`.
    fn build_call(&mut self, id: u64) {
        let sh = self.sh;
        build_request(
            &mut self.json,
            &sh.opts,
            sh.tail.as_deref(),
            &sh.method_json,
            self.index,
            id,
        );
    }

    /// Sends the request in `self.json` and checks its response.
    fn call(&mut self, id: u64, deadline: Instant) -> Result<Answer, Fail> {
        let a = self.exchange("POST", true, true, Some(id), false, deadline)?;
        match a.verdict {
            Verdict::Result(_) => Ok(a),
            Verdict::Error(e) => Err(Fail::JsonRpc(e)),
            Verdict::Unchecked => Err(Fail::Http(a.status, a.excerpt)),
        }
    }

    /// DELETEs the session (best effort) and closes the connection.
    fn close(&mut self) {
        self.measuring = false;
        if self.session_id.is_some() {
            let deadline = Instant::now() + DELETE_TIMEOUT.min(self.sh.opts.timeout);
            if let Err(f) = self.exchange("DELETE", false, true, None, false, deadline) {
                log::debug!("bench session {}: DELETE: {}", self.index, f.describe());
            }
        }
        self.conn = None;
    }

    /// One HTTP exchange on the session's connection, connecting first if needed. The
    /// connection is dropped after any failure and when the server asks to close it.
    fn exchange(
        &mut self,
        method: &str,
        with_body: bool,
        with_session: bool,
        want: Option<u64>,
        want_version: bool,
        deadline: Instant,
    ) -> Result<Answer, Fail> {
        self.build_http(method, with_body, with_session);
        if self.conn.is_none() {
            let tls = self.sh.tls.as_ref().zip(self.sh.target.tls_name.as_ref());
            let c = Conn::connect(&self.sh.target.addrs, tls, deadline, self.sh.opts.timeout)?;
            if self.connected_once && self.measuring {
                self.stats.reconnects += 1;
            }
            self.connected_once = true;
            self.conn = Some(c);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(Fail::Io("not connected".into()));
        };
        let result = roundtrip(
            conn,
            &self.req,
            want,
            want_version,
            &mut self.body,
            deadline,
        );
        if !matches!(&result, Ok(a) if !a.close) {
            self.conn = None;
        }
        result
    }

    fn build_http(&mut self, method: &str, with_body: bool, with_session: bool) {
        let t = &self.sh.target;
        self.req.clear();
        let _ = write!(
            self.req,
            "{method} {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\n\
             User-Agent: shadowcat-bench/{}\r\n",
            t.path,
            t.authority,
            env!("CARGO_PKG_VERSION")
        );
        for (n, v) in &self.sh.opts.headers {
            let _ = write!(self.req, "{n}: {v}\r\n");
        }
        if with_session {
            if let Some(sid) = &self.session_id {
                let _ = write!(self.req, "Mcp-Session-Id: {sid}\r\n");
            }
            let _ = write!(self.req, "MCP-Protocol-Version: {}\r\n", self.version);
        }
        if with_body {
            let _ = write!(
                self.req,
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.json.len()
            );
            self.req.extend_from_slice(&self.json);
        } else {
            self.req.extend_from_slice(b"\r\n");
        }
    }
}

/// Sleeps a little (at most 50 ms, never past `deadline`), so an unreachable server is not
/// hammered in a tight loop.
fn pause(deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    thread::sleep(left.min(Duration::from_millis(50)));
}
