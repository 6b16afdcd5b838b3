//! A real browser: the official TypeScript SDK's ESM build, in headless Chromium (Debian's
//! `chromium`, which `scripts/test` installs), as an MCP client of the proxy from another origin.
//!
//! A tiny HTTP server in this file serves the page (`tests/browser/`) and the npm peers
//! (`$SHADOWCAT_PEERS/npm/node_modules`, under `/nm/`) on its own loopback port. Chromium maps
//! the names `allowed.test` and `foreign.test` to 127.0.0.1 (`--host-resolver-rules`), so the
//! page's origin is `http://allowed.test:PORT` or `http://foreign.test:PORT`: not loopback
//! origins, so only `--allowed-origin` lets them in, while the proxy itself is reached at
//! 127.0.0.1 (a cross-origin request, preflighted). The page writes its outcome into the DOM and
//! then fetches `/done`; the server holds the page's `/hold` image until then, so the load event,
//! and with it `--dump-dom`, comes after the result is written. The proxy is reached over plain
//! HTTP and over HTTPS (its listener with a certificate from a test CA made at run time;
//! Chromium trusts exactly that key through `--ignore-certificate-errors-spki-list`, so no
//! certificate store is touched).
//!
//! Each Chromium runs in its own process group, killed (SIGKILL) after it exits or at its
//! deadline, and the test checks that nothing of the group is left running.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// How long one page may take, Chromium's start included.
const PAGE_DEADLINE: Duration = Duration::from_secs(60);
/// How long the server holds `/hold` when the page never says it is done.
const HOLD_MAX: Duration = Duration::from_secs(40);

