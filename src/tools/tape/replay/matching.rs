//! Which recorded exchange answers a request: the matching rule of `shadowcat replay`.
//!
//! A recorded request is a *candidate* when the tape has its response. A request matches a
//! candidate when the methods are equal and the params are the same as `tools/tape/json.rs`
//! defines it (`_meta` ignored at any depth, so progress tokens too; a redacted recorded value
//! matches any value; numbers by value; a null member as an absent one; absent params as
//! `{}`). Ids never take part. `initialize` matches on its method alone (a client's name,
//! version and capabilities are its own).
//!
//! * **Default (any order):** the first candidate in tape order that is unused and matches.
//!   It is then used: a session answers each recorded request once.
//! * **`--strict`:** only the next candidate in tape order may match; recorded `ping`s are
//!   skipped when the request is not a `ping`.
//! * **`ping`** that matches nothing is answered `{}` anyway (clients ping on timers).
//! * **No match:** -32601 when the method appears nowhere on the tape; else -32602. The
//!   message names the closest recorded request: with the same method, the one whose params
//!   differ in the fewest places (unused ones first, then tape order; in strict order, the
//!   expected one); otherwise the request whose method is nearest by edit distance.

use serde_json::{Map, Value, json};

use super::super::exchange::Exchange;
use super::super::json::{brief, cut, differences, edit_distance, same};

/// JSON-RPC "method not found": no recorded request has the method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC "invalid params": the method was recorded, with other params (or used up).
pub const INVALID_PARAMS: i64 = -32602;

/// What answers a request.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// This exchange (index into the exchanges).
    Exchange(usize),
    /// An unrecorded `ping`: answer `{}`.
    Ping,
    /// Nothing: answer this error.
    Miss(Miss),
}

/// The JSON-RPC error for an unmatched request.
#[derive(Debug, PartialEq)]
pub struct Miss {
    /// -32601 or -32602.
    pub code: i64,
    /// Names the closest recorded request.
    pub message: String,
    /// `{"closest": {"request", "method", "params", "used"}, "differs": [pointers]}`.
    pub data: Value,
}

/// One session's progress through the tape.
#[derive(Debug)]
pub struct Matcher {
    used: Vec<bool>,
    strict: bool,
    /// Strict order: index of the next exchange that may match.
    cursor: usize,
}

fn candidate(x: &Exchange) -> bool {
    x.response.is_some()
}

/// Params as compared: absent or null is `{}`.
fn params_of(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v) => v.clone(),
    }
}

fn matches(x: &Exchange, method: &str, params: &Value) -> bool {
    x.method == method && (method == "initialize" || same(&params_of(Some(x.params())), params))
}

impl Matcher {
    /// A session that has used nothing yet, of a tape with `n` exchanges.
    pub fn new(n: usize, strict: bool) -> Matcher {
        Matcher {
            used: vec![false; n],
            strict,
            cursor: 0,
        }
    }

    /// Finds what answers `method` with `params` (absent: `None`) and marks it used.
    pub fn find(&mut self, xs: &[Exchange], method: &str, params: Option<&Value>) -> Found {
        let params = params_of(params);
        let hit = if self.strict {
            self.next_strict(xs, method, &params)
        } else {
            (0..xs.len())
                .find(|&i| !self.used[i] && candidate(&xs[i]) && matches(&xs[i], method, &params))
        };
        if let Some(i) = hit {
            if let Some(u) = self.used.get_mut(i) {
                *u = true;
            }
            return Found::Exchange(i);
        }
        if method == "ping" {
            return Found::Ping;
        }
        Found::Miss(self.miss(xs, method, &params))
    }

    fn next_strict(&mut self, xs: &[Exchange], method: &str, params: &Value) -> Option<usize> {
        let mut i = self.cursor;
        while let Some(x) = xs.get(i) {
            if !candidate(x) || (x.method == "ping" && method != "ping") {
                i += 1;
                continue;
            }
            if matches(x, method, params) {
                self.cursor = i + 1;
                return Some(i);
            }
            return None;
        }
        None
    }

