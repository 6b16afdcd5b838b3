//! `subscriptions/listen` for a session-era upstream, served by the proxy.
//!
//! Every listener follows the standalone stream of the bridge's plain session (the upstream's
//! list changes and resource updates reach it as they reach any session's GET stream). The
//! stream opens with `notifications/subscriptions/acknowledged`, then carries the
//! notifications the listener asked for, each tagged with its subscription id in
//! `_meta["io.modelcontextprotocol/subscriptionId"]`: `toolsListChanged`,
//! `promptsListChanged`, `resourcesListChanged` map to the session-era `list_changed`
//! notifications; `resourceSubscriptions` to `resources/subscribe` upstream, sent once per
//! URI however many listeners want it, and released (`resources/unsubscribe`) when its last
//! listener leaves. It ends with a complete result when the proxy shuts down; a client that
//! leaves is noticed at the next keep-alive, which ends the stream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::jsonrpc::Message;
use crate::session::Session;
use crate::stream::EventLog;
use crate::upstream::{Call, Item, MessageStream, Poll, Upstream};
use crate::util::lock;

/// The `_meta` key of a listen stream's subscription id.
pub const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";
/// Resource URIs one listener may ask for.
const MAX_URIS: usize = 256;
/// Longest resource URI taken.
const MAX_URI: usize = 2048;

/// What a listener asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: Vec<String>,
}

impl Filter {
    /// Reads `params.notifications` of a `subscriptions/listen` request.
    pub fn of(params: Option<&Value>) -> Result<Filter, Error> {
        let n = params.and_then(|p| p.get("notifications"));
        let flag = |k: &str| n.and_then(|n| n.get(k)).and_then(Value::as_bool) == Some(true);
        let mut uris = Vec::new();
        if let Some(list) = n.and_then(|n| n.get("resourceSubscriptions")) {
            let Some(list) = list.as_array() else {
                return Err(Error::InvalidParams(
                    "resourceSubscriptions must be an array of URIs".into(),
                ));
            };
            if list.len() > MAX_URIS {
                return Err(Error::InvalidParams(format!(
                    "at most {MAX_URIS} resourceSubscriptions"
                )));
            }
            for u in list {
                match u.as_str() {
                    Some(u) if u.len() <= MAX_URI => uris.push(u.to_owned()),
                    _ => {
                        return Err(Error::InvalidParams(
                            "resourceSubscriptions must be URIs".into(),
                        ));
                    }
                }
            }
        }
        uris.sort();
        uris.dedup();
        Ok(Filter {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris,
        })
    }

    /// The granted filter, as the acknowledgement echoes it.
    fn granted(&self) -> Value {
        let mut m = Map::new();
        if self.tools {
            m.insert("toolsListChanged".into(), Value::Bool(true));
        }
        if self.prompts {
            m.insert("promptsListChanged".into(), Value::Bool(true));
        }
        if self.resources {
            m.insert("resourcesListChanged".into(), Value::Bool(true));
        }
        if !self.uris.is_empty() {
            m.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(m)
    }

    /// True when a session-era notification is one the listener asked for.
    fn wants(&self, msg: &Value) -> bool {
        match msg["method"].as_str() {
            Some("notifications/tools/list_changed") => self.tools,
            Some("notifications/prompts/list_changed") => self.prompts,
            Some("notifications/resources/list_changed") => self.resources,
            Some("notifications/resources/updated") => msg["params"]["uri"]
                .as_str()
                .is_some_and(|u| self.uris.iter().any(|x| x == u)),
            _ => false,
        }
    }
}

/// Upstream resource subscriptions shared by the listeners: one per URI.
#[derive(Default)]
pub struct Subscriptions {
    count: Mutex<HashMap<String, usize>>,
}

impl Subscriptions {
    /// Adds a listener of `uris`; the first listener of a URI subscribes upstream.
    fn add(&self, uris: &[String], up: &Upstream2<'_>) -> Result<(), Error> {
        for (i, u) in uris.iter().enumerate() {
            let first = {
                let mut m = lock(&self.count);
                let n = m.entry(u.clone()).or_insert(0);
                *n += 1;
                *n == 1
            };
            if first && let Err(e) = up.request("resources/subscribe", u) {
                self.remove(&uris[..=i], up);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes a listener of `uris`; the last one unsubscribes upstream.
    fn remove(&self, uris: &[String], up: &Upstream2<'_>) {
        for u in uris {
            let last = {
                let mut m = lock(&self.count);
                match m.get_mut(u) {
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        false
                    }
                    Some(_) => {
                        m.remove(u);
                        true
                    }
                    None => false,
                }
            };
            if last && let Err(e) = up.request("resources/unsubscribe", u) {
                log::debug!("bridge: resources/unsubscribe failed: {e}");
            }
        }
    }
}

/// The upstream and the plain session, for (un)subscribing.
struct Upstream2<'a> {
    upstream: &'a dyn Upstream,
    session: &'a Arc<Session>,
    version: &'static str,
}

impl Upstream2<'_> {
    /// Sends `method {uri}` in the session and waits for its answer.
    fn request(&self, method: &str, uri: &str) -> Result<(), Error> {
        let body = json!({"jsonrpc":"2.0","id":format!("shadowcat-listen-{method}"),
            "method":method,"params":{"uri":uri}});
        let deadline = Instant::now() + Duration::from_secs(10);
        let reply = self.upstream.forward(Call {
            msg: Message::parse(body.to_string().as_bytes())?,
            session: Some(self.session),
            deadline,
            headers: vec![("MCP-Protocol-Version".to_owned(), self.version.to_owned())],
        })?;
        super::legacy::final_body(reply, deadline).map(drop)
    }
}

/// One listener's stream.
pub struct Listen {
    upstream: Arc<dyn Upstream>,
    session: Arc<Session>,
    version: &'static str,
    subs: Arc<Subscriptions>,
    log: Arc<EventLog>,
    seq: u64,
    filter: Filter,
    id: Value,
    queue: VecDeque<Vec<u8>>,
    done: bool,
}

impl Listen {
    /// Starts listening for `filter` on `session` (the bridge's plain session), answering
    /// request `id`.
    pub fn start(
        upstream: Arc<dyn Upstream>,
        session: Arc<Session>,
        version: &'static str,
        subs: Arc<Subscriptions>,
        filter: Filter,
        id: Value,
    ) -> Result<Listen, Error> {
        let log = session.streams.standalone();
        upstream.listen(&session)?;
        let seq = log.last_seq();
        subs.add(
            &filter.uris,
            &Upstream2 {
                upstream: upstream.as_ref(),
                session: &session,
                version,
            },
        )?;
        let ack = json!({"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged",
            "params":{"_meta":{META_SUBSCRIPTION: id},"notifications":filter.granted()}});
        Ok(Listen {
            upstream,
            session,
            version,
            subs,
            log,
            seq,
            filter,
            id,
            queue: VecDeque::from([ack.to_string().into_bytes()]),
            done: false,
        })
    }

