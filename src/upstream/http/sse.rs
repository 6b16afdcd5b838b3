//! Upstream `text/event-stream` bodies: read event by event ([`read_sse_event`]), resumed with
//! `Last-Event-ID` when they break ([`SseStream`]), and the standalone GET stream copied into a
//! session's log ([`relay`]).
//!
//! **Bounded by construction, with no queue:** a body is read only when its stream is polled,
//! one event (at most 16 MiB) at a time. A client that does not read blocks its stream thread
//! in the write, so the upstream body is not read either and TCP flow control pushes back on
//! the upstream; nothing piles up in the proxy (`r12_bounds::r12_2_http_upstream_flood_…`). The
//! relay copies into the standalone log, which the replay limits and `--replay-budget` bound.
//! The ids seen (for dropping duplicates after a resumption) are a bounded window
//! ([`SeenIds`]), not every id of a long stream.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use r2d2::PooledConnection;

use super::slot::SlotManager;
use super::{HttpInner, MAX_UPSTREAM_MESSAGE};
use crate::error::Error;
use crate::jsonrpc::Message;
use crate::session::Session;
use crate::upstream::{Item, MessageStream, Poll};
use crate::util::{read_line_bounded, trim_line};

/// Copies an upstream GET stream into a session's standalone log.
pub(super) fn relay(
    inner: &Arc<HttpInner>,
    slot: PooledConnection<SlotManager>,
    session: &Weak<Session>,
    sid: Option<String>,
    version: Option<String>,
) {
    let opened = inner.get_stream(Some(slot), sid.as_deref(), version.as_deref(), None);
    let (slot, resp) = match opened {
        Ok(Some(x)) => x,
        Ok(None) => {
            log::debug!("{}: no standalone stream upstream", inner.name);
            return;
        }
        Err(e) => {
            log::debug!(
                "{}: standalone stream not opened: {}",
                inner.name,
                crate::util::Escaped(&e.to_string())
            );
            if let Some(s) = session.upgrade() {
                s.binding.listening.store(false, Ordering::Release);
            }
            return;
        }
    };
    let mut stream = SseStream {
        slot: Some(slot),
        reader: BufReader::new(resp.into_body().into_reader()),
        buf: Vec::new(),
        inner: inner.clone(),
        session: sid,
        version,
        last_id: None,
        seen: SeenIds::default(),
        expect_final: false,
        done: false,
    };
    loop {
        let item = stream.poll_until(Instant::now());
        let Some(s) = session.upgrade() else { return };
        match item {
            Ok(Poll::Item(Item::Message(d) | Item::Final(d))) => {
                s.streams.standalone().push(&d);
            }
            Ok(Poll::Idle) => {}
            Ok(Poll::End) | Err(_) => {
                s.binding.listening.store(false, Ordering::Release);
                return;
            }
        }
    }
}

/// An upstream `text/event-stream` body, read event by event, resumed with `Last-Event-ID`
/// if it breaks before the response.
pub(super) struct SseStream {
    /// Held until the body is read to its end; then cleared and returned to the pool.
    pub(super) slot: Option<PooledConnection<SlotManager>>,
    pub(super) reader: BufReader<ureq::BodyReader<'static>>,
    pub(super) buf: Vec<u8>,
    pub(super) inner: Arc<HttpInner>,
    /// Upstream session id and protocol version, for resumption GETs.
    pub(super) session: Option<String>,
    pub(super) version: Option<String>,
    /// The upstream's id of the last event seen, and the recent ids seen (duplicates dropped).
    pub(super) last_id: Option<String>,
    pub(super) seen: SeenIds,
    /// A request stream must end with a response; a standalone stream may just end.
    pub(super) expect_final: bool,
    pub(super) done: bool,
}

/// The event ids of a stream seen lately, to drop what an upstream replays twice after a
/// resumption: the newest [`SeenIds::MAX_IDS`] ids, at most [`SeenIds::MAX_BYTES`] bytes
/// together, so a long stream cannot grow it without limit.
#[derive(Debug, Default)]
pub(crate) struct SeenIds {
    set: HashSet<String>,
    order: VecDeque<String>,
    bytes: usize,
}

impl SeenIds {
    /// Ids remembered at most.
    pub(crate) const MAX_IDS: usize = 4096;
    /// Bytes of ids remembered at most (the newest id is always kept).
    pub(crate) const MAX_BYTES: usize = 1024 * 1024;

