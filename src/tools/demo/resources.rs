//! Resources: the `test://` resources (static text and binary, the watched resource that
//! `update_watched` changes, the embedded ones), the `test://template/{id}/data` template, and
//! subscriptions.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::util::lock;

use super::connection::{Empty, Era, Handled, RpcError};
use super::request::Req;
use super::{INVALID_PARAMS, PNG_1X1, RESOURCE_NOT_FOUND, WATCHED_URI};

pub(super) fn resources_list() -> Value {
    let entry = |name: &str, title: &str, description: &str, mime: &str| {
        let uri = format!("test://{name}");
        json!({
            "uri": uri, "name": name, "title": title, "description": description,
            "mimeType": mime,
        })
    };
    json!({"resources": [
        entry("static-text", "Static Text Resource", "A static text resource for testing",
            "text/plain"),
        entry("static-binary", "Static Binary Resource",
            "A static binary resource (image) for testing", "image/png"),
        entry("watched-resource", "Watched Resource",
            "Changes when the update_watched tool runs; supports subscriptions", "text/plain"),
        entry("embedded-resource", "Embedded Resource",
            "The resource test_embedded_resource embeds", "text/plain"),
        entry("example-resource", "Example Resource", "An example text resource", "text/plain"),
    ]})
}

pub(super) fn read_resource(req: &Req) -> Handled {
    #[derive(Deserialize)]
    struct Read<'a> {
        #[serde(borrow)]
        uri: Cow<'a, str>,
    }
    let read: Read = req.parse()?;
    let uri = &*read.uri;
    let text = |mime: &str, text: &str| {
        json!({"contents": [{
            "uri": uri, "mimeType": mime, "text": text,
        }]})
    };
    let template_id = uri
        .strip_prefix("test://template/")
        .and_then(|rest| rest.strip_suffix("/data"))
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let result = match uri {
        "test://static-text" => text(
            "text/plain",
            "This is the content of the static text resource.",
        ),
        "test://static-binary" => {
            json!({"contents": [{"uri": uri, "mimeType": "image/png", "blob": PNG_1X1}]})
        }
        WATCHED_URI => text("text/plain", &lock(&req.sh.hub.watched)),
        "test://embedded-resource" => text("text/plain", "This is an embedded resource content."),
        "test://example-resource" => text("text/plain", "Embedded resource content for testing."),
        "test://mixed-content-resource" => {
            text("application/json", r#"{"test":"data","value":123}"#)
        }
        _ => match template_id {
            Some(id) => {
                let body =
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                text("application/json", &body.to_string())
            }
            None => {
                let code = if matches!(req.era, Era::Modern { .. }) {
                    INVALID_PARAMS
                } else {
                    RESOURCE_NOT_FOUND
                };
                let mut error = RpcError::new(code, format!("Resource not found: {uri}"));
                error.data = Some(json!({"uri": uri}));
                return Err(error.into());
            }
        },
    };
    req.reply(&result)
}

pub(super) fn subscribe(req: &Req, on: bool) -> Handled {
    #[derive(Deserialize)]
    struct Sub {
        uri: String,
    }
    let sub: Sub = req.parse()?;
    let mut subscriptions = lock(&req.sh.subscriptions);
    if on {
        subscriptions.insert(sub.uri);
    } else {
        subscriptions.remove(&sub.uri);
    }
    drop(subscriptions);
    req.reply(&Empty {})
}
