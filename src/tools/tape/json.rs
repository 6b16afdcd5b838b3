//! Comparing JSON the way the tape tools do (replay's matching and `tape diff`), and showing
//! it briefly.
//!
//! Two values are *the same* when they differ nowhere, where:
//! * `_meta` members are ignored at any depth (progress tokens live there, and the 2026-07-28
//!   era's server info);
//! * a redacted placeholder (`<redacted:…>`) on either side equals anything;
//! * numbers are compared by value (`1`, `1.0` and `1e0` are the same);
//! * an object member that is `null` is the same as one that is absent;
//! * paths the caller ignores (`--ignore`) are skipped.
//!
//! Where values differ is told as JSON pointers (RFC 6901) from the value compared.

use serde_json::Value;

use crate::tape::redact::is_redacted;

/// One place where two values differ: `a` or `b` is `None` where a member is absent.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// JSON pointer of the place.
    pub path: String,
    /// The first value there.
    pub a: Option<Value>,
    /// The second value there.
    pub b: Option<Value>,
}

/// Every place where `a` and `b` differ (rules in the module docs); `ignore` holds JSON
/// pointers (from the compared values) whose whole subtrees are skipped.
pub fn differences(a: &Value, b: &Value, ignore: &[String]) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(Some(a), Some(b), &mut String::new(), ignore, &mut out);
    out
}

/// Whether `a` and `b` are the same (no [`differences`]).
pub fn same(a: &Value, b: &Value) -> bool {
    differences(a, b, &[]).is_empty()
}

fn walk(
    a: Option<&Value>,
    b: Option<&Value>,
    path: &mut String,
    ignore: &[String],
    out: &mut Vec<Difference>,
) {
    if ignore.iter().any(|p| p == path) {
        return;
    }
    let a = a.filter(|v| !v.is_null());
    let b = b.filter(|v| !v.is_null());
    match (a, b) {
        (None, None) => {}
        (Some(x), Some(y)) if is_redacted(x) || is_redacted(y) => {}
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                if k == "_meta" {
                    continue;
                }
                let len = path.len();
                push_token(path, k);
                walk(x.get(k), y.get(k), path, ignore, out);
                path.truncate(len);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for i in 0..x.len().max(y.len()) {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                walk(x.get(i), y.get(i), path, ignore, out);
                path.truncate(len);
            }
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) if numbers_equal(x, y) => {}
        (Some(x), Some(y)) if x == y => {}
        (a, b) => out.push(Difference {
            path: path.clone(),
            a: a.cloned(),
            b: b.cloned(),
        }),
    }
}

fn numbers_equal(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
        (Some(a), Some(b), _, _) => a == b,
        (_, _, Some(a), Some(b)) => a == b,
        _ => x.as_f64().zip(y.as_f64()).is_some_and(|(a, b)| a == b),
    }
}

/// Appends `/token` to a JSON pointer, escaping `~` and `/`.
pub fn push_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// Compact JSON text of `v`, cut to about `max` characters with `…`.
pub fn brief(v: &Value, max: usize) -> String {
    let text = v.to_string();
    cut(&text, max)
}

/// `text` cut to about `max` characters with `…`.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Levenshtein distance between `a` and `b`, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_ignores_meta_numbers_nulls_and_redactions() {
        assert!(same(
            &json!({"name": "echo", "_meta": {"progressToken": 1}, "n": 1, "x": null}),
            &json!({"name": "echo", "n": 1.0, "_meta": {"progressToken": 2}})
        ));
        assert!(same(
            &json!({"a": {"token": "<redacted:0123abcd>"}}),
            &json!({"a": {"token": "hunter2"}})
        ));
        assert!(!same(&json!({"a": 1}), &json!({"a": 2})));
        assert!(!same(&json!([1, 2]), &json!([1, 2, 3])));
        assert!(!same(&json!("<redacted:nothex!!>"), &json!("x")));
    }

    #[test]
    fn differences_are_pointers() {
        let a = json!({"content": [{"type": "text", "text": "a"}], "a/b": 1, "gone": true});
        let b = json!({"content": [{"type": "text", "text": "b"}, 7], "a/b": 2});
        let d = differences(&a, &b, &[]);
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/a~1b", "/content/0/text", "/content/1", "/gone"]);
        assert_eq!(d[2].a, None);
        assert_eq!(d[3].b, None);
        let d = differences(&a, &b, &["/content".into(), "/a~1b".into()]);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn distances_and_brief() {
        assert_eq!(edit_distance("tools/call", "tools/list"), 4);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("tool/call", "tools/call"), 1);
        assert_eq!(brief(&json!({"a": "bcdefgh"}), 8), "{\"a\":\"b…");
    }
}
