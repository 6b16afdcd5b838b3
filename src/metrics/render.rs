//! The Prometheus text exposition format 0.0.4: [`Metrics::render`] and its line writers.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use super::text::{escape_label, family, line};
use super::{
    BOUND_LABELS, ChildInfo, DropReason, ExclusiveCause, ExclusiveInfo, Gauges, Histogram, LogDrop,
    MAX_CHILDREN, MAX_TOOLS, MethodClass, Metrics, N_BUCKETS, PoolInfo, Rejection, STATUS_LABELS,
    ToolOutcome, UpstreamErrorKind,
};

impl Metrics {
    /// Renders every family in the Prometheus text format 0.0.4, with the point-in-time
    /// gauges `g`. Allocates; meant for the scrape, not the request path.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let w = &mut out;

        family(
            w,
            "shadowcat_build_info",
            "gauge",
            "Build information; the value is always 1.",
        );
        line(
            w,
            format_args!(
                "shadowcat_build_info{{version=\"{}\"}} 1",
                escape_label(env!("CARGO_PKG_VERSION"))
            ),
        );

        family(
            w,
            "shadowcat_requests_total",
            "counter",
            "Finished client requests by MCP method class and HTTP status code \
             (status \"other\" for codes outside the fixed table). Only non-zero series are shown.",
        );
        for class in MethodClass::ALL {
            for (s, status) in STATUS_LABELS.iter().enumerate() {
                let n = self.requests[class as usize][s].load(Relaxed);
                if n > 0 {
                    line(
                        w,
                        format_args!(
                            "shadowcat_requests_total{{class=\"{}\",status=\"{status}\"}} {n}",
                            class.label()
                        ),
                    );
                }
            }
        }

        family(
            w,
            "shadowcat_request_duration_seconds",
            "histogram",
            "Time in seconds from a request's head being read to its response being complete \
             (SSE: the end of the stream), by upstream and MCP method class. \
             Only classes seen at least once are shown.",
        );
        for class in MethodClass::ALL {
            let h = &self.durations[class as usize];
            let labels = format!("upstream=\"{}\",class=\"{}\"", self.upstream, class.label());
            histogram(w, "shadowcat_request_duration_seconds", &labels, h, true);
        }

        family(
            w,
            "shadowcat_upstream_errors_total",
            "counter",
            "Failed upstream exchanges by kind: timeout (request timeout passed), connect \
             (HTTP upstream refused, reset or unreachable), child_exit (stdio child exited with \
             the request in flight), protocol (invalid answer), unavailable (no live child or \
             no pool slot).",
        );
        for kind in UpstreamErrorKind::ALL {
            let n = self.upstream_errors[kind as usize].load(Relaxed);
            line(
                w,
                format_args!(
                    "shadowcat_upstream_errors_total{{kind=\"{}\"}} {n}",
                    kind.label()
                ),
            );
        }

        family(
            w,
            "shadowcat_rejected_total",
            "counter",
            "Requests or connections turned away by a limit: body (--max-body), sessions \
             (--max-sessions), streams (--max-streams), rate (rate limit), connections \
             (--max-connections), session_quota (--max-sessions-per-client), stream_quota \
             (--max-streams-per-client), input_quota (--input-max-per-client bridged calls \
             waiting for input), input_pending (the bridge's 256 calls waiting for input), \
             bridge_sessions (every capable bridge session serves a running call).",
        );
        for why in Rejection::ALL {
            let n = self.rejected[why as usize].load(Relaxed);
            line(
                w,
                format_args!("shadowcat_rejected_total{{reason=\"{}\"}} {n}", why.label()),
            );
        }

