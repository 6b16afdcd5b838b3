//! The families of replicated HTTP upstreams (`crate::upstream::replicas`) and of federation
//! members: what [`super::Gauges::replicas`] and [`super::Gauges::members`] carry, read at
//! scrape time. Both label sets are bounded by the configuration: at most 64 replicas per
//! upstream and 32 members, named by the operator.

use std::time::Duration;

use super::text::{escape_label, family, line};

/// What an operator sees of one replica of an HTTP upstream: the admin API lists it,
/// `/metrics` renders it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// Its URL, without user info.
    pub url: String,
    /// `closed` (takes traffic), `open` (ejected) or `half-open` (being probed).
    pub state: &'static str,
    /// Consecutive failures counted while closed.
    pub failures: u32,
    /// Requests sent to it and not yet answered (streams until they end).
    pub inflight: usize,
    /// Sessions bound to it.
    pub sessions: usize,
    /// Times its breaker opened.
    pub ejections: u64,
    /// While open: how long until it is probed.
    pub probe_in: Option<Duration>,
    /// What its last failure was, if any.
    pub last_error: Option<String>,
}

/// The replicas of one upstream, under its name (the member's name in a federation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaSetInfo {
    /// The `upstream` label.
    pub upstream: String,
    /// Its replicas, in the configured order.
    pub replicas: Vec<ReplicaInfo>,
}

/// A federation member's traffic: requests forwarded to it and those that failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its `[upstream.NAME]`.
    pub name: String,
    /// Messages forwarded to it (including `initialize`).
    pub requests: u64,
    /// Of those, the ones that failed: no answer (unreachable, timeout, child gone) or a 5xx.
    pub errors: u64,
}

/// Renders the replica families (when any upstream has replicas) and the member families
/// (when the upstream is a federation).
pub(super) fn render(w: &mut String, sets: &[ReplicaSetInfo], members: &[MemberInfo]) {
    if !sets.is_empty() {
        render_replicas(w, sets);
    }
    if members.is_empty() {
        return;
    }
    family(
        w,
        "shadowcat_member_requests_total",
        "counter",
        "Messages forwarded to a federation member ([upstream.NAME]), initialize included.",
    );
    for m in members {
        let name = escape_label(&m.name);
        line(
            w,
            format_args!(
                "shadowcat_member_requests_total{{member=\"{name}\"}} {}",
                m.requests
            ),
        );
    }
    family(
        w,
        "shadowcat_member_errors_total",
        "counter",
        "Messages forwarded to a federation member that failed: no answer (unreachable, \
         timeout, child gone) or a 5xx.",
    );
    for m in members {
        let name = escape_label(&m.name);
        line(
            w,
            format_args!(
                "shadowcat_member_errors_total{{member=\"{name}\"}} {}",
                m.errors
            ),
        );
    }
}

fn render_replicas(w: &mut String, sets: &[ReplicaSetInfo]) {
    type Value = fn(&ReplicaInfo) -> u64;
    let families: [(&str, &str, &str, Value); 4] = [
        (
            "shadowcat_upstream_replica_up",
            "gauge",
            "1 while the replica's circuit breaker is closed (it takes traffic), else 0.",
            |r| u64::from(r.state == "closed"),
        ),
        (
            "shadowcat_upstream_replica_ejections_total",
            "counter",
            "Times the replica was ejected (its circuit breaker opened after \
             --replica-failures failures in a row).",
            |r| r.ejections,
        ),
        (
            "shadowcat_upstream_replica_inflight",
            "gauge",
            "Requests sent to the replica and not yet answered.",
            |r| r.inflight as u64,
        ),
        (
            "shadowcat_upstream_replica_sessions",
            "gauge",
            "Sessions bound to the replica.",
            |r| r.sessions as u64,
        ),
    ];
    for (name, kind, help, value) in families {
        family(w, name, kind, help);
        for set in sets {
            let upstream = escape_label(&set.upstream);
            for r in &set.replicas {
                line(
                    w,
                    format_args!(
                        "{name}{{upstream=\"{upstream}\",replica=\"{}\"}} {}",
                        escape_label(&r.url),
                        value(r)
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_and_member_families() {
        let sets = [ReplicaSetInfo {
            upstream: "api".into(),
            replicas: vec![
                ReplicaInfo {
                    url: "http://a/mcp".into(),
                    state: "closed",
                    inflight: 2,
                    ..ReplicaInfo::default()
                },
                ReplicaInfo {
                    url: "http://b/mcp".into(),
                    state: "open",
                    ejections: 3,
                    ..ReplicaInfo::default()
                },
            ],
        }];
        let members = [MemberInfo {
            name: "api".into(),
            requests: 7,
            errors: 1,
        }];
        let mut w = String::new();
        render(&mut w, &sets, &members);
        for want in [
            "shadowcat_upstream_replica_up{upstream=\"api\",replica=\"http://a/mcp\"} 1\n",
            "shadowcat_upstream_replica_up{upstream=\"api\",replica=\"http://b/mcp\"} 0\n",
            "shadowcat_upstream_replica_ejections_total{upstream=\"api\",replica=\"http://b/mcp\"} 3\n",
            "shadowcat_upstream_replica_inflight{upstream=\"api\",replica=\"http://a/mcp\"} 2\n",
            "shadowcat_member_requests_total{member=\"api\"} 7\n",
            "shadowcat_member_errors_total{member=\"api\"} 1\n",
        ] {
            assert!(w.contains(want), "{want} in\n{w}");
        }
        let mut none = String::new();
        render(&mut none, &[], &[]);
        assert!(none.is_empty(), "no families without replicas or members");
    }
}
