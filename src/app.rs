//! Putting it together: builds every part from its own config, starts the listeners and the
//! reaper, and stops them in the documented order.
//!
//! Owns: [`Shadowcat`] (the running proxy) and [`run`] (serve until a signal; SIGHUP reloads
//! the config file, `crate::reload`, or without `--config` re-reads the listeners' TLS
//! certificates and keys). Must not touch: how any part works inside; it only wires them.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use crate::cli::Source;
use crate::config::{Config, MemberConfig, StdioMode, TapeConfig, UpstreamConfig};
use crate::error::Error;
use crate::gate::Gatekeeper;
use crate::http::{Server, Tls, TlsFiles};
use crate::metrics::Metrics;
use crate::ops::Front;
use crate::ops::admin::Admin;
use crate::ops::admin::Reload;
use crate::proxy::Proxy;
use crate::reload::{Reloader, reload_files, reload_tls};
use crate::session::Sessions;
use crate::tape::{self, Auditor, Recorder, Redactor};
use crate::upstream::Upstream;
use crate::upstream::counted::Counted;
use crate::upstream::federated::Federated;
use crate::upstream::http::HttpUpstream;
use crate::upstream::replicas::ReplicaSet;
use crate::upstream::stdio::dedicated::DedicatedUpstream;
use crate::upstream::stdio::shared::StdioUpstream;
use crate::util::lock;

