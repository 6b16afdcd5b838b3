//! Which tools, prompts and resources of a member a principal may see and use.
//!
//! A member's `allow` (default: everything) and `deny` (default: nothing) are lists of names
//! as the member knows them, with `*` (any run of characters) and `?` (one character); `deny`
//! wins. `allow-resources` and `deny-resources` do the same for its resources, matched
//! against their URIs (a template: against its URI template text).
//! `[upstream.NAME.principal."token:alice"]` gives one principal (`token:NAME`, `jwt:SUB`,
//! `cert:CN`) its own lists, each replacing the member's; `"scope:admin"` gives them to
//! every JWT with that scope whose principal has no table of its own (the first such scope
//! in the file's order wins). A name that is not allowed is absent
//! from lists and refused on call as unknown (`-32602`), never as forbidden; a resource that
//! is not allowed is absent from lists and not found (`-32002`) when read, subscribed to or
//! completed. The era bridge's shared session (2026-07-28 stateless requests) belongs to no
//! principal: it gets only what every principal may have. How allowed tools and prompts are
//! shown and called (renames, descriptions, fixed arguments) is `overrides.rs`.

use crate::config::{PolicyConfig, RulesConfig};

/// True when `name` matches `pattern` (`*`: any run, `?`: one character).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn any(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| glob(p, name))
}

/// Like [`any`] for resource URIs, where a `{...}` in a pattern (a URI template's variable)
/// matches like `*`: `file:///secret/{id}` covers that template's text and every URI it
/// expands to.
fn any_uri(patterns: &[String], uri: &str) -> bool {
    patterns.iter().any(|p| {
        if !p.contains('{') {
            return glob(p, uri);
        }
        let mut starred = String::with_capacity(p.len());
        let mut inside = false;
        for c in p.chars() {
            match (c, inside) {
                ('{', false) => {
                    inside = true;
                    starred.push('*');
                }
                ('}', true) => inside = false,
                (_, true) => {}
                (c, false) => starred.push(c),
            }
        }
        glob(&starred, uri)
    })
}

/// True when no principal or scope table of `policy` overrides member tool or prompt `name`:
/// it is shown and called alike for everyone.
pub fn uniform(policy: &PolicyConfig, name: &str) -> bool {
    policy
        .principals
        .iter()
        .all(|(_, r)| r.tools.iter().chain(&r.prompts).all(|o| o.tool != name))
}

/// What a rule list is about: tool and prompt names, or resource URIs and URI templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Of {
    /// `allow` and `deny`.
    Names,
    /// `allow-resources` and `deny-resources`.
    Resources,
}

fn lists(r: &RulesConfig, of: Of) -> (Option<&Vec<String>>, Option<&Vec<String>>) {
    match of {
        Of::Names => (r.allow.as_ref(), r.deny.as_ref()),
        Of::Resources => (r.allow_resources.as_ref(), r.deny_resources.as_ref()),
    }
}

/// Who asks: a principal (`token:NAME`, `jwt:SUB`, `cert:CN`) and its JWT's scopes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Who<'a> {
    pub principal: Option<&'a str>,
    pub scopes: &'a [String],
}