        family(
            w,
            "shadowcat_dropped_messages_total",
            "counter",
            "Messages dropped on their way to a client, by reason: slow_client (a call's queue \
             held --max-call-buffer bytes because its client did not read; final responses are \
             never dropped), unattributed (a shared stdio child's message no request or session \
             provably owns; requests among them are answered with -32603), below_log_level \
             (under the level its session set with logging/setLevel), missing_capability (a \
             shared stdio child's request for a capability the client it belongs to did not \
             declare, answered with -32601).",
        );
        for why in DropReason::ALL {
            let n = self.dropped[why as usize].load(Relaxed);
            line(
                w,
                format_args!(
                    "shadowcat_dropped_messages_total{{reason=\"{}\"}} {n}",
                    why.label()
                ),
            );
        }

        for (name, help, counts) in [
            (
                "shadowcat_tape_dropped_total",
                "Tape lines not written, by reason: behind (the writer's queue was full; the \
                 request went on), io (a write failed), invalid (not JSON, so not redactable).",
                &self.tape_dropped,
            ),
            (
                "shadowcat_audit_dropped_total",
                "Audit lines not written, by reason: behind (the writer's queue was full; the \
                 request went on), io (a write failed).",
                &self.audit_dropped,
            ),
        ] {
            family(w, name, "counter", help);
            for why in LogDrop::ALL {
                let n = counts[why as usize].load(Relaxed);
                line(w, format_args!("{name}{{reason=\"{}\"}} {n}", why.label()));
            }
        }

        family(
            w,
            "shadowcat_tool_calls_total",
            "counter",
            "Finished tools/call requests by upstream, tool and outcome (ok, tool_error for \
             isError: true, error for a JSON-RPC error). The tool label is one of the first 64 \
             distinct tools that answered with a result, else \"other\". Only non-zero series \
             are shown.",
        );
        let mut rows = self.tool_calls.named();
        rows.push(("other".to_owned(), MAX_TOOLS));
        for (tool, row) in rows {
            for outcome in ToolOutcome::ALL {
                let n = self.tool_calls.counts[row][outcome as usize].load(Relaxed);
                if n > 0 {
                    line(
                        w,
                        format_args!(
                            "shadowcat_tool_calls_total{{upstream=\"{}\",tool=\"{}\",outcome=\"{}\"}} {n}",
                            self.upstream,
                            escape_label(&tool),
                            outcome.label()
                        ),
                    );
                }
            }
        }

        if let Some(rules) = self.fault_hits.get() {
            family(
                w,
                "shadowcat_fault_hits_total",
                "counter",
                "Requests a fault or mock rule of the config file acted on, by rule (its name \
                 or position) and action (delay, error, drop, mock, mock_from).",
            );
            for (rule, action, n) in rules.iter() {
                let n = n.load(Relaxed);
                line(
                    w,
                    format_args!(
                        "shadowcat_fault_hits_total{{rule=\"{rule}\",action=\"{action}\"}} {n}"
                    ),
                );
            }
        }

        gauge(
            w,
            "shadowcat_sessions",
            "Live MCP sessions.",
            g.sessions as u64,
        );
        gauge(
            w,
            "shadowcat_streams_open",
            "SSE responses open now.",
            g.streams as u64,
        );
        gauge(
            w,
            "shadowcat_connections_open",
            "Client TCP connections open now.",
            g.connections as u64,
        );
        gauge(
            w,
            "shadowcat_replay_buffer_bytes",
            "Bytes held in SSE replay buffers for stream resumption.",
            g.replay_bytes as u64,
        );
        gauge(
            w,
            "shadowcat_rate_limit_keys",
            "Clients (principals or IPs) the rate limiter tracks; at most --rate-limit-keys.",
            g.rate_limit_keys as u64,
        );
        gauge(
            w,
            "shadowcat_bridge_waiting_calls",
            "Bridged 2026-07-28 calls waiting for their client's inputResponses (parked); at \
             most 256, --input-max-per-client per client.",
            g.bridge_waiting as u64,
        );
        gauge(
            w,
            "shadowcat_bridge_sessions",
            "Capable bridge sessions serving a running call or idle; at most 16 (those of \
             calls waiting for input not counted).",
            g.bridge_sessions as u64,
        );

