//! The committed fuzz corpus (`fuzz/corpus/<target>/`), replayed through the same entry points
//! the fuzzers call (`shadowcat::fuzzing`). Each input once found new coverage or a crash, so
//! this is a cheap, stable regression suite; `scripts/fuzz` runs the fuzzers themselves.

use std::path::Path;

/// Feeds every file of `fuzz/corpus/<target>/` to `entry`; a violated invariant panics with the
/// file's name.
fn replay(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    let mut bytes = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        bytes += data.len();
        let run = std::panic::catch_unwind(|| entry(&data));
        assert!(run.is_ok(), "fuzz input {} fails", path.display());
    }
    println!(
        "fuzz corpus {target}: replayed {} inputs ({bytes} bytes)",
        files.len()
    );
}

#[test]
fn jsonrpc() {
    replay("jsonrpc", shadowcat::tools::fuzzing::jsonrpc);
}

#[test]
fn sse() {
    replay("sse", shadowcat::tools::fuzzing::sse);
}

#[test]
fn headers() {
    replay("headers", shadowcat::tools::fuzzing::headers);
}

#[test]
fn fields() {
    replay("fields", shadowcat::tools::fuzzing::fields);
}

#[test]
fn bridge() {
    replay("bridge", shadowcat::tools::fuzzing::bridge);
}

#[test]
fn subject() {
    replay("subject", shadowcat::tools::fuzzing::subject);
}
