//! stdio upstreams: MCP servers run as child processes that shadowcat starts, keeps alive,
//! restarts and stops.
//!
//! Owns: one child's threads, id rewriting and routing ([`child`]); a fixed set of children
//! shared by every session ([`shared`]); a child per session from a warm pool
//! ([`dedicated`]). Must not touch: the client side (HTTP, sessions' streams beyond
//! delivering into them) or any other upstream kind.

pub mod child;
pub mod dedicated;
pub mod shared;