    /// Remembers `id`; false if it was seen lately (a duplicate).
    pub(crate) fn insert(&mut self, id: String) -> bool {
        if self.set.contains(&id) {
            return false;
        }
        self.bytes += id.len();
        self.set.insert(id.clone());
        self.order.push_back(id);
        while self.order.len() > 1
            && (self.order.len() > Self::MAX_IDS || self.bytes > Self::MAX_BYTES)
        {
            if let Some(old) = self.order.pop_front() {
                self.bytes -= old.len();
                self.set.remove(&old);
            }
        }
        true
    }
}

/// One event read off an upstream stream: its id and data.
pub(crate) type RawEvent = (Option<String>, Vec<u8>);

/// Reads the next event's `id:` and `data:` fields off an SSE body, line by line (each line at
/// most `max` bytes, `line` is scratch space). Returns the event, `None` at a clean end of the
/// body, and whether the body was read to its end.
pub(crate) fn read_sse_event<R: BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(Option<RawEvent>, bool)> {
    let mut data: Vec<u8> = Vec::new();
    let mut id = None;
    let mut any = false;
    loop {
        line.clear();
        let n = read_line_bounded(reader, line, max)?;
        if n == 0 {
            return Ok((if any { Some((id, data)) } else { None }, true));
        }
        let line = trim_line(line);
        if line.is_empty() {
            if any {
                return Ok((Some((id, data)), false));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            // Each line is bounded by `max`; so is the whole event, or an upstream that never
            // ends an event could grow it without limit.
            if data.len() + 1 + rest.len() > max {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("SSE event larger than {max} bytes"),
                ));
            }
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest);
            any = true;
        } else if let Some(rest) = line.strip_prefix(b"id:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            id = Some(String::from_utf8_lossy(rest).into_owned());
            any = true;
        } else if line.starts_with(b":") {
            // A comment (keep-alive) block comes back as an empty event, so a reader that
            // only hears keep-alives still gets control back between them.
            any = true;
        }
        // `event:` and `retry:`: the proxy owns the client stream's framing.
    }
}

impl SseStream {
    /// The next event, `Ok(None)` at a clean end of the body.
    fn read_event(&mut self) -> std::io::Result<Option<RawEvent>> {
        let (event, ended) = read_sse_event(&mut self.reader, &mut self.buf, MAX_UPSTREAM_MESSAGE)?;
        if ended && let Some(mut slot) = self.slot.take() {
            slot.poisoned = false; // read to the end: reusable
        }
        Ok(event)
    }

    /// Reconnects with GET + `Last-Event-ID`, backing off exponentially with full jitter
    /// (base 200 ms, cap 10 s) for at most `--upstream-reconnect-max`.
    fn resume(&mut self, why: &str) -> Result<(), Error> {
        let Some(last) = self.last_id.clone() else {
            return Err(Error::UpstreamProtocol(format!(
                "{} stream broke ({why}) before the response and cannot be resumed (no event ids)",
                self.inner.name
            )));
        };
        let give_up = Instant::now() + self.inner.reconnect_max;
        let mut attempt = 0u32;
        loop {
            let cap = Duration::from_millis(200)
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(10));
            let pause = cap.mul_f64(jitter());
            if Instant::now() + pause > give_up {
                return Err(Error::UpstreamProtocol(format!(
                    "{} stream broke ({why}); resuming failed for {:?}",
                    self.inner.name, self.inner.reconnect_max
                )));
            }
            std::thread::sleep(pause);
            attempt += 1;
            let opened = self.inner.get_stream(
                None,
                self.session.as_deref(),
                self.version.as_deref(),
                Some(&last),
            );
            match opened {
                Ok(Some((slot, resp))) => {
                    log::debug!(
                        "{}: stream resumed after {}",
                        self.inner.name,
                        crate::util::Escaped(&last)
                    );
                    self.slot = Some(slot);
                    self.reader = BufReader::new(resp.into_body().into_reader());
                    return Ok(());
                }
                Ok(None) => {
                    return Err(Error::UpstreamProtocol(format!(
                        "{} stream broke ({why}) and the upstream refused to resume it",
                        self.inner.name
                    )));
                }
                Err(e) => log::debug!(
                    "{}: resume attempt {attempt} failed: {}",
                    self.inner.name,
                    crate::util::Escaped(&e.to_string())
                ),
            }
        }
    }
}

