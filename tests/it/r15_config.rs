//! Issue #15, the config file: `reverse --config FILE` and `check-config FILE`. Keys are the
//! flags without `--`; the file and the flags must give the same `Config`. The example in
//! `examples/shadowcat.toml` is the file these tests load.

use std::process::{Command, Stdio};

use shadowcat::expand_config_file;

use crate::support::{Conn, TempDir, config, exe, free_port, get, spawn_proxy};

fn example() -> String {
    format!("{}/examples/shadowcat.toml", env!("CARGO_MANIFEST_DIR"))
}

const SECRET: &str = "example-secret-0123456789";

fn example_env() -> [(&'static str, &'static str); 2] {
    [
        ("SHADOWCAT_EXE", exe()),
        ("SHADOWCAT_EXAMPLE_SECRET", SECRET),
    ]
}

#[test]
fn the_example_file_runs_the_proxy_and_the_command_line_overrides_it() {
    let admin = format!("127.0.0.1:{}", free_port());
    let file = example();
    // The file binds 127.0.0.1:8080; `--bind` on the command line (spawn_proxy) replaces it.
    let (_p, addr) = spawn_proxy(
        &["--config", &file, "--admin-bind", &admin],
        Stdio::null(),
        &example_env(),
    );
    let mut c = Conn::open(addr);
    let sid = c.initialize();
    let r = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"from a file"}}}"#,
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("from a file"), "{}", r.text());
    let admin: std::net::SocketAddr = admin.parse().expect("addr");
    let shown = get(admin, "/admin/config", &[]);
    assert_eq!(shown.status, 200);
    let v: serde_json::Value = serde_json::from_str(&shown.text()).expect("JSON");
    assert_eq!(v["maxSessions"], 1000, "from the file");
    assert_eq!(v["bind"], addr.to_string(), "the command line wins");
    assert_eq!(v["upstream"]["kind"], "stdio");
    assert_eq!(
        v["upstream"]["argv"][0],
        exe(),
        "${{SHADOWCAT_EXE}} expanded"
    );
    assert_eq!(v["stdioEnv"]["API_KEY"], "<redacted>");
    assert!(
        !shown.text().contains(SECRET),
        "a secret shown: {}",
        shown.text()
    );
}

#[test]
fn check_config_validates_redacts_and_names_the_bad_line() {
    let out = Command::new(exe())
        .args(["check-config", &example()])
        .envs(example_env())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).expect("prints JSON");
    assert_eq!(v["path"], "/mcp");
    assert!(!text.contains(SECRET), "a secret printed");

    let dir = TempDir::new("r15");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "bind = \"127.0.0.1:0\"\n# a comment\nmax-sesions = 5\n",
    )
    .expect("w");
    let out = Command::new(exe())
        .args(["check-config"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3: unknown key `max-sesions`"),
        "{err}"
    );
    // A value the flag refuses is refused from the file too, and `reverse` does not start.
    std::fs::write(&bad, "max-sessions = 0\n").expect("w");
    let out = Command::new(exe())
        .args(["reverse", "--config"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("max-sessions"));
}

#[test]
fn a_file_and_the_same_flags_give_the_same_config() {
    let dir = TempDir::new("r15");
    let file = dir.path().join("same.toml");
    std::fs::write(
        &file,
        "bind = \"127.0.0.1:0\"\nstdio = \"cat\"\nstdio-mode = \"per-session\"\n\
         stdio-children = 3\nrate-limit = \"5/10\"\ntool-limit = [\"a=1/2\", \"b=3/4\"]\n\
         allowed-origin = [\"https://x.example\"]\nsession-idle = \"2m\"\n\
         stdio-clear-env = true\nmax-body = \"1MiB\"\n",
    )
    .expect("write");
    let path = file.to_string_lossy().into_owned();
    let from_file = expand_config_file(&["--config".to_owned(), path]).expect("expands");
    let from_file: Vec<&str> = from_file.iter().map(String::as_str).collect();
    let flags = [
        "--bind",
        "127.0.0.1:0",
        "--stdio",
        "cat",
        "--stdio-mode",
        "per-session",
        "--stdio-children",
        "3",
        "--rate-limit",
        "5/10",
        "--tool-limit",
        "a=1/2",
        "--tool-limit",
        "b=3/4",
        "--allowed-origin",
        "https://x.example",
        "--session-idle",
        "2m",
        "--stdio-clear-env",
        "--max-body",
        "1MiB",
    ];
    let a = serde_json::to_value(config(&from_file)).expect("serializes");
    let b = serde_json::to_value(config(&flags)).expect("serializes");
    assert_eq!(a, b);
}
