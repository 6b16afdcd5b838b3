//! Which tools' calls are exclusive on a shared child whoever calls them (`gate.rs`): the
//! operator's (`--stdio-exclusive-tools`) and the ones learned by watching the children
//! (`--stdio-learn-exclusive`, on by default). A plain client (no `sampling`, `elicitation` or
//! `roots`, no `logging/setLevel`) gets the logs of such a call even when other sessions call
//! the same child: the call runs without theirs, so `attribution.rs` proves them its own.
//!
//! **Learning rule.** Evidence comes only from *provable* calls: `tools/call` requests that
//! were the only call on their child from the moment they were sent until their response
//! (the child reader checks this, `child.rs`), with no call ending unanswered just before
//! (`attribution::SETTLE`). Such a call either *logged* (the child sent a log, another
//! notification or a server-to-client request meanwhile, which can only be attributed by
//! being alone) or was *quiet*. A tool becomes exclusive once at least [`MIN_LOGGED`] (2) of
//! its provable calls logged and at least as many logged as were quiet. A child that logs on
//! its own, unrelated to calls (a timer), lands such a log in a short call now and then: that
//! tool's quiet calls outnumber its logged ones and it is never learned, while a tool that
//! logs on every call is learned after its second provable call. (A tool whose calls outlast
//! such a timer's period catches a log in most of them and is learned: its calls then run
//! alone, which costs concurrency, never correctness.)
//!
//! **Bounds.** At most [`MAX_TOOLS`] exclusive names (configured and learned together) and
//! [`MAX_CANDIDATES`] tools with evidence kept; past either, learning stops for new names and
//! each refusal is counted (`shadowcat_stdio_learning_full_total`). A learned tool stays
//! exclusive until the proxy restarts.
//!
//! **Cost.** While no tool is exclusive, a `tools/call` pays one atomic load here; otherwise
//! its `params.name` is read without a copy (unless it has escapes) and looked up in a small
//! set behind a read lock. Evidence is taken on the child's reader thread, only for provable
//! calls, so never while calls overlap.
//!
//! Must not touch: admission itself (`gate.rs`), attribution (`attribution.rs`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use serde_json::value::RawValue;

use crate::jsonrpc::{self, Message};
use crate::metrics::ExclusiveInfo;
use crate::util::{lock, read, write};

/// Most exclusive tool names, configured and learned together.
pub const MAX_TOOLS: usize = 256;
/// Most tools with learning evidence kept at once.
pub const MAX_CANDIDATES: usize = 256;
/// Longest tool name, in bytes, that `--stdio-exclusive-tools` takes or learning keeps.
pub const MAX_NAME: usize = 128;
/// Provable calls that logged before a tool is learned.
pub const MIN_LOGGED: u32 = 2;

/// What provable calls of one tool showed.
#[derive(Clone, Copy, Debug, Default)]
struct Evidence {
    logged: u32,
    quiet: u32,
}

/// The exclusive tools of one shared stdio upstream.
#[derive(Debug)]
pub struct ExclusiveTools {
    learning: bool,
    /// `--stdio-exclusive-tools`, in the order given.
    configured: Vec<String>,
    /// Configured and learned names: read on every `tools/call` while [`Self::any`].
    names: RwLock<HashSet<Box<str>>>,
    /// Whether `names` holds anything.
    any: AtomicBool,
    /// Learned names, in the order learned.
    learned: Mutex<Vec<String>>,
    /// Tools seen logging during a provable call, not learned yet.
    candidates: Mutex<HashMap<Box<str>, Evidence>>,
    /// Whether `candidates` holds anything (a quiet call of a tool that never logged costs
    /// one atomic load).
    has_candidates: AtomicBool,
    /// Names not learned (or not kept as candidates) because a bound was reached.
    full: AtomicU64,
}

impl ExclusiveTools {
    /// `configured` (already validated: at most [`MAX_TOOLS`] names), learning or not.
    pub fn new(configured: &[String], learning: bool) -> ExclusiveTools {
        let names: HashSet<Box<str>> = configured.iter().map(|n| n.as_str().into()).collect();
        ExclusiveTools {
            learning,
            configured: configured.to_vec(),
            any: AtomicBool::new(!names.is_empty()),
            names: RwLock::new(names),
            learned: Mutex::default(),
            candidates: Mutex::default(),
            has_candidates: AtomicBool::new(false),
            full: AtomicU64::new(0),
        }
    }

