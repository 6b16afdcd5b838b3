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