/// `127.0.0.1:port` (or `[::1]:port`) of a bound listener, for the default resource URL.
fn local_name(l: &TcpListener) -> String {
    l.local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// A running proxy: listener, pipeline, upstream and reaper.
pub struct Shadowcat {
    server: Arc<Server>,
    admin: Option<Server>,
    /// The listeners' TLS configurations (main, admin), for [`Shadowcat::reload_tls`].
    tls: Vec<(&'static str, Arc<Tls>)>,
    proxy: Arc<Proxy>,
    /// The configuration in force and its reload (SIGHUP, `POST /admin/reload`).
    reloader: Arc<Reloader>,
    reaper: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
    stopped: AtomicBool,
    grace: Duration,
    drain: Duration,
}

/// Starts a federation member: its upstream, recorded when its table says so (`tapes`: the
/// top-level tape settings) and counted (`shadowcat_member_*_total`).
fn build_member(
    m: &MemberConfig,
    tapes: &TapeConfig,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Upstream>, Error> {
    let up = build_upstream(&m.upstream, tapes, metrics)?;
    match crate::upstream::recorded::wrap(m, up.clone(), tapes, metrics) {
        Ok(up) => Ok(Arc::new(Counted::new(up))),
        Err(e) => {
            up.shutdown(Duration::from_secs(2));
            Err(e)
        }
    }
}

/// Starts the upstream `cfg` describes (each member of a federation in turn).
fn build_upstream(
    cfg: &UpstreamConfig,
    tapes: &TapeConfig,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Upstream>, Error> {
    Ok(match cfg {
        UpstreamConfig::Http(http) if !http.replicas.is_empty() => {
            Arc::new(ReplicaSet::new(http, Some(metrics.clone()))?)
        }
        UpstreamConfig::Http(http) => Arc::new(HttpUpstream::new(http, Some(metrics.clone()))?),
        UpstreamConfig::Stdio(stdio) => match stdio.mode {
            StdioMode::Shared => Arc::new(StdioUpstream::start(stdio, Some(metrics.clone()))?),
            StdioMode::PerSession { .. } => {
                Arc::new(DedicatedUpstream::start(stdio, Some(metrics.clone()))?)
            }
        },
        UpstreamConfig::Federated(f) => {
            crate::upstream::recorded::check_dirs(&f.members, tapes)?;
            let mut members = Vec::with_capacity(f.members.len());
            for m in &f.members {
                let started = build_member(m, tapes, metrics);
                let up = match started {
                    Ok(up) => up,
                    Err(e) => {
                        for (_, up) in &members {
                            let up: &Arc<dyn Upstream> = up;
                            up.shutdown(Duration::from_secs(2));
                        }
                        return Err(Error::Config(format!("upstream {}: {e}", m.name)));
                    }
                };
                members.push((m.clone(), up));
            }
            Arc::new(Federated::new(f.separator.clone(), members))
        }
    })
}

impl Shadowcat {
    /// Starts the upstream, binds `config.listen.bind` and begins serving. Returns once ready.
    pub fn start(config: Config) -> Result<Shadowcat, Error> {
        Shadowcat::start_from(config, None)
    }

    /// Like [`Shadowcat::start`]; `source` (the command line it came from) lets a reload read
    /// its `--config` file again.
    pub fn start_from(config: Config, source: Option<Source>) -> Result<Shadowcat, Error> {
        let metrics = Arc::new(Metrics::new(&config.upstream.name()));
        let upstream = build_upstream(&config.upstream, &config.tapes, &metrics)?;
        Shadowcat::launch(config, upstream, metrics, source)
    }

    /// Like [`Shadowcat::start`], with an upstream built elsewhere (`config.upstream` is not
    /// used). Tests use it to put a faulty upstream behind the real pipeline.
    pub fn start_with(config: Config, upstream: Arc<dyn Upstream>) -> Result<Shadowcat, Error> {
        let metrics = Arc::new(Metrics::new(upstream.name()));
        Shadowcat::launch(config, upstream, metrics, None)
    }

    fn launch(
        mut config: Config,
        upstream: Arc<dyn Upstream>,
        metrics: Arc<Metrics>,
        source: Option<Source>,
    ) -> Result<Shadowcat, Error> {
        let load = |files: &Option<TlsFiles>| {
            files
                .clone()
                .map(|f| Tls::load(f).map(Arc::new).map_err(Error::Config))
                .transpose()
        };
        let tls = load(&config.listen.tls)?;
        let admin_tls = load(&config.admin.as_ref().and_then(|a| a.tls.clone()))?;
        let admin_listener = match &config.admin {
            Some(a) => Some(TcpListener::bind(a.bind).map_err(|e| {
                Error::Config(format!("cannot listen on --admin-bind {}: {e}", a.bind))
            })?),
            None => None,
        };
        let bind = config.listen.bind;
        let listener = TcpListener::bind(bind)
            .map_err(|e| Error::Config(format!("cannot listen on {bind}: {e}")))?;
        // The default resource URL names the bound address, known only now.
        let scheme = if tls.is_some() { "https" } else { "http" };
        let resource = config.gate.resolve_resource(|| {
            format!("{scheme}://{}{}", local_name(&listener), config.proxy.path)
        });
        let config = Arc::new(config);
        let gate = Gatekeeper::new(&config.gate, resource)?;
        let sessions = Sessions::for_instance(&config.sessions, &config.instance.id);
        let (recorder, auditor) = start_tapes(&config, upstream.as_ref(), &metrics)?;
        // A mock_from rule's tape is read with the replay tool's matcher.
        let faults = crate::fault::Faults::start(
            &config.faults,
            upstream.name(),
            &crate::tools::tape::replay::mock::load,
        )?;
        let (built, tapes) = (metrics.clone(), config.tapes.clone());
        // A reload starts members only: recorded and counted as those started here are.
        let start: crate::reload::StartUpstream =
            Box::new(move |m| build_member(m, &tapes, &built));
        let upstream_in_force = upstream.clone();
        let reload_metrics = metrics.clone();
        let proxy = Arc::new(
            Proxy::new(&config.proxy, sessions, upstream, metrics, gate)
                .with_tapes(recorder, auditor)
                .with_faults(faults),
        );
        if tls.is_some() {
            proxy.metrics().serve_tls();
        }
        let front = Arc::new(Front::new(proxy.clone()));
        let server_config = crate::http::ServerConfig {
            tls: tls.clone(),
            ..config.listen.server_config()
        };
        let server = Arc::new(Server::start(listener, server_config, front)?);
        proxy.set_server(Arc::downgrade(&server));
        let tls: Vec<(&'static str, Arc<Tls>)> = [("listener", tls), ("admin listener", admin_tls)]
            .into_iter()
            .filter_map(|(name, t)| Some((name, t?)))
            .collect();
        let listeners = tls.clone();
        let (gated, auth) = (proxy.clone(), config.gate.auth.clone());
        let reloader = Arc::new(Reloader::new(
            config.clone(),
            source,
            upstream_in_force,
            start,
            Box::new(move || reload_files(&listeners, &gated, &auth)),
            reload_metrics,
        ));
        let admin = match (admin_listener, &config.admin) {
            (Some(l), Some(a)) => {
                let handler = Arc::new(Admin::new(proxy.clone(), reloader.clone()));
                let admin_tls = tls.iter().find(|(n, _)| *n == "admin listener");
                let admin_config = crate::http::ServerConfig {
                    tls: admin_tls.map(|(_, t)| t.clone()),
                    ..a.server_config()
                };
                let s = Server::start(l, admin_config, handler)?;
                let scheme = if admin_tls.is_some() { "https" } else { "http" };
                log::info!("admin API on {scheme}://{}/admin/", s.local_addr());
                Some(s)
            }
            _ => None,
        };
        let sweep = config.sessions.sweep_interval();
        let (stop, stopped) = bounded::<()>(1);
        let p = proxy.clone();
        let reaper = std::thread::Builder::new()
            .name("shadowcat-reaper".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(sweep)
                {
                    p.expire_sessions();
                }
            })?;
        Ok(Shadowcat {
            server,
            admin,
            tls,
            proxy,
            reloader,
            reaper: Mutex::new(Some((stop, reaper))),
            stopped: AtomicBool::new(false),
            grace: config.shutdown_grace,
            drain: config.drain_time,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The admin API's bound address, if `--admin-bind` was given.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// Process ids of the stdio children by slot (empty for an HTTP upstream).
    pub fn stdio_child_pids(&self) -> Vec<Option<u32>> {
        self.proxy
            .upstream()
            .children()
            .iter()
            .map(|c| c.pid)
            .collect()
    }

    /// The request pipeline (sessions, upstream), for tests and operators.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Whether the main listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.iter().any(|(name, _)| *name == "listener")
    }

    /// Re-reads every listener's TLS certificate and key (SIGHUP): connections made from now
    /// on use them, open ones keep theirs. A listener whose files do not load keeps its old
    /// configuration; that is logged at error with the reason, and the first such reason is
    /// returned. `Ok(0)`: no listener has TLS.
    pub fn reload_tls(&self) -> Result<usize, String> {
        reload_tls(&self.tls)
    }

    /// Reads the `--config` file again and applies what a running proxy may change
    /// (`crate::reload`), as SIGHUP and `POST /admin/reload` do: the report, or the HTTP
    /// status and why it was refused.
    pub fn reload(&self, trigger: &str) -> Result<serde_json::Value, (u16, String)> {
        self.reloader.reload(trigger)
    }

    /// Reads the key material files again (SIGHUP without `--config`): the TLS certificates
    /// and the authentication's files; what each gave (`null`: not configured).
    pub fn reload_files(&self) -> serde_json::Map<String, serde_json::Value> {
        let auth = self.reloader.config().gate.auth.clone();
        match reload_files(&self.tls, &self.proxy, &auth) {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }

    /// The configuration in force (after any reload).
    pub fn config(&self) -> Arc<Config> {
        self.reloader.config()
    }

    /// Starts a graceful scale-in ([`Proxy::drain`]): `/readyz` says 503 and new sessions are
    /// refused; everything else is still served until [`Shadowcat::shutdown`].
    pub fn drain(&self) {
        self.proxy.drain();
    }

    /// Ends the grace of a running [`Shadowcat::shutdown`] now (the second signal).
    pub fn hurry(&self) {
        self.server.hurry();
    }

    /// Stops in the documented order, waiting at most about `grace` for requests in flight.
    /// A second call returns at once.
    pub fn shutdown(&self, grace: Duration) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.proxy.drain();
        self.server.shutdown(grace);
        if let Some(a) = &self.admin {
            a.shutdown(Duration::from_millis(500));
        }
        if let Some((stop, handle)) = lock(&self.reaper).take() {
            drop(stop);
            let _ = handle.join();
        }
        self.proxy.close_all();
        // Every session's tape is closed now; what is queued goes to disk before the end.
        self.proxy.recorder().shutdown();
        self.proxy.auditor().shutdown();
        self.proxy.upstream().shutdown(Duration::from_secs(2));
    }
}

impl Drop for Shadowcat {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(1));
    }
}

/// Starts the tape writer (`--record`) and the audit writer (`--audit-log`), each on its own
/// thread, sharing one set of redaction rules and the tape directory's salt (a random one
/// per run when only the audit log is on).
fn start_tapes(
    config: &Config,
    upstream: &dyn Upstream,
    metrics: &Arc<Metrics>,
) -> Result<(Recorder, Auditor), Error> {
    let t = &config.tapes;
    if t.record.is_none() && t.audit_log.is_none() {
        return Ok((Recorder::off(), Auditor::off()));
    }
    let salt = match &t.record {
        Some(dir) => tape::directory_salt(dir)?,
        None => tape::random_salt()?,
    };
    let redactor = Arc::new(Redactor::new(tape::rules(&t.redact, salt)?));
    let info = tape::format::Upstream {
        name: upstream.name().to_owned(),
        kind: upstream.kind().to_owned(),
        mode: upstream.mode().to_owned(),
    };
    let recorder = Recorder::start(t, redactor.clone(), info, metrics.clone())?;
    let auditor = Auditor::start(t, upstream.name(), redactor, metrics.clone())?;
    if let Some(dir) = &t.record {
        log::info!("recording tapes to {}", dir.display());
    }
    Ok((recorder, auditor))
}

/// [`run_from`] without a command line: SIGHUP only re-reads the key material files.
pub fn run(config: Config) -> Result<(), Error> {
    run_from(config, None)
}

/// The top-level entry point for `shadowcat reverse`: serves until SIGINT or SIGTERM, then
/// shuts down gracefully. A second signal during the shutdown skips what is left of the grace.
/// SIGHUP reloads the config file of `source`'s `--config` ([`Shadowcat::reload`], which
/// re-reads the key material files too); without one it re-reads the TLS certificates and the
/// authentication's files ([`Shadowcat::reload_files`]), and with neither it is logged and
/// ignored.
pub fn run_from(config: Config, source: Option<Source>) -> Result<(), Error> {
    let signals = block_signals();
    let proxy = Arc::new(Shadowcat::start_from(config, source)?);
    log::info!(
        "shadowcat listening on {}://{}{} (upstream {})",
        if proxy.is_tls() { "https" } else { "http" },
        proxy.local_addr(),
        proxy.proxy.cfg_path(),
        proxy.proxy.upstream().name()
    );
    let sig = loop {
        match wait_signal(&signals, None) {
            Some(libc::SIGHUP) if proxy.reloader.has_file() => {
                // The outcome is logged by the reload.
                let _ = proxy.reload("SIGHUP");
            }
            Some(libc::SIGHUP) => {
                // Success and failure are logged per file.
                let files = proxy.reload_files();
                if files.values().all(serde_json::Value::is_null) {
                    log::info!(
                        "SIGHUP: no TLS certificate or authentication file to read again (and no --config file)"
                    );
                }
            }
            other => break other.unwrap_or(0),
        }
    };
    proxy.drain();
    if !proxy.drain.is_zero() {
        log::info!(
            "signal {sig}: draining for {:?} (/readyz 503, no new sessions)",
            proxy.drain
        );
        // A second signal ends the drain at once.
        let until = std::time::Instant::now() + proxy.drain;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match wait_signal(&signals, Some(left.min(Duration::from_millis(100)))) {
                Some(libc::SIGHUP) | None => {}
                Some(sig) => {
                    log::warn!("signal {sig} again: ending the drain");
                    break;
                }
            }
        }
    }
    log::info!("signal {sig}: shutting down (grace {:?})", proxy.grace);
    let p = proxy.clone();
    let stopper = std::thread::Builder::new()
        .name("shadowcat-stop".into())
        .spawn(move || p.shutdown(p.grace))?;
    while !stopper.is_finished() {
        match wait_signal(&signals, Some(Duration::from_millis(100))) {
            Some(libc::SIGHUP) => log::info!("SIGHUP while shutting down: ignored"),
            Some(sig) => {
                log::warn!("signal {sig} again: skipping the rest of the grace");
                proxy.hurry();
            }
            None => {}
        }
    }
    let _ = stopper.join();
    log::info!("stopped");
    Ok(())
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread it starts later),
/// so they can be taken synchronously with `sigwait`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a zeroed, initialised sigset owned by this frame.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for one of the blocked signals, at most `timeout` if given.
fn wait_signal(set: &libc::sigset_t, timeout: Option<Duration>) -> Option<i32> {
    match timeout {
        None => {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is initialised; sigwait writes the signal number into `sig`.
            let rc = unsafe { libc::sigwait(set, &mut sig) };
            (rc == 0).then_some(sig)
        }
        Some(t) => {
            let ts = libc::timespec {
                tv_sec: t.as_secs() as libc::time_t,
                tv_nsec: t.subsec_nanos() as libc::c_long,
            };
            // SAFETY: `set` and `ts` are initialised; a null siginfo pointer is allowed.
            let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
            (sig > 0).then_some(sig)
        }
    }
}
