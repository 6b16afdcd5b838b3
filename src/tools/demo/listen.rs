//! The `subscriptions/listen` request (its listeners live in the hub, `hub.rs`) and the watched
//! resource's change notifications (`notifications/resources/updated`).
//!
//! Over stdio one process is one connection; over HTTP (`--http`) every request has its own
//! [`Shared`] and a listener's notifications are written to the stream of its own request.

use serde::Deserialize;
use serde_json::{Map, json};

use crate::util::lock;

use super::connection::{Handled, RpcError, Shared};
use super::hub::{Change, Filter, Listener, MAX_LISTENERS, subscription_meta};
use super::request::Req;
use super::{INVALID_REQUEST, WATCHED_URI};

/// Resource URIs one listen request may name.
const MAX_URIS: usize = 64;

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
            sh: std::sync::Arc::downgrade(req.sh) as std::sync::Weak<Shared>,
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
