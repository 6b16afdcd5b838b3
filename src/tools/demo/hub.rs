//! What all connections of one demo server share ([`Hub`]): the watched resource and the open
//! 2026-07-28 `subscriptions/listen` streams, with the change notifications delivered to the
//! listeners whose filter asks for them, each tagged with
//! `_meta["io.modelcontextprotocol/subscriptionId"]` (the listen request's id).
//!
//! Owns: the listener table and its delivery. Must not touch: connections themselves
//! (`connection.rs` holds the hub; the hub reaches a connection only through [`Subscriber`]) or
//! the listen request (`listen.rs`).

use std::sync::{Arc, Mutex, Weak};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::util::lock;

/// A connection as the hub sees it: something a notification can be sent to.
pub(super) trait Subscriber: Send + Sync {
    /// Sends notification `method` with `params`.
    fn notify_value(&self, method: &str, params: Value);
}

/// Listen streams one server keeps at once; beyond, `subscriptions/listen` is refused.
pub(super) const MAX_LISTENERS: usize = 256;

/// The kinds of change a listener may ask for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Change {
    Tools,
    Prompts,
    /// `notifications/resources/updated` for one URI.
    Updated,
}

impl Change {
    pub(super) fn method(self) -> &'static str {
        match self {
            Change::Tools => "notifications/tools/list_changed",
            Change::Prompts => "notifications/prompts/list_changed",
            Change::Updated => "notifications/resources/updated",
        }
    }
}

#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct Filter {
    #[serde(rename = "toolsListChanged", default)]
    pub(super) tools: bool,
    #[serde(rename = "promptsListChanged", default)]
    pub(super) prompts: bool,
    #[serde(rename = "resourcesListChanged", default)]
    pub(super) resources: bool,
    #[serde(rename = "resourceSubscriptions", default)]
    pub(super) uris: Vec<String>,
}

pub(super) struct Listener {
    /// The listen request's raw JSON id (also its subscription id).
    pub(super) id: Box<RawValue>,
    pub(super) filter: Filter,
    pub(super) sh: Weak<dyn Subscriber>,
}

/// State shared by every connection of one demo server.
pub(super) struct Hub {
    pub(super) watched: Mutex<String>,
    pub(super) listeners: Mutex<Vec<Listener>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            watched: Mutex::new("Watched resource content".to_owned()),
            listeners: Mutex::new(Vec::new()),
        }
    }
}

impl Hub {
    /// Sends `change` to every listener that asked for it (`uri` for [`Change::Updated`]).
    pub(super) fn broadcast(&self, change: Change, uri: Option<&str>) {
        let targets: Vec<(Arc<dyn Subscriber>, Box<RawValue>)> = {
            let mut listeners = lock(&self.listeners);
            listeners.retain(|l| l.sh.strong_count() > 0);
            listeners
                .iter()
                .filter(|l| match change {
                    Change::Tools => l.filter.tools,
                    Change::Prompts => l.filter.prompts,
                    Change::Updated => uri.is_some_and(|u| l.filter.uris.iter().any(|x| x == u)),
                })
                .filter_map(|l| Some((l.sh.upgrade()?, l.id.clone())))
                .collect()
        };
        for (sh, id) in targets {
            let mut params = Map::new();
            params.insert("_meta".into(), subscription_meta(&id));
            if let Some(uri) = uri {
                params.insert("uri".into(), json!(uri));
            }
            sh.notify_value(change.method(), Value::Object(params));
        }
    }

    /// Ends the listen stream `id` of connection `sh` (its client cancelled it). True if it
    /// was open.
    pub(super) fn cancel<S: Subscriber>(&self, sh: &S, id: &str) -> bool {
        let mut listeners = lock(&self.listeners);
        let before = listeners.len();
        listeners.retain(|l| !(is(l, sh) && l.id.get() == id));
        before != listeners.len()
    }

    /// Ends every listen stream of connection `sh` (it closed).
    pub(super) fn drop_connection<S: Subscriber>(&self, sh: &S) {
        lock(&self.listeners).retain(|l| !is(l, sh));
    }
}

/// Whether listener `l` belongs to connection `sh`.
fn is<S: Subscriber>(l: &Listener, sh: &S) -> bool {
    std::ptr::eq(l.sh.as_ptr() as *const (), sh as *const S as *const ())
}

pub(super) fn subscription_meta(id: &RawValue) -> Value {
    let id: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
    json!({"io.modelcontextprotocol/subscriptionId": id})
}
