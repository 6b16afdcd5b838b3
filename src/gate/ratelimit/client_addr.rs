//! Client addresses: [`Cidr`] networks (`--trusted-proxy`) and [`client_ip`], the rule for
//! when `X-Forwarded-For` is believed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An IPv4 or IPv6 network: `10.0.0.0/8`, `fd00::/8`, `::1/128`; a bare address is `/32` or
/// `/128`. Host bits are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
///
/// An IPv4 address is the same as its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`): IPv4 networks
/// contain mapped addresses, and IPv6 networks that cover `::ffff:0:0/96` contain IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address, host bits zero.
    net: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    prefix: u8,
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl Cidr {
    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.net
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(a) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask128(self.prefix) == u128::from(net)
            }
            (IpAddr::V6(net), IpAddr::V4(a)) => {
                u128::from(a.to_ipv6_mapped()) & mask128(self.prefix) == u128::from(net)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let t = s.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("cidr {s:?}: expected ADDRESS or ADDRESS/PREFIX such as 10.0.0.0/8 or fd00::/8")
        })?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!(
                        "cidr {s:?}: prefix must be a number from 0 to {max}"
                    ));
                }
            },
        };
        let net = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// One `X-Forwarded-For` entry: an address, optionally `[v6]`, `a.b.c.d:port` or `[v6]:port`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

fn is_trusted(ip: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// The client address a request is charged to.
///
/// `peer` is the TCP peer and `forwarded_for` the values of every `X-Forwarded-For` header in
/// order (each a comma-separated list; empty elements are ignored). The header is used **only**
/// when `peer` is inside one of `trusted`; from any other peer it is ignored.
///
/// The rule: an address is believed only when every hop to its right (the peer included) is a
/// trusted proxy, since only a trusted proxy's append is honest. So the walk starts at the peer
/// and goes right to left through the entries:
///
/// * a trusted entry is skipped (it is the next proxy of the chain);
/// * the first untrusted entry is the client;
/// * an entry that is not an address (`unknown`, garbage) stops the walk: the last trusted hop
///   seen is the client, and nothing left of the garbage is believed;
/// * when the header is absent or empty, the client is the peer; when every entry is trusted,
///   the client is the leftmost entry (appended by a trusted proxy, so it is genuine).
///
/// The result is canonical: an IPv4-mapped IPv6 address comes back as IPv4, so a client has one
/// key whether it arrived over IPv4 or a dual-stack socket.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let values: Vec<&str> = forwarded_for.collect();
    let mut last = peer;
    for value in values.iter().rev() {
        for entry in value.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let Some(ip) = parse_hop(entry) else {
                return last;
            };
            let ip = ip.to_canonical();
            if !is_trusted(ip, trusted) {
                return ip;
            }
            last = ip;
        }
    }
    last
}
