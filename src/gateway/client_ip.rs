//! The client IP of a connection (docs/protocol.md §5.3): the socket peer,
//! unless the peer is a trusted proxy, in which case the right-most
//! `X-Forwarded-For` hop that is not itself a trusted proxy.

use hyper::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// Derives the client IP from the peer address and the request headers.
/// Proxy headers from an untrusted peer are ignored.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| parse_hop(hop.trim()))
        .map(canonical)
        .collect();
    // Right to left: the nearest hop first. If every hop is a trusted proxy,
    // the farthest one is the best we know.
    hops.iter()
        .rev()
        .copied()
        .find(|&ip| !is_trusted(ip))
        .or_else(|| hops.first().copied())
        .unwrap_or(peer)
}

/// `::ffff:a.b.c.d` is the IPv4 address a.b.c.d.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A hop may carry a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_forwarded_for() {
        let got = client_ip(ip("203.0.113.9"), &headers("10.0.0.1"), &[]);
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_proxy_walks_forwarded_for_right_to_left() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let got = client_ip(
            ip("10.0.0.2"),
            &headers("198.51.100.1, 203.0.113.7, 10.0.0.3"),
            &trusted,
        );
        assert_eq!(got, ip("203.0.113.7"));
    }

    #[test]
    fn trusted_proxy_without_header_is_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.2/32".parse().unwrap()];
        assert_eq!(
            client_ip(ip("10.0.0.2"), &HeaderMap::new(), &trusted),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn mapped_ipv4_peer_is_canonical_and_hops_may_carry_ports() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let got = client_ip(
            ip("::ffff:127.0.0.1"),
            &headers("198.51.100.4:5555"),
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.4"));
    }
}
