//! Integration tests: one binary, a module per area.

mod support;

// The request validation matrix, one assertion per row, raw HTTP.
mod validation;
// stdio upstreams: the demo server and server-everything, id isolation.
mod stdio;
// HTTP upstreams: a fixture server for edge cases and server-everything for real traffic.
mod http_upstream;
// The official Python SDK as a client, through the proxy.
mod python;
// `shadowcat bench` against the demo proxy.
mod bench;
// Lifecycle and failure: shutdown, leaks, crashes, hangs, panics, idle clients.
mod lifecycle;
// An HTTP upstream that fails 30 % of requests in five ways.
mod faults;
// Streams: resumption, routing of server-to-client traffic.
mod streams;
// stdio per-session mode: dedicated children from a warm pool.
mod per_session;
// The official MCP conformance suite (server scenarios) through the proxy.
mod conformance;
// Conformance 0.2 (2026-07-28 and 2025-11-25 requirement sets) in front of each era of the demo.
mod conformance26;
// Issue #13 part C: the demo server over HTTP, each era, raw requests.
mod r13_demo_http;
mod r13_modern_upstream;
// Issue #13: a bridged call waiting for input lets its stdio child go; per-client bound.
mod r13_parking;
// HTTP upstream streams: resumption after a break, the standalone GET relay.
mod http_streams;
// Operating it: health, readiness, metrics, admin API, access log.
mod ops;
// The official TypeScript SDK as a client, through the proxy.
mod typescript;
// Regression tests, named after the issue whose work found them.
mod regression;
// Hostile input: smuggling, header injection, oversized and slow requests, raw sockets.
mod hostile;
// Inbound authentication, sessions bound to principals, upstream credentials.
mod auth;
// Issue #12 items 3, 4, 6: no client spies on, reconfigures or locks out another.
mod r12_clients;
// Rate limits: per client (principal or IP), global, per tool; 429 and Retry-After.
mod ratelimit;
// Issue #12 items 2 and 5: bounded queues and per-session stores (RSS, caps, replay budget).
mod r12_bounds;
// Issue #12 items 1 and 11: slow readers and workers, Host, HEAD, authority parsing.
mod r12_http;
// Issue 12, items 7–11: mirrored headers, log injection, ids, `_meta`, JWT dates, access log.
mod r12_messages;
// `shadowcat replay` of a tape to the Python SDK and raw stdio; the tape tools' exit codes.
mod replay;
// Issue #18: tapes (--record), redaction, the audit log; recorded tapes through the tape tools.
mod tapes;
// TLS: HTTPS for SDK clients, mTLS principals, SIGHUP reload, stalled handshakes, https upstreams.
mod tls;
// TLS: the Python and TypeScript SDKs over HTTPS to server-everything over stdio.
mod tls_everything;
// Issue #16, remaining gaps: TLS handshake metrics, revoked client certificates (CRL).
mod r16_tls;
// CORS for browser clients, raw HTTP: preflights, headers on every answer to an allowed origin.
mod cors;
// A real browser: the TypeScript SDK in headless Chromium, from an allowed and a foreign origin.
mod browser;
// Issue #14: capability-aware dispatch on shared children, roots, eviction, per-session memory.
mod r14_children;
// Issue #17: instance-routable session ids, scale-in, Redis-shared limits, HAProxy in front.
mod r17_scale;
// The committed fuzz corpus, replayed on stable (scripts/fuzz runs the fuzzers).
#[cfg(feature = "fuzzing")]
mod fuzz_corpus;
// Issue #15, the config file: `--config FILE`, `check-config`, the example file.
mod r15_config;
// Issue #15, federation: several named upstreams behind one endpoint, from examples/federation.toml.
mod r15_federation;
// Issue #15: prompt overrides and a member's own request-timeout.
mod r15_member_knobs;
// Issue #15, replicas: two server-everything HTTP servers as one upstream, one killed and back.
mod r15_replicas;
// Issue #15: SIGHUP and POST /admin/reload re-read the config file (members added, removed,
// replaced, updated in place; invalid files refused).
mod r15_reload;
// Issue #13 part A: 2026-07-28 validation, discover, and the bridge to session-era upstreams.
mod r13_bridge;
// Issue #18: fault and mock rules ([[fault]] in the config file).
mod r18_faults;
// Issue #18: the conformance suite replayed from the tapes of a recorded run.
mod r18_replay;
// Issue #18: `record` in an [upstream.NAME] table, a member's own tapes.
mod r18_record_per_upstream;