    /// Queues the wanted notifications of one logged SSE frame, tagged.
    fn take(&mut self, frame: &[u8]) {
        let text = String::from_utf8_lossy(frame);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        let Ok(mut msg) = serde_json::from_str::<Value>(&data.join("\n")) else {
            return;
        };
        if !self.filter.wants(&msg) {
            return;
        }
        if !msg["params"].is_object() {
            msg["params"] = json!({});
        }
        if !msg["params"]["_meta"].is_object() {
            msg["params"]["_meta"] = json!({});
        }
        msg["params"]["_meta"][META_SUBSCRIPTION] = self.id.clone();
        self.queue.push_back(msg.to_string().into_bytes());
    }
}

impl MessageStream for Listen {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        loop {
            if let Some(m) = self.queue.pop_front() {
                return Ok(Poll::Item(Item::Message(m)));
            }
            if self.done {
                return Ok(Poll::End);
            }
            let w = self.log.wait(self.seq, 0, wake);
            for e in &w.events {
                self.seq = e.seq;
                self.take(&e.frame);
            }
            if w.ended || w.replaced {
                self.done = true;
                let end = json!({"jsonrpc":"2.0","id":self.id,
                    "result":{"resultType":"complete","_meta":{META_SUBSCRIPTION: self.id}}});
                return Ok(Poll::Item(Item::Final(end.to_string().into_bytes())));
            }
            if self.queue.is_empty() && Instant::now() >= wake {
                return Ok(Poll::Idle);
            }
        }
    }

    fn must_stream(&self) -> bool {
        true
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        self.subs.remove(
            &self.filter.uris,
            &Upstream2 {
                upstream: self.upstream.as_ref(),
                session: &self.session,
                version: self.version,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_acks() {
        let p = json!({"notifications":{"toolsListChanged":true,
            "resourceSubscriptions":["b://x","a://y","a://y"]}});
        let f = Filter::of(Some(&p)).unwrap();
        assert_eq!(
            f.granted(),
            json!({"toolsListChanged":true,"resourceSubscriptions":["a://y","b://x"]})
        );
        assert!(f.wants(&json!({"method":"notifications/tools/list_changed"})));
        assert!(!f.wants(&json!({"method":"notifications/prompts/list_changed"})));
        assert!(
            f.wants(&json!({"method":"notifications/resources/updated","params":{"uri":"a://y"}}))
        );
        assert!(
            !f.wants(&json!({"method":"notifications/resources/updated","params":{"uri":"c://"}}))
        );
        let bad = json!({"notifications":{"resourceSubscriptions":"a://y"}});
        assert_eq!(Filter::of(Some(&bad)).unwrap_err().rpc_code(), -32602);
        assert_eq!(Filter::of(None).unwrap(), Filter::default());
    }
}
