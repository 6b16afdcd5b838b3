//! Replay over stdio: newline-delimited JSON-RPC on stdin/stdout, like `shadowcat
//! demo-server`, one session for the whole connection. Logs go to stderr only.
//!
//! The reader answers each request in turn; a request whose plan holds a server-to-client
//! request is played on a thread of its own, so the reader goes on and can route the client's
//! answer to it. Every message is written as one flushed line under a lock. A line that is not
//! JSON gets a -32700 error (id null); one longer than [`MAX_LINE`] ends the replay. Returns at
//! stdin EOF.

use std::io::{self, BufRead, Write};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{Script, Session, Sink, Step};
use crate::tools::tape::read::{Kind, kind};
use crate::util::{lock, read_line_bounded, trim_line};

/// Longest line read from the client.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

type Out = Arc<Mutex<Box<dyn Write + Send>>>;

struct Lines(Out);

impl Sink for Lines {
    fn send(&mut self, msg: &Value) -> io::Result<()> {
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(b'\n');
        let mut out = lock(&self.0);
        out.write_all(&bytes)?;
        out.flush()
    }
}

/// Replays `script` to the client on `input`/`output` until `input` ends.
pub fn serve<R: BufRead, W: Write + Send + 'static>(
    script: Arc<Script>,
    mut input: R,
    output: W,
) -> io::Result<()> {
    let out: Out = Arc::new(Mutex::new(Box::new(output)));
    let session = Arc::new(Session::new(script));
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        if read_line_bounded(&mut input, &mut buf, MAX_LINE)? == 0 {
            return Ok(());
        }
        let line = trim_line(&buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let msg: Value = match serde_json::from_slice(line) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                let e = json!({"code": -32600, "message": "not one JSON-RPC message"});
                Lines(Arc::clone(&out)).send(&json!({"jsonrpc": "2.0", "id": null, "error": e}))?;
                continue;
            }
            Err(e) => {
                let e = json!({"code": -32700, "message": format!("parse error: {e}")});
                Lines(Arc::clone(&out)).send(&json!({"jsonrpc": "2.0", "id": null, "error": e}))?;
                continue;
            }
        };
        match kind(&msg) {
            Kind::Request => {
                let plan = session.plan(&msg);
                let asks = plan.steps.iter().any(|s| matches!(s, Step::Ask { .. }));
                let mut sink = Lines(Arc::clone(&out));
                if asks {
                    let session = Arc::clone(&session);
                    std::thread::Builder::new()
                        .name("replay-call".into())
                        .spawn(move || {
                            if let Err(e) = session.play(plan, &mut sink) {
                                log::warn!("replay: cannot write: {e}");
                            }
                        })?;
                } else {
                    session.play(plan, &mut sink)?;
                }
            }
            Kind::Response => {
                session.answer(&msg);
            }
            Kind::Notification | Kind::Other => {}
        }
    }
}
