//! Tape format pieces shared by whoever writes tapes and whoever reads them
//! (`docs/tape-format.md`, version 1).
//!
//! Owns: the format's rules that both sides must apply identically: [`redact`] (which values
//! are replaced, and how the placeholder is computed). Must not touch: files, threads, the
//! proxy or the tools; the recorder and the tape tools (`tools/tape/`) call into it, it calls
//! nothing of theirs. Uses only `serde_json` and `sha2`.

pub mod redact;
