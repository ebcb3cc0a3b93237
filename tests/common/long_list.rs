//! Lists of many rows: a server with room for them, and one admin
//! connection writing them.

use super::Client;
use rollcall::config::ServeConfig;
use serde_json::json;
use std::net::SocketAddr;

/// Room for a list of up to 1,000 rows, all of them writable by one admin
/// connection (`max_entries`, `max_beacon_rows`); for
/// `TestServer::start_with(long_list::room)`.
pub fn room(config: &mut ServeConfig) {
    config.max_entries = 1_000;
    config.max_beacon_rows = 1_000;
}

/// An admin connection that has written `n` rows, `mac-0` to `mac-{n-1}`
/// (host and `instanceId` `id-{i}`); it stays open, so the rows stay.
pub async fn fill(addr: SocketAddr, n: usize) -> Client {
    let mut admin = Client::admin(addr).await;
    for i in 0..n {
        let host = format!("mac-{i}");
        admin
            .beacon(json!({"text": format!("Node: {host} · mode ui"), "host": host, "instanceId": format!("id-{i}")}))
            .await;
    }
    admin
}
