//! `--upstream` given more than once (`url = [...]` in a file): replicas of one HTTP server,
//! and the `--replica-*` knobs of their circuit breakers.
//!
//! Owns: checking the replica URLs and the knobs into a [`ReplicaConfig`]. Must not touch:
//! what the replicas do (`crate::upstream::replicas`).

use std::time::Duration;

use crate::config::ReplicaConfig;
use crate::error::Error;
use crate::util::duration;

/// At most this many URLs (replicas) for one upstream.
pub const MAX_REPLICAS: usize = 64;

/// Checks the `--upstream` URLs: each `http://` or `https://`, no two the same, at most
/// [`MAX_REPLICAS`], and all of one scheme (the TLS flags apply to all).
pub fn check_urls(urls: &[String]) -> Result<(), Error> {
    if urls.len() > MAX_REPLICAS {
        return Err(Error::Config(format!(
            "--upstream given {} times: at most {MAX_REPLICAS} replicas",
            urls.len()
        )));
    }
    for (i, url) in urls.iter().enumerate() {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(Error::Config(format!(
                "--upstream must be an http:// or https:// URL (got {url:?})"
            )));
        }
        if urls[..i].contains(url) {
            return Err(Error::Config(format!(
                "--upstream {url:?} given twice: replicas must be different servers"
            )));
        }
    }
    let https = |u: &String| u.starts_with("https://");
    if urls.iter().any(https) && !urls.iter().all(https) {
        return Err(Error::Config(
            "--upstream replicas mix http:// and https://: use one scheme".into(),
        ));
    }
    Ok(())
}

/// The breaker knobs, as the flags give them.
pub struct Knobs<'a> {
    pub failures: u32,
    pub backoff: &'a str,
    pub backoff_max: &'a str,
    pub probe_interval: &'a str,
}

/// Validates the knobs: failures 1 to 1,000; backoff at most its maximum (at most 1 h); a
/// probe interval from 100 ms to 1 min.
pub fn breaker(k: &Knobs<'_>) -> Result<ReplicaConfig, Error> {
    if k.failures == 0 || k.failures > 1000 {
        return Err(Error::Config("--replica-failures must be 1..=1000".into()));
    }
    let backoff = duration("--replica-backoff", k.backoff)?;
    let backoff_max = duration("--replica-backoff-max", k.backoff_max)?;
    if backoff_max < backoff {
        return Err(Error::Config(format!(
            "--replica-backoff-max ({}) is shorter than --replica-backoff ({})",
            k.backoff_max, k.backoff
        )));
    }
    if backoff_max > Duration::from_secs(3600) {
        return Err(Error::Config(
            "--replica-backoff-max must be at most 1h".into(),
        ));
    }
    let probe_interval = duration("--replica-probe-interval", k.probe_interval)?;
    if probe_interval < Duration::from_millis(100) || probe_interval > Duration::from_secs(60) {
        return Err(Error::Config(
            "--replica-probe-interval must be from 100ms to 60s".into(),
        ));
    }
    Ok(ReplicaConfig {
        failures: k.failures,
        backoff,
        backoff_max,
        probe_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let v = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_urls(&v(&["http://a/mcp", "http://b/mcp"])).is_ok());
        let e = |u: &[&str]| check_urls(&v(u)).expect_err("refused").to_string();
        assert!(e(&["http://a/mcp", "http://a/mcp"]).contains("given twice"));
        assert!(e(&["http://a/mcp", "ftp://b/"]).contains("http:// or https://"));
        assert!(e(&["http://a/mcp", "https://b/mcp"]).contains("one scheme"));
        let many: Vec<String> = (0..65).map(|i| format!("http://h{i}/mcp")).collect();
        assert!(
            check_urls(&many)
                .expect_err("65")
                .to_string()
                .contains("at most 64")
        );
    }

    #[test]
    fn repeated_upstream_flags_are_replicas() {
        use argh::FromArgs;
        let args = [
            "reverse",
            "--upstream",
            "http://a:1/mcp",
            "--upstream",
            "http://b:2/mcp",
            "--replica-failures",
            "1",
        ];
        let cli = crate::Cli::from_args(&["shadowcat"], &args).expect("flags");
        let crate::Command::Reverse(r) = cli.command else {
            panic!("reverse")
        };
        let c = r.into_config("/bin/shadowcat").expect("valid");
        let crate::config::UpstreamConfig::Http(h) = &c.upstream else {
            panic!("{:?}", c.upstream)
        };
        assert_eq!(h.url, "http://a:1/mcp");
        assert_eq!(h.replicas, ["http://b:2/mcp"]);
        assert_eq!(h.breaker.failures, 1);
        assert_eq!(c.upstream.name(), "a:1+1");
    }

    #[test]
    fn knobs_are_checked() {
        let k = |failures, backoff, max, every| Knobs {
            failures,
            backoff,
            backoff_max: max,
            probe_interval: every,
        };
        let c = breaker(&k(3, "10s", "2m", "2s")).expect("defaults");
        assert_eq!(c, ReplicaConfig::default());
        let e = |x: Knobs<'_>| breaker(&x).expect_err("refused").to_string();
        assert!(e(k(0, "10s", "2m", "2s")).contains("--replica-failures"));
        assert!(e(k(3, "5m", "2m", "2s")).contains("shorter than"));
        assert!(e(k(3, "10s", "2h", "2s")).contains("at most 1h"));
        assert!(e(k(3, "10s", "2m", "10ms")).contains("from 100ms"));
        assert!(e(k(3, "0s", "2m", "2s")).contains("--replica-backoff"));
    }
}
