//! A byte-bounded queue of output lines between a demo connection ([`super::connection::Shared`]
//! writes through [`PipeWriter`]) and the HTTP handler that relays them ([`Pipe::pop`]). A
//! writer that finds [`MAX_QUEUED`] bytes waiting blocks until the reader takes some (one line
//! larger than the bound still passes, alone); once the reader is gone ([`Pipe::close`]) lines
//! are dropped.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::util::lock;

/// Bytes of lines queued at most before writers wait.
pub(super) const MAX_QUEUED: usize = 8 * 1024 * 1024;
/// A partial line longer than this (no newline yet) is an error of the writer.
const MAX_PARTIAL: usize = 64 * 1024 * 1024;

#[derive(Default)]
struct State {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    closed: bool,
}

#[derive(Default)]
pub(super) struct Pipe {
    state: Mutex<State>,
    changed: Condvar,
}

impl Pipe {
    fn push(&self, line: Vec<u8>) {
        let mut state = lock(&self.state);
        while !state.closed && state.bytes > 0 && state.bytes + line.len() > MAX_QUEUED {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.closed {
            return;
        }
        state.bytes += line.len();
        state.lines.push_back(line);
        self.changed.notify_all();
    }

    /// The next whole line (without its newline), waiting until `deadline`; `None` at once
    /// once closed.
    pub(super) fn pop(&self, deadline: Instant) -> Option<Vec<u8>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(line) = state.lines.pop_front() {
                state.bytes -= line.len();
                self.changed.notify_all();
                return Some(line);
            }
            if state.closed {
                return None;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, left.min(Duration::from_secs(1)))
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// The reader is gone: queued and later lines are dropped, blocked writers go on.
    pub(super) fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        state.lines.clear();
        state.bytes = 0;
        self.changed.notify_all();
    }
}

/// The `Write` end: complete lines go to the pipe.
pub(super) struct PipeWriter {
    pipe: Arc<Pipe>,
    partial: Vec<u8>,
}

impl PipeWriter {
    pub(super) fn new(pipe: Arc<Pipe>) -> Self {
        PipeWriter {
            pipe,
            partial: Vec::new(),
        }
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&rest[..at]);
            self.pipe.push(line);
            rest = &rest[at + 1..];
        }
        if self.partial.len() + rest.len() > MAX_PARTIAL {
            self.partial = Vec::new();
            return Err(io::Error::other("line too long for the HTTP relay"));
        }
        self.partial.extend_from_slice(rest);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_pass_in_order_and_close_drops() {
        let pipe = Arc::new(Pipe::default());
        let mut w = PipeWriter::new(Arc::clone(&pipe));
        w.write_all(b"one\ntw").expect("write");
        w.write_all(b"o\n").expect("write");
        let soon = || Instant::now() + Duration::from_millis(100);
        assert_eq!(pipe.pop(soon()), Some(b"one".to_vec()));
        assert_eq!(pipe.pop(soon()), Some(b"two".to_vec()));
        assert_eq!(pipe.pop(soon()), None);
        pipe.close();
        w.write_all(b"three\n")
            .expect("write after close is dropped");
        assert_eq!(pipe.pop(soon()), None);
    }

    #[test]
    fn a_full_pipe_blocks_its_writer_until_read() {
        let pipe = Arc::new(Pipe::default());
        let mut w = PipeWriter::new(Arc::clone(&pipe));
        let big = vec![b'x'; MAX_QUEUED - 1];
        w.write_all(&big).expect("partial");
        w.write_all(b"\n").expect("first line fits");
        let writer = std::thread::spawn(move || w.write_all(b"second\n"));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!writer.is_finished(), "the second line waits for room");
        let soon = Instant::now() + Duration::from_millis(100);
        assert_eq!(pipe.pop(soon).map(|l| l.len()), Some(MAX_QUEUED - 1));
        writer.join().expect("join").expect("written");
        let soon = Instant::now() + Duration::from_millis(500);
        assert_eq!(pipe.pop(soon), Some(b"second".to_vec()));
    }
}
