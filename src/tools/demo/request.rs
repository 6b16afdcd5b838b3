//! One request as its handlers see it: [`Req`] (the connection, the raw id, the era, the raw
//! params) and how it is read ([`ReqMeta`], the request's `_meta`; [`parse_args`]) and
//! answered (its [`Req::reply`], and the plain tool results [`text_result`] and
//! [`error_result`]). Every handler file imports this; it imports only `connection.rs`.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::connection::{Era, Handled, LogGate, RpcError, Shared};

#[derive(Deserialize, Default)]
pub(super) struct ReqMeta<'a> {
    #[serde(rename = "progressToken", borrow, default)]
    pub(super) progress_token: Option<&'a RawValue>,
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow, default)]
    pub(super) version: Option<Cow<'a, str>>,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities", default)]
    pub(super) capabilities: Option<Value>,
    #[serde(rename = "io.modelcontextprotocol/logLevel", borrow, default)]
    pub(super) log_level: Option<Cow<'a, str>>,
}

/// One request being handled on the reader thread.
pub(super) struct Req<'a> {
    pub(super) sh: &'a Arc<Shared>,
    pub(super) id: &'a RawValue,
    pub(super) era: Era,
    pub(super) params: Option<&'a RawValue>,
    /// 2026-07-28 requests: the client capabilities their `_meta` declared.
    pub(super) caps: Option<Value>,
    pub(super) log: LogGate,
}

impl<'a> Req<'a> {
    /// Whether the client declared `capability` (`sampling`, `elicitation`, `roots`): from the
    /// request's `_meta` in the 2026-07-28 era, else from `initialize` (before it: yes).
    pub(super) fn declared(&self, capability: &str) -> bool {
        match &self.caps {
            Some(caps) => caps.get(capability).is_some_and(Value::is_object),
            None => {
                let session = crate::util::lock(&self.sh.session);
                session.version.is_none() || session.capabilities.get(capability).is_some()
            }
        }
    }

    pub(super) fn reply<T: Serialize>(&self, result: &T) -> Handled {
        Ok(self.sh.send_result(self.id, self.era, result)?)
    }

    pub(super) fn parse<T: Deserialize<'a>>(&self) -> Result<T, RpcError> {
        parse_args(self.params)
    }
}

pub(super) fn parse_args<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Result<T, RpcError> {
    serde_json::from_str(raw.map_or("{}", RawValue::get))
        .map_err(|e| RpcError::params(format!("Invalid params: {e}")))
}

pub(super) fn text_result(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}]})
}

pub(super) fn error_result(text: impl Into<String>) -> Value {
    json!({"isError": true, "content": [{"type": "text", "text": text.into()}]})
}
