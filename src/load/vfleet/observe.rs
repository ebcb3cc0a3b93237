//! The observer: reads a real gateway's `/metrics` while the simulated
//! fleet runs. A scrape costs the gateway the same at 1,000,000 rows as
//! at 10 (no list is built or parsed), so the observer does not load the
//! gateway it measures, as listing it or holding its full-list stream
//! open did. It measures two things:
//! - convergence: from the first answer until `rollcall_presence_entries` counts
//!   every simulated row, every simulated gateway's self row and the
//!   gateway's own, polled every [`POLL`];
//! - propagation: the gateway's `rollcall_fleet_propagation_seconds`
//!   histogram between its convergence and the end of the changes: for
//!   each change message, from its `at` (the simulator's clock, just
//!   before its transaction) until the gateway's writer made its rows
//!   visible to readers.
//!
//! Invariant: quantiles are read from the difference of two scrapes of
//! the same cumulative histogram, so messages applied during the join are
//! not counted.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// How often convergence is polled.
pub const POLL: Duration = Duration::from_millis(100);
/// The histogram the gateway keeps.
const PROPAGATION: &str = "rollcall_fleet_propagation_seconds";

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

    /// The gateway's `/metrics` text.
    async fn metrics(&self) -> Result<String, String> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::get("/metrics").header(hyper::header::HOST, &self.authority);
        if let Some(token) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let response = send.send_request(req).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("/metrics: HTTP {}", response.status()));
        }
        let body = response.into_body().collect().await;
        let body = body.map_err(|e| e.to_string())?.to_bytes();
        String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
    }
}

/// The value of the sample named exactly `name` (labels included).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
}

/// One scrape of the propagation histogram: cumulative counts per upper
/// bound (seconds, ascending), and the sum of every observation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Propagation {
    buckets: Vec<(f64, f64)>,
    sum: f64,
}

impl Propagation {
    /// Reads it from a `/metrics` text; empty if the gateway has none.
    pub fn parse(text: &str) -> Propagation {
        let prefix = format!("{PROPAGATION}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|line| {
                let (le, count) = line.strip_prefix(&prefix)?.split_once("\"} ")?;
                Some((le.parse().ok()?, count.trim().parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sum = sample(text, &format!("{PROPAGATION}_sum")).unwrap_or(0.0);
        Propagation { buckets, sum }
    }

    /// What was observed after `before` (an earlier scrape).
    pub fn since(&self, before: &Propagation) -> Propagation {
        let earlier = |le: f64| {
            let found = before.buckets.iter().find(|b| b.0 == le);
            found.map_or(0.0, |b| b.1)
        };
        Propagation {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| (le, n - earlier(le)))
                .collect(),
            sum: self.sum - before.sum,
        }
    }

    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |b| b.1 as u64)
    }

    /// The mean, in ms.
    pub fn mean_ms(&self) -> f64 {
        self.sum * 1e3 / (self.count().max(1) as f64)
    }

    /// Quantile `q` in ms, linear within the bucket that holds it (an
    /// overflow bucket answers its lower bound).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let want = q * self.count() as f64;
        let (mut low, mut below) = (0.0, 0.0);
        for &(le, n) in &self.buckets {
            if n >= want && n > below {
                if le.is_infinite() {
                    return low * 1e3;
                }
                return (low + (le - low) * (want - below) / (n - below)) * 1e3;
            }
            (low, below) = (le, n);
        }
        low * 1e3
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
    /// Simulated rows it listed when last asked (its entries, less the
    /// simulated gateways' self rows and its own).
    pub rows_listed: u64,
}

/// What the convergence poll leaves for the end of the run.
#[derive(Debug, Default)]
pub struct Observation {
    /// Convergence so far.
    pub convergence: JoinConvergence,
    /// The propagation histogram when the gateway converged.
    pub at_convergence: Option<Propagation>,
}

/// Polls until the gateway lists `rows` simulated rows of `gateways`
/// gateways (or the task is dropped), writing what it saw into `seen`.
pub async fn convergence(
    target: ObservedGateway,
    (rows, gateways): (u64, u32),
    seen: &std::sync::Mutex<Observation>,
) {
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let others = u64::from(gateways) + 1;
    loop {
        let text = target.metrics().await.ok();
        if let Some(entries) = text
            .as_deref()
            .and_then(|t| sample(t, "rollcall_presence_entries"))
        {
            let at = *first.get_or_insert_with(Instant::now);
            let listed = (entries as u64).saturating_sub(others);
            let mut seen = seen.lock().expect("no panics under the lock");
            seen.convergence
                .first_answer_ms
                .get_or_insert(millis(at - start));
            seen.convergence.rows_listed = listed;
            if listed >= rows {
                seen.convergence.converged_ms = Some(millis(at.elapsed()));
                seen.at_convergence = text.as_deref().map(Propagation::parse);
                return;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The propagation histogram now; empty when the gateway does not answer.
pub async fn propagation_now(target: &ObservedGateway) -> Propagation {
    let text = target.metrics().await.unwrap_or_default();
    Propagation::parse(&text)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

    fn scrape(counts: [u64; 4], sum: f64) -> Propagation {
        let les = ["0.001", "0.01", "0.1", "+Inf"];
        let mut text = String::from("# TYPE rollcall_fleet_propagation_seconds histogram\n");
        for (le, n) in les.iter().zip(counts) {
            text += &format!("{PROPAGATION}_bucket{{le=\"{le}\"}} {n}\n");
        }
        text += &format!(
            "{PROPAGATION}_sum {sum}\n{PROPAGATION}_count {}\n",
            counts[3]
        );
        text += "rollcall_presence_entries 42\n";
        assert_eq!(sample(&text, "rollcall_presence_entries"), Some(42.0));
        Propagation::parse(&text)
    }

    #[test]
    fn quantiles_come_from_the_difference_of_two_scrapes() {
        let before = scrape([5, 5, 5, 5], 0.004);
        // Then 100 more: 50 under 1 ms, 49 under 10 ms, 1 under 100 ms.
        let after = scrape([55, 104, 105, 105], 0.4);
        let window = after.since(&before);
        assert_eq!(window.count(), 100);
        assert!((window.quantile_ms(0.5) - 1.0).abs() < 1e-9);
        let p99 = window.quantile_ms(0.99);
        assert!((p99 - 10.0).abs() < 1e-9, "{p99}");
        assert!((window.mean_ms() - 3.96).abs() < 1e-9);
        assert_eq!(Propagation::default().count(), 0);
        let over = scrape([0, 0, 0, 3], 3.0);
        assert!(
            (over.quantile_ms(0.99) - 100.0).abs() < 1e-9,
            "overflow: its lower bound"
        );
    }
}
