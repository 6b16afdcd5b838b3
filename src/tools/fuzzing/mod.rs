//! Fuzz entry points. Not an API: each function takes arbitrary bytes, drives the production
//! code on them and checks invariants with `assert!`, so a violated invariant is a crash.
//!
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` call these (`scripts/fuzz` runs them) and
//! `tests/it/fuzz_corpus.rs` replays the committed corpus (`fuzz/corpus/<target>/`) on stable.
//! Everything here is deterministic: where a parameter is needed (a call id, where to split a
//! stream), it is derived from a hash of the input.
//!
//! One file per target family: `jsonrpc.rs` (the envelope and the stdio id path), `sse.rs`,
//! `headers.rs` (HTTP heads, framing, header checks), `fields.rs` (raw field pickers, ids),
//! `bridge.rs` (the era bridge), `cert.rs` (client-certificate subjects).

mod bridge;
mod cert;
mod fields;
mod headers;
mod jsonrpc;
mod sse;

pub use bridge::bridge;
pub use cert::subject;
pub use fields::fields;
pub use headers::headers;
pub use jsonrpc::jsonrpc;
pub use sse::sse;

/// FNV-1a, for deterministic parameters derived from the input.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
