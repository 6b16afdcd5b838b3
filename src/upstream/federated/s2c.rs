//! Server-to-client requests made during a call, and the client's answers to them.
//!
//! Two members may both ask the client something with the same id (each numbers its own
//! requests). On a call's stream the federation renames such a request's id to
//! `"fed:<member>:<id as JSON>"`; the client's answer with that id goes to that member alone,
//! with its own id back. Requests a member sends on the standalone stream pass as they are
//! (the federation does not see them), and answers with any other id go to every member.

use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::Error;
use crate::jsonrpc;
use crate::upstream::{Item, MessageStream, Poll};

const TAG: &str = "fed:";

/// A member's call stream with the ids of its requests to the client renamed, ending at
/// the member's own deadline if it has one; the call counts as in flight on its member until
/// the stream is dropped.
pub struct Tagged {
    pub inner: Box<dyn MessageStream>,
    pub member: usize,
    pub until: Option<Until>,
    pub _counted: super::InFlight,
}

/// A member's own deadline (its `request-timeout`), sooner than the request's.
pub struct Until {
    pub until: Instant,
    pub member: String,
    pub after: Duration,
}

impl Until {
    fn expired(&self) -> Error {
        Error::MemberTimeout {
            member: self.member.clone(),
            after: self.after,
        }
    }
}

impl MessageStream for Tagged {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        let wake = self.until.as_ref().map_or(wake, |u| wake.min(u.until));
        match (self.inner.poll_until(wake), &self.until) {
            // The inner stream was given the member's deadline: its timeout is the member's.
            (Err(Error::Timeout), Some(u)) => Err(u.expired()),
            // A stream that does not keep a deadline itself (an HTTP member's).
            (Ok(Poll::Idle), Some(u)) if Instant::now() >= u.until => Err(u.expired()),
            (Ok(Poll::Item(Item::Message(m))), _) => {
                Ok(Poll::Item(Item::Message(tag(m, self.member))))
            }
            (other, _) => other,
        }
    }

    fn must_stream(&self) -> bool {
        self.inner.must_stream()
    }

    fn dropped(&mut self) -> u64 {
        self.inner.dropped()
    }
}

/// `message` with its id renamed when it is a request (it has a method and an id).
fn tag(message: Vec<u8>, member: usize) -> Vec<u8> {
    // Progress and log notifications, the usual items, carry no id: not parsed.
    if !message.windows(4).any(|w| w == b"\"id\"") {
        return message;
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(&message) else {
        return message;
    };
    let (Some(id), true) = (v.get("id"), v.get("method").is_some()) else {
        return message;
    };
    let renamed = format!("{TAG}{member}:{id}");
    v["id"] = Value::String(renamed);
    serde_json::to_vec(&v).unwrap_or(message)
}

/// The member and its own id, when `id` is one the federation renamed.
pub fn untag(id: &RawValue) -> Option<(usize, Box<RawValue>)> {
    let text: String = serde_json::from_str(id.get()).ok()?;
    let (member, original) = text.strip_prefix(TAG)?.split_once(':')?;
    let member = member.parse().ok()?;
    serde_json::from_str::<&RawValue>(original).ok()?;
    Some((member, jsonrpc::raw(original.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_renamed_and_come_back() {
        let asked = br#"{"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{}}"#;
        let v: Value = serde_json::from_slice(&tag(asked.to_vec(), 2)).expect("JSON");
        assert_eq!(v["id"], "fed:2:0");
        let id = jsonrpc::raw(v["id"].to_string());
        let (member, original) = untag(&id).expect("ours");
        assert_eq!((member, original.get()), (2, "0"));

        let asked = br#"{"jsonrpc":"2.0","id":"a:b","method":"roots/list"}"#;
        let v: Value = serde_json::from_slice(&tag(asked.to_vec(), 0)).expect("JSON");
        let (_, original) = untag(&jsonrpc::raw(v["id"].to_string())).expect("ours");
        assert_eq!(original.get(), r#""a:b""#);

        let progress = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#;
        assert_eq!(tag(progress.to_vec(), 1), progress.to_vec());
        let answer = br#"{"jsonrpc":"2.0","id":3,"result":{}}"#;
        assert_eq!(tag(answer.to_vec(), 1), answer.to_vec());
        assert!(untag(&jsonrpc::raw("7".into())).is_none());
        assert!(untag(&jsonrpc::raw(r#""fed:x:1""#.into())).is_none());
    }
}
