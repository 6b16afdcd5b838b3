//! Integration tests: one binary, a module per area.

mod support;

// The request validation matrix, one assertion per row, raw HTTP.
#[path = "it/validation.rs"]
mod validation;
// stdio upstreams: the demo server and server-everything, id isolation.
#[path = "it/stdio.rs"]
mod stdio;
// HTTP upstreams: a fixture server for edge cases and server-everything for real traffic.
#[path = "it/http_upstream.rs"]
mod http_upstream;
// The official Python SDK as a client, through the proxy.
#[path = "it/python.rs"]
mod python;
// `shadowcat bench` against the demo proxy.
#[path = "it/bench.rs"]
mod bench;
// Lifecycle and failure: shutdown, leaks, crashes, hangs, panics, idle clients.
#[path = "it/lifecycle.rs"]
mod lifecycle;
// An HTTP upstream that fails 30 % of requests in five ways.
#[path = "it/faults.rs"]
mod faults;
// Streams: resumption, routing of server-to-client traffic.
#[path = "it/streams.rs"]
mod streams;
// stdio per-session mode: dedicated children from a warm pool.
#[path = "it/per_session.rs"]
mod per_session;
// The official MCP conformance suite (server scenarios) through the proxy.
#[path = "it/conformance.rs"]
mod conformance;
// HTTP upstream streams: resumption after a break, the standalone GET relay.
#[path = "it/http_streams.rs"]
mod http_streams;
// Operating it: health, readiness, metrics, admin API, access log.
#[path = "it/ops.rs"]
mod ops;
// The official TypeScript SDK as a client, through the proxy.
#[path = "it/typescript.rs"]
mod typescript;
// Regression tests, named after the issue whose work found them.
#[path = "it/regression.rs"]
mod regression;

// Hostile input: smuggling, header injection, oversized and slow requests, raw sockets.
#[path = "it/hostile.rs"]
mod hostile;
// Inbound authentication, sessions bound to principals, upstream credentials.
#[path = "it/auth.rs"]
mod auth;
// Rate limits: per client (principal or IP), global, per tool; 429 and Retry-After.
#[path = "it/ratelimit.rs"]
mod ratelimit;
// The committed fuzz corpus, replayed on stable (scripts/fuzz runs the fuzzers).
#[cfg(feature = "fuzzing")]
#[path = "it/fuzz_corpus.rs"]
mod fuzz_corpus;
