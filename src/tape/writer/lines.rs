//! One tape's lines: its header (held until `initialize` is answered), each message
//! redacted and framed as a line, rotation into parts, and the files behind them.

use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::metrics::LogDrop;

use super::super::TapeKey;
use super::super::format::{self, Dir, Header, Party};
use super::{Body, Io, Msg, Tape};

impl Io {
    pub(super) fn new_tape(
        &self,
        key: &TapeKey,
        at: Instant,
        era: String,
        principal: Option<String>,
    ) -> Tape {
        let wall = self.wall(at);
        let (base, session, era, principal, pending) = match key {
            TapeKey::Session(id) => (
                format::session_base(wall, id),
                Some(crate::session::short_id(id).to_owned()),
                era,
                principal,
                Some(Vec::new()),
            ),
            TapeKey::Stateless {
                principal: p,
                ip,
                hour,
            } => {
                let who = match (p, ip) {
                    (Some(p), _) => format!("principal:{p}"),
                    (None, Some(ip)) => format!("ip:{ip}"),
                    (None, None) => "-".to_owned(),
                };
                (
                    format::stateless_base(
                        &self.s.redactor.rules().digest_hex(who.as_bytes(), 6),
                        *hour,
                    ),
                    None,
                    crate::jsonrpc::MODERN_VERSION.to_owned(),
                    p.clone(),
                    None,
                )
            }
        };
        Tape {
            base,
            header: Header {
                tape: format::MAGIC.to_owned(),
                version: format::VERSION,
                shadowcat: env!("CARGO_PKG_VERSION").to_owned(),
                upstream: self.s.upstream.clone(),
                era,
                session,
                principal,
                client: None,
                server: None,
                started: format::Utc::of(wall).rfc3339(),
                part: 0,
            },
            started: at,
            pending,
            init_id: None,
            name: None,
            file: None,
            written: 0,
            unflushed: false,
            unsynced: false,
            last_use: 0,
            last_line: Instant::now(),
            standalone_seq: 0,
        }
    }

    /// The wall-clock time of a monotonic instant.
    pub(super) fn wall(&self, at: Instant) -> SystemTime {
        let (i0, w0) = self.s.epoch;
        match at.checked_duration_since(i0) {
            Some(d) => w0 + d,
            None => w0 - i0.duration_since(at),
        }
    }

