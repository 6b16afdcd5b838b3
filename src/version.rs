//! The MCP protocol revisions shadowcat speaks, named once.
//!
//! Owns: the revision strings. Must not touch anything: every other module may import it (the
//! error answers list them in `-32022`'s `data`, the JSON-RPC layer and the bridge compare
//! against them), so it imports nothing.

/// The stateless protocol revision (no `initialize`, versions in `_meta`).
pub const MODERN_VERSION: &str = "2026-07-28";
/// The handshake-era revisions, oldest first.
pub const LEGACY_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
