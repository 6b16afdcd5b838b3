//! A bridged call's upstream side ([`Running`]) and the calls waiting for their client's
//! input ([`Ctx`]): parked by [`super::mrtr`], taken
//! back by a verified retry, swept (and so cancelled upstream) once `--input-timeout` passes,
//! bounded in count (`max_pending`) and bytes (`max_pending_bytes`), 503 beyond, and per client
//! (`--input-max-per-client`, its principal or IP), 429 beyond; both with a `Retry-After` of
//! the seconds until the first of the calls that fill the bound times out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

use super::legacy::Lease;
use super::shape::Finish;
use super::state::{Codec, hmac};
use crate::config::BridgeConfig;
use crate::error::Error;
use crate::jsonrpc::Message;
use crate::session::{ClientCaps, LogLevel};
use crate::upstream::{Call, MessageStream, Upstream};
use crate::util::lock;

/// A call's upstream side while it runs: dropped unfinished, it is cancelled upstream.
pub struct Running {
    /// The upstream's stream of the call.
    pub stream: Box<dyn MessageStream>,
    /// The bridge session it runs in.
    pub lease: Lease,
    /// Where to send answers and the cancellation.
    pub upstream: Arc<dyn Upstream>,
    /// The id the call has upstream (raw JSON).
    pub id: String,
    /// The session's protocol version (for the header).
    pub version: &'static str,
    /// The upstream answered (or failed it): nothing to cancel.
    pub finished: bool,
}

impl Running {
    /// Sends `body` (a response or notification) upstream in the call's session.
    pub fn send(&self, body: &[u8], deadline: Instant) -> Result<(), Error> {
        self.upstream
            .forward(Call {
                msg: Message::parse(body)?,
                session: Some(&self.lease.session),
                deadline,
                headers: vec![("MCP-Protocol-Version".to_owned(), self.version.to_owned())],
            })
            .map(drop)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let body = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":"the 2026-07-28 client did not continue the request"}}}}"#,
            self.id
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        if let Err(e) = self.send(body.as_bytes(), deadline) {
            log::debug!("bridge: cancelling {} upstream failed: {e}", self.id);
        }
    }
}

/// What a bridged call is, beside its stream.
#[derive(Clone, Debug)]
pub struct CallInfo {
    /// The client as quotas count it (`principal:…` or `ip:…`).
    pub client: String,
    /// The method.
    pub method: String,
    /// Digest of the principal.
    pub principal: [u8; 8],
    /// Digest of method and target name.
    pub request: [u8; 8],
    /// What the client can be asked.
    pub caps: ClientCaps,
    /// The log level asked for (`None`: no logs).
    pub log_level: Option<LogLevel>,
    /// How results are finished.
    pub finish: Finish,
    /// Input request keys handed out so far.
    pub asked: u32,
}

/// A server-to-client request held for the client.
pub struct Ask {
    /// Its key in `inputRequests`.
    pub key: String,
    /// Its id upstream (raw JSON).
    pub id: Box<RawValue>,
    /// `{"method":…,"params":…}`, raw JSON.
    pub request: String,
}

/// The bridge's shared state: the codec and the calls waiting for input.
pub struct Ctx {
    /// Seals and opens `requestState`.
    pub codec: Codec,
    key: [u8; 32],
    parked: Mutex<HashMap<u128, Parked>>,
    bytes: AtomicUsize,
    next: AtomicU64,
    /// Limits and timeouts.
    pub cfg: BridgeConfig,
}

/// A call waiting for its client's retry.
pub struct Parked {
    /// The call's upstream side.
    pub run: Running,
    /// What the call is.
    pub call: CallInfo,
    /// The requests the client was asked.
    pub asks: Vec<Ask>,
    /// When its input times out.
    pub expires: Instant,
    /// Its share of `max_pending_bytes`.
    pub bytes: usize,
}

impl Running {
    /// The call waits for its client's input: what it held upstream (a shared stdio child, a
    /// bridge session's place among the running ones) is let go as far as attribution allows.
    pub fn park(&mut self) {
        self.stream.park();
        self.lease.park();
    }

