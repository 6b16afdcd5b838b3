//! stdio upstreams: MCP servers run as child processes that shadowcat starts, keeps alive,
//! restarts and stops.
//!
//! Owns: one child's threads, or the one I/O thread of many children (`reactor.rs`), id
//! rewriting and routing ([`child`]); whose a child's message is
//! (`attribution.rs`) and which calls may be on a shared child at once (`gate.rs`), among them
//! the tools whose calls run alone, configured or learned ([`exclusive`]); one call on a child, the
//! same in both modes (`call.rs`), and its queue, bounded in bytes (`queue.rs`); a fixed set of children shared by every session
//! ([`shared`]), its slots (`slots.rs`) and its supervisor thread (`supervisor.rs`); a child per session from a warm
//! pool ([`dedicated`]). Must not touch: the client side (HTTP, sessions' streams beyond
//! delivering into them) or any other upstream kind.

pub(crate) mod attribution;
#[cfg(test)]
mod attribution_tests;
mod call;
pub mod child;
pub mod dedicated;
pub mod exclusive;
pub(crate) mod gate;
mod modern_child;
pub(crate) mod queue;
pub(crate) mod reactor;
pub mod shared;
mod slots;
mod supervisor;