    /// The next exchange strict order expects, if any.
    fn expected(&self, xs: &[Exchange], method: &str) -> Option<usize> {
        (self.cursor..xs.len())
            .find(|&i| candidate(&xs[i]) && !(xs[i].method == "ping" && method != "ping"))
    }

    fn miss(&self, xs: &[Exchange], method: &str, params: &Value) -> Miss {
        let recorded = xs.iter().any(|x| x.method == method);
        // The client's method name, bounded for the edit distance and the message.
        let method: &str = &cut(method, 100);
        let code = if recorded {
            INVALID_PARAMS
        } else {
            METHOD_NOT_FOUND
        };
        let closest = if self.strict {
            self.expected(xs, method)
        } else if recorded {
            // Fewest differing places; unused first; then tape order.
            (0..xs.len())
                .filter(|&i| xs[i].method == method)
                .min_by_key(|&i| {
                    let n = differences(&params_of(Some(xs[i].params())), params, &[]).len();
                    (n, self.used[i], i)
                })
        } else {
            (0..xs.len()).min_by_key(|&i| (edit_distance(&xs[i].method, method), i))
        };
        let mut message = if self.strict {
            match closest {
                Some(_) => format!("{method} is not the next recorded request (strict order)"),
                None => {
                    format!("{method}: every recorded request was already answered (strict order)")
                }
            }
        } else if recorded {
            format!("no unused recorded {method} request has these params")
        } else {
            format!("{method} was not recorded")
        };
        let mut data = json!({});
        if let Some(i) = closest {
            let x = &xs[i];
            let recorded_params = params_of(Some(x.params()));
            let differs: Vec<String> = if x.method == method {
                differences(&recorded_params, params, &[])
                    .into_iter()
                    .map(|d| d.path)
                    .collect()
            } else {
                Vec::new()
            };
            let used = self.used.get(i).copied().unwrap_or(false);
            let label = if self.strict { "expected" } else { "closest" };
            message.push_str(&format!(
                "; {label} recorded request: #{} {} {}",
                x.number,
                x.method,
                brief(&recorded_params, 160)
            ));
            if used {
                message.push_str(" (already answered)");
            } else if !differs.is_empty() {
                message.push_str(&format!(" (differs at {})", differs.join(", ")));
            }
            data = json!({
                "closest": {"request": x.number, "method": x.method, "params": recorded_params,
                            "used": used},
                "differs": differs,
            });
        } else if xs.is_empty() {
            message.push_str("; the tape has no requests");
        }
        Miss {
            code,
            message,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(number: usize, method: &str, params: Value, answered: bool) -> Exchange {
        Exchange {
            number,
            method: method.into(),
            request: json!({"jsonrpc": "2.0", "id": number, "method": method, "params": params}),
            t_request: 0.0,
            response: answered.then(|| json!({"jsonrpc": "2.0", "id": number, "result": {}})),
            t_response: answered.then_some(1.0),
            events: Vec::new(),
        }
    }

    fn tape() -> Vec<Exchange> {
        vec![
            x(1, "initialize", json!({"clientInfo": {"name": "a"}}), true),
            x(2, "tools/list", json!({}), true),
            x(
                3,
                "tools/call",
                json!({"name": "echo", "arguments": {"message": "a"}}),
                true,
            ),
            x(
                4,
                "tools/call",
                json!({"name": "echo", "arguments": {"message": "b"}}),
                true,
            ),
            x(
                5,
                "tools/call",
                json!({"name": "echo", "arguments": {"message": "a"}}),
                true,
            ),
            x(6, "ping", json!({}), true),
            x(7, "tools/call", json!({"name": "hang"}), false),
        ]
    }

    fn call(msg: &str, meta: Value) -> Value {
        json!({"name": "echo", "arguments": {"message": msg}, "_meta": meta})
    }

    #[test]
    fn any_order_takes_the_first_unused_equal_request() {
        let xs = tape();
        let mut m = Matcher::new(xs.len(), false);
        let p = call("a", json!({"progressToken": 99}));
        assert_eq!(m.find(&xs, "tools/call", Some(&p)), Found::Exchange(2));
        assert_eq!(
            m.find(&xs, "tools/call", Some(&call("b", json!({})))),
            Found::Exchange(3)
        );
        assert_eq!(m.find(&xs, "tools/call", Some(&p)), Found::Exchange(4));
        // Both recorded "a" calls are used now.
        let Found::Miss(miss) = m.find(&xs, "tools/call", Some(&p)) else {
            panic!("third a");
        };
        assert_eq!(miss.code, INVALID_PARAMS);
        assert!(miss.message.contains("#3 tools/call"), "{}", miss.message);
        assert!(
            miss.message.contains("already answered"),
            "{}",
            miss.message
        );
        // initialize matches on its method; absent params are {}.
        assert_eq!(
            m.find(&xs, "initialize", Some(&json!({"x": 1}))),
            Found::Exchange(0)
        );
        assert_eq!(m.find(&xs, "tools/list", None), Found::Exchange(1));
        assert_eq!(m.find(&xs, "ping", None), Found::Exchange(5));
        assert_eq!(m.find(&xs, "ping", None), Found::Ping);
    }

    #[test]
    fn unanswered_recordings_are_not_candidates() {
        let xs = tape();
        let mut m = Matcher::new(xs.len(), false);
        let Found::Miss(miss) = m.find(&xs, "tools/call", Some(&json!({"name": "hang"}))) else {
            panic!("hang has no response");
        };
        assert_eq!(miss.code, INVALID_PARAMS);
    }

    #[test]
    fn a_miss_names_the_closest_request() {
        let xs = tape();
        let mut m = Matcher::new(xs.len(), false);
        let Found::Miss(miss) = m.find(&xs, "tools/call", Some(&call("c", json!({})))) else {
            panic!("c");
        };
        assert_eq!(miss.data["closest"]["request"], 3);
        assert_eq!(miss.data["differs"], json!(["/arguments/message"]));
        assert!(
            miss.message.contains("differs at /arguments/message"),
            "{}",
            miss.message
        );
        let Found::Miss(miss) = m.find(&xs, "tool/list", None) else {
            panic!("unknown method");
        };
        assert_eq!(miss.code, METHOD_NOT_FOUND);
        assert!(
            miss.message
                .starts_with("tool/list was not recorded; closest recorded request: #2 tools/list"),
            "{}",
            miss.message
        );
        let mut empty = Matcher::new(0, false);
        let Found::Miss(miss) = empty.find(&[], "tools/list", None) else {
            panic!("empty tape");
        };
        assert!(miss.message.contains("no requests"), "{}", miss.message);
    }

    #[test]
    fn strict_order() {
        let xs = tape();
        let mut m = Matcher::new(xs.len(), true);
        assert_eq!(m.find(&xs, "initialize", None), Found::Exchange(0));
        let Found::Miss(miss) = m.find(&xs, "tools/call", Some(&call("a", json!({})))) else {
            panic!("out of order");
        };
        assert_eq!(miss.code, INVALID_PARAMS);
        assert!(
            miss.message
                .contains("expected recorded request: #2 tools/list"),
            "{}",
            miss.message
        );
        assert_eq!(m.find(&xs, "tools/list", None), Found::Exchange(1));
        assert_eq!(
            m.find(&xs, "tools/call", Some(&call("a", json!({})))),
            Found::Exchange(2)
        );
        assert_eq!(
            m.find(&xs, "ping", None),
            Found::Ping,
            "a ping out of order is still answered"
        );
        assert_eq!(
            m.find(&xs, "tools/call", Some(&call("b", json!({})))),
            Found::Exchange(3)
        );
        assert_eq!(
            m.find(&xs, "tools/call", Some(&call("a", json!({})))),
            Found::Exchange(4)
        );
        assert_eq!(m.find(&xs, "ping", None), Found::Exchange(5));
        let Found::Miss(miss) = m.find(&xs, "tools/list", None) else {
            panic!("past the end");
        };
        assert!(
            miss.message.contains("already answered (strict order)"),
            "{}",
            miss.message
        );
    }

    #[test]
    fn strict_order_skips_recorded_pings() {
        let xs = vec![
            x(1, "ping", json!({}), true),
            x(2, "tools/list", json!({}), true),
        ];
        let mut m = Matcher::new(xs.len(), true);
        assert_eq!(m.find(&xs, "tools/list", None), Found::Exchange(1));
    }
}
