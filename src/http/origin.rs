//! `Host` and `Origin` values as the DNS-rebinding checks compare them.
//!
//! Parsed, not pattern-matched: an authority is `host[:port]` (RFC 3986 §3.2, RFC 9110 §7.2),
//! where host is a reg-name, an IPv4 address or an `[IPv6]` literal and port is at most five
//! digits (at most 65535). Anything else (bytes after `]`, a second `:`, userinfo, a path, an
//! empty host) is no authority at all, so never loopback: `[::1]evil.example`,
//! `127.0.0.1:80:evil.example` and `localhost:1@evil.example` are refused like
//! `evil.example`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The host of a valid authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    /// A registered name as written (not decoded or case-folded).
    Name(&'a str),
    /// An IPv4 address or a bracketed IPv6 literal.
    Ip(IpAddr),
}

impl Host<'_> {
    /// `localhost` (any case), `127.0.0.0/8` or `::1`.
    pub fn is_loopback(&self) -> bool {
        match self {
            Host::Name(n) => n.eq_ignore_ascii_case("localhost"),
            Host::Ip(ip) => ip.is_loopback(),
        }
    }
}

/// RFC 3986 reg-name bytes: unreserved, sub-delims and `%` (of a pct-encoding, checked by
/// the caller).
fn reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b)
}

fn reg_name(h: &str) -> bool {
    let b = h.as_bytes();
    !b.is_empty()
        && b.iter().all(|&c| reg_name_byte(c))
        && b.iter().enumerate().all(|(i, &c)| {
            c != b'%'
                || b.get(i + 1..i + 3)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
        })
}

/// A port: empty (RFC 3986 allows `host:`) or up to five digits, at most 65535.
fn port(p: &str) -> bool {
    p.is_empty()
        || (p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok())
}

/// The host of `authority` (`host[:port]`, surrounding spaces and tabs ignored), or `None`
/// when it is not one.
pub fn parse_authority(authority: &str) -> Option<Host<'_>> {
    let a = authority.trim_matches([' ', '\t']);
    if let Some(rest) = a.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip = inside.parse::<Ipv6Addr>().ok()?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port)) {
            return None;
        }
        return Some(Host::Ip(IpAddr::V6(ip)));
    }
    let (host, p) = a.split_once(':').unwrap_or((a, ""));
    if !reg_name(host) || !port(p) {
        return None;
    }
    Some(match host.parse::<Ipv4Addr>() {
        Ok(ip) => Host::Ip(IpAddr::V4(ip)),
        Err(_) => Host::Name(host),
    })
}

/// Whether `authority` (a `Host` value) is a valid authority whose host is `localhost`,
/// `127.0.0.0/8` or `::1`, with or without a port.
pub fn is_loopback_host(authority: &str) -> bool {
    parse_authority(authority).is_some_and(|h| h.is_loopback())
}

/// An `Origin` (or `--allowed-origin`) as compared: trimmed, lowercase, no trailing slash.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// True for an `http` or `https` origin (already normalised): the scheme, `://` and an
/// authority with a loopback host, nothing else.
pub fn loopback_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    rest.is_some_and(|r| r.trim_matches([' ', '\t']) == r && is_loopback_host(r))
}

#[cfg(test)]
mod tests;
