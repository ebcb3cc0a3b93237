//! Content codings for the JSON and SSE routes (docs/protocol.md §9): gzip
//! when the request's `Accept-Encoding` allows it, `406` when it refuses
//! every coding rollcall has, and `Vary: Accept-Encoding` on every answer
//! that could have been coded differently.

use super::body::{Body, full};
use crate::compress::{Encoding, accepts, deflate_sync, gzip_parts};
use bytes::Bytes;
use hyper::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, VARY,
};
use hyper::{Request, Response, StatusCode};
use std::sync::Mutex;

/// The coding `req` accepts, or the `406` answer naming what it refused.
#[allow(clippy::result_large_err)]
pub fn negotiate<B>(req: &Request<B>) -> Result<Encoding, Response<Body>> {
    let values = req.headers().get_all(ACCEPT_ENCODING);
    accepts(values.iter().filter_map(|v| v.to_str().ok())).ok_or_else(|| {
        let body = serde_json::json!({
            "error": "Accept-Encoding refuses both gzip and identity"
        });
        let mut response = Response::new(full(body.to_string()));
        *response.status_mut() = StatusCode::NOT_ACCEPTABLE;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        vary(headers);
        response
    })
}

/// Marks an answer that depends on `Accept-Encoding`.
pub fn vary(headers: &mut HeaderMap) {
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
}

/// Sets `Content-Encoding` (if any) and `Vary`.
pub fn mark(headers: &mut HeaderMap, encoding: Encoding) {
    if let Some(name) = encoding.header() {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(name));
    }
    vary(headers);
}

/// The last body compressed and its gzip form: a body served many times
/// (the doctor's report, made at most once a second) is compressed once.
#[derive(Debug, Default)]
pub struct GzipCache {
    last: Mutex<Option<(Bytes, Bytes)>>,
}

impl GzipCache {
    /// `body` gzipped, from the cache when it is the same bytes as last time.
    pub fn gzip(&self, body: &Bytes) -> Bytes {
        // A clone of the source is kept, so its allocation cannot be reused
        // by another body while the pointer is compared.
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((source, gz)) = last.as_ref() {
            if source.as_ptr() == body.as_ptr() && source.len() == body.len() {
                return gz.clone();
            }
        }
        let gz = gzip_parts(b"", Some(&deflate_sync(body)), b"");
        *last = Some((body.clone(), gz.clone()));
        gz
    }
}

/// A body in `encoding`, gzipped through `cache`.
pub fn body(bytes: Bytes, encoding: Encoding, cache: &GzipCache) -> Body {
    match encoding {
        Encoding::Identity => full(bytes),
        Encoding::Gzip => full(cache.gzip(&bytes)),
    }
}
