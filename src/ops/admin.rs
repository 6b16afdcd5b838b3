//! Operating a running proxy: `/healthz`, `/readyz` and `/metrics` on the main listener, and
//! the JSON admin API on its own listener (`--admin-bind`).
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 when the upstream can take traffic, else 503 with a JSON reason |
//! | `GET /metrics` | Prometheus text format 0.0.4 (see [`crate::metrics`]) |
//! | `GET /admin/sessions` | every session: id prefix, upstream, child, version, ages, in-flight, streams |
//! | `DELETE /admin/sessions/{id}` | ends the session (full id or a unique prefix of 8+ characters); its client's next request gets 404 |
//! | `GET /admin/upstreams` | the upstream: kind, mode, children (pid, age, restarts, sessions, in-flight, last error) or pool state, a shared stdio upstream's exclusive tools (configured, learned), an HTTP upstream's `replicas` (url, breaker state, consecutive failures, in-flight, sessions, ejections); a federation's `members` alike, with their `requests` and `errors` |
//! | `POST /admin/upstreams/{name}/restart` | rolling restart of its children (each replaced after its calls finish); `{name}` may be a federation member's |
//! | `GET /admin/config` | the configuration in force (after any reload), secrets redacted |
//! | `POST /admin/reload` | reads the `--config` file again and applies it (`crate::reload`): 200 `{"file", "upstreams": {"added", "removed", "changed", "updated", "unchanged"}, "needsRestart": [keys not applied], "tls"}`; 400 without `--config`, 422 (`{"error"}`) for a file that does not validate or a member that does not start (nothing changed) |
//!
//! The admin listener is loopback-only unless `--admin-token` is set; with a token every admin
//! request needs `Authorization: Bearer <token>` (compared in constant time; never logged).
//!
//! Browsers cannot reach it on a user's behalf (DNS rebinding, CSRF), checked in this order
//! before the token: on a loopback listener a `Host` that is not a loopback name is refused
//! (403, the main listener's rule, `crate::http::origin`); any request carrying an `Origin` is
//! refused (403: no browser page has business here); and a state-changing request (POST,
//! DELETE) must say `Content-Type: application/json` (415), which a page can only send after a
//! CORS preflight that the admin API never answers.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::config::{Config, Secret};
use crate::gate::auth::bearer_is;
use crate::http::origin::is_loopback_host;
use crate::http::{Handler, Responder};
use crate::http::{Request, Response};
use crate::metrics::Gauges;
use crate::proxy::Proxy;

/// `GET /readyz`.
pub fn readyz(p: &Proxy) -> Response {
    if p.is_draining() {
        return json_response(503, &json!({"ready": false, "reason": "shutting down"}));
    }
    match p.upstream().ready() {
        Ok(()) => json_response(200, &json!({"ready": true})),
        Err(why) => json_response(
            503,
            &json!({"ready": false, "upstream": p.upstream().name(), "reason": why}),
        ),
    }
}

/// `GET /metrics`.
pub fn metrics(p: &Proxy) -> Response {
    let children = p.upstream().children();
    let sessions = p.sessions().list();
    let g = Gauges {
        sessions: sessions.len(),
        streams: p.open_streams(),
        connections: p.connections(),
        replay_bytes: sessions.iter().map(|s| s.streams.bytes()).sum(),
        rate_limit_keys: p.gate().keys(),
        bridge_waiting: p.bridge().waiting(),
        bridge_sessions: p.bridge().sessions(),
        children,
        pool: p.upstream().pool(),
        limits_store_fallbacks: p.gate().limits_store_fallbacks(),
        exclusive: p.upstream().exclusive_tools(),
        replicas: replica_sets(p.upstream().as_ref()),
        members: p
            .upstream()
            .members()
            .iter()
            .filter_map(|m| {
                let (requests, errors) = m.upstream.traffic()?;
                Some(crate::metrics::MemberInfo {
                    name: m.name.to_owned(),
                    requests,
                    errors,
                })
            })
            .collect(),
    };
    Response::new(200).with_body(
        crate::metrics::CONTENT_TYPE,
        p.metrics().render(&g).into_bytes(),
    )
}

