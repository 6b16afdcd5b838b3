//! Tools shipped in the same binary, beside the proxy they exercise: the demo MCP server
//! (`shadowcat demo-server`), the load generator (`shadowcat bench`), the tape tools and the
//! replay server (`shadowcat tape …`, `shadowcat replay`) and, with the `fuzzing` feature, the
//! fuzz entry points.
//!
//! Owns: everything those tools need of their own. Must not touch: the proxy's internals;
//! the demo server and the load generator speak to a proxy over the wire (stdio, HTTP) like any
//! peer, and the proxy never imports them. From the crate they use only `crate::util` and the
//! protocol constants and id helpers of `crate::jsonrpc` (see each tool's module docs); the
//! tape tools also the redaction rules of `crate::tape` and, for replay, the HTTP server of
//! `crate::http`, which is made to be reused. The
//! exception is `fuzzing`, whose purpose is to drive the proxy's parsers directly; it is
//! compiled only with the `fuzzing` feature.

pub mod bench;
pub mod demo;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod tape;
