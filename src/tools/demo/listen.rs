//! What all connections of one demo server share ([`Hub`]: the watched resource and the open
//! 2026-07-28 `subscriptions/listen` streams), the `subscriptions/listen` request itself, and
//! the change notifications (`notifications/{tools,prompts,resources}/list_changed`,
//! `notifications/resources/updated`) delivered to the listeners whose filter asks for them,
//! each tagged with `_meta["io.modelcontextprotocol/subscriptionId"]` (the listen request's id).
//!
//! Over stdio one process is one connection; over HTTP (`--http`) every request has its own
//! [`Shared`] and a listener's notifications are written to the stream of its own request.

use std::sync::{Arc, Mutex, Weak};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::util::lock;

use super::connection::{Handled, RpcError, Shared};
use super::request::Req;
use super::{INVALID_REQUEST, WATCHED_URI};

/// Listen streams one server keeps at once; beyond, `subscriptions/listen` is refused.
pub(super) const MAX_LISTENERS: usize = 256;
/// Resource URIs one listen request may name.
const MAX_URIS: usize = 64;

/// The kinds of change a listener may ask for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Change {
    Tools,
    Prompts,
    /// `notifications/resources/updated` for one URI.
    Updated,
}

impl Change {
    fn method(self) -> &'static str {
        match self {
            Change::Tools => "notifications/tools/list_changed",
            Change::Prompts => "notifications/prompts/list_changed",
            Change::Updated => "notifications/resources/updated",
        }
    }
}

#[derive(Deserialize, Default, Clone, Debug)]
struct Filter {
    #[serde(rename = "toolsListChanged", default)]
    tools: bool,
    #[serde(rename = "promptsListChanged", default)]
    prompts: bool,
    #[serde(rename = "resourcesListChanged", default)]
    resources: bool,
    #[serde(rename = "resourceSubscriptions", default)]
    uris: Vec<String>,
}

struct Listener {
    /// The listen request's raw JSON id (also its subscription id).
    id: Box<RawValue>,
    filter: Filter,
    sh: Weak<Shared>,
}

/// State shared by every connection of one demo server.
pub(super) struct Hub {
    pub(super) watched: Mutex<String>,
    listeners: Mutex<Vec<Listener>>,
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
        let targets: Vec<(Arc<Shared>, Box<RawValue>)> = {
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
            sh.notify(change.method(), Value::Object(params));
        }
    }

    /// Ends the listen stream `id` of connection `sh` (its client cancelled it). True if it
    /// was open.
    pub(super) fn cancel(&self, sh: &Shared, id: &str) -> bool {
        let mut listeners = lock(&self.listeners);
        let before = listeners.len();
        listeners.retain(|l| !(std::ptr::eq(l.sh.as_ptr(), sh) && l.id.get() == id));
        before != listeners.len()
    }

    /// Ends every listen stream of connection `sh` (it closed).
    pub(super) fn drop_connection(&self, sh: &Shared) {
        lock(&self.listeners).retain(|l| !std::ptr::eq(l.sh.as_ptr(), sh));
    }
}

fn subscription_meta(id: &RawValue) -> Value {
    let id: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
    json!({"io.modelcontextprotocol/subscriptionId": id})
}

/// `subscriptions/listen`: acknowledges with the honoured filter (first, tagged), then keeps
/// the request open (no response) until the client cancels it or the connection ends.
pub(super) fn listen(req: &Req) -> Handled {
    #[derive(Deserialize)]
    struct Listen {
        #[serde(default)]
        notifications: Option<Filter>,
    }
    let listen: Listen = req.parse()?;
    let filter = listen.notifications.unwrap_or_default();
    if filter.uris.len() > MAX_URIS {
        let msg = format!("at most {MAX_URIS} resourceSubscriptions per listen request");
        return Err(RpcError::params(msg).into());
    }
    // Only the watched resource ever changes, and the resource list never does; both are
    // honoured, and simply never notified.
    let mut honoured = Map::new();
    for (key, on) in [
        ("toolsListChanged", filter.tools),
        ("promptsListChanged", filter.prompts),
        ("resourcesListChanged", filter.resources),
    ] {
        if on {
            honoured.insert(key.into(), json!(true));
        }
    }
    if !filter.uris.is_empty() {
        honoured.insert("resourceSubscriptions".into(), json!(filter.uris));
    }
    {
        let mut listeners = lock(&req.sh.hub.listeners);
        listeners.retain(|l| l.sh.strong_count() > 0);
        if listeners.len() >= MAX_LISTENERS {
            let msg =
                format!("too many open subscriptions/listen streams (at most {MAX_LISTENERS})");
            return Err(RpcError::new(INVALID_REQUEST, msg).into());
        }
        // Acknowledge under the lock, so no notification of this stream can come first.
        req.sh.notify(
            "notifications/subscriptions/acknowledged",
            json!({"_meta": subscription_meta(req.id), "notifications": honoured}),
        );
        listeners.push(Listener {
            id: req.id.to_owned(),
            filter,
            sh: Arc::downgrade(req.sh),
        });
    }
    log::debug!("demo-server: subscriptions/listen {} open", req.id.get());
    Ok(())
}

/// The watched resource changed: legacy subscribers and matching listeners hear of it.
pub(super) fn watched_changed(sh: &Shared) {
    if lock(&sh.subscriptions).contains(WATCHED_URI) {
        sh.notify(
            "notifications/resources/updated",
            json!({"uri": WATCHED_URI}),
        );
    }
    sh.hub.broadcast(Change::Updated, Some(WATCHED_URI));
}
