//! Browser origins and the `Host` header (docs/protocol.md §3.6): which
//! web pages may drive the gateway, and which names it answers HTTP to in
//! open mode (no token), against DNS rebinding.
//!
//! The rule is the OpenClaw gateway's (`checkBrowserOrigin`): an `Origin`
//! is accepted when it is on the allow-list (`--allowed-origin`, `*` for
//! any), or is the gateway's own host (the `Host` header) and that host is
//! loopback (for a local client), a private address, `*.local` or
//! `*.ts.net`, or when the client connects from loopback and the origin's
//! host is a loopback name. A request without an `Origin` is not a
//! browser's cross-site request and is not checked here.
//!
//! Pure: no I/O, so the rule is tested without sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an `Origin` was refused; [`OriginRefusal::reason`] is the
/// `details.reason` of the refusal, as OpenClaw words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OriginRefusal {
    /// Not of the form `scheme://host[:port]`, `null`, or with credentials.
    #[error("origin missing or invalid")]
    Invalid,
    /// A well-formed origin the rule does not accept.
    #[error("origin not allowed")]
    NotAllowed,
}

impl OriginRefusal {
    /// The `details.reason` of the answer.
    pub fn reason(self) -> &'static str {
        match self {
            OriginRefusal::Invalid => "origin missing or invalid",
            OriginRefusal::NotAllowed => "origin not allowed",
        }
    }
}

/// The configured policy: allowed origins and names, and whether tokens
/// are required (open mode checks `Host`).
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Normalized allowed origins (`scheme://host[:port]`, lowercase).
    allowed: Vec<String>,
    /// `*` was allowed: any origin.
    any: bool,
    /// Host names (no port) that HTTP may be addressed to in open mode
    /// besides loopback: the hosts of the allowed origins.
    names: Vec<String>,
    /// No token configured: `Host` is checked on plain HTTP.
    open: bool,
}

impl OriginPolicy {
    /// The policy for `allowed` origins (as given to `--allowed-origin`);
    /// `open` when no token is configured.
    pub fn new(allowed: &[String], open: bool) -> OriginPolicy {
        let mut policy = OriginPolicy {
            open,
            ..OriginPolicy::default()
        };
        for origin in allowed {
            let origin = origin.trim();
            if origin == "*" {
                policy.any = true;
            } else if let Some(parsed) = Parsed::origin(origin) {
                policy.names.push(parsed.hostname.clone());
                policy.allowed.push(parsed.origin);
            }
        }
        policy
    }

    /// The first of `allowed` that is neither `*` nor an origin
    /// (`scheme://host[:port]`), for `--allowed-origin`'s error.
    pub fn first_invalid(allowed: &[String]) -> Option<&String> {
        allowed
            .iter()
            .find(|o| o.trim() != "*" && Parsed::origin(o).is_none())
    }

    /// Checks a request's `Origin` header value. `host` is the `Host`
    /// header; `local_client` is true when the client connects from
    /// loopback without proxy headers.
    pub fn check_origin(
        &self,
        origin: &str,
        host: Option<&str>,
        local_client: bool,
    ) -> Result<(), OriginRefusal> {
        let parsed = Parsed::origin(origin).ok_or(OriginRefusal::Invalid)?;
        if self.any || self.allowed.contains(&parsed.origin) {
            return Ok(());
        }
        let host = host.map(|h| h.trim().to_ascii_lowercase());
        if let Some(host) = host.as_deref().filter(|h| *h == parsed.host) {
            if trusted_same_origin_host(hostname_of(host), local_client) {
                return Ok(());
            }
        }
        if local_client && is_loopback_name(&parsed.hostname) {
            return Ok(());
        }
        Err(OriginRefusal::NotAllowed)
    }

    /// In open mode, whether plain HTTP addressed to `host` is served: a
    /// loopback name or address, or a configured name. With tokens, any
    /// host is (the token protects the routes).
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        if !self.open {
            return true;
        }
        let Some(host) = host else {
            // HTTP/1.1 requires Host; a request without one is no browser's.
            return true;
        };
        let host = host.trim().to_ascii_lowercase();
        let name = hostname_of(&host);
        is_loopback_name(name) || self.names.iter().any(|n| n == name)
    }
}

/// An `Origin` split as the URL standard serializes it.
struct Parsed {
    /// `scheme://host[:port]`, lowercase, default port dropped.
    origin: String,
    /// `host[:port]` as it appears in the origin.
    host: String,
    /// The host alone (IPv6 without brackets).
    hostname: String,
}

impl Parsed {
    fn origin(raw: &str) -> Option<Parsed> {
        let raw = raw.trim().to_ascii_lowercase();
        let (scheme, rest) = raw.split_once("://")?;
        let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
        let host = rest.strip_suffix('/').unwrap_or(rest);
        if !valid_scheme || host.is_empty() || host.contains(['/', '?', '#', '\\', '@', ' ']) {
            return None;
        }
        let authority: hyper::http::uri::Authority = host.parse().ok()?;
        let default_port = match scheme {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        };
        let host = match authority.port_u16() {
            Some(port) if Some(port) == default_port => authority.host().to_owned(),
            _ => authority.as_str().to_owned(),
        };
        let hostname = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Some(Parsed {
            origin: format!("{scheme}://{host}"),
            host,
            hostname,
        })
    }
}

