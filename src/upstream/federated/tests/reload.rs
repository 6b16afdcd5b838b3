//! Config reloads through the federation (`reload.rs`): member sessions kept, replaced or
//! updated in place.

use super::*;

#[test]
fn a_reload_keeps_unchanged_member_sessions_and_is_all_or_nothing() {
    let s = setup(vec![
        ("keep", "keep", fake("K", 1, false)),
        ("pol", "pol", fake("P", 1, false)),
        ("chg", "chg", fake("C", 1, false)),
        ("gone", "gone", fake("G", 1, false)),
    ]);
    let fed = s.fed.fed(&s.session).expect("the client session");
    let (keep, pol) = (fed.live(0).expect("keep"), fed.live(1).expect("pol"));
    let mut cfg = crate::config::FederationConfig {
        separator: "__".into(),
        members: vec![
            member("keep", "keep"),
            member("pol", "p2"),
            member("chg", "chg"),
            member("add", "add"),
        ],
    };
    if let UpstreamConfig::Stdio(c) = &mut cfg.members[2].upstream {
        c.children = 2;
    }
    let all = |s: &Setup| names(&s.ask("tools/list", json!({})), "tools", "name");
    let before = all(&s);
    let failing = |m: &MemberConfig| match m.name.as_str() {
        "add" => Err(Error::Config("cannot start".into())),
        _ => Ok(Arc::new(fake("N", 1, false)) as Arc<dyn Upstream>),
    };
    let e = s.fed.reload(&cfg, &failing, Duration::from_secs(1));
    assert!(e.is_err_and(|e| e.to_string().contains("upstream add")));
    assert_eq!(all(&s), before, "nothing changed");

    let start = |m: &MemberConfig| {
        let tag = if m.name == "add" { "A" } else { "C2" };
        Ok(Arc::new(fake(tag, 1, false)) as Arc<dyn Upstream>)
    };
    let out = s
        .fed
        .reload(&cfg, &start, Duration::from_secs(1))
        .expect("reloaded");
    assert_eq!(
        (
            out.unchanged,
            out.updated,
            out.changed,
            out.added,
            out.removed
        ),
        (
            vec!["keep".to_owned()],
            vec!["pol".to_owned()],
            vec!["chg".to_owned()],
            vec!["add".to_owned()],
            vec!["gone".to_owned()]
        )
    );
    assert!(
        Arc::ptr_eq(&fed.live(0).expect("keep"), &keep),
        "same session"
    );
    assert!(
        Arc::ptr_eq(&fed.live(1).expect("pol"), &pol),
        "updated in place"
    );
    assert_eq!(
        all(&s),
        [
            "keep__t0a",
            "keep__t0b",
            "p2__t0a",
            "p2__t0b",
            "chg__t0a",
            "chg__t0b",
            "add__t0a",
            "add__t0b"
        ]
    );
    let ran = |name: &str| s.ask("tools/call", json!({ "name": name }));
    assert_eq!(
        ran("chg__t0a")["result"]["content"][0]["text"],
        "C2 ran \"t0a\""
    );
    assert_eq!(
        ran("add__t0a")["result"]["content"][0]["text"],
        "A ran \"t0a\""
    );
    assert_eq!(
        ran("p2__t0a")["result"]["content"][0]["text"],
        "P ran \"t0a\""
    );
    let gone = ran("gone__t0a");
    assert_eq!(gone["error"]["code"], -32602, "{gone}");
    assert!(
        gone["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("removed"))
    );
    assert_eq!(ran("pol__t0a")["error"]["code"], -32602, "the old prefix");
}

#[test]
fn a_reload_changing_prompt_overrides_or_a_request_timeout_updates_in_place() {
    let s = setup(vec![("a", "a", fake("A", 1, false))]);
    let fed = s.fed.fed(&s.session).expect("the client session");
    let before = fed.live(0).expect("a");
    let mut a = member("a", "a");
    a.request_timeout = Some(Duration::from_secs(3));
    a.policy.prompts = vec![crate::config::ToolOverride {
        tool: "p".into(),
        rename: Some("q".into()),
        ..Default::default()
    }];
    let cfg = crate::config::FederationConfig {
        separator: "__".into(),
        members: vec![a],
    };
    let start =
        |_: &MemberConfig| -> Result<Arc<dyn Upstream>, Error> { panic!("nothing is started") };
    let out = s
        .fed
        .reload(&cfg, &start, Duration::from_secs(1))
        .expect("reloaded");
    assert_eq!(out.updated, ["a"]);
    assert!(out.changed.is_empty());
    assert!(
        Arc::ptr_eq(&fed.live(0).expect("a"), &before),
        "the same session"
    );
}