/// Set when the page fetched `/done`.
#[derive(Default)]
struct Done {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Done {
    fn set(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    fn wait(&self, max: Duration) {
        let guard = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.cv.wait_timeout_while(guard, max, |done| !*done);
    }
}

/// The page server: `tests/browser/` at `/`, the npm peers at `/nm/`.
fn page_server() -> Acceptor {
    let pages = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let modules = peers().join("npm/node_modules");
    let done = Arc::new(Done::default());
    Acceptor::start(move |s| serve(s, &pages, &modules, &done))
}

/// Answers one request on `s` and closes it.
fn serve(s: TcpStream, pages: &Path, modules: &Path, done: &Done) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut r = BufReader::new(&s);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        match r.read_line(&mut h) {
            Ok(0) | Err(_) => return,
            Ok(_) if h.trim_end().is_empty() => break,
            Ok(_) => {}
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let (status, headers, body) = match path {
        "/done" => {
            done.set();
            (204, vec![], vec![])
        }
        "/hold" => {
            done.wait(HOLD_MAX);
            (204, vec![], vec![])
        }
        "/" => file(&pages.join("index.html")),
        "/client.mjs" | "/cjs.mjs" => file(&pages.join(&path[1..])),
        _ => match path.strip_prefix("/nm/") {
            Some(rel) => node_module(modules, rel),
            None => (404, vec![], vec![]),
        },
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut w = &s;
    let _ = w
        .write_all(head.as_bytes())
        .and_then(|_| w.write_all(&body));
}

type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// A file with its content type, or 404.
fn file(p: &Path) -> Answer {
    let ct = match p.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => "text/javascript; charset=utf-8",
    };
    match std::fs::read(p) {
        Ok(b) => (200, vec![("Content-Type", ct.to_string())], b),
        Err(_) => (404, vec![], vec![]),
    }
}

/// `/nm/REL` resolved the way Node resolves a `require`: the file, else `REL.js`, `REL.json`,
/// or a directory's `package.json` "main" (default `index.js`), as a redirect, so that the
/// loader (`cjs.mjs`) learns the final URL to resolve relative requires against.
fn node_module(modules: &Path, rel: &str) -> Answer {
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c == ".." || c == "." || c.contains('\\'))
    {
        return (404, vec![], vec![]);
    }
    let p = modules.join(rel);
    if p.is_file() {
        return file(&p);
    }
    let redirect = |to: String| (302, vec![("Location", format!("/nm/{to}"))], vec![]);
    for ext in [".js", ".json"] {
        if modules.join(format!("{rel}{ext}")).is_file() {
            return redirect(format!("{rel}{ext}"));
        }
    }
    if p.is_dir() {
        let main = std::fs::read(p.join("package.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|pj| pj["main"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "index.js".into());
        let main = main.trim_start_matches("./");
        return redirect(format!("{}/{main}", rel.trim_end_matches('/')));
    }
    (404, vec![], vec![])
}

/// Debian's Chromium, which `scripts/test` installs.
fn chromium() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .expect("chromium is missing: run scripts/test, which installs Debian's chromium")
}

/// Pids of live (not zombie) processes in process group `pgid` or whose command line names
/// `marker` (Chromium's crash handler leaves the group: it is found by the temporary
/// directory its command line names).
fn left_running(pgid: u32, marker: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let mut f = rest.split_whitespace();
            let state = f.next();
            let pgrp = f.nth(1).and_then(|g| g.parse::<u32>().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let named = String::from_utf8_lossy(&cmdline).contains(marker);
            state.is_some_and(|s| s != "Z") && (pgrp == Some(pgid) || named)
        })
        .collect()
}

/// SIGKILL to process group `pgid` and to each of `pids` (all Chromium's, see
/// [`left_running`]).
fn kill_all(pgid: u32, pids: &[u32]) {
    // SAFETY: kill(2) only sends signals: to the group Chromium leads (spawned as the leader of
    // a new group) and to processes whose command line names this test's own temporary
    // directory. No memory is involved.
    unsafe {
        libc::kill(-(pgid as i32), libc::SIGKILL);
        for &pid in pids {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

/// Loads `page` in headless Chromium and returns the JSON the page wrote into `#result`.
fn run_page(page: &str) -> Value {
    run_page_with(page, &[])
}

/// [`run_page`] with extra Chromium flags.
fn run_page_with(page: &str, flags: &[String]) -> Value {
    let dir = TempDir::new("chromium");
    let out_path = dir.path().join("dom.html");
    let err_path = dir.path().join("stderr.txt");
    // HOME and the XDG directories in the temporary directory too: nothing is written to the
    // real home, and every process Chromium starts names the directory on its command line.
    let marker = dir.path().to_string_lossy().into_owned();
    let mut child = Command::new(chromium())
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--host-resolver-rules=MAP allowed.test 127.0.0.1, MAP foreign.test 127.0.0.1",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .args(flags)
        .arg("--dump-dom")
        .arg(page)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("dom file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("chromium starts");
    let pgid = child.id();
    let until = Instant::now() + PAGE_DEADLINE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            _ => break None,
        }
    };
    // Whatever is left of it (renderers, zygotes, the crash handler) goes too.
    kill_all(pgid, &left_running(pgid, &marker));
    let _ = child.wait();
    let gone_by = Instant::now() + Duration::from_secs(5);
    loop {
        let left = left_running(pgid, &marker);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < gone_by, "chromium left running: {left:?}");
        kill_all(pgid, &left);
        std::thread::sleep(Duration::from_millis(50));
    }
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let dom = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.is_some(),
        "chromium did not finish within {PAGE_DEADLINE:?}\n{stderr}"
    );
    let text = dom
        .split_once("<pre id=\"result\">")
        .and_then(|(_, r)| r.split_once("</pre>"))
        .map(|(t, _)| {
            t.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .unwrap_or_else(|| panic!("no #result in the page ({status:?}):\n{dom}\n{stderr}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("#result is not JSON ({e}): {text}"))
}

/// The proxy's count of `shadowcat_requests_total{class, status}`.
fn requests(addr: SocketAddr, class: &str, status: u16) -> u64 {
    let prefix = format!("shadowcat_requests_total{{class=\"{class}\",status=\"{status}\"}} ");
    get(addr, "/metrics", &[])
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ts_sdk_in_chromium_from_an_allowed_origin() {
    let pages = page_server();
    let origin = format!("http://allowed.test:{}", pages.addr.port());
    let p = demo_proxy(&["--allowed-origin", &origin]);
    let mcp = format!("http://{}/mcp", p.local_addr());
    let out = run_page(&format!("{origin}/?mcp={mcp}"));
    assert!(out.get("error").is_none(), "the page failed: {out}");
    assert_eq!(out["origin"], origin.as_str());
    assert_eq!(out["sessionId"], true, "{out}");
    assert_eq!(out["server"], "shadowcat-demo", "{out}");
    let tools = out["tools"].as_array().cloned().unwrap_or_default();
    assert!(tools.iter().any(|t| t == "echo"), "{out}");
    assert_eq!(out["echo"], "Echo: hello from a browser", "{out}");
    assert_eq!(out["progress"], serde_json::json!([0, 50, 100]), "{out}");
    assert_eq!(out["terminated"], true, "{out}");
    assert_eq!(out["closed"], true, "{out}");
    // The browser preflighted (cross-origin, non-simple requests), and ended its session.
    assert!(requests(p.local_addr(), "OPTIONS", 204) >= 1);
    assert_eq!(p.proxy().sessions().len(), 0);
}

#[test]
fn ts_sdk_in_chromium_from_a_foreign_origin_is_refused() {
    let pages = page_server();
    let allowed = format!("http://allowed.test:{}", pages.addr.port());
    let foreign = format!("http://foreign.test:{}", pages.addr.port());
    let p = demo_proxy(&["--allowed-origin", &allowed]);
    let mcp = format!("http://{}/mcp", p.local_addr());
    let out = run_page(&format!("{foreign}/?mcp={mcp}"));
    assert_eq!(out["origin"], foreign.as_str());
    let error = out["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "the foreign page got through: {out}");
    assert!(out.get("sessionId").is_none(), "{out}");
    // The preflight was refused, and nothing else reached the proxy.
    let addr = p.local_addr();
    assert_eq!(requests(addr, "OPTIONS", 403), 1);
    assert_eq!(requests(addr, "initialize", 200), 0);
    assert_eq!(p.proxy().sessions().len(), 0);
}

/// Base64 of the SHA-256 of the public key in `key_pem` (its SubjectPublicKeyInfo): what
/// Chromium's `--ignore-certificate-errors-spki-list` names.
fn spki_sha256(key_pem: &Path) -> String {
    use base64::Engine;
    use rcgen::PublicKeyData;
    use sha2::Digest;
    let pem = std::fs::read_to_string(key_pem).expect("key file");
    let key = rcgen::KeyPair::from_pem(&pem).expect("a PEM key");
    let digest = sha2::Sha256::digest(key.subject_public_key_info());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[test]
fn ts_sdk_in_chromium_over_https_from_an_allowed_origin() {
    let pages = page_server();
    let origin = format!("http://allowed.test:{}", pages.addr.port());
    let pki = Pki::new("browser");
    let (cert, key) = pki.server("proxy");
    let (cert_s, key_s) = (cert.to_string_lossy(), key.to_string_lossy());
    let p = demo_proxy(&[
        "--allowed-origin",
        &origin,
        "--tls-cert",
        &cert_s,
        "--tls-key",
        &key_s,
    ]);
    let mcp = format!("https://localhost:{}/mcp", p.local_addr().port());
    // The listener speaks only TLS: every answer the page got came over HTTPS.
    let trust = format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_sha256(&key)
    );
    let out = run_page_with(&format!("{origin}/?mcp={mcp}"), &[trust]);
    assert!(out.get("error").is_none(), "the page failed: {out}");
    assert_eq!(out["sessionId"], true, "{out}");
    assert_eq!(out["server"], "shadowcat-demo", "{out}");
    assert_eq!(out["echo"], "Echo: hello from a browser", "{out}");
    assert_eq!(out["progress"], serde_json::json!([0, 50, 100]), "{out}");
    assert_eq!(out["terminated"], true, "{out}");
    assert_eq!(requests_tls(&pki, p.local_addr(), "initialize", 200), 1);
    assert_eq!(p.proxy().sessions().len(), 0);
}

/// [`requests`] over TLS.
fn requests_tls(pki: &Pki, addr: SocketAddr, class: &str, status: u16) -> u64 {
    let prefix = format!("shadowcat_requests_total{{class=\"{class}\",status=\"{status}\"}} ");
    tls_conn(addr, pki.client(None))
        .request("GET", "/metrics", &[], b"")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}
