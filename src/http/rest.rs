//! Routing and the JSON routes: `/healthz`, `/v1/presence`,
//! `/v1/presence/stats`, `/v1/presence/hosts`, `/v1/presence/doctor`,
//! `/metrics`, and the
//! dashboard page.
//!
//! Every `/v1/*` route and `/metrics` require a bearer token with a read
//! scope when tokens are configured; the page itself does not.

use super::body::{Body, full, pieces};
use super::context::Context;
use super::{dashboard, encoding, sse};
use crate::auth::AuthError;
use crate::compress::{Encoding, crc32, crc32_combine, deflate_segment, gzip_pieces};
use crate::presence::{Millis, Snapshot, Status};
use crate::protocol::grants_read;
use hyper::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::BTreeMap;

/// Answers one plain HTTP request.
pub async fn route<B>(req: Request<B>, state: &Context) -> Response<Body> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported");
    }
    match path {
        "/" | "/index.html" => page(),
        "/healthz" => healthz(state),
        "/v1/presence"
        | "/v1/presence/stats"
        | "/v1/presence/hosts"
        | "/v1/presence/doctor"
        | "/v1/presence/stream"
        | "/metrics" => {
            let query_token = (path == "/v1/presence/stream")
                .then(|| query_param(req.uri().query(), "token"))
                .flatten();
            if let Some(refusal) = authorize(&req, query_token.as_deref(), state) {
                return refusal;
            }
            match path {
                "/v1/presence" => presence(&req, state),
                "/v1/presence/stats" => stats(state),
                "/v1/presence/hosts" => hosts(state),
                "/v1/presence/doctor" => doctor(&req, state).await,
                "/v1/presence/stream" => match encoding::negotiate(&req) {
                    Ok(coding) => {
                        let close = req.extensions().get::<sse::CloseConnection>();
                        let close = close.cloned().unwrap_or_default();
                        sse::stream(&state.sse, state.shutdown.clone(), coding, close)
                    }
                    Err(refusal) => refusal,
                },
                _ => metrics(state),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    }
}

fn page() -> Response<Body> {
    let mut response = Response::new(full(dashboard::PAGE));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The list, gzipped when the request allows it: the rows after the self
/// entry go as the snapshot's chunks compressed one by one, each once for
/// every version that shares it (as on WebSocket, `gateway/list_frame.rs`),
/// their CRC-32 combined from one kept per chunk and part; the self entry
/// with its fresh `ts` and the closing `]` go around them as stored
/// blocks. So a new version compresses only the chunks it changed, and
/// an answer copies no row. Plain, it is [`list_body`]. Each coding has
/// its own strong `ETag` (`"V"`, `"V-gzip"`); either matches for a 304.
fn presence<B>(req: &Request<B>, state: &Context) -> Response<Body> {
    let encoding = match encoding::negotiate(req) {
        Ok(encoding) => encoding,
        Err(refusal) => return refusal,
    };
    let snapshot = state.reader.load();
    let version = snapshot.version();
    let etag = match encoding {
        Encoding::Identity => format!("\"{version}\""),
        Encoding::Gzip => format!("\"{version}-gzip\""),
    };
    let current = [format!("\"{version}\""), format!("\"{version}-gzip\"")];
    let matches = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || current.iter().any(|c| c == t))
        });
    let mut response = if matches {
        let mut r = Response::new(super::body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if encoding == Encoding::Gzip {
        json_response(StatusCode::OK, list_body_gzip(&snapshot, state.clock.now()))
    } else {
        json_response(StatusCode::OK, list_body(&snapshot, state.clock.now()))
    };
    let headers = response.headers_mut();
    encoding::mark(headers, encoding);
    headers.insert(
        ETAG,
        HeaderValue::from_str(&etag).expect("digits and quotes are a valid header"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The plain list of `snapshot` with the self entry's `ts` set to `now`,
/// byte for byte what [`Snapshot::write_list`] writes, as a body of shared
/// pieces: a fresh head, then the snapshot's chunks of rows as it holds
/// them, then `]`. An answer copies no row however many rows there are
/// and however many readers (or readers that never read) hold one.
fn list_body(snapshot: &Snapshot, now: Millis) -> Body {
    pieces(snapshot.list_pieces(now))
}

/// [`list_body`] as one gzip member (see [`presence`]).
fn list_body_gzip(snapshot: &Snapshot, now: Millis) -> Body {
    let mut head = Vec::with_capacity(1024);
    snapshot.write_list_head(now, &mut head);
    let crc = snapshot.rest_checksum(crc32, crc32_combine);
    let segments = snapshot.rest_deflated(deflate_segment);
    let rest_len = snapshot.rest_len();
    pieces(gzip_pieces(&head, segments, crc, rest_len, b"]"))
}

/// `{"hosts":{KEY:{receivedAt,cpuCount,…}}}`: the last host stats of each
/// listed node row (`node.event` `node.host.stats`), kept until the row
/// expires.
fn hosts(state: &Context) -> Response<Body> {
    let snapshot = state.reader.load_full();
    let hosts: serde_json::Map<String, serde_json::Value> = state
        .host_stats
        .listed(&snapshot)
        .into_iter()
        .map(|(key, stats)| {
            let stats = serde_json::to_value(stats).expect("host stats always encode");
            (key.as_str().to_owned(), stats)
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "hosts": hosts }))
        .expect("a JSON value always encodes");
    let mut response = json_response(StatusCode::OK, full(body));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn doctor<B>(req: &Request<B>, state: &Context) -> Response<Body> {
    let encoding = match encoding::negotiate(req) {
        Ok(encoding) => encoding,
        Err(refusal) => return refusal,
    };
    match state.doctor.answer(&state.reader).await {
        Ok(body) => {
            let body = encoding::body(body, encoding, &state.doctor_gzip);
            let mut response = json_response(StatusCode::OK, body);
            encoding::mark(response.headers_mut(), encoding);
            response
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Always 200 while serving; in fleet mode the body says whether the
/// fleet link is up (`ok`) or the gateway serves its own presence alone.
/// A peer whose clock is off by more than `--max-clock-skew` adds a line.
fn healthz(state: &Context) -> Response<Body> {
    let Some(fleet) = state.fleet.as_deref() else {
        return text(StatusCode::OK, full("ok"));
    };
    let mut body = match fleet.is_connected() {
        true => "ok".to_owned(),
        false => {
            let error = fleet.last_error().unwrap_or_default();
            format!("degraded: fleet: {error}")
        }
    };
    if let Some(warning) = fleet.clock_warning() {
        body.push_str("\nwarning: fleet: ");
        body.push_str(&warning);
    }
    text(StatusCode::OK, full(body))
}

fn stats(state: &Context) -> Response<Body> {
    let snapshot = state.reader.load();
    let now = state.clock.now();
    let mut by_mode: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_status: BTreeMap<&str, u64> = [("active", 0), ("idle", 0), ("stale", 0)]
        .into_iter()
        .collect();
    for (i, row) in snapshot.entries().enumerate() {
        let mode = row.mode();
        match by_mode.get_mut(mode.as_deref().unwrap_or("unknown")) {
            Some(n) => *n += 1,
            None => {
                by_mode.insert(mode.as_deref().unwrap_or("unknown").to_owned(), 1);
            }
        }
        // The self entry's ts is refreshed by every list: it is always Active.
        let ts = if i == 0 { now } else { row.ts };
        *by_status.entry(Status::of(ts, now).as_str()).or_default() += 1;
    }
    let mut body = serde_json::json!({
        "entries": snapshot.len(),
        "version": snapshot.version(),
        "byMode": by_mode,
        "byStatus": by_status,
    });
    if let Some(fleet) = &state.fleet {
        body["fleet"] = fleet.to_json();
    }
    if let Some(tls) = &state.tls {
        body["tls"] = serde_json::json!({"fingerprintSha256": tls.fingerprint().to_string()});
    }
    json_response(StatusCode::OK, full(body.to_string()))
}

fn metrics(state: &Context) -> Response<Body> {
    let text = state
        .metrics
        .render(&state.sender, &state.reader, &state.writer_stats);
    let mut response = Response::new(full(text));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// Checks the bearer token (or the stream's `?token=`) for a read scope;
/// the refusal to send when it lacks one.
fn authorize<B>(
    req: &Request<B>,
    query_token: Option<&str>,
    state: &Context,
) -> Option<Response<Body>> {
    if !state.auth.required() {
        return None;
    }
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let token = bearer.or(query_token);
    // §9: these routes need a bearer token *with a read scope*; without
    // one they answer 401, so a valid token that grants no read scope is
    // refused the same way as a missing one (not 403).
    // The challenge names the refusal the way RFC 6750 §3.1 does, so a
    // client can tell them apart without reading the message.
    let (message, challenge) = match state.auth.token_scopes(token) {
        Ok(scopes) if grants_read(&scopes) => return None,
        Ok(_) => (
            "token lacks a read scope (operator.read)",
            "Bearer realm=\"rollcall\", error=\"insufficient_scope\", scope=\"operator.read\"",
        ),
        Err(AuthError::Missing) => (
            "missing or invalid bearer token",
            "Bearer realm=\"rollcall\"",
        ),
        Err(_) => (
            "missing or invalid bearer token",
            "Bearer realm=\"rollcall\", error=\"invalid_token\"",
        ),
    };
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    Some(response)
}

/// The value of `name` in a query string, percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn json_response(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A JSON error body `{"error": MESSAGE}`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    json_response(status, full(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Entry, Key, Patch, Store, StoreConfig};
    use http_body_util::BodyExt;
    use std::time::Duration;

    /// A store holding `rows` rows besides the self entry.
    fn store(rows: usize) -> Store {
        let own = Entry {
            instance_id: Some("GW".into()),
            text: "Gateway: gw".into(),
            ..Entry::default()
        };
        let config = StoreConfig {
            ttl: Duration::from_secs(300),
            max_entries: rows,
        };
        let mut store = Store::new(config, own);
        for i in 0..rows {
            let patch = Patch {
                host: Some(format!("mac-{i}")),
                text: Some(format!("Node: mac-{i} \"ts\":1}}")),
                ..Patch::default()
            };
            let key = Key::parse(&format!("id-{i}")).unwrap();
            store.upsert(key, patch, 1_000 + (i % 7) as Millis);
        }
        store
    }

    /// A snapshot of `rows` rows besides the self entry.
    fn snapshot(rows: usize) -> Snapshot {
        store(rows).publish(2_000)
    }

    #[tokio::test]
    async fn the_plain_list_body_is_write_list_byte_for_byte() {
        for rows in [0, 1, 400] {
            let snapshot = snapshot(rows);
            assert_eq!(snapshot.len(), rows + 1);
            if rows == 400 {
                assert!(snapshot.rest_chunks().count() >= 4, "spans several chunks");
            }
            for now in [1_500, 2_000, 123_456_789] {
                let mut expected = Vec::new();
                snapshot.write_list(now, &mut expected);
                let body = list_body(&snapshot, now);
                let length = hyper::body::Body::size_hint(&body).exact();
                assert_eq!(length, Some(expected.len() as u64));
                let sent = body.collect().await.unwrap().to_bytes();
                assert_eq!(&sent[..], &expected[..], "{rows} rows at {now}");
            }
        }
    }

    #[tokio::test]
    async fn the_gzip_list_body_inflates_to_write_list_at_each_version() {
        use flate2::read::GzDecoder;
        use std::io::Read;
        let mut store = store(400);
        let mut versions = vec![store.publish(2_000)];
        for ts in [3_000, 4_000] {
            let patch = Patch {
                host: Some(format!("moved-{ts}")),
                ..Patch::default()
            };
            store.upsert(Key::parse("id-7").unwrap(), patch, ts);
            versions.push(store.publish(ts));
        }
        for snapshot in &versions {
            let mut expected = Vec::new();
            snapshot.write_list(9_999, &mut expected);
            let body = list_body_gzip(snapshot, 9_999);
            let sent = body.collect().await.unwrap().to_bytes();
            let mut inflated = Vec::new();
            GzDecoder::new(&sent[..])
                .read_to_end(&mut inflated)
                .expect("valid gzip, CRC and length included");
            assert_eq!(inflated, expected, "version {}", snapshot.version());
        }
    }

    #[test]
    fn query_token_is_percent_decoded() {
        assert_eq!(
            query_param(Some("a=1&token=s%3Ac+d"), "token").as_deref(),
            Some("s:c d")
        );
        assert_eq!(
            query_param(Some("token=a%zz"), "token").as_deref(),
            Some("a%zz")
        );
        assert_eq!(query_param(None, "token"), None);
    }
}
