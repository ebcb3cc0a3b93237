//! The first look at every request, before routing or upgrading: its
//! `Origin` (docs/protocol.md §3.6) and, in open mode, its `Host` (DNS
//! rebinding). A WebSocket upgrade carries its verdict to `connect`, which
//! answers it; plain HTTP is refused here with 403.

use super::body::Body;
use super::origin::{OriginPolicy, OriginRefusal};
use super::rest::error;
use hyper::header::{HOST, HeaderMap, ORIGIN};
use hyper::{Request, Response, StatusCode};
use std::net::IpAddr;

/// Headers a proxy adds: a request carrying one did not come straight
/// from a local client, even over loopback (OpenClaw's rule).
const FORWARDED_HEADERS: [&str; 4] = [
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-host",
];

/// The verdict on a request's `Origin`: `Ok` when it carries none.
/// `client_ip` is the client as §5.3 finds it.
pub fn screen_origin<B>(
    req: &Request<B>,
    policy: &OriginPolicy,
    client_ip: IpAddr,
) -> Result<(), OriginRefusal> {
    let headers = req.headers();
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| OriginRefusal::Invalid)?;
    let local = is_loopback(client_ip) && !is_forwarded(headers);
    policy.check_origin(origin, host(headers), local)
}

/// The refusal of a plain HTTP request: 403 for a refused `Origin`, or,
/// in open mode, for a `Host` that is not loopback or configured.
pub fn screen_http<B>(
    req: &Request<B>,
    policy: &OriginPolicy,
    origin: Result<(), OriginRefusal>,
) -> Option<Response<Body>> {
    if let Err(refusal) = origin {
        let message = format!("{refusal}: allow the page's origin with --allowed-origin");
        return Some(error(StatusCode::FORBIDDEN, &message));
    }
    if !policy.host_allowed(host(req.headers())) {
        return Some(error(
            StatusCode::FORBIDDEN,
            "this Host is not served without a token (DNS rebinding): use a loopback address, an --allowed-origin host, or a token",
        ));
    }
    None
}

fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(HOST).and_then(|h| h.to_str().ok())
}

fn is_forwarded(headers: &HeaderMap) -> bool {
    FORWARDED_HEADERS.iter().any(|h| headers.contains_key(*h))
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
