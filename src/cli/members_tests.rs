//! Unit tests of `members.rs`: `[upstream.NAME]` tables read into member configs.

use super::*;

fn write(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("shadowcat-members-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_string_lossy().into_owned()
}

#[test]
fn tables_become_members_in_file_order() {
    let p = write(
        "ok.toml",
        "request-timeout = \"7s\"\n\n[upstream.zeta]\nstdio = \"cat\"\nstdio-mode = \
         \"per-session\"\n\n[upstream.alpha]\nurl = \"http://127.0.0.1:9/mcp\"\nheaders = \
         [\"x-a: b\"]\nprefix = \"\"\n",
    );
    let f = federation(&p, "__", "/bin/shadowcat")
        .expect("valid")
        .expect("tables");
    assert_eq!(f.separator, "__");
    let names: Vec<_> = f.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha"]);
    assert_eq!(f.members[0].prefix, "zeta");
    assert_eq!(f.members[1].prefix, "");
    let UpstreamConfig::Http(h) = &f.members[1].upstream else {
        panic!("http")
    };
    assert_eq!(h.request_timeout, std::time::Duration::from_secs(7));
    assert_eq!(h.headers.len(), 1);
    assert!(matches!(
        f.members[0].upstream,
        UpstreamConfig::Stdio(ref s) if s.argv == ["cat"]
    ));
}

#[test]
fn policies_per_member_and_principal() {
    let p = write(
        "policy.toml",
        "[upstream.a]\nstdio = \"cat\"\nallow = [\"echo\", \"get-*\"]\n\
         deny-resources = [\"file:///secret/*\"]\n\n\
         [upstream.a.principal.\"token:alice\"]\nallow = [\"*\"]\ndeny = [\"crash\"]\n\
         allow-resources = [\"file:///*\"]\n",
    );
    let f = federation(&p, "__", "x").expect("valid").expect("tables");
    let policy = &f.members[0].policy;
    assert_eq!(
        policy.rules.allow.as_deref(),
        Some(&["echo".to_owned(), "get-*".to_owned()][..])
    );
    assert_eq!(policy.principals.len(), 1);
    assert_eq!(policy.principals[0].0, "token:alice");
    assert_eq!(
        policy.principals[0].1.deny.as_deref(),
        Some(&["crash".to_owned()][..])
    );
    assert_eq!(
        policy.rules.deny_resources.as_deref(),
        Some(&["file:///secret/*".to_owned()][..])
    );
    assert_eq!(
        policy.principals[0].1.allow_resources.as_deref(),
        Some(&["file:///*".to_owned()][..])
    );
    let per = write(
        "policy-tools.toml",
        "[upstream.a]\nstdio = \"cat\"\n[upstream.a.principal.\"scope:ops\".tools.echo]\n\
         name = \"say\"\narguments = { key = \"k\" }\n",
    );
    let f = federation(&per, "__", "x").expect("valid").expect("tables");
    let (who, rules) = &f.members[0].policy.principals[0];
    assert_eq!(who, "scope:ops");
    assert_eq!(rules.tools[0].tool, "echo");
    assert_eq!(rules.tools[0].rename.as_deref(), Some("say"));
    let clash = write(
        "policy-clash.toml",
        "[upstream.a]\nstdio = \"cat\"\n[upstream.a.tools.echo]\nname = \"say\"\n\
         [upstream.a.principal.bob.tools.other]\nname = \"say\"\n",
    );
    let e = federation(&clash, "__", "x")
        .expect_err("say twice")
        .to_string();
    assert!(
        e.contains("principal \"bob\": other is shown as \"say\""),
        "{e}"
    );
    let not_a_list = write(
        "policy-res.toml",
        "[upstream.a]\nstdio = \"cat\"\nallow-resources = \"file:///*\"\n",
    );
    let e = federation(&not_a_list, "__", "x")
        .expect_err("a string")
        .to_string();
    assert!(
        e.contains(":3: `allow-resources`: a list of resource URIs"),
        "{e}"
    );
    let bad = write(
        "policy-bad.toml",
        "[upstream.a]\nstdio = \"cat\"\n[upstream.a.principal.bob]\nalow = [\"x\"]\n",
    );
    let e = federation(&bad, "__", "x").expect_err("typo").to_string();
    assert!(e.contains(":4: unknown key `alow`"), "{e}");
}

#[test]
fn prompt_overrides_and_a_request_timeout_per_member() {
    let p = write(
        "prompts.toml",
        "request-timeout = \"20s\"\n[upstream.a]\nstdio = \"cat\"\nrequest-timeout = \"1500ms\"\n\
         [upstream.a.prompts.test_simple_prompt]\nname = \"simple\"\n\
         description = \"Short.\"\n\
         [upstream.a.principal.\"token:ops\".prompts.test_simple_prompt]\n\
         name = \"ops_simple\"\n[upstream.b]\nstdio = \"cat\"\n",
    );
    let f = federation(&p, "__", "x").expect("valid").expect("tables");
    let a = &f.members[0];
    assert_eq!(
        a.request_timeout,
        Some(std::time::Duration::from_millis(1500))
    );
    assert_eq!(f.members[1].request_timeout, None);
    assert_eq!(a.policy.prompts[0].tool, "test_simple_prompt");
    assert_eq!(a.policy.prompts[0].rename.as_deref(), Some("simple"));
    assert_eq!(a.policy.prompts[0].description.as_deref(), Some("Short."));
    assert!(a.policy.tools.is_empty());
    let (who, rules) = &a.policy.principals[0];
    assert_eq!(who, "token:ops");
    assert_eq!(rules.prompts[0].rename.as_deref(), Some("ops_simple"));
    // Not part of what the member runs: its upstream is the one without it.
    let UpstreamConfig::Stdio(_) = &a.upstream else {
        panic!("stdio")
    };
    assert_eq!(a.upstream, f.members[1].upstream);
    let cases = [
        (
            "[upstream.a]\nstdio = \"cat\"\nrequest-timeout = \"61s\"\n",
            ":1: upstream a: request-timeout 61s is longer than the file's request-timeout \
             (60s)",
        ),
        (
            "request-timeout = \"5s\"\n[upstream.a]\nstdio = \"cat\"\n\
             request-timeout = \"6s\"\n",
            ":2: upstream a: request-timeout 6s is longer",
        ),
        (
            "[upstream.a]\nstdio = \"cat\"\nrequest-timeout = \"0s\"\n",
            ":3: `request-timeout` must be more than zero",
        ),
        (
            "[upstream.a]\nstdio = \"cat\"\nrequest-timeout = \"soon\"\n",
            ":3: `request-timeout`: bad duration",
        ),
        (
            "[upstream.a]\nstdio = \"cat\"\nrequest-timeout = [1]\n",
            ":3: `request-timeout`: a duration",
        ),
        (
            "[upstream.a]\nstdio = \"cat\"\n[upstream.a.prompts.p]\narguments = {}\n",
            ":4: unknown key `arguments` (name or description)",
        ),
        (
            "[upstream.a]\nstdio = \"cat\"\n[upstream.a.principal.\"token:x\".prompts.p]\n\
             name = \"x y\"\n",
            ":4: `name`: 1 to 64",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = write(&format!("prompts-bad{i}.toml"), text);
        let e = federation(&p, "__", "x").expect_err(text).to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn no_tables_is_no_federation() {
    let p = write("none.toml", "upstream = \"http://127.0.0.1:9/mcp\"\n");
    assert!(federation(&p, "__", "x").expect("valid").is_none());
}

#[test]
fn errors_name_the_line() {
    let cases = [
        (
            "[upstream.a]\nstdio = \"cat\"\nstdoi = 1\n",
            ":3: unknown key `stdoi`",
        ),
        ("\n[upstream.a]\nprefix = \"x\"\n", ":2: [upstream.a] needs"),
        (
            "[upstream.a]\nstdio = \"cat\"\n[upstream.b]\nstdio = \"cat\"\nprefix = \"a\"\n",
            ":3: prefix \"a\" is also upstream a's",
        ),
        (
            "[upstream.a]\nstdio = \"cat\"\nprefix = \"\"\n[upstream.b]\nstdio = \"cat\"\n\
             prefix = \"\"\n",
            ":4: two upstreams without a prefix",
        ),
        (
            "[upstream.a]\nstdio = \"cat\"\nprefix = \"x y\"\n",
            ":3: `prefix`",
        ),
        (
            "[upstream.a]\nstdio = \"cat\"\nstdio-mode = \"odd\"\n",
            ":1: upstream a: --stdio-mode",
        ),
        (
            "stdio = \"cat\"\n[upstream.a]\nstdio = \"cat\"\n",
            "`stdio` at the top level",
        ),
        (
            "[upstream.a]\nurl = [\"http://a/\", \"x\"]\n",
            ":1: upstream a: --upstream must be an http://",
        ),
        (
            "[upstream.a]\nurl = [\"http://a/\", true]\n",
            ":2: `url`: elements must be strings",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = write(&format!("bad{i}.toml"), text);
        let e = federation(&p, "__", "x").expect_err(text).to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
    let p = write("sep.toml", "[upstream.a]\nstdio = \"cat\"\n");
    assert!(federation(&p, "a b", "x").is_err());
    assert!(federation(&p, "", "x").is_err());
}