        counter(
            w,
            "shadowcat_sessions_evicted_total",
            "Idle sessions ended to make room for a new one (per-session stdio mode, all \
             children taken; idle at least --session-evict-idle, no call in flight).",
            self.sessions_evicted.load(Relaxed),
        );
        counter(
            w,
            "shadowcat_foreign_sessions_total",
            "Requests naming a session of another instance (--instance-id), answered 404 so \
             the client re-initializes.",
            self.foreign_sessions.load(Relaxed),
        );
        let name = "shadowcat_config_reloads_total";
        family(
            w,
            name,
            "counter",
            "Config file reloads (SIGHUP, POST /admin/reload): applied (ok) or refused (no \
             --config, an invalid file, an upstream that did not start).",
        );
        for (i, result) in ["ok", "refused"].iter().enumerate() {
            let n = self.config_reloads[i].load(Relaxed);
            line(w, format_args!("{name}{{result=\"{result}\"}} {n}"));
        }
        counter(
            w,
            "shadowcat_bytes_received_total",
            "Bytes read from clients (request heads and bodies).",
            self.bytes_in.load(Relaxed),
        );
        counter(
            w,
            "shadowcat_bytes_sent_total",
            "Bytes written to clients (response heads, bodies and stream events).",
            self.bytes_out.load(Relaxed),
        );

        if !g.children.is_empty() {
            self.render_children(w, &g.children);
        }
        if let Some(x) = &g.exclusive {
            self.render_exclusive(w, x);
        }
        if let Some(pool) = &g.pool {
            self.render_pool(w, pool);
        }
        if let Some(n) = g.limits_store_fallbacks {
            counter(
                w,
                "shadowcat_limits_store_fallbacks_total",
                "Requests whose rate limits were decided without --limits-store (Redis \
                 unreachable): by this instance's own buckets (fail open) or refused (closed).",
                n,
            );
        }
        super::replicas::render(w, &g.replicas, &g.members);
        self.tls.render(w);
        out
    }

    fn render_children(&self, w: &mut String, children: &[ChildInfo]) {
        let mut kids: Vec<&ChildInfo> =
            children.iter().filter(|c| c.index < MAX_CHILDREN).collect();
        kids.sort_by_key(|c| c.index);
        kids.dedup_by_key(|c| c.index);

        family(
            w,
            "shadowcat_child_up",
            "gauge",
            "1 if a live process serves the stdio child slot, else 0.",
        );
        for c in &kids {
            let up = u8::from(c.up);
            line(
                w,
                format_args!("shadowcat_child_up{{child=\"{}\"}} {up}", c.index),
            );
        }
        family(
            w,
            "shadowcat_child_restarts_total",
            "counter",
            "Restarts of the stdio child slot since the proxy started.",
        );
        for c in &kids {
            let n = c.restarts;
            line(
                w,
                format_args!(
                    "shadowcat_child_restarts_total{{child=\"{}\"}} {n}",
                    c.index
                ),
            );
        }
        family(
            w,
            "shadowcat_child_inflight",
            "gauge",
            "Requests forwarded to the stdio child slot and not yet answered.",
        );
        for c in &kids {
            line(
                w,
                format_args!(
                    "shadowcat_child_inflight{{child=\"{}\"}} {}",
                    c.index, c.inflight
                ),
            );
        }
        family(
            w,
            "shadowcat_child_sessions",
            "gauge",
            "Sessions pinned to the stdio child slot.",
        );
        for c in &kids {
            line(
                w,
                format_args!(
                    "shadowcat_child_sessions{{child=\"{}\"}} {}",
                    c.index, c.sessions
                ),
            );
        }
    }

    fn render_exclusive(&self, w: &mut String, x: &ExclusiveInfo) {
        family(
            w,
            "shadowcat_stdio_exclusive_tools",
            "gauge",
            "Tools whose calls run alone on their shared stdio child whoever calls them, by \
             source: configured (--stdio-exclusive-tools) or learned.",
        );
        for (source, n) in [
            ("configured", x.configured.len()),
            ("learned", x.learned.len()),
        ] {
            line(
                w,
                format_args!("shadowcat_stdio_exclusive_tools{{source=\"{source}\"}} {n}"),
            );
        }
        counter(
            w,
            "shadowcat_stdio_learning_full_total",
            "Tools not learned as exclusive, or not watched, because a bound was reached (256 \
             exclusive tools, 256 watched).",
            x.full,
        );
        family(
            w,
            "shadowcat_stdio_exclusive_calls_total",
            "counter",
            "Calls that ran alone on their shared stdio child, by cause: client (it declared \
             sampling, elicitation or roots, or asked for logs) or tool (an exclusive tool).",
        );
        for cause in ExclusiveCause::ALL {
            line(
                w,
                format_args!(
                    "shadowcat_stdio_exclusive_calls_total{{cause=\"{}\"}} {}",
                    cause.label(),
                    self.exclusive_calls[cause as usize].load(Relaxed)
                ),
            );
        }
    }

    fn render_pool(&self, w: &mut String, pool: &PoolInfo) {
        gauge(
            w,
            "shadowcat_pool_connections",
            "Upstream pool connections (slots) that exist, idle or checked out.",
            u64::from(pool.connections),
        );
        gauge(
            w,
            "shadowcat_pool_idle_connections",
            "Upstream pool connections (slots) idle in the pool.",
            u64::from(pool.idle),
        );
        gauge(
            w,
            "shadowcat_pool_max_connections",
            "Maximum upstream pool connections (--upstream-pool).",
            u64::from(pool.max),
        );
        family(
            w,
            "shadowcat_pool_checkout_wait_seconds",
            "histogram",
            "Time in seconds a successful upstream pool checkout waited for a connection.",
        );
        histogram(
            w,
            "shadowcat_pool_checkout_wait_seconds",
            "",
            &self.pool_checkout_wait,
            false,
        );
        counter(
            w,
            "shadowcat_pool_checkout_timeouts_total",
            "Upstream pool checkouts that gave up waiting for a connection (client got 503).",
            self.pool_checkout_timeouts.load(Relaxed),
        );
        counter(
            w,
            "shadowcat_pool_connections_opened_total",
            "Upstream pool connections (slots) created.",
            self.pool_opened.load(Relaxed),
        );
        counter(
            w,
            "shadowcat_pool_connections_closed_total",
            "Upstream pool connections (slots) dropped (broken, poisoned, or the pool closed).",
            self.pool_closed.load(Relaxed),
        );
    }
}