impl<'a> Who<'a> {
    /// Just a principal, without scopes.
    pub fn named(principal: &'a str) -> Who<'a> {
        Who {
            principal: Some(principal),
            scopes: &[],
        }
    }
}

/// The rules of a principal table that apply to `who`: its own (`"token:alice"`), else the
/// first, in the file's order, of its scopes' (`"scope:admin"`).
pub fn own<'p>(policy: &'p PolicyConfig, who: Who<'_>) -> Option<&'p RulesConfig> {
    let named = who
        .principal
        .and_then(|p| policy.principals.iter().find(|(k, _)| k == p));
    named
        .or_else(|| {
            policy.principals.iter().find(|(k, _)| {
                k.strip_prefix("scope:")
                    .is_some_and(|s| who.scopes.iter().any(|have| have == s))
            })
        })
        .map(|(_, r)| r)
}

/// True when `who` may see and call member tool or prompt `name` ([`Of::Names`]), or see and
/// read resource `name` (a URI, or a template's URI template: [`Of::Resources`]).
pub fn allows(policy: &PolicyConfig, who: Who<'_>, of: Of, name: &str) -> bool {
    let own = own(policy, who).map(|r| lists(r, of));
    let (allow, deny) = lists(&policy.rules, of);
    let allow = own.and_then(|(a, _)| a).or(allow);
    let deny = own.and_then(|(_, d)| d).or(deny);
    let matches = |l: &Vec<String>| match of {
        Of::Names => any(l, name),
        Of::Resources => any_uri(l, name),
    };
    allow.is_none_or(matches) && !deny.is_some_and(matches)
}

/// True when every principal, and anyone without rules of their own, may have `name`: what
/// a caller the federation cannot name (the era bridge's shared session) is allowed.
pub fn allows_everyone(policy: &PolicyConfig, of: Of, name: &str) -> bool {
    allows(policy, Who::default(), of, name)
        && policy.principals.iter().all(|(key, _)| {
            let scope = key.strip_prefix("scope:").map(|s| [s.to_owned()]);
            let who = match &scope {
                Some(s) => Who {
                    principal: None,
                    scopes: s,
                },
                None => Who::named(key),
            };
            allows(policy, who, of, name)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: Option<&[&str]>, deny: Option<&[&str]>) -> RulesConfig {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        RulesConfig {
            allow: allow.map(own),
            deny: deny.map(own),
            ..RulesConfig::default()
        }
    }

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("*", "", true),
            ("echo", "echo", true),
            ("echo", "echo2", false),
            ("get-*", "get-sum", true),
            ("get-*", "toget-sum", false),
            ("*-sum", "get-sum", true),
            ("g?t*m", "get-sum", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
        ] {
            assert_eq!(glob(p, n), want, "{p} {n}");
        }
    }

    #[test]
    fn principals_replace_the_member_lists_and_deny_wins() {
        let policy = PolicyConfig {
            rules: rules(Some(&["echo", "get-*"]), Some(&["get-env"])),
            principals: vec![
                ("token:alice".into(), rules(Some(&["*"]), None)),
                ("token:bob".into(), rules(None, Some(&["echo"]))),
            ],
            ..PolicyConfig::default()
        };
        let everyone = [
            ("echo", true),
            ("get-sum", true),
            ("get-env", false),
            ("crash", false),
        ];
        for (name, want) in everyone {
            assert_eq!(
                allows(&policy, Who::default(), Of::Names, name),
                want,
                "anyone: {name}"
            );
            assert_eq!(
                allows(&policy, Who::named("token:carol"), Of::Names, name),
                want,
                "carol: {name}"
            );
        }
        // alice: her allow (everything), the member's deny.
        for (name, want) in [("crash", true), ("get-env", false)] {
            assert_eq!(
                allows(&policy, Who::named("token:alice"), Of::Names, name),
                want,
                "alice: {name}"
            );
        }
        // bob: the member's allow, his deny.
        for (name, want) in [("echo", false), ("get-env", true), ("crash", false)] {
            assert_eq!(
                allows(&policy, Who::named("token:bob"), Of::Names, name),
                want,
                "bob: {name}"
            );
        }
        assert!(allows(
            &PolicyConfig::default(),
            Who::default(),
            Of::Names,
            "anything"
        ));
        // The bridge's shared session: only what everyone may have.
        assert!(!allows_everyone(&policy, Of::Names, "echo"), "bob may not");
        assert!(allows_everyone(&policy, Of::Names, "get-sum"));
    }

    #[test]
    fn scopes_pick_rules_when_the_principal_has_none_of_its_own() {
        let policy = PolicyConfig {
            rules: rules(Some(&["echo"]), None),
            principals: vec![
                ("jwt:carol".into(), rules(Some(&["get-*"]), None)),
                ("scope:admin".into(), rules(Some(&["*"]), None)),
                ("scope:read".into(), rules(Some(&["get-*", "echo"]), None)),
            ],
            ..PolicyConfig::default()
        };
        let scopes = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (admin, read, none) = (scopes(&["read", "admin"]), scopes(&["read"]), scopes(&[]));
        let who = |p, s| Who {
            principal: Some(p),
            scopes: s,
        };
        let may = |w, name| allows(&policy, w, Of::Names, name);
        // The first scope rule in the file's order that the token has (admin before read).
        assert!(may(who("jwt:dave", &admin), "crash"));
        assert!(may(who("jwt:dave", &read), "get-sum"));
        assert!(!may(who("jwt:dave", &read), "crash"));
        assert!(!may(who("jwt:dave", &none), "get-sum"), "the table's rules");
        // A principal's own rules win over its scopes'.
        assert!(!may(who("jwt:carol", &admin), "crash"));
        assert!(may(who("jwt:carol", &admin), "get-sum"));
        // The bridge's shared session: what the table and every principal and scope allow.
        assert!(!allows_everyone(&policy, Of::Names, "crash"));
        assert!(
            !allows_everyone(&policy, Of::Names, "echo"),
            "carol may not"
        );
    }

    #[test]
    fn resource_lists_are_their_own() {
        let policy = PolicyConfig {
            rules: RulesConfig {
                allow: Some(vec!["echo".into()]),
                deny_resources: Some(vec!["file:///secret/*".into()]),
                ..RulesConfig::default()
            },
            principals: vec![(
                "token:ops".into(),
                RulesConfig {
                    deny_resources: Some(Vec::new()),
                    ..RulesConfig::default()
                },
            )],
            ..PolicyConfig::default()
        };
        let r = |who, uri| allows(&policy, who, Of::Resources, uri);
        assert!(
            r(Who::default(), "file:///docs/a"),
            "the tool allow list does not apply"
        );
        assert!(!r(Who::default(), "file:///secret/key"));
        assert!(
            r(Who::default(), "file:///{path}"),
            "a template is matched as its text"
        );
        assert!(
            r(Who::named("token:ops"), "file:///secret/key"),
            "ops' own deny list"
        );
        assert!(!allows(
            &policy,
            Who::named("token:ops"),
            Of::Names,
            "crash"
        ));
        assert!(!allows_everyone(
            &policy,
            Of::Resources,
            "file:///secret/key"
        ));
    }
}
