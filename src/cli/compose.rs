//! [`ReverseArgs::into_config`]: the raw `reverse` flags into one validated [`Config`], part by
//! part, as lowargs become hiargs.
//!
//! Owns: which flags go to which part builder, the values several parts share (`--request-timeout`,
//! `--input-timeout`, `--max-streams`, the instance id), the checks that span parts (named
//! upstreams against `--upstream`/`--stdio`, our client TLS against what would use it), and the
//! order in which parts are checked (so that of several bad values the same one is reported).
//! Must not touch: any one flag's syntax or checks, which belong to its part's file.

use super::reverse::ReverseArgs;
use super::{faults, gate, listen, members, ops, proxy, replicas, stdio, tapes, upstream};
use crate::config::{ClientTlsConfig, Config, StdioMode, UpstreamConfig};
use crate::error::Error;
use crate::util::duration;

impl ReverseArgs {
    /// Validates the flags. `self_exe` is the program to spawn for the built-in demo server.
    pub fn into_config(self, self_exe: &str) -> Result<Config, Error> {
        let federation = match &self.config {
            Some(path) => members::federation(path, &self.name_separator, self_exe)?,
            None => None,
        };
        if federation.is_some() && (!self.upstream.is_empty() || self.stdio.is_some()) {
            return Err(Error::Config(
                "--upstream and --stdio cannot be given with [upstream.NAME] tables".into(),
            ));
        }
        let mut auth = gate::auth(&gate::AuthFlags {
            auth_tokens: self.auth_tokens.as_deref(),
            auth_jwt: self.auth_jwt,
            jwt_secret_file: self.jwt_secret_file.as_deref(),
            jwks_file: self.jwks_file.as_deref(),
            jwks_url: self.jwks_url.as_deref(),
            jwt_algorithms: self.jwt_algorithms.as_deref(),
            jwt_issuer: self.jwt_issuer.as_deref(),
            jwt_leeway: &self.jwt_leeway,
            required_scope: &self.required_scope,
            resource_url: self.resource_url.as_deref(),
            authorization_server: &self.authorization_server,
        })?;
        let tapes = tapes::config(&tapes::Flags {
            record: self.record.as_deref(),
            record_max_bytes: &self.record_max_bytes,
            record_keep: &self.record_keep,
            redact: &self.redact,
            audit_log: self.audit_log.as_deref(),
            audit_arguments: self.audit_arguments,
            members_record: federation
                .as_ref()
                .is_some_and(|f| f.members.iter().any(|m| m.record.is_some())),
        })?;
        let tls = listen::tls_files(&listen::TlsFlags {
            cert: self.tls_cert.as_deref(),
            key: self.tls_key.as_deref(),
            client_ca: self.tls_client_ca.as_deref(),
            client_crl: self.tls_client_crl.as_deref(),
            admin_cert: self.admin_tls_cert.as_deref(),
            admin_key: self.admin_tls_key.as_deref(),
            admin_bind: self.admin_bind.is_some(),
            upstream_ca: self.upstream_ca.as_deref(),
            upstream_client_cert: self.upstream_client_cert.as_deref(),
            upstream_client_key: self.upstream_client_key.as_deref(),
        })?;
        // Shared by several parts.
        let request_timeout = duration("--request-timeout", &self.request_timeout)?;
        let input_timeout = duration("--input-timeout", &self.input_timeout)?;
        let client_tls = tls.client.clone();
        let upstream = upstream::config(
            upstream::Flags {
                urls: self.upstream,
                stdio: self.stdio,
                replicas: replicas::Knobs {
                    failures: self.replica_failures,
                    backoff: &self.replica_backoff,
                    backoff_max: &self.replica_backoff_max,
                    probe_interval: &self.replica_probe_interval,
                },
                pool: self.upstream_pool,
                connect_timeout: &self.upstream_connect_timeout,
                sse_idle_timeout: &self.sse_idle_timeout,
                reconnect_max: &self.upstream_reconnect_max,
                headers: &self.upstream_header,
                stdio_flags: stdio::Flags {
                    mode: &self.stdio_mode,
                    children: self.stdio_children,
                    spares: self.stdio_spares,
                    env: &self.stdio_env,
                    clear_env: self.stdio_clear_env,
                    max_message: &self.max_message,
                    max_call_buffer: &self.max_call_buffer,
                    max_subscriptions: self.max_subscriptions,
                    evict_idle: &self.session_evict_idle,
                    queue: self.stdio_queue,
                    exclusive_tools: &self.stdio_exclusive_tools,
                    learn_exclusive: &self.stdio_learn_exclusive,
                },
            },
            self_exe,
            upstream::Shared {
                request_timeout,
                input_timeout,
                max_streams: self.max_streams,
                tls: tls.client,
            },
        )?;
        let listen = listen::config(
            &listen::Flags {
                bind: self.bind,
                workers: self.workers,
                max_connections: self.max_connections,
                max_streams: self.max_streams,
                max_body: &self.max_body,
                client_idle_timeout: &self.client_idle_timeout,
                client_write_timeout: &self.client_write_timeout,
            },
            request_timeout,
            tls.listen,
        )?;
        let ops = ops::config(
            ops::Flags {
                admin_bind: self.admin_bind,
                admin_token: self.admin_token,
                instance_id: self.instance_id.as_deref(),
                port: self.bind.port(),
                shutdown_grace: &self.shutdown_grace,
                drain_time: &self.drain_time,
            },
            tls.admin,
        )?;
        let per_session_children = match &upstream {
            UpstreamConfig::Stdio(s) if matches!(s.mode, StdioMode::PerSession { .. }) => {
                Some(s.children)
            }
            _ => None,
        };
        let sessions = proxy::sessions(
            &proxy::SessionFlags {
                max_sessions: self.max_sessions,
                max_sessions_per_client: self.max_sessions_per_client,
                session_idle: &self.session_idle,
                replay_events: self.replay_events,
                replay_ttl: &self.replay_ttl,
                replay_budget: &self.replay_budget,
            },
            per_session_children,
        )?;
        let proxy = proxy::config(
            proxy::Flags {
                path: self.path,
                allowed_origin: &self.allowed_origin,
                cors_max_age: &self.cors_max_age,
                sse_keepalive: &self.sse_keepalive,
                log_format: &self.log_format,
                max_streams_per_client: self.max_streams_per_client,
                cache_ttl: &self.cache_ttl,
                input_max_per_client: self.input_max_per_client,
            },
            proxy::Shared {
                request_timeout,
                input_timeout,
                loopback: self.bind.ip().is_loopback(),
                max_streams: self.max_streams,
                instance: ops.instance.id.clone(),
            },
        )?;
        // Our client TLS is for an https upstream, or the JWKS fetch, and nothing else.
        let https_upstream =
            matches!(&upstream, UpstreamConfig::Http(h) if h.url.starts_with("https://"));
        let https_jwks = auth
            .jwks_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        if client_tls != ClientTlsConfig::default() && !https_upstream && !https_jwks {
            return Err(Error::Config(
                "--upstream-ca and --upstream-client-* need an https:// --upstream or --jwks-url"
                    .into(),
            ));
        }
        auth.jwks_tls = client_tls;
        let gate = gate::config(
            gate::Flags {
                metrics_token: self.metrics_token,
                rate_limit: self.rate_limit.as_deref(),
                global_rate_limit: self.global_rate_limit.as_deref(),
                tool_limit: &self.tool_limit,
                rate_limit_keys: self.rate_limit_keys,
                trusted_proxy: &self.trusted_proxy,
                limits_store: self.limits_store.as_deref(),
                limits_store_fail: &self.limits_store_fail,
                limits_store_lease: &self.limits_store_lease,
            },
            auth,
        )?;
        let upstream = federation.map_or(upstream, UpstreamConfig::Federated);
        let faults = faults::read(self.config.as_deref(), &upstream.name(), self.fault_seed)?;
        Ok(Config {
            listen,
            proxy,
            sessions,
            upstream,
            gate,
            admin: ops.admin,
            instance: ops.instance,
            shutdown_grace: ops.shutdown_grace,
            tapes,
            faults,
            drain_time: ops.drain_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cli::parse;
    use crate::config::{ChildEnv, StdioMode, StdioUpstreamConfig, UpstreamConfig};

    #[test]
    fn defaults() {
        let c = parse(&["reverse"]).unwrap();
        assert_eq!(c.listen.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.proxy.path, "/mcp");
        assert_eq!(
            c.upstream,
            UpstreamConfig::Stdio(StdioUpstreamConfig {
                argv: vec!["/bin/shadowcat".into(), "demo-server".into()],
                children: 2,
                mode: StdioMode::Shared,
                env: ChildEnv::default(),
                max_message: 16 * 1024 * 1024,
                max_call_buffer: 8 * 1024 * 1024,
                max_subscriptions: 64,
                evict_idle: Duration::from_secs(60),
                queue: 32,
                exclusive_tools: Vec::new(),
                learn_exclusive: true,
                input_timeout: Duration::from_secs(300),
            })
        );
        assert_eq!(c.sessions.replay.budget, 256 * 1024 * 1024);
        assert_eq!(c.listen.workers, 64);
        assert_eq!(c.proxy.cors_max_age, Duration::from_secs(7200));
        assert_eq!(c.listen.max_body, 4 * 1024 * 1024);
        assert_eq!(c.sessions.idle, Duration::from_secs(1800));
        assert_eq!(c.proxy.request_timeout, Duration::from_secs(60));
        assert_eq!(c.listen.client_write_timeout, Duration::from_secs(10));
        assert_eq!(c.listen.worker_wait, c.proxy.request_timeout);
        let server = c.listen.server_config();
        assert_eq!(server.write_timeout, Duration::from_secs(10));
        assert_eq!(server.worker_wait, Duration::from_secs(60));
        assert_eq!(c.sessions.max_per_client, 64);
        assert_eq!(c.proxy.max_streams_per_client, 32);
        let c = parse(&["reverse", "--upstream", "http://127.0.0.1:1/mcp"]).unwrap();
        let UpstreamConfig::Http(h) = &c.upstream else {
            panic!("{:?}", c.upstream)
        };
        assert_eq!(h.pool, 32);
        assert_eq!(h.request_timeout, Duration::from_secs(60));
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(&["reverse", "--upstream", "http://a/", "--stdio", "x"]).is_err());
        assert!(parse(&["reverse", "--upstream", "ftp://a/"]).is_err());
        assert!(parse(&["reverse", "--upstream", "https://a/mcp"]).is_ok());
        assert!(parse(&["reverse", "--workers", "0"]).is_err());
        assert!(parse(&["reverse", "--request-timeout", "0s"]).is_err());
        assert!(parse(&["reverse", "--client-write-timeout", "0s"]).is_err());
        let c = parse(&["reverse", "--client-write-timeout", "250ms"]).unwrap();
        assert_eq!(c.listen.client_write_timeout, Duration::from_millis(250));
        assert!(parse(&["reverse", "--max-body", "12XB"]).is_err());
        assert!(parse(&["reverse", "--path", "mcp"]).is_err());
        assert!(parse(&["reverse", "--stdio-mode", "per-request"]).is_err());
        assert!(parse(&["reverse", "--max-call-buffer", "0"]).is_err());
        assert!(parse(&["reverse", "--max-subscriptions", "0"]).is_err());
        assert!(parse(&["reverse", "--replay-budget", "0"]).is_err());
        assert!(parse(&["reverse", "--replay-budget", "lots"]).is_err());
    }
}
