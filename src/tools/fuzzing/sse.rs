//! The upstream SSE event reader.

use std::io::{BufRead, BufReader, Read};

use super::fnv;
use crate::stream;
use crate::upstream::http::{RawEvent, read_sse_event};

/// The SSE parser that reads upstream streams ([`read_sse_event`]) and the proxy's framing.
///
/// Invariants:
/// * the parser never panics, and yields the same events (and the same error, if any) whether
///   the stream arrives in one piece or in pieces of arbitrary sizes;
/// * no event's data is larger than the parser's bound (derived from the input), and an
///   event's id never contains a line break;
/// * an event's data re-framed by the proxy under its own id ([`stream::frame`]) parses back
///   as exactly that id and data and nothing else (unless the data holds a CR, which framing
///   drops), so upstream data can never inject SSE fields or events into a client stream;
/// * [`stream::parse_event_id`] on any id never panics and round-trips what it accepts.
pub fn sse(data: &[u8]) {
    let h = fnv(data);
    let max = 32 + (h % 2048) as usize;
    let whole = events(data, max);
    let pieces = Pieces { data, state: h | 1 };
    let split = events(
        BufReader::with_capacity(1 + (h >> 16) as usize % 64, pieces),
        max,
    );
    assert_eq!(whole, split, "splitting the stream changed its events");
    for (id, data) in &whole.0 {
        assert!(data.len() <= max, "an event of {} bytes passed", data.len());
        if let Some(id) = id {
            assert!(!id.contains('\n'), "event id {id:?} holds a line break");
            if let Some((s, n)) = stream::parse_event_id(id) {
                assert_eq!(stream::parse_event_id(&format!("{s}-{n}")), Some((s, n)));
            }
        }
        if data.contains(&b'\r') {
            continue;
        }
        let own = format!("{}-{}", h >> 48, h & 0xffff);
        for id in [Some(own.as_str()), id.as_deref(), None] {
            let framed = stream::frame(id, data);
            let (got, err) = events(&framed[..], usize::MAX);
            assert_eq!(err, None);
            assert_eq!(
                got,
                vec![(id.map(str::to_owned), data.clone())],
                "re-framed event does not parse back as itself: {:?}",
                String::from_utf8_lossy(&framed)
            );
        }
    }
}

/// Every event of an SSE body, and the error that ended it, if one did.
fn events(mut r: impl BufRead, max: usize) -> (Vec<RawEvent>, Option<String>) {
    let mut line = Vec::new();
    let mut out = Vec::new();
    loop {
        match read_sse_event(&mut r, &mut line, max) {
            Ok((Some(ev), _)) => out.push(ev),
            Ok((None, ended)) => {
                assert!(ended, "no event but not at the end");
                return (out, None);
            }
            Err(e) => return (out, Some(format!("{:?}: {e}", e.kind()))),
        }
    }
}

/// A reader that hands out its bytes in pieces of pseudo-random sizes (1 to 32 bytes).
struct Pieces<'a> {
    data: &'a [u8],
    state: u64,
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        // xorshift64: any sequence of piece sizes is as good as another.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let n = (1 + (self.state % 32) as usize)
            .min(out.len())
            .min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
