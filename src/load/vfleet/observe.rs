//! The observer: reads a real gateway's HTTP port while the simulated
//! fleet runs. It measures two things:
//! - convergence: from the first `/v1/presence/stats` answer until that
//!   gateway counts every simulated row (`byMode.vfleet`), polled every
//!   [`POLL`];
//! - propagation: each sampled change carries a marker (`vfprobe-ID.`) in
//!   its `text`; the observer holds `/v1/presence/stream` open and scans
//!   every `presence` event for markers still pending, recording the time
//!   from just before the change's transaction until the event arrived.
//!
//! Invariant: a probe is recorded at most once (it leaves the pending map
//! when first seen), so a row that keeps its marker in later lists adds
//! nothing.

use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::gateway::{PROBE, Probes};

/// How often convergence is polled.
pub const POLL: Duration = Duration::from_millis(100);
/// The most bytes of one SSE event kept while it is incomplete.
const MAX_EVENT: usize = 2 << 30;

/// A gateway's HTTP address.
#[derive(Debug, Clone)]
pub struct ObservedGateway {
    authority: String,
    token: Option<String>,
}

impl ObservedGateway {
    /// Reads `http://HOST:PORT` (a path after it is ignored); `None` if
    /// `url` is not one.
    pub fn parse(url: &str) -> Option<ObservedGateway> {
        let uri: hyper::Uri = url.parse().ok()?;
        if uri.scheme_str() != Some("http") {
            return None;
        }
        let authority = uri.authority()?;
        let port = authority.port_u16().unwrap_or(80);
        Some(ObservedGateway {
            authority: format!("{}:{port}", authority.host()),
            token: None,
        })
    }

    /// With a bearer token.
    pub fn with_token(mut self, token: Option<String>) -> ObservedGateway {
        self.token = token;
        self
    }

    async fn get(&self, path: &str) -> Result<hyper::Response<Incoming>, String> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::get(path).header(hyper::header::HOST, &self.authority);
        if let Some(token) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let response = send.send_request(req).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{path}: HTTP {}", response.status()));
        }
        Ok(response)
    }

    /// How many simulated rows the gateway lists now.
    async fn simulated_rows(&self) -> Result<u64, String> {
        let body = self.get("/v1/presence/stats").await?.into_body();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        let stats: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(stats["byMode"]["vfleet"].as_u64().unwrap_or(0))
    }
}

/// JoinConvergence as the observer saw it.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinConvergence {
    /// Ms from the observer's start until the gateway first answered.
    pub first_answer_ms: Option<u64>,
    /// Ms from that first answer until it listed every simulated row.
    pub converged_ms: Option<u64>,
    /// Simulated rows it listed when last asked.
    pub rows_listed: u64,
}

/// Polls until the gateway lists `rows` simulated rows (or the task is
/// dropped), writing what it saw into `seen`.
pub async fn convergence(
    target: ObservedGateway,
    rows: u64,
    seen: &std::sync::Mutex<JoinConvergence>,
) {
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    loop {
        if let Ok(count) = target.simulated_rows().await {
            let at = *first.get_or_insert_with(Instant::now);
            let mut seen = seen.lock().expect("no panics under the lock");
            seen.first_answer_ms.get_or_insert(millis(at - start));
            seen.rows_listed = count;
            if count >= rows {
                seen.converged_ms = Some(millis(at.elapsed()));
                return;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Holds the stream open (reconnecting) and records each pending probe it
/// sees into `seen` (microseconds), until the task is dropped.
pub async fn propagation(
    target: ObservedGateway,
    probes: &Probes,
    seen: &std::sync::Mutex<hdrhistogram::Histogram<u64>>,
) {
    loop {
        if let Ok(response) = target.get("/v1/presence/stream").await {
            let _ = read_stream(response.into_body(), probes, seen).await;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn read_stream(
    mut body: Incoming,
    probes: &Probes,
    seen: &std::sync::Mutex<hdrhistogram::Histogram<u64>>,
) -> Result<(), String> {
    let mut event: Vec<u8> = Vec::new();
    // Where the search for the end of the event resumes.
    let mut searched = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let arrived = Instant::now();
        while data.has_remaining() {
            let chunk = data.chunk();
            event.extend_from_slice(chunk);
            let n = chunk.len();
            data.advance(n);
        }
        while let Some(end) = find(&event[searched..], b"\n\n").map(|at| at + searched) {
            scan(&event[..end], arrived, probes, seen);
            event.drain(..end + 2);
            searched = 0;
        }
        searched = event.len().saturating_sub(1);
        if event.len() > MAX_EVENT {
            return Err("an SSE event larger than 2 GiB".into());
        }
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Records every pending probe named in one event.
fn scan(
    event: &[u8],
    arrived: Instant,
    probes: &Probes,
    seen: &std::sync::Mutex<hdrhistogram::Histogram<u64>>,
) {
    let mut pending = probes.pending.lock().expect("no panics under the lock");
    if pending.is_empty() {
        return;
    }
    let mut rest = event;
    while let Some(at) = find(rest, PROBE.as_bytes()) {
        rest = &rest[at + PROBE.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let id = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(sent) = id.and_then(|id| pending.remove(&id)) {
            let micros = u64::try_from(arrived.saturating_duration_since(sent).as_micros())
                .unwrap_or(u64::MAX);
            let _ = seen
                .lock()
                .expect("no panics under the lock")
                .record(micros.max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_are_targets() {
        assert!(ObservedGateway::parse("http://127.0.0.1:8080").is_some());
        for bad in ["https://x:1", "ws://x:1", "nonsense", ""] {
            assert!(ObservedGateway::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_pending_probe_is_recorded_once() {
        let probes = Probes::default();
        let sent = Instant::now();
        probes.pending.lock().unwrap().insert(7, sent);
        let seen = std::sync::Mutex::new(hdrhistogram::Histogram::<u64>::new(3).unwrap());
        let event =
            b"event: presence\ndata: [{\"text\":\"x vfprobe-7.\"},{\"text\":\"y vfprobe-71.\"}]";
        scan(event, sent + Duration::from_millis(5), &probes, &seen);
        scan(event, sent + Duration::from_millis(9), &probes, &seen);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen.max() >= 4_900);
        assert!(probes.pending.lock().unwrap().is_empty());
    }
}