fn gauge(w: &mut String, name: &str, help: &str, v: u64) {
    family(w, name, "gauge", help);
    line(w, format_args!("{name} {v}"));
}

fn counter(w: &mut String, name: &str, help: &str, v: u64) {
    family(w, name, "counter", help);
    line(w, format_args!("{name} {v}"));
}

/// The sample lines of one histogram series; `labels` without braces, possibly empty. With
/// `skip_empty`, a series that never observed anything is left out.
pub(super) fn histogram(w: &mut String, name: &str, labels: &str, h: &Histogram, skip_empty: bool) {
    let (cumulative, sum_ns) = h.snapshot();
    let count = cumulative[N_BUCKETS - 1];
    if skip_empty && count == 0 {
        return;
    }
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, n) in BOUND_LABELS.iter().zip(cumulative) {
        line(
            w,
            format_args!("{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}"),
        );
    }
    let braced = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    line(w, format_args!("{name}_sum{braced} {}", Seconds(sum_ns)));
    line(w, format_args!("{name}_count{braced} {count}"));
}

/// Nanoseconds displayed as exact decimal seconds (`1.5`, `0.002`, `0`).
pub(super) struct Seconds(pub(super) u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = (self.0 / 1_000_000_000, self.0 % 1_000_000_000);
        if nanos == 0 {
            return write!(f, "{secs}");
        }
        let frac = format!("{nanos:09}");
        write!(f, "{secs}.{}", frac.trim_end_matches('0'))
    }
}