    /// Whether calls are watched for evidence.
    pub fn learning(&self) -> bool {
        self.learning
    }

    /// True when `msg` is a `tools/call` of an exclusive tool.
    pub fn exclusive(&self, msg: &Message) -> bool {
        if !self.any.load(Ordering::Acquire) || msg.method() != "tools/call" {
            return false;
        }
        match msg.params.as_deref().and_then(tool_name) {
            Some(name) => read(&self.names).contains(name.as_ref()),
            None => false,
        }
    }

    /// Evidence from one provable call of the tool `params` name: it `logged` or was quiet.
    /// Returns true when that made the tool exclusive.
    pub fn observe(&self, params: &RawValue, logged: bool) -> bool {
        if !self.learning || (!logged && !self.has_candidates.load(Ordering::Acquire)) {
            return false;
        }
        let Some(tool) = tool_name(params) else {
            return false;
        };
        if tool.is_empty() || tool.len() > MAX_NAME || read(&self.names).contains(tool.as_ref()) {
            return false;
        }
        let mut candidates = lock(&self.candidates);
        if !candidates.contains_key(tool.as_ref()) {
            if !logged {
                return false;
            }
            if candidates.len() >= MAX_CANDIDATES {
                self.full.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            candidates.insert(tool.as_ref().into(), Evidence::default());
            self.has_candidates.store(true, Ordering::Release);
        }
        let Some(e) = candidates.get_mut(tool.as_ref()) else {
            return false;
        };
        if logged {
            e.logged = e.logged.saturating_add(1);
        } else {
            e.quiet = e.quiet.saturating_add(1);
        }
        if e.logged < MIN_LOGGED || e.logged < e.quiet {
            return false;
        }
        let mut names = write(&self.names);
        if names.len() >= MAX_TOOLS {
            self.full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let evidence = *e;
        candidates.remove(tool.as_ref());
        self.has_candidates
            .store(!candidates.is_empty(), Ordering::Release);
        names.insert(tool.as_ref().into());
        self.any.store(true, Ordering::Release);
        lock(&self.learned).push(tool.clone().into_owned());
        log::info!(
            "learned: calls to tool {} are exclusive from now on ({} provable calls logged, {} \
             were quiet)",
            crate::util::Escaped(&tool),
            evidence.logged,
            evidence.quiet
        );
        true
    }

    /// What `/admin/upstreams` and `/metrics` show.
    pub fn info(&self) -> ExclusiveInfo {
        ExclusiveInfo {
            learning: self.learning,
            configured: self.configured.clone(),
            learned: lock(&self.learned).clone(),
            candidates: lock(&self.candidates).len(),
            full: self.full.load(Ordering::Relaxed),
        }
    }
}

/// `params.name` of a request, borrowed unless it has escapes; `None` if it is not a string.
pub fn tool_name(params: &RawValue) -> Option<Cow<'_, str>> {
    let [Some(raw)] = jsonrpc::pick(params.get(), ["name"])? else {
        return None;
    };
    let text = raw.get();
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
        Some(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
        None => None,
    }
}

/// Checks `--stdio-exclusive-tools` values (each a name or a comma-separated list): at most
/// [`MAX_TOOLS`] names of 1..=[`MAX_NAME`] bytes without control characters or spaces.
/// Returns them without duplicates, in the order given.
pub fn parse_names(values: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in values.iter().flat_map(|v| v.split(',')) {
        let name = part.trim();
        if name.is_empty() {
            return Err("empty tool name".into());
        }
        if name.len() > MAX_NAME {
            return Err(format!("tool name longer than {MAX_NAME} bytes"));
        }
        if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "tool name {:?} has a space or a control character",
                name
            ));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    if out.len() > MAX_TOOLS {
        return Err(format!("more than {MAX_TOOLS} tools"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str) -> Message {
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":{name},"arguments":{{}}}}}}"#
        );
        Message::parse(text.as_bytes()).unwrap()
    }

    fn params(name: &str) -> Box<RawValue> {
        jsonrpc::raw(format!(r#"{{"arguments":{{"x":1}},"name":"{name}"}}"#))
    }

    #[test]
    fn configured_tools_are_exclusive_and_names_are_read_exactly() {
        let t = ExclusiveTools::new(&["stream_events".into(), "a\"b".into()], false);
        assert!(t.exclusive(&call(r#""stream_events""#)));
        assert!(t.exclusive(&call(r#""stream\u005fevents""#)), "escapes");
        assert!(t.exclusive(&call(r#""a\"b""#)));
        assert!(!t.exclusive(&call(r#""echo""#)));
        assert!(!t.exclusive(&call("7")));
        let list = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"stream_events"}}"#,
        )
        .unwrap();
        assert!(!t.exclusive(&list), "only tools/call");
        assert!(!t.observe(&params("x"), true), "not learning");
        assert_eq!(t.info().configured, ["stream_events", "a\"b"]);
    }

    #[test]
    fn a_tool_that_logs_on_every_provable_call_is_learned_on_the_second() {
        let t = ExclusiveTools::new(&[], true);
        assert!(!t.exclusive(&call(r#""stream_events""#)));
        assert!(!t.observe(&params("echo"), false), "quiet, never logged");
        assert_eq!(t.info().candidates, 0);
        assert!(!t.observe(&params("stream_events"), true));
        assert_eq!(t.info().candidates, 1);
        assert!(t.observe(&params("stream_events"), true));
        assert!(t.exclusive(&call(r#""stream_events""#)));
        assert!(!t.exclusive(&call(r#""echo""#)));
        let info = t.info();
        assert_eq!(info.learned, ["stream_events"]);
        assert_eq!(info.candidates, 0);
        // Already exclusive: no more evidence kept.
        assert!(!t.observe(&params("stream_events"), true));
        assert_eq!(t.info().learned.len(), 1);
    }

    #[test]
    fn spontaneous_logs_in_a_quiet_tools_calls_teach_nothing() {
        // A child that logs on a timer: now and then a log lands in a short echo call.
        let t = ExclusiveTools::new(&[], true);
        assert!(!t.observe(&params("echo"), true));
        for _ in 0..50 {
            assert!(!t.observe(&params("echo"), false));
        }
        assert!(!t.observe(&params("echo"), true));
        assert!(!t.observe(&params("echo"), true));
        assert!(!t.exclusive(&call(r#""echo""#)));
        assert!(t.info().learned.is_empty());
        // A tool that logs more often than not is learned.
        assert!(!t.observe(&params("chatty"), true));
        assert!(!t.observe(&params("chatty"), false));
        assert!(t.observe(&params("chatty"), true));
    }

    #[test]
    fn learning_is_bounded_and_counted() {
        let t = ExclusiveTools::new(&[], true);
        for i in 0..MAX_CANDIDATES {
            t.observe(&params(&format!("t{i}")), true);
        }
        assert_eq!(t.info().candidates, MAX_CANDIDATES);
        assert!(!t.observe(&params("one-more"), true));
        assert_eq!(t.info().full, 1);
        // Candidates already kept may still be learned, up to MAX_TOOLS names.
        let configured: Vec<String> = (0..MAX_TOOLS - 1).map(|i| format!("c{i}")).collect();
        let t = ExclusiveTools::new(&configured, true);
        t.observe(&params("a"), true);
        assert!(t.observe(&params("a"), true));
        t.observe(&params("b"), true);
        assert!(!t.observe(&params("b"), true), "full");
        assert_eq!(t.info().full, 1);
        assert!(!t.exclusive(&call(r#""b""#)));
        // Over-long names are not kept.
        let long = "x".repeat(MAX_NAME + 1);
        assert!(!t.observe(&params(&long), true));
        assert_eq!(t.info().candidates, 1);
    }

    #[test]
    fn flag_values_are_validated() {
        let v = |s: &[&str]| parse_names(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(
            v(&["a,b", "c", " b "]).unwrap(),
            ["a", "b", "c"],
            "lists, repeats, duplicates"
        );
        assert!(v(&["a,,b"]).is_err());
        assert!(v(&[""]).is_err());
        assert!(v(&["has space"]).is_err());
        assert!(v(&["bell\u{7}"]).is_err());
        assert!(v(&[&"x".repeat(MAX_NAME + 1)]).is_err());
        assert!(v(&[&"x".repeat(MAX_NAME)]).is_ok());
        let many: Vec<String> = (0..=MAX_TOOLS).map(|i| format!("t{i}")).collect();
        assert!(parse_names(&many).is_err());
        assert!(parse_names(&many[..MAX_TOOLS]).is_ok());
    }
}