/// A number in [0, 1) for backoff jitter; quality does not matter, only spread.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl MessageStream for SseStream {
    /// Blocks in the upstream read (bounded by the per-read idle timeout), not until `wake`.
    fn poll_until(&mut self, _wake: Instant) -> Result<Poll, Error> {
        if self.done {
            return Ok(Poll::End);
        }
        loop {
            let why = match self.read_event() {
                Ok(Some((id, data))) => {
                    if let Some(id) = id {
                        if !self.seen.insert(id.clone()) {
                            continue; // already delivered before a resumption
                        }
                        self.last_id = Some(id);
                    }
                    if data.is_empty() {
                        // A priming event or a keep-alive. A standalone relay takes it as a
                        // moment to check that its session still exists.
                        if self.expect_final {
                            continue;
                        }
                        return Ok(Poll::Idle);
                    }
                    let item = classify(data);
                    if matches!(item, Item::Final(_)) && self.expect_final {
                        self.done = true;
                    }
                    return Ok(Poll::Item(item));
                }
                Ok(None) if !self.expect_final => {
                    self.done = true;
                    return Ok(Poll::End);
                }
                Ok(None) => "ended".to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.done = true;
                    return Err(Error::UpstreamProtocol(format!("{}: {e}", self.inner.name)));
                }
                Err(e) => e.to_string(),
            };
            if !self.expect_final {
                self.done = true;
                return Ok(Poll::End);
            }
            // The connection is in an unknown state: drop it (poisoned) and resume.
            self.slot = None;
            if let Err(e) = self.resume(&why) {
                self.done = true;
                return Err(e);
            }
        }
    }

    fn must_stream(&self) -> bool {
        true
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        // After the response a well-behaved server ends the stream at once (the chunked
        // terminator follows the last event): read up to that end so the connection goes back
        // to the pool. Anything else leaves the slot poisoned, and it is replaced.
        if self.slot.is_some() && self.done && self.expect_final {
            let mut sink = [0u8; 4096];
            let mut left: usize = 64 * 1024;
            while left > 0 {
                match self.reader.read(&mut sink) {
                    Ok(0) => {
                        if let Some(mut slot) = self.slot.take() {
                            slot.poisoned = false;
                        }
                        break;
                    }
                    Ok(n) => left = left.saturating_sub(n),
                    Err(_) => break,
                }
            }
        }
    }
}

/// A response message ends the request's stream; anything else is related traffic.
fn classify(data: Vec<u8>) -> Item {
    match Message::parse(&data).ok().and_then(|m| m.kind().ok()) {
        Some(crate::jsonrpc::Kind::Response) => Item::Final(data),
        _ => Item::Message(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 7: an upstream event that never ends is bounded as a whole, not only per line.
    #[test]
    fn sse_events_are_bounded_as_a_whole() {
        let mut line = Vec::new();
        let ok = b"id: 1\ndata: abc\ndata: def\n\n";
        let (ev, _) = read_sse_event(&mut &ok[..], &mut line, 16).unwrap();
        assert_eq!(ev, Some((Some("1".into()), b"abc\ndef".to_vec())));
        // Every line is short, but together they pass the limit.
        let flood = b"data: 0123456789\n".repeat(100);
        let e = read_sse_event(&mut &flood[..], &mut line, 64).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }

    /// Issue 12: the ids a long stream has seen are a bounded window, which still catches
    /// the recent duplicates a resumption replays.
    #[test]
    fn seen_ids_are_a_bounded_window() {
        let mut seen = SeenIds::default();
        for i in 0..100_000 {
            assert!(seen.insert(format!("event-{i}")));
        }
        assert_eq!(seen.order.len(), SeenIds::MAX_IDS);
        assert_eq!(seen.set.len(), SeenIds::MAX_IDS);
        assert!(
            !seen.insert("event-99999".into()),
            "a recent id is a duplicate"
        );
        assert!(seen.insert("event-1".into()), "an old one is forgotten");
        let mut seen = SeenIds::default();
        for i in 0..10 {
            assert!(seen.insert(format!("{i}{}", "x".repeat(300 * 1024))));
        }
        assert!(seen.bytes <= SeenIds::MAX_BYTES && seen.set.len() == seen.order.len());
    }
}
