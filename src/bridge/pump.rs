//! An upstream stream that cannot wait with a timeout (an HTTP upstream's SSE body blocks in
//! its read), read by a thread of its own so that a bridged call can: gather the input
//! requests the upstream makes together into one round ([`super::mrtr::COLLECT`]), and answer
//! at once when the upstream does (so a -32021 is an HTTP 400, not the first event of a 200
//! stream).
//!
//! Bounded: one item waits in the channel and one in the thread's hand (the stream itself
//! reads one event at a time), so the upstream connection is still slowed by a slow reader,
//! as without the thread. The thread ends with the stream (its final message, its end or an
//! error), or at the first item after the reader is gone: a bridged call dropped unfinished is
//! cancelled upstream, whose stream then ends. Used for bridged calls that may ask their
//! client (at most the running capable bridge sessions plus the parked calls).
//!
//! Owns: that thread and its hand-over. Must not touch: what the items mean (`mrtr.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};

use crate::error::Error;
use crate::upstream::{Item, MessageStream, Poll};

/// The reading thread's stack (it parses SSE events and nothing else).
const STACK: usize = 256 * 1024;
/// How long the thread asks the stream to wait each time (such a stream blocks anyway).
const LONG: Duration = Duration::from_secs(3600);

/// `inner`, read by its own thread.
pub struct Pumped {
    rx: Receiver<Result<Poll, Error>>,
    done: bool,
    /// Set when the reader is gone (the thread checks it between keep-alives too).
    gone: Arc<AtomicBool>,
}

impl Pumped {
    /// Starts reading `inner` on a thread.
    pub fn start(mut inner: Box<dyn MessageStream>) -> Result<Pumped, Error> {
        let (tx, rx) = bounded(1);
        let gone = Arc::new(AtomicBool::new(false));
        let left = gone.clone();
        std::thread::Builder::new()
            .name("shadowcat-pump".into())
            .stack_size(STACK)
            .spawn(move || {
                loop {
                    let polled = inner.poll_until(Instant::now() + LONG);
                    let last = !matches!(polled, Ok(Poll::Item(Item::Message(_)) | Poll::Idle));
                    if matches!(polled, Ok(Poll::Idle)) {
                        if left.load(Ordering::Acquire) {
                            break;
                        }
                        continue;
                    }
                    if tx.send(polled).is_err() || last {
                        break;
                    }
                }
            })
            .map_err(Error::Io)?;
        Ok(Pumped {
            rx,
            done: false,
            gone,
        })
    }
}

impl Drop for Pumped {
    fn drop(&mut self) {
        self.gone.store(true, Ordering::Release);
    }
}

impl MessageStream for Pumped {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        if self.done {
            return Ok(Poll::End);
        }
        match self.rx.recv_deadline(wake) {
            Ok(Ok(Poll::Item(Item::Message(m)))) => Ok(Poll::Item(Item::Message(m))),
            Ok(Ok(Poll::Idle)) | Err(RecvTimeoutError::Timeout) => Ok(Poll::Idle),
            Ok(last) => {
                self.done = true;
                last
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.done = true;
                Err(Error::UpstreamProtocol(
                    "upstream stream ended without answering".into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that blocks (sleeps) before each item, as an HTTP body does.
    struct Slow(Vec<Item>);

    impl MessageStream for Slow {
        fn poll_until(&mut self, _wake: Instant) -> Result<Poll, Error> {
            std::thread::sleep(Duration::from_millis(20));
            Ok(match self.0.pop() {
                Some(i) => Poll::Item(i),
                None => Poll::End,
            })
        }

        fn must_stream(&self) -> bool {
            true
        }
    }

    #[test]
    fn waits_with_a_timeout_then_hands_everything_over_in_order() {
        let items = vec![Item::Final(b"f".to_vec()), Item::Message(b"m".to_vec())];
        let mut p = Pumped::start(Box::new(Slow(items))).unwrap();
        assert!(!p.must_stream());
        let mut got = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(10);
        while Instant::now() < give_up {
            match p.poll_until(Instant::now()).unwrap() {
                Poll::Idle => std::thread::sleep(Duration::from_millis(1)),
                Poll::Item(Item::Message(m)) => got.push(m),
                Poll::Item(Item::Final(f)) => {
                    got.push(f);
                    break;
                }
                Poll::End => break,
            }
        }
        assert_eq!(got, vec![b"m".to_vec(), b"f".to_vec()]);
        assert!(matches!(p.poll_until(Instant::now()), Ok(Poll::End)));
    }
}
