//! `Host` and `Origin` values as the DNS-rebinding checks compare them.

use std::net::IpAddr;

fn host_part(authority: &str) -> &str {
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    a.split(':').next().unwrap_or("")
}

/// `localhost`, `127.0.0.0/8` or `::1`, with or without a port (and no userinfo: in
/// `localhost:1@evil.example` the host is `evil.example`).
pub fn is_loopback_host(authority: &str) -> bool {
    let h = host_part(authority);
    !authority.contains('@')
        && (h.eq_ignore_ascii_case("localhost")
            || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

/// An `Origin` (or `--allowed-origin`) as compared: trimmed, lowercase, no trailing slash.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// True for an `http` or `https` origin (already normalised) on a loopback host.
pub fn loopback_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    rest.is_some_and(|r| !r.contains('/') && is_loopback_host(r))
}

#[cfg(test)]
mod tests;
