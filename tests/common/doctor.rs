//! Reading the doctor's report (`GET /v1/presence/doctor`) in tests.

use super::{eventually, http_get};
use serde_json::Value;
use std::net::SocketAddr;

/// The report from `addr`'s route.
pub async fn report(addr: SocketAddr) -> Value {
    let reply = http_get(addr, "/v1/presence/doctor", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json()
}

/// Polls `addr`'s route until `done` holds for its report (a report is up
/// to a second old, and fleet rows arrive asynchronously).
pub async fn report_until(addr: SocketAddr, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(what, async || {
        let r = report(addr).await;
        done(&r).then_some(r)
    })
    .await
}

/// How many findings of `kind` the report counts.
pub fn count(report: &Value, kind: &str) -> u64 {
    report["counts"][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("no count for {kind}: {report:#}"))
}

/// The listed findings of `kind`.
pub fn findings<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .expect("findings is an array")
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

/// The one finding of `kind`; panics with the report otherwise.
pub fn the_finding<'a>(report: &'a Value, kind: &str) -> &'a Value {
    match findings(report, kind)[..] {
        [one] => one,
        _ => panic!("expected one {kind} finding: {report:#}"),
    }
}