    /// Redacts one message and appends its line to `tape` (or holds it until the header can
    /// be written).
    pub(super) fn message(&mut self, tape: &mut Tape, m: &Msg) {
        let frame_seq;
        let bytes: std::borrow::Cow<'_, [u8]> = match &m.body {
            Body::Json(b) => {
                frame_seq = None;
                b.as_slice().into()
            }
            Body::Frame(f) => {
                let (seq, data) = unframe(f);
                frame_seq = seq;
                data.into()
            }
        };
        if bytes.is_empty() {
            return; // a priming event
        }
        if let Some(seq) = frame_seq {
            if seq <= tape.standalone_seq {
                return; // replayed to a reconnecting client: recorded the first time
            }
            tape.standalone_seq = seq;
        }
        // Picking the members validates the message as one JSON object, so a clean one is
        // scanned once more (for the rules) and then written as it came.
        const MEMBERS: [&str; 4] = ["id", "method", "result", "params"];
        let raw = std::str::from_utf8(&bytes).ok();
        let picked = raw.and_then(|t| crate::jsonrpc::pick(t, MEMBERS));
        let msg = match picked {
            Some(_) => self.s.redactor.checked_message(&bytes),
            None => self.s.redactor.message(&bytes),
        };
        let Some(msg) = msg else {
            self.s.metrics.tape_dropped(LogDrop::Invalid, 1);
            return;
        };
        let [id, method, result, params] = match (&msg, picked) {
            (std::borrow::Cow::Borrowed(_), Some(p)) => p,
            // Redacted: what the header takes from it must be redacted too.
            _ => std::str::from_utf8(&msg)
                .ok()
                .and_then(|t| crate::jsonrpc::pick(t, MEMBERS))
                .unwrap_or_default(),
        };
        let id_text = id.map(|i| i.get()).unwrap_or("null");
        // A session's header waits for initialize and its answer.
        let mut release = false;
        if tape.pending.is_some() {
            let is_init = method.is_some_and(|m| m.get() == "\"initialize\"");
            if m.dir == Dir::ClientToServer && is_init && tape.header.client.is_none() {
                tape.header.client = Some(party(params, "clientInfo"));
                tape.init_id = Some(id_text.to_owned());
            } else if m.dir == Dir::ServerToClient
                && tape.init_id.as_deref() == Some(id_text)
                && tape.header.server.is_none()
            {
                tape.header.server = result.map(|r| party(Some(r), "serverInfo"));
                release = true;
            } else {
                release = true;
            }
        }
        tape.last_line = m.at;
        // The whole line, built in the writer's reused buffer (no allocation, no formatting
        // machinery: integers are written by hand) and handed to the file's buffer at once.
        // `t` in ms with µs precision.
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        line.extend_from_slice(b"{\"t\":");
        let us = m.at.saturating_duration_since(tape.started).as_micros();
        format::push_millis(&mut line, u64::try_from(us).unwrap_or(u64::MAX));
        line.extend_from_slice(b",\"dir\":\"");
        line.extend_from_slice(m.dir.label().as_bytes());
        line.extend_from_slice(b"\",\"id\":");
        line.extend_from_slice(id_text.as_bytes());
        line.extend_from_slice(b",\"upstream_id\":");
        match m.upstream_id {
            Some(u) => format::push_u64(&mut line, u),
            None => line.extend_from_slice(b"null"),
        }
        line.extend_from_slice(b",\"msg\":");
        line.extend_from_slice(&msg);
        if m.synthetic {
            line.extend_from_slice(b",\"synthetic\":true");
        }
        if let Some(rule) = &m.fault {
            line.extend_from_slice(b",\"fault\":");
            if serde_json::to_writer(&mut line, &**rule).is_err() {
                line.extend_from_slice(b"\"?\"");
            }
        }
        line.extend_from_slice(b"}\n");
        match &mut tape.pending {
            Some(lines) => {
                lines.push(line.clone());
                if release {
                    self.release(tape);
                }
            }
            None => self.write_line(tape, &[&line]),
        }
        // A rare huge message does not keep its buffer for the writer's life.
        line.clear();
        line.shrink_to(super::LINE_KEEP);
        self.line = line;
    }

    /// Writes a waiting header and the lines held behind it.
    pub(super) fn release(&mut self, tape: &mut Tape) {
        let Some(lines) = tape.pending.take() else {
            return;
        };
        for l in &lines {
            self.write_line(tape, &[l]);
        }
        if tape.name.is_none() {
            // Nothing was written (a session with no message): still leave its header.
            self.ensure_file(tape);
        }
    }

    /// Appends one line (in pieces) to the tape's current part, starting a new part first if
    /// this one is full. An I/O error drops the line (counted) and closes the file, to be
    /// reopened by the next line.
    pub(super) fn write_line(&mut self, t: &mut Tape, pieces: &[&[u8]]) {
        let len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        if t.name.is_some() && t.written > 0 && t.written + len > self.s.max_bytes {
            self.rotate(t);
        }
        if !self.ensure_file(t) {
            self.s.metrics.tape_dropped(LogDrop::Io, 1);
            return;
        }
        self.uses += 1;
        let Some(f) = t.file.as_mut() else {
            return;
        };
        match pieces.iter().try_for_each(|p| f.write_all(p)) {
            Ok(()) => {
                t.written += len;
                t.unflushed = true;
                t.unsynced = true;
                t.last_use = self.uses;
            }
            Err(e) => {
                t.file = None;
                self.open_files -= 1;
                self.s.metrics.tape_dropped(LogDrop::Io, 1);
                self.warn(&e);
            }
        }
    }

    /// Ends the tape's current part and makes the next one current (created on its first
    /// line).
    pub(super) fn rotate(&mut self, t: &mut Tape) {
        if let Some(mut f) = t.file.take() {
            let _ = f.sync();
            self.open_files -= 1;
        }
        t.name = None;
        t.written = 0;
        t.header.part += 1;
    }

    /// Makes sure the tape has an open file: reopens its current part, or creates the first
    /// free part from its header's `part` on and writes the header. False if that failed.
    pub(super) fn ensure_file(&mut self, t: &mut Tape) -> bool {
        if t.file.is_some() {
            return true;
        }
        if let Some(name) = &t.name {
            match self.s.store.append(name) {
                Ok(f) => {
                    t.file = Some(f);
                    self.open_files += 1;
                    return true;
                }
                Err(_) => {
                    // Deleted or unreadable: continue in a new part.
                    t.name = None;
                    t.written = 0;
                    t.header.part += 1;
                }
            }
        }
        for _ in 0..1000 {
            let name = format::file_name(&t.base, t.header.part);
            match self.s.store.create(&name) {
                Ok(mut f) => {
                    let mut head = serde_json::to_vec(&t.header).unwrap_or_default();
                    head.push(b'\n');
                    if let Err(e) = f.write_all(&head) {
                        self.warn(&e);
                        return false;
                    }
                    t.written = 0;
                    t.name = Some(name);
                    t.file = Some(f);
                    t.unflushed = true;
                    t.unsynced = true;
                    self.open_files += 1;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => t.header.part += 1,
                Err(e) => {
                    self.warn(&e);
                    return false;
                }
            }
        }
        false
    }

    /// Logs an I/O error at warn, at most once a minute.
    pub(super) fn warn(&mut self, e: &io::Error) {
        if self
            .warned
            .is_none_or(|w| w.elapsed() >= Duration::from_secs(60))
        {
            self.warned = Some(Instant::now());
            log::warn!("tapes: write failed, lines dropped: {e}");
        }
    }
}

/// `{"info": …, "capabilities": …}` from the params of `initialize` (`info_key`
/// `clientInfo`) or its result (`serverInfo`).
fn party(obj: Option<&serde_json::value::RawValue>, info_key: &str) -> Party {
    let v: Value = obj
        .and_then(|o| serde_json::from_str(o.get()).ok())
        .unwrap_or(Value::Null);
    Party {
        info: v.get(info_key).cloned(),
        capabilities: v.get("capabilities").cloned(),
    }
}

/// The event sequence number (from `id: <stream>-<seq>`) and the data of one SSE frame.
fn unframe(frame: &[u8]) -> (Option<u64>, Vec<u8>) {
    let mut seq = None;
    let mut data: Vec<u8> = Vec::with_capacity(frame.len());
    let mut first = true;
    for line in frame.split(|&b| b == b'\n') {
        if let Some(id) = line.strip_prefix(b"id: ") {
            seq = std::str::from_utf8(id)
                .ok()
                .and_then(|s| s.rsplit('-').next())
                .and_then(|s| s.parse().ok());
        } else if let Some(d) = line.strip_prefix(b"data: ").or(line.strip_prefix(b"data:")) {
            if !first {
                data.push(b'\n');
            }
            first = false;
            data.extend_from_slice(d);
        }
    }
    (seq, data)
}
