//! This instance's name among several behind one load balancer (`--instance-id`), and the
//! form of the ids it hands out so that a balancer can route on them without a lookup table.
//!
//! Every session id is `<instance>.<random>`: the instance id, a dot, then 128 random bits
//! as 32 hex digits. A balancer (see `examples/haproxy.cfg`) takes the part before the first
//! dot of `Mcp-Session-Id` as the server to send the request to; an instance that receives
//! a session id of another instance answers 404 (the client re-initializes) and counts it in
//! `shadowcat_foreign_sessions_total`.
//!
//! Owns: [`InstanceConfig`] (the id, its default and its validation) and [`instance_of`].
//! Must not touch: anything else; the session table and the pipeline use it.

use serde::Serialize;

/// Longest instance id: it travels in every session id and is a balancer's map key.
pub const MAX_INSTANCE_ID: usize = 32;

/// The instance part of the configuration: one small value other parts read (the session
/// table, the 2026-07-28 bridge's `requestState`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceConfig {
    /// `--instance-id`: 1 to 32 characters of `A-Z a-z 0-9 _ -`. Default: the host name
    /// (lower case, other characters as `-`, at most 20) and the listen port, e.g.
    /// `web1-8080`: stable across restarts of the same instance.
    #[serde(rename = "instanceId")]
    pub id: String,
}

impl InstanceConfig {
    /// `--instance-id ID`, validated; without it the default for `port`.
    pub fn new(id: Option<&str>, port: u16) -> Result<InstanceConfig, String> {
        let id = match id {
            Some(id) => id.to_owned(),
            None => default_id(&hostname(), port),
        };
        validate(&id)?;
        Ok(InstanceConfig { id })
    }
}

/// Ok when `id` is a usable instance id: short, and safe as a header value, a balancer's map
/// key and the part of a session id before its first dot.
pub fn validate(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_INSTANCE_ID {
        return Err(format!(
            "--instance-id {id:?}: 1 to {MAX_INSTANCE_ID} characters"
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "--instance-id {id:?}: only letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

/// `host-port` from a host name: lower case, every other character than `a-z 0-9` as `-`,
/// the host part cut to 20 characters (`shadowcat` when empty).
pub fn default_id(host: &str, port: u16) -> String {
    let mut h: String = host
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(20)
        .collect();
    if h.trim_matches('-').is_empty() {
        h = "shadowcat".into();
    }
    format!("{h}-{port}")
}

/// The instance part of a session id (`<instance>.<random>`), if it has one.
pub fn instance_of(session_id: &str) -> Option<&str> {
    session_id.split_once('.').map(|(i, _)| i)
}

/// This machine's host name (`gethostname(2)`), empty when it cannot be read.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is ours and its length is passed; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_host_and_port_and_stable() {
        assert_eq!(default_id("Web1.example.com", 8080), "web1-8080");
        assert_eq!(default_id("", 80), "shadowcat-80");
        assert_eq!(
            default_id("a very_long host name!!", 1),
            "a-very-long-host-nam-1"
        );
        let a = InstanceConfig::new(None, 9000).unwrap();
        let b = InstanceConfig::new(None, 9000).unwrap();
        assert_eq!(a, b, "same host and port: same id");
        assert!(validate(&a.id).is_ok());
    }

    #[test]
    fn validation_refuses_unsafe_ids() {
        for bad in ["", "a.b", "a b", "a:b", "é", "x\r\ny", &"x".repeat(33)] {
            assert!(InstanceConfig::new(Some(bad), 1).is_err(), "{bad:?}");
        }
        for good in ["a", "web-1", "A_2", &"x".repeat(32)] {
            assert_eq!(InstanceConfig::new(Some(good), 1).unwrap().id, good);
        }
    }

    #[test]
    fn instance_part_of_a_session_id() {
        assert_eq!(instance_of("web1.0123"), Some("web1"));
        assert_eq!(instance_of("0123abcd"), None);
    }
}