/// The replicas of the upstream, or of each federation member that has some.
fn replica_sets(u: &dyn crate::upstream::Upstream) -> Vec<crate::metrics::ReplicaSetInfo> {
    let set = |name: &str, u: &dyn crate::upstream::Upstream| {
        let replicas = u.replicas();
        (!replicas.is_empty()).then(|| crate::metrics::ReplicaSetInfo {
            upstream: name.to_owned(),
            replicas,
        })
    };
    let members = u.members();
    if members.is_empty() {
        return set(u.name(), u).into_iter().collect();
    }
    members
        .iter()
        .filter_map(|m| set(&m.name, m.upstream.as_ref()))
        .collect()
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::new(status).with_body("application/json", v.to_string().into_bytes())
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A config reload, as the admin API asks for it and shows its result (`crate::reload`).
pub trait Reload: Send + Sync {
    /// The configuration in force.
    fn config(&self) -> Arc<Config>;
    /// Reads the config file again and applies it: the report, or the HTTP status and why
    /// it was refused. `trigger` names who asked, for the log.
    fn reload(&self, trigger: &str) -> Result<Value, (u16, String)>;
}

/// The admin API handler.
pub struct Admin {
    proxy: Arc<Proxy>,
    token: Option<Secret>,
    reload: Arc<dyn Reload>,
    /// The admin listener is on a loopback address: `Host` must then name a loopback host.
    loopback: bool,
}

impl Admin {
    /// An admin API over `proxy`, showing the configuration `reload` holds in force; its
    /// admin token (as started: it needs a restart), if any, is required as a bearer token.
    pub fn new(proxy: Arc<Proxy>, reload: Arc<dyn Reload>) -> Admin {
        let config = reload.config();
        let token = config.admin.as_ref().and_then(|a| a.token.clone());
        let loopback = config
            .admin
            .as_ref()
            .is_none_or(|a| a.bind.ip().is_loopback());
        Admin {
            proxy,
            token,
            reload,
            loopback,
        }
    }

    /// The refusal for a request a browser could have been made to send (see the module
    /// docs), if it is one.
    fn browser_refusal(&self, req: &Request) -> Option<Response> {
        if self.loopback
            && let Some(host) = req.header("host")
            && !is_loopback_host(host)
        {
            return Some(json_response(
                403,
                &json!({"error": "host is not a loopback name"}),
            ));
        }
        if req.header("origin").is_some() {
            return Some(json_response(
                403,
                &json!({"error": "requests from browser pages (with Origin) are refused"}),
            ));
        }
        None
    }

    /// 415 for a POST or DELETE that is not `Content-Type: application/json`.
    fn media_refusal(req: &Request) -> Option<Response> {
        let changes = matches!(req.method.as_str(), "POST" | "DELETE");
        let json = req
            .header("content-type")
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        (changes && !json).then(|| {
            json_response(
                415,
                &json!({"error": "POST and DELETE need content-type: application/json"}),
            )
        })
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(want) = &self.token else {
            return req.remote.ip().is_loopback();
        };
        bearer_is(req, want.expose())
    }

    fn route(&self, req: &Request) -> Response {
        let path = req.path().trim_end_matches('/');
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        match (req.method.as_str(), parts.as_slice()) {
            ("GET", ["admin", "sessions"]) => json_response(200, &self.sessions()),
            ("DELETE", ["admin", "sessions", id]) => self.kill(id),
            ("GET", ["admin", "upstreams"]) => json_response(200, &json!([self.upstream()])),
            ("POST", ["admin", "upstreams", name, "restart"]) => self.restart(name),
            ("GET", ["admin", "config"]) => self.config(),
            ("POST", ["admin", "reload"]) => match self.reload.reload("POST /admin/reload") {
                Ok(report) => json_response(200, &report),
                Err((status, why)) => json_response(status, &json!({"error": why})),
            },
            (_, ["admin", ..]) => json_response(404, &json!({"error": "no such admin endpoint"})),
            _ => json_response(404, &json!({"error": "not found"})),
        }
    }

    fn sessions(&self) -> Value {
        let now = SystemTime::now();
        let p = &self.proxy;
        let mut list: Vec<Value> = p
            .sessions()
            .list()
            .iter()
            .map(|s| {
                let age = s.created.elapsed();
                json!({
                    "id": s.short_id(),
                    "upstream": p.upstream().name(),
                    "child": if p.upstream().kind() == "stdio" { json!(s.binding.child) } else { Value::Null },
                    "protocolVersion": s.protocol_version,
                    "principal": s.principal,
                    "created": unix(now - age),
                    "ageSeconds": age.as_secs(),
                    "idleSeconds": s.idle_for().as_secs(),
                    "lastActivity": unix(now - s.idle_for()),
                    "inflight": s.inflight(),
                    "openStreams": s.streams.open_count(),
                })
            })
            .collect();
        list.sort_by_key(|v| v["ageSeconds"].as_u64().map(std::cmp::Reverse));
        json!({"count": list.len(), "sessions": list})
    }

    fn kill(&self, id: &str) -> Response {
        let p = &self.proxy;
        let full = if id.len() >= 32 {
            Some(id.to_string())
        } else if id.len() >= 8 {
            let matches: Vec<String> = p
                .sessions()
                .list()
                .iter()
                // By the start of the whole id or of its random part (after `<instance>.`).
                .filter(|s| {
                    s.id.starts_with(id)
                        || s.id.split_once('.').is_some_and(|(_, r)| r.starts_with(id))
                })
                .map(|s| s.id.clone())
                .collect();
            match matches.as_slice() {
                [one] => Some(one.clone()),
                [] => None,
                _ => {
                    return json_response(
                        409,
                        &json!({"error": "prefix matches several sessions"}),
                    );
                }
            }
        } else {
            return json_response(400, &json!({"error": "give the id or 8+ characters of it"}));
        };
        match full {
            Some(id) if p.kill_session(&id) => {
                log::info!("admin: ended session {}", &id[..8.min(id.len())]);
                json_response(200, &json!({"ended": &id[..8.min(id.len())]}))
            }
            _ => json_response(404, &json!({"error": "no such session"})),
        }
    }

    fn upstream(&self) -> Value {
        describe(self.proxy.upstream().as_ref())
    }

    fn restart(&self, name: &str) -> Response {
        let u = self.proxy.upstream();
        let members = u.members();
        let target: &dyn crate::upstream::Upstream = if name == u.name() {
            u.as_ref()
        } else if let Some(m) = members.iter().find(|m| m.name == name && !m.draining) {
            m.upstream.as_ref()
        } else {
            let mut names = vec![u.name()];
            names.extend(members.iter().map(|m| m.name.as_str()));
            return json_response(
                404,
                &json!({"error": "no such upstream", "upstreams": names}),
            );
        };
        let grace = self.reload.config().shutdown_grace;
        match target.restart(grace) {
            Ok(report) => {
                log::info!("admin: rolling restart of {name}: {report}");
                json_response(200, &json!({"restarted": name, "report": report}))
            }
            Err(e) => json_response(e.status(), &json!({"error": e.to_string()})),
        }
    }

    /// The configuration in force: [`Config`] serialized, secrets redacted.
    fn config(&self) -> Response {
        match serde_json::to_value(&*self.reload.config()) {
            Ok(doc) => json_response(200, &doc),
            Err(e) => json_response(500, &json!({"error": e.to_string()})),
        }
    }
}

impl Handler for Admin {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        let resp = if let Some(refused) = self.browser_refusal(&req) {
            refused
        } else if !self.authorized(&req) {
            json_response(401, &json!({"error": "unauthorized"}))
                .with_header("www-authenticate", "Bearer")
        } else if let Some(refused) = Self::media_refusal(&req) {
            refused
        } else {
            self.route(&req)
        };
        log::info!(
            target: "shadowcat::admin",
            "{} {} {} {}",
            req.remote,
            req.method,
            req.path(),
            resp.status
        );
        let _ = res.send(resp);
    }
}

