//! Fault and mock rules in the pipeline (`crate::fault`): applied to a request just before it
//! would be forwarded (session requests, stateless requests, and `initialize` when a rule
//! names it). A hit is counted (`shadowcat_fault_hits_total{rule,action}`) and noted in the
//! request's [`Access`], so its answer is marked on the tape (`"fault"`, and `"synthetic"`
//! when the proxy made the answer) and in the audit line.

use std::time::Instant;

use crate::error::Error;
use crate::fault::Decision;
use crate::jsonrpc::{Kind, Message};
use crate::upstream::{MessageStream, Poll, Reply};

use super::{Access, Proxy};

impl Proxy {
    /// What the rules make of `msg`: `None` to forward it (after a `delay` rule's wait, at most
    /// until `deadline`), or the reply that takes the upstream's place. Without rules: one
    /// branch.
    pub(super) fn fault(
        &self,
        msg: &Message,
        kind: Kind,
        deadline: Instant,
        acc: &mut Access,
    ) -> Option<Reply> {
        let faults = self.faults.as_ref()?;
        if kind != Kind::Request {
            return None;
        }
        let hit = faults.decide(msg)?;
        self.metrics.fault_hit(hit.index);
        acc.fault = Some(hit.label);
        match hit.decision {
            Decision::Delay(d) => {
                // On this worker: a fault for tests, bounded by the request's deadline.
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(d.min(left));
                None
            }
            Decision::Answer(body) => {
                acc.synthetic = true;
                Some(Reply::Message(body))
            }
            Decision::Drop => {
                acc.synthetic = true;
                Some(Reply::Stream(Box::new(Dropped { deadline })))
            }
        }
    }
}

/// A request a `drop` rule took: its stream stays silent (keep-alives only; no worker held)
/// until the request's deadline, then ends as a timed-out upstream request would.
struct Dropped {
    deadline: Instant,
}

impl MessageStream for Dropped {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(Error::Timeout);
        }
        std::thread::sleep(wake.min(self.deadline).saturating_duration_since(now));
        if Instant::now() >= self.deadline {
            return Err(Error::Timeout);
        }
        Ok(Poll::Idle)
    }

    fn must_stream(&self) -> bool {
        true
    }
}
