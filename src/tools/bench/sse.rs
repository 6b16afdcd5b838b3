//! The bench's reader of `text/event-stream` bodies: `data:` lines collected per event, each
//! complete event checked.

use super::rpc::{Check, Verdict, check};

/// Collects `data:` lines per event and checks each complete event.
#[derive(Default)]
pub(super) struct SseParser {
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    /// Consumes the complete lines at the start of `body`; returns the verdict once an event
    /// holds the response to `want`. Other events (notifications, server requests, non-JSON)
    /// are skipped.
    pub(super) fn feed(
        &mut self,
        body: &mut Vec<u8>,
        want: u64,
        want_version: bool,
    ) -> Option<Verdict> {
        let mut start = 0;
        let mut found = None;
        while let Some(i) = body[start..].iter().position(|&b| b == b'\n') {
            let raw = &body[start..start + i];
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            start += i + 1;
            if line.is_empty() {
                if self.has_data {
                    let c = check(&self.data, want, want_version);
                    self.data.clear();
                    self.has_data = false;
                    if let Check::Mine(v) = c {
                        found = Some(v);
                        break;
                    }
                }
            } else if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(rest);
                self.has_data = true;
            }
        }
        body.drain(..start);
        found
    }
}
