//! Reloading the config file: `SIGHUP` and `POST /admin/reload`.
//!
//! Owns: [`Reloader`], the configuration in force (what `GET /admin/config` shows) and the
//! steps of a reload: read the file again (`crate::cli::reread` decides which keys may
//! change), start what is new, swap, report. Must not touch: how a part works inside (it calls
//! [`crate::upstream::federated::Federated::reload`] and the listeners' TLS reload given to
//! it) or the request path.
//!
//! What a reload applies:
//! * the `[upstream.NAME]` tables: members added, removed, replaced (rolling: the old one
//!   drains within `--request-timeout`) or updated in place (prefix, policy, overrides, a
//!   member's own request-timeout: the same children), see `upstream/federated/reload.rs`;
//!   and the top-level keys that only shape them ((`cli/reread.rs` `RELOADABLE`));
//! * key material, in every case, even when the file is refused: the listeners' TLS
//!   certificates and keys (as SIGHUP always did) and the authentication's files
//!   (`--auth-tokens`, `--jwt-secret-file`, `--jwks-file`, or `--jwks-url` fetched again),
//!   the same paths read again; a file that does not load keeps what is in use (logged).
//!
//! Everything else needs a restart: a changed key is named in the answer (`needsRestart`) and
//! in a warning, and its value in force stays: the listener and admin addresses, workers and
//! limits, the authentication's flags (which files, JWT settings), rate limits, sessions,
//! tapes, `[[fault]]` rules, the TLS file paths, and a one-upstream configuration's upstream (no `[upstream.NAME]` tables),
//! as well as switching between one upstream and tables.
//!
//! A file that fails to read or validate, or a new member that fails to start, is refused
//! (logged; HTTP 422): nothing changes. Without `--config` a reload is refused (HTTP 400);
//! SIGHUP then only reads the key material files again. Every outcome counts in
//! `shadowcat_config_reloads_total{result="ok|refused"}`.

use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Value, json};

use crate::cli::{FileFlags, Source, reread};
use crate::config::{Config, UpstreamConfig};
use crate::error::Error;
use crate::http::Tls;
use crate::metrics::Metrics;
use crate::ops::admin::Reload;
use crate::proxy::Proxy;
use crate::upstream::Upstream;
use crate::util::{lock, read, write};

/// Starts a federation member from its table (`crate::app`'s builder).
pub type StartUpstream =
    Box<dyn Fn(&crate::config::MemberConfig) -> Result<Arc<dyn Upstream>, Error> + Send + Sync>;
/// Reads the key material files again (TLS certificates, the authentication's files): what
/// it gave, `{"tls": …, "auth": …}`.
pub type ReloadFiles = Box<dyn Fn() -> Value + Send + Sync>;

/// The configuration in force and how to change it.
pub struct Reloader {
    current: RwLock<Arc<Config>>,
    source: Option<Source>,
    /// The file's top-level keys as the configuration in force took them.
    file: Mutex<FileFlags>,
    upstream: Arc<dyn Upstream>,
    start: StartUpstream,
    files: ReloadFiles,
    metrics: Arc<Metrics>,
    /// One reload at a time.
    busy: Mutex<()>,
}

impl Reloader {
    /// The reloader of a proxy started with `config` (from `source`, when started from the
    /// command line) serving `upstream`.
    pub fn new(
        config: Arc<Config>,
        source: Option<Source>,
        upstream: Arc<dyn Upstream>,
        start: StartUpstream,
        files: ReloadFiles,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        let file = match source.as_ref().map(Source::file_flags) {
            Some(Ok(flags)) => flags,
            Some(Err(e)) => {
                log::warn!("config file: {e}");
                Vec::new()
            }
            None => Vec::new(),
        };
        // Without `--config`, a reload only re-reads the TLS certificates (SIGHUP).
        let source = source.filter(|s| s.path().is_some());
        Reloader {
            current: RwLock::new(config),
            source,
            file: Mutex::new(file),
            upstream,
            start,
            files,
            metrics,
            busy: Mutex::new(()),
        }
    }

    /// True when there is a config file to read again.
    pub fn has_file(&self) -> bool {
        self.source.is_some()
    }