/// What `/admin/upstreams` shows of an upstream (and of each member of a federation).
fn describe(u: &dyn crate::upstream::Upstream) -> Value {
    let children: Vec<Value> = u
        .children()
        .iter()
        .map(|c| {
            json!({
                "index": c.index, "pid": c.pid, "up": c.up,
                "ageSeconds": c.age.as_secs(), "restarts": c.restarts,
                "sessions": c.sessions, "inflight": c.inflight, "lastError": c.last_error,
            })
        })
        .collect();
    let pool = u
        .pool()
        .map(|x| json!({"connections": x.connections, "idle": x.idle, "max": x.max}));
    let exclusive = u.exclusive_tools().map(|x| {
        json!({
            "learning": x.learning, "configured": x.configured, "learned": x.learned,
            "candidates": x.candidates, "full": x.full,
        })
    });
    let mut shown = json!({
        "name": u.name(), "kind": u.kind(), "mode": u.mode(),
        "ready": u.ready().is_ok(), "children": children, "pool": pool,
        "exclusiveTools": exclusive,
    });
    let replicas: Vec<Value> = u
        .replicas()
        .iter()
        .map(|r| {
            json!({
                "url": r.url, "state": r.state, "consecutiveFailures": r.failures,
                "inflight": r.inflight, "sessions": r.sessions, "ejections": r.ejections,
                "probeInSeconds": r.probe_in.map(|d| d.as_secs_f64()), "lastError": r.last_error,
            })
        })
        .collect();
    if !replicas.is_empty() {
        shown["replicas"] = replicas.into();
    }
    if let Some((requests, errors)) = u.traffic() {
        shown["requests"] = requests.into();
        shown["errors"] = errors.into();
    }
    let members = u.members();
    if !members.is_empty() {
        let members: Vec<Value> = members
            .iter()
            .map(|m| {
                let mut v = describe(m.upstream.as_ref());
                v["member"] = m.name.as_str().into();
                v["down"] = m.down.into();
                v["draining"] = m.draining.into();
                v
            })
            .collect();
        shown["members"] = members.into();
    }
    shown
}