/// The host of a `Host` value without its port (IPv6 without brackets).
fn hostname_of(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    if host.parse::<Ipv6Addr>().is_ok() {
        return host;
    }
    host.split(':').next().unwrap_or(host)
}

/// `localhost` or a loopback address.
fn is_loopback_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(is_loopback_ip)
}

fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// OpenClaw's `isTrustedSameOriginHost`.
fn trusted_same_origin_host(hostname: &str, local_client: bool) -> bool {
    if is_loopback_name(hostname) {
        return local_client;
    }
    if let Ok(ip) = hostname.parse::<IpAddr>() {
        return is_private_ip(ip);
    }
    hostname.ends_with(".local") || hostname.ends_with(".ts.net")
}

/// RFC 1918, link-local, CGNAT, IPv6 ULA and link-local, or loopback.
fn is_private_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => private_v4(v4),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

fn private_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || (a == 100 && (64..128).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> OriginPolicy {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        OriginPolicy::new(&allowed, true)
    }

    #[test]
    fn a_foreign_origin_is_refused() {
        let p = policy(&[]);
        let host = Some("127.0.0.1:18789");
        assert_eq!(
            p.check_origin("http://evil.example", host, true),
            Err(OriginRefusal::NotAllowed)
        );
        assert_eq!(
            p.check_origin(
                "http://evil.example:18789",
                Some("evil.example:18789"),
                true
            ),
            Err(OriginRefusal::NotAllowed),
            "DNS rebinding: same host, but not a trusted one"
        );
    }

    #[test]
    fn the_gateway_own_loopback_page_is_accepted_for_a_local_client() {
        let p = policy(&[]);
        let host = Some("127.0.0.1:18789");
        assert_eq!(p.check_origin("http://127.0.0.1:18789", host, true), Ok(()));
        assert_eq!(
            p.check_origin("http://127.0.0.1:18789", host, false),
            Err(OriginRefusal::NotAllowed)
        );
    }

    #[test]
    fn a_loopback_page_on_another_port_is_accepted_from_loopback() {
        // The OpenClaw Control UI served from its own loopback port.
        let p = policy(&[]);
        let host = Some("127.0.0.1:18789");
        assert_eq!(p.check_origin("http://localhost:5173", host, true), Ok(()));
        assert_eq!(p.check_origin("http://[::1]:5173", host, true), Ok(()));
        assert_eq!(
            p.check_origin("http://localhost:5173", host, false),
            Err(OriginRefusal::NotAllowed)
        );
    }

    #[test]
    fn private_local_and_tailnet_same_hosts_are_accepted() {
        let p = policy(&[]);
        for (origin, host) in [
            ("http://192.168.1.5:18789", "192.168.1.5:18789"),
            ("https://box.local", "box.local"),
            ("https://box.tail1.ts.net", "box.tail1.ts.net"),
            ("http://[fd00::1]:18789", "[fd00::1]:18789"),
        ] {
            assert_eq!(
                p.check_origin(origin, Some(host), false),
                Ok(()),
                "{origin}"
            );
        }
        assert_eq!(
            p.check_origin("http://8.8.8.8", Some("8.8.8.8"), false),
            Err(OriginRefusal::NotAllowed)
        );
    }

    #[test]
    fn the_allow_list_is_matched_normalized() {
        let p = policy(&["https://Dash.Example.com:443/"]);
        assert_eq!(
            p.check_origin("https://dash.example.com", None, false),
            Ok(())
        );
        assert_eq!(
            p.check_origin("http://dash.example.com", None, false),
            Err(OriginRefusal::NotAllowed)
        );
        assert_eq!(
            policy(&["*"]).check_origin("http://x.y", None, false),
            Ok(())
        );
    }

    #[test]
    fn a_configured_origin_must_be_one() {
        let given = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            OriginPolicy::first_invalid(&given(&["*", "http://a:1"])),
            None
        );
        assert_eq!(
            OriginPolicy::first_invalid(&given(&["http://a", "a.example"])).map(String::as_str),
            Some("a.example")
        );
    }

    #[test]
    fn malformed_origins_are_invalid() {
        let p = policy(&["*"]);
        for origin in [
            "null",
            "",
            "evil.example",
            "http://a@b",
            "http://a/b",
            "1x://a",
        ] {
            assert_eq!(
                p.check_origin(origin, None, true),
                Err(OriginRefusal::Invalid),
                "{origin}"
            );
        }
    }

    #[test]
    fn open_mode_serves_only_loopback_and_configured_hosts() {
        let p = policy(&["https://dash.example.com"]);
        for host in [
            "127.0.0.1:18789",
            "localhost",
            "[::1]:80",
            "dash.example.com:18789",
        ] {
            assert!(p.host_allowed(Some(host)), "{host}");
        }
        for host in ["evil.example:18789", "10.0.0.1", "localhost.evil.example"] {
            assert!(!p.host_allowed(Some(host)), "{host}");
        }
        let with_token = OriginPolicy::new(&[], false);
        assert!(with_token.host_allowed(Some("evil.example")));
    }
}