    /// Reads the file again and applies what it may (module docs); `trigger` names what
    /// asked, for the log; `files` is what re-reading the key material files gave.
    fn run(&self, trigger: &str, files: Value) -> Result<Value, (u16, String)> {
        let Some(src) = &self.source else {
            return Err((
                400,
                "shadowcat was started without --config: there is no file to read again (TLS and \
                 authentication files, if any, were read again)"
                    .into(),
            ));
        };
        let path = src.path().unwrap_or_default().to_owned();
        let _one = lock(&self.busy);
        let old = read(&self.current).clone();
        let federated = matches!(old.upstream, UpstreamConfig::Federated(_));
        let new = reread(src, &lock(&self.file), federated).map_err(|e| (422, e.to_string()))?;
        let mut restart = new.restart;
        let mut applied = (*old).clone();
        let mut upstreams = Value::Null;
        match (&old.upstream, &new.config.upstream) {
            (UpstreamConfig::Federated(_), UpstreamConfig::Federated(members)) => {
                let Some(fed) = self.upstream.as_federated() else {
                    return Err((500, "the federation is not this proxy's upstream".into()));
                };
                crate::upstream::recorded::check_dirs(&members.members, &old.tapes)
                    .map_err(|e| (422, e.to_string()))?;
                let start = |m: &crate::config::MemberConfig| (self.start)(m);
                let drain = old.proxy.request_timeout;
                let outcome = fed
                    .reload(members, &start, drain)
                    .map_err(|e| (422, e.to_string()))?;
                upstreams = serde_json::to_value(&outcome).unwrap_or(Value::Null);
                applied.upstream = new.config.upstream.clone();
            }
            (UpstreamConfig::Federated(_), _) | (_, UpstreamConfig::Federated(_)) => {
                restart.push("upstream: between one upstream and [upstream.NAME] tables".into());
            }
            (a, b) if a != b => restart.push("upstream: the one upstream".into()),
            _ => {}
        }
        if new.config.faults != old.faults {
            restart.push("[[fault]] rules".into());
        }
        *lock(&self.file) = new.file;
        *write(&self.current) = Arc::new(applied);
        log::info!("{trigger}: {path} reloaded: upstreams {upstreams}");
        if !restart.is_empty() {
            log::warn!(
                "{trigger}: {path}: not applied, needs a restart: {}",
                restart.join(", ")
            );
        }
        let mut report = json!({
            "file": path,
            "upstreams": upstreams,
            "needsRestart": restart,
        });
        if let (Some(r), Value::Object(files)) = (report.as_object_mut(), files) {
            r.extend(files);
        }
        Ok(report)
    }
}

impl Reload for Reloader {
    fn config(&self) -> Arc<Config> {
        read(&self.current).clone()
    }

    fn reload(&self, trigger: &str) -> Result<Value, (u16, String)> {
        // Key material is in files of its own: read again whatever the config file holds (as
        // SIGHUP always did for the certificates); each outcome is logged.
        let files = (self.files)();
        let done = self.run(trigger, files);
        self.metrics.config_reload(done.is_ok());
        if let Err((_, why)) = &done {
            log::error!("{trigger}: reload refused, the configuration in force stays: {why}");
        }
        done
    }
}

/// Re-reads the TLS certificates and keys of `listeners`: connections made from now on use
/// them; a listener whose files do not load keeps its old configuration (logged at error);
/// the first such reason is returned. `Ok(0)`: no listener has TLS.
pub fn reload_tls(listeners: &[(&'static str, Arc<Tls>)]) -> Result<usize, String> {
    let mut first_err = None;
    for (name, tls) in listeners {
        match tls.reload() {
            Ok(()) => log::info!(
                "{name}: TLS certificate {} reloaded",
                tls.files().cert.display()
            ),
            Err(e) => {
                log::error!("{name}: keeping the TLS certificate in use: {e}");
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(listeners.len()),
    }
}

/// Reads the key material files again: the TLS certificates of `listeners` and the files of
/// `proxy`'s authentication (configured by `auth`, in force); `{"tls": …, "auth": …}`, each
/// `null` when not configured, `{"error": …}` when the files did not load (what is in use
/// stays; logged at error).
pub fn reload_files(
    listeners: &[(&'static str, Arc<Tls>)],
    proxy: &Proxy,
    auth: &crate::gate::auth::AuthConfig,
) -> Value {
    let tls = match reload_tls(listeners) {
        Ok(0) => Value::Null,
        Ok(n) => json!({ "reloaded": n }),
        Err(e) => json!({ "error": e }),
    };
    let auth = match proxy.gate().reload_auth(auth) {
        Ok(false) => Value::Null,
        Ok(true) => {
            log::info!("authentication files read again");
            json!({ "reloaded": true })
        }
        Err(e) => {
            log::error!("keeping the authentication in use: {e}");
            json!({ "error": e.to_string() })
        }
    };
    json!({ "tls": tls, "auth": auth })
}
