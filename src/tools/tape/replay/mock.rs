//! A tape as the answers of the proxy's `mock_from` fault rules (`crate::fault`): each request
//! is matched by replay's rule (`matching.rs`) with a fresh matcher, so the first recorded
//! request that matches answers it, however often it is asked. Only the recorded response is
//! given (not the notifications or server requests recorded before it). Nothing matches:
//! replay's error naming the closest recorded request.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Script;
use super::matching::{Found, Matcher};
use crate::error::Error;
use crate::fault::Recorded;

/// The recorded answers of one tape (or a directory of tapes).
pub struct TapeAnswers {
    script: Script,
}

/// Reads the tape (or directory of tapes) at `path` for a `mock_from` rule.
pub fn load(path: &Path) -> Result<Arc<dyn Recorded>, Error> {
    let script = Script::load(path, false, std::time::Duration::ZERO)?;
    Ok(Arc::new(TapeAnswers { script }))
}

impl Recorded for TapeAnswers {
    fn answer(&self, method: &str, params: Option<&Value>) -> Value {
        let xs = &self.script.exchanges;
        match Matcher::new(xs.len(), false).find(xs, method, params) {
            Found::Exchange(i) => xs
                .get(i)
                .and_then(|x| x.response.clone())
                .unwrap_or_else(|| json!({"result": {}})),
            Found::Ping => json!({"result": {}}),
            Found::Miss(miss) => {
                json!({"error": {"code": miss.code, "message": miss.message, "data": miss.data}})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::tape::read::{Tape, parse};

    #[test]
    fn answers_from_the_tape_and_misses_name_the_closest() {
        let f = parse(
            Path::new("demo-session.jsonl"),
            super::super::tests::TAPE.as_bytes(),
        )
        .expect("fixture");
        let tape = Tape {
            path: "demo-session.jsonl".into(),
            header: f.header,
            lines: f.lines,
            files: 1,
            incomplete: 0,
        };
        let a = TapeAnswers {
            script: Script::new(tape, false, std::time::Duration::ZERO),
        };
        let params = json!({"name": "echo", "arguments": {"message": "hello"}});
        let got = a.answer("tools/call", Some(&params));
        assert_eq!(got["result"]["content"][0]["text"], "Echo: hello");
        // Asked again: the same answer (no session uses it up).
        assert_eq!(a.answer("tools/call", Some(&params)), got);
        let miss = a.answer(
            "tools/call",
            Some(&json!({"name": "echo", "arguments": {}})),
        );
        assert_eq!(miss["error"]["code"], -32602);
        assert_eq!(a.answer("ping", None)["result"], json!({}));
    }
}
