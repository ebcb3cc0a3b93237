//! Reading the doctor's report (`GET /v1/presence/doctor`) in tests, into
//! the same [`Report`] type the gateway serializes it from.

use super::{eventually, http_get};
use rollcall::presence::{ConnTag, Finding, FindingKind, Report, Write};
use std::net::SocketAddr;

/// The report from `addr`'s route.
pub async fn report(addr: SocketAddr) -> Report {
    let reply = http_get(addr, "/v1/presence/doctor", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("not a doctor's report ({e}): {}", reply.body))
}

/// Polls `addr`'s route until `done` holds for its report (fleet rows
/// arrive asynchronously).
pub async fn report_until(addr: SocketAddr, what: &str, done: impl Fn(&Report) -> bool) -> Report {
    eventually(what, async || {
        let r = report(addr).await;
        done(&r).then_some(r)
    })
    .await
}

/// The listed findings of `kind`.
pub fn findings(report: &Report, kind: FindingKind) -> Vec<&Finding> {
    report.listed(kind).collect()
}

/// The one finding of `kind`; panics with the report otherwise.
pub fn the_finding(report: &Report, kind: FindingKind) -> &Finding {
    match findings(report, kind)[..] {
        [one] => one,
        _ => panic!("expected one {} finding: {report:#?}", kind.as_str()),
    }
}

/// The connection a write names, as its `connId`.
pub fn conn(write: &Write) -> Option<String> {
    write.by.conn.as_ref().map(ConnTag::to_string)
}
