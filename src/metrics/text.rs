//! The text format's primitives: escaping label values and HELP text, one line, a family's
//! `# HELP` and `# TYPE` lines. Shared by the renderers (`render.rs`, `replicas.rs`).

use std::fmt::{self, Write as _};

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Escapes HELP text: backslash and line feed.
pub(super) fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

pub(super) fn line(w: &mut String, args: fmt::Arguments<'_>) {
    // Writing into a String cannot fail.
    let _ = w.write_fmt(args);
    w.push('\n');
}

pub(super) fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    line(w, format_args!("# HELP {name} {}", escape_help(help)));
    line(w, format_args!("# TYPE {name} {kind}"));
}
