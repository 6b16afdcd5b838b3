//! Tools shipped in the same binary, beside the proxy they exercise: the demo MCP server
//! (`shadowcat demo-server`), the load generator (`shadowcat bench`) and, with the `fuzzing`
//! feature, the fuzz entry points.
//!
//! Owns: everything those tools need of their own. Must not touch: the proxy's internals;
//! the tools speak to a proxy over HTTP like any client, and the proxy never imports them.

pub mod bench;
pub mod demo;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
