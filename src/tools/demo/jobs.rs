//! Tool calls that wait (sleep, stream, or ask the client) run as a [`Job`] on their own
//! thread, registered by request id so `notifications/cancelled` (or stdin EOF) can stop them;
//! a cancelled job sends no response.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::util::lock;

use super::INTERNAL_ERROR;
use super::connection::{ClientAnswer, Era, Handled, LogGate, Message, RpcError, Shared};
use super::request::Req;

/// A tool call running on its own thread. `None` from its body means "cancelled: send nothing".
pub(super) struct Job {
    pub(super) sh: Arc<Shared>,
    id: Box<RawValue>,
    era: Era,
    log: LogGate,
    key: String,
    serial: u64,
    pub(super) cancel: Receiver<()>,
}

impl Job {
    /// Sleeps `ms` milliseconds; `None` if the request was cancelled meanwhile.
    pub(super) fn sleep(&self, ms: u64) -> Option<()> {
        match self.cancel.recv_timeout(Duration::from_millis(ms)) {
            Err(RecvTimeoutError::Timeout) => Some(()),
            _ => None,
        }
    }

    /// Sends `notifications/message` if the request's log gate lets `level` through.
    pub(super) fn log(&self, level: u8, data: &str) {
        self.sh.log(self.log, level, data);
    }

    /// Sends a request to the client and waits for its answer; `None` if cancelled or at EOF.
    pub(super) fn ask(&self, method: &str, params: Value) -> Option<ClientAnswer> {
        self.ask_all(vec![(method, params)])?.into_iter().next()
    }

    /// Sends several requests to the client at once (as a server may: each has its own id),
    /// then waits for every answer; the answers in the order asked, or `None` if cancelled or
    /// at EOF (the requests still unanswered are then cancelled).
    pub(super) fn ask_all(&self, asks: Vec<(&str, Value)>) -> Option<Vec<ClientAnswer>> {
        let mut waiting = Vec::with_capacity(asks.len());
        for (method, params) in asks {
            let id = format!("demo-{}", self.sh.serial.fetch_add(1, Ordering::Relaxed));
            let (tx, rx) = crossbeam_channel::bounded(1);
            lock(&self.sh.pending).insert(id.clone(), tx);
            let msg = Message {
                jsonrpc: "2.0",
                id: Some(&id),
                method,
                params,
            };
            if let Err(e) = self.sh.write(&msg) {
                log::warn!("demo-server: cannot send {method}: {e}");
                lock(&self.sh.pending).remove(&id);
                self.abandon(waiting.into_iter().map(|(id, _)| id));
                return None;
            }
            waiting.push((id, rx));
        }
        let mut answers = Vec::with_capacity(waiting.len());
        let mut rest = waiting.into_iter();
        while let Some((id, rx)) = rest.next() {
            let answer = crossbeam_channel::select! {
                recv(rx) -> answer => answer.ok(),
                recv(self.cancel) -> _ => None,
            };
            match answer {
                Some(answer) => answers.push(answer),
                None => {
                    self.abandon(std::iter::once(id).chain(rest.map(|(id, _)| id)));
                    return None;
                }
            }
        }
        Some(answers)
    }

    /// Cancels the requests `ids` still waiting for the client's answer.
    fn abandon(&self, ids: impl Iterator<Item = String>) {
        for id in ids {
            if lock(&self.sh.pending).remove(&id).is_some() {
                self.sh.notify(
                    "notifications/cancelled",
                    json!({"requestId": id, "reason": "tool call cancelled"}),
                );
            }
        }
    }

    fn finish(self, outcome: Option<Result<Value, RpcError>>) {
        let mine = {
            let mut inflight = lock(&self.sh.inflight);
            let mine =
                matches!(inflight.get(&self.key), Some((serial, _)) if *serial == self.serial);
            if mine {
                inflight.remove(&self.key);
            }
            mine
        };
        // A cancellation removes the entry, so only a job still registered may answer.
        let written = match outcome {
            Some(Ok(result)) if mine => self.sh.send_result(&self.id, self.era, &result),
            Some(Err(error)) if mine => self.sh.send_error(Some(&self.id), &error),
            _ => Ok(()),
        };
        if let Err(e) = written {
            log::warn!("demo-server: cannot write a response: {e}");
        }
    }
}

pub(super) fn spawn_job(
    req: &Req,
    body: impl FnOnce(&Job) -> Option<Result<Value, RpcError>> + Send + 'static,
) -> Handled {
    let sh = Arc::clone(req.sh);
    let key = req.id.get().to_owned();
    let serial = sh.serial.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = crossbeam_channel::bounded(0);
    lock(&sh.inflight).insert(key.clone(), (serial, tx));
    let job = Job {
        sh: Arc::clone(&sh),
        id: req.id.to_owned(),
        era: req.era,
        log: req.log,
        key: key.clone(),
        serial,
        cancel: rx,
    };
    let spawned = std::thread::Builder::new()
        .name("demo-job".into())
        .spawn(move || {
            let outcome = body(&job);
            job.finish(outcome);
        });
    if let Err(e) = spawned {
        lock(&sh.inflight).remove(&key);
        return Err(
            RpcError::new(INTERNAL_ERROR, format!("cannot start a worker thread: {e}")).into(),
        );
    }
    Ok(())
}
