//! Small helpers every part may use: they depend on nothing else in the crate.
//!
//! Owns: poison-tolerant locking and bounded line reading. Must not touch: anything of the
//! proxy's own types; a helper that needs one belongs beside that type instead.

use std::io::{self, BufRead};
use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data consistent.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A line without its trailing CR and LF bytes.
pub fn trim_line(mut l: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    l
}

/// Reads one line into `buf` (newline included), refusing lines longer than `max`.
/// Returns the bytes read; 0 at EOF.
pub fn read_line_bounded<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    let mut n = 0;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(n);
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max.saturating_add(1) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line longer than {max} bytes"),
            ));
        }
        buf.extend_from_slice(&available[..take]);
        r.consume(take);
        n += take;
        if done {
            return Ok(n);
        }
    }
}
