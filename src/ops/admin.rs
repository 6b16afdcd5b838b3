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
//! | `GET /admin/upstreams` | the upstream: kind, mode, children (pid, age, restarts, sessions, in-flight, last error) or pool state |
//! | `POST /admin/upstreams/{name}/restart` | rolling restart of its children (each replaced after its calls finish) |
//! | `GET /admin/config` | the effective configuration, secrets redacted |
//!
//! The admin listener is loopback-only unless `--admin-token` is set; with a token every admin
//! request needs `Authorization: Bearer <token>` (compared in constant time; never logged).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::config::{Config, Secret, StdioMode, UpstreamConfig};
use crate::gate::auth::bearer_is;
use crate::http::{Handler, Responder};
use crate::http::{Request, Response};
use crate::metrics::{ChildGauge, Gauges, PoolGauge};
use crate::proxy::Proxy;

/// `GET /readyz`.
pub fn readyz(p: &Proxy) -> Response {
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
    let children = p
        .upstream()
        .children()
        .iter()
        .map(|c| ChildGauge {
            index: c.index,
            up: c.up,
            inflight: c.inflight,
            sessions: c.sessions,
            restarts: c.restarts,
        })
        .collect();
    let sessions = p.sessions().list();
    let g = Gauges {
        sessions: sessions.len(),
        streams: p.open_streams(),
        connections: p.connections(),
        replay_bytes: sessions.iter().map(|s| s.streams.bytes()).sum(),
        rate_limit_keys: p.gate().keys(),
        children,
        pool: p.upstream().pool().map(|x| PoolGauge {
            connections: x.connections,
            idle: x.idle,
            max: x.max,
        }),
    };
    Response::new(200).with_body(
        crate::metrics::CONTENT_TYPE,
        p.metrics().render(&g).into_bytes(),
    )
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::new(status).with_body("application/json", v.to_string().into_bytes())
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The admin API handler.
pub struct Admin {
    proxy: Arc<Proxy>,
    token: Option<Secret>,
    config: Arc<Config>,
}

impl Admin {
    /// An admin API over `proxy`, showing `config`; its admin token, if any, is required as a
    /// bearer token.
    pub fn new(proxy: Arc<Proxy>, config: Arc<Config>) -> Admin {
        let token = config.admin.as_ref().and_then(|a| a.token.clone());
        Admin {
            proxy,
            token,
            config,
        }
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
            ("GET", ["admin", "config"]) => json_response(200, &self.config()),
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
                .filter(|s| s.id.starts_with(id))
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
        let u = self.proxy.upstream();
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
        json!({
            "name": u.name(), "kind": u.kind(), "mode": u.mode(),
            "ready": u.ready().is_ok(), "children": children, "pool": pool,
        })
    }

    fn restart(&self, name: &str) -> Response {
        let u = self.proxy.upstream();
        if name != u.name() {
            return json_response(
                404,
                &json!({"error": "no such upstream", "upstreams": [u.name()]}),
            );
        }
        let grace = self.config.shutdown_grace;
        match u.restart(grace) {
            Ok(report) => {
                log::info!("admin: rolling restart of {name}: {report}");
                json_response(200, &json!({"restarted": name, "report": report}))
            }
            Err(e) => json_response(e.status(), &json!({"error": e.to_string()})),
        }
    }

    fn config(&self) -> Value {
        let c = &*self.config;
        let secs = |d: Duration| d.as_secs_f64();
        let names = |v: &[(String, Secret)]| {
            v.iter()
                .map(|(k, _)| (k.clone(), json!("<redacted>")))
                .collect::<serde_json::Map<_, _>>()
        };
        let (l, p, s, g) = (&c.listen, &c.proxy, &c.sessions, &c.gate);
        let mut doc = json!({
            "bind": l.bind.to_string(), "path": p.path,
            "workers": l.workers, "maxConnections": l.max_connections, "maxStreams": l.max_streams,
            "maxBodyBytes": l.max_body,
            "maxSessions": s.max, "sessionIdleSeconds": secs(s.idle),
            "clientIdleTimeoutSeconds": secs(l.client_idle_timeout),
            "requestTimeoutSeconds": secs(p.request_timeout),
            "sseKeepaliveSeconds": secs(p.sse_keepalive),
            "replayEvents": s.replay.events, "replayBytes": s.replay.bytes,
            "replayTtlSeconds": secs(s.replay.ttl),
            "allowedOrigins": p.allowed_origins,
            "adminBind": c.admin.as_ref().map(|a| a.bind.to_string()),
            "adminToken": c.admin.as_ref().and_then(|a| a.token.as_ref()).map(|_| "<redacted>"),
            "logFormat": if p.log_json { "json" } else { "text" },
            "shutdownGraceSeconds": secs(c.shutdown_grace),
            "auth": {
                "tokensFile": g.auth.tokens_file.as_ref().map(|p| p.display().to_string()),
                "jwt": g.auth.jwt,
                "jwtSecretFile": g.auth.jwt_secret_file.as_ref().map(|p| p.display().to_string()),
                "jwksFile": g.auth.jwks_file.as_ref().map(|p| p.display().to_string()),
                "jwksUrl": g.auth.jwks_url.as_deref().map(redact_url),
                "algorithms": g.auth.algorithms.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>(),
                "issuer": g.auth.issuer,
                "leewaySeconds": secs(g.auth.leeway),
                "requiredScopes": g.auth.required_scopes,
                "resource": self.proxy.gate().resource(),
                "authorizationServers": g.auth.authorization_servers,
            },
            "metricsToken": g.metrics_token.as_ref().map(|_| "<redacted>"),
            "rateLimit": g.limits.per_client.map(|r| r.to_string()),
            "globalRateLimit": g.limits.global.map(|r| r.to_string()),
            "toolLimits": g.limits.tools.iter()
                .map(|t| format!("{}={}", t.tool, t.rate)).collect::<Vec<_>>(),
            "rateLimitKeys": g.limits.max_keys,
            "trustedProxies": g.trusted_proxies.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        });
        let upstream = match &c.upstream {
            UpstreamConfig::Http(h) => json!({
                "upstream": {"kind": "http", "url": redact_url(&h.url)},
                "upstreamPool": h.pool,
                "upstreamConnectTimeoutSeconds": secs(h.connect_timeout),
                "sseIdleTimeoutSeconds": secs(h.stream_idle),
                "upstreamReconnectMaxSeconds": secs(h.reconnect_max),
                "upstreamHeaders": names(&h.headers),
            }),
            UpstreamConfig::Stdio(st) => {
                let (mode, spares) = match st.mode {
                    StdioMode::Shared => ("shared", None),
                    StdioMode::PerSession { spares } => ("per-session", Some(spares)),
                };
                json!({
                    "upstream": {
                        "kind": "stdio", "argv": st.argv, "children": st.children, "mode": mode,
                        "spares": spares,
                    },
                    "maxMessageBytes": st.max_message,
                    "stdioEnv": names(&st.env.vars),
                    "stdioClearEnv": st.env.clear,
                })
            }
        };
        if let (Some(doc), Value::Object(more)) = (doc.as_object_mut(), upstream) {
            doc.extend(more);
        }
        doc
    }
}

impl Handler for Admin {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        let resp = if self.authorized(&req) {
            self.route(&req)
        } else {
            json_response(401, &json!({"error": "unauthorized"}))
                .with_header("www-authenticate", "Bearer")
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

/// `http://user:secret@host/…` → `http://<redacted>@host/…`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://<redacted>@{host}{}", &rest[host_end..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo() {
        assert_eq!(
            redact_url("http://a:b@h:1/mcp"),
            "http://<redacted>@h:1/mcp"
        );
        assert_eq!(redact_url("http://h:1/mcp"), "http://h:1/mcp");
    }
}
