//! Our own HTTP/1.1 layer, on `httparse` and std sockets, with TLS by `rustls`.
//!
//! Owns: the wire (strict request parsing, response encoding), the server (accept thread,
//! connection threads, worker and stream permits, graceful shutdown) and the `Host`/`Origin`
//! syntax the rebinding checks compare. Must not touch: MCP, JSON-RPC, sessions or upstreams;
//! the one thing it calls is the [`Handler`] it was given.
//!
//! | file | owns |
//! |---|---|
//! | `request.rs` | [`Request`] and [`Version`]: what a handler is given |
//! | `parse.rs` | reading requests off a socket: head scanning and parsing, the body framing rules (`Content-Length`, chunked, `Expect`), the limits ([`MAX_LINE`], [`MAX_HEADERS`], [`MAX_HEAD`], body size and timeouts) and why a read failed |
//! | `encode.rs` | [`Response`] and its bytes: response heads, framing headers, reason phrases ([`reason`]), header validity ([`valid_header`]) |
//! | `server/` | [`Server`], [`ServerConfig`], [`ServerStats`]: the threading model, accept loop, connection threads, shutdown; `conn.rs` is the body of a connection thread (keep-alive loop, error answers) |
//! | `permit.rs` | the counting semaphore behind worker and stream permits |
//! | `responder.rs` | [`Handler`], [`Responder`], [`StreamWriter`], [`StreamError`]: how a handler answers, and the guarded call of it |
//! | `write.rs` | writing to a client under the write timeout, where progress is what the client acknowledges |
//! | `transport.rs` | the connection's stream, plain or TLS: what parse, write and the responder read from and write to |
//! | `tls/` | [`Tls`], [`TlsFiles`]: a listener's TLS configuration (PEM files, mTLS, reload) and the handshake under a deadline; `subject.rs`: who a client certificate names |
//! | `origin.rs` | [`origin`]: `Host`/`Origin` syntax for the DNS-rebinding checks |
//!
//! Unit tests of `x.rs` are in `x/tests.rs`; a part with files of its own is a folder
//! (`server/`).

mod encode;
pub mod origin;
mod parse;
mod permit;
mod request;
mod responder;
mod server;
mod tls;
mod transport;
mod write;

pub use encode::{Response, reason, valid_header};
pub use parse::{MAX_HEAD, MAX_HEADERS, MAX_LINE};
pub use request::{Request, Version};
pub use responder::{Handler, Responder, StreamError, StreamWriter};
pub use server::{Server, ServerConfig, ServerStats};
pub use tls::{Handshake, Tls, TlsFiles};
pub(crate) use tls::{load_certs, load_key, read_pem};

// The strict parsing and encoding steps one by one, for the fuzz entry points.
#[cfg(feature = "fuzzing")]
pub(crate) use encode::{ConnHeader, Framing, encode_head, is_framing_header};
#[cfg(feature = "fuzzing")]
pub(crate) use parse::{
    BodyFraming, HeadScan, ReadError, body_framing, expects_continue, parse_chunk_size, parse_head,
};
#[cfg(feature = "fuzzing")]
pub(crate) use tls::subject::principal as cert_principal;