    /// The retried call takes back what it let go, before its answers go upstream; the next
    /// round ends by `deadline`.
    pub fn unpark(&mut self, deadline: Instant) -> Result<(), Error> {
        self.lease.unpark(deadline);
        self.stream.unpark(deadline)
    }
}

impl Ctx {
    /// A context with a fresh random key.
    pub fn new(cfg: &BridgeConfig) -> Arc<Ctx> {
        let key = random_key();
        let ctx = Arc::new(Ctx {
            codec: Codec::new(key, &cfg.instance),
            key,
            parked: Mutex::new(HashMap::new()),
            bytes: AtomicUsize::new(0),
            next: AtomicU64::new(1),
            cfg: cfg.clone(),
        });
        let weak = Arc::downgrade(&ctx);
        let spawned = std::thread::Builder::new()
            .name("bridge-sweeper".into())
            .spawn(move || {
                while let Some(ctx) = weak.upgrade() {
                    ctx.sweep(Instant::now());
                    drop(ctx);
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
        if let Err(e) = spawned {
            log::warn!("bridge: no sweeper thread ({e}); expired inputs are swept on use");
        }
        ctx
    }

    /// A fresh number (call ids, tokens).
    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Drops the parked calls whose input timed out (cancelling them upstream).
    pub fn sweep(&self, now: Instant) {
        let gone: Vec<Parked> = {
            let mut m = lock(&self.parked);
            let keys: Vec<u128> = m
                .iter()
                .filter(|(_, p)| p.expires <= now)
                .map(|(k, _)| *k)
                .collect();
            keys.into_iter().filter_map(|k| m.remove(&k)).collect()
        };
        for p in gone {
            self.bytes.fetch_sub(p.bytes, Ordering::Relaxed);
            log::debug!("bridge: input for {} timed out; cancelled", p.run.id);
        }
    }

    /// Calls waiting for input now.
    pub fn parked(&self) -> usize {
        lock(&self.parked).len()
    }

    /// Takes a parked call back for its retry.
    pub fn take(&self, token: u128) -> Option<Parked> {
        let p = lock(&self.parked).remove(&token)?;
        self.bytes.fetch_sub(p.bytes, Ordering::Relaxed);
        Some(p)
    }

    /// Parks a call; refused (and so cancelled) over the count or byte bound (503), or over
    /// its client's bound (429).
    pub fn park(&self, p: Parked) -> Result<u128, Error> {
        let now = Instant::now();
        self.sweep(now);
        let mut m = lock(&self.parked);
        let bytes = self.bytes.load(Ordering::Relaxed);
        // Seconds until the first of `calls` times out (at least 1).
        let wait = |calls: &mut dyn Iterator<Item = &Parked>| {
            let first = calls.map(|p| p.expires).min().unwrap_or(now);
            let d = first.saturating_duration_since(now);
            (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
        };
        let limit = self.cfg.max_per_client;
        let mine = m
            .values()
            .filter(|q| q.call.client == p.call.client)
            .count();
        if mine >= limit {
            let retry_after = wait(&mut m.values().filter(|q| q.call.client == p.call.client));
            return Err(Error::InputQuota { limit, retry_after });
        }
        if m.len() >= self.cfg.max_pending || bytes + p.bytes > self.cfg.max_pending_bytes {
            return Err(Error::InputPending {
                retry_after: wait(&mut m.values()),
            });
        }
        let n = self.next();
        let mac = hmac(&self.key, &n.to_be_bytes());
        let mut t = [0u8; 16];
        t.copy_from_slice(&mac[..16]);
        let token = u128::from_be_bytes(t);
        self.bytes.fetch_add(p.bytes, Ordering::Relaxed);
        m.insert(token, p);
        Ok(token)
    }
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// 32 random bytes (`/dev/urandom`; the clock and pid if it cannot be read).
fn random_key() -> [u8; 32] {
    use std::io::Read;
    let mut key = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key));
    if read.is_err() {
        let seed = format!("{:?}{}", SystemTime::now(), std::process::id());
        key = hmac(&[0x5a; 32], seed.as_bytes());
    }
    key
}
