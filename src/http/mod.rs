//! Our own HTTP/1.1 layer, on `httparse` and std sockets.
//!
//! Owns: the wire (strict request parsing, response encoding), the server (accept thread,
//! connection threads, worker and stream permits, graceful shutdown) and the `Host`/`Origin`
//! syntax the rebinding checks compare. Must not touch: MCP, JSON-RPC, sessions or upstreams;
//! the one thing it calls is the [`Handler`] it was given.

mod encode;
pub mod origin;
mod parse;
mod permit;
mod request;
mod responder;
mod server;

pub use encode::*;
pub use parse::*;
pub use request::*;
pub use responder::*;
pub use server::*;
