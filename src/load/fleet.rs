//! What every simulated client of one run shares: where to connect, which
//! protocol to speak, the frames to send, the churn wake-ups and the stats
//! (the watchers' among them).
//!
//! Invariant: built once before the ramp and read-only afterwards, except
//! through its atomics, `Notify`s and the stats' shard locks.

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::Notify;

use super::args::WatchFeed;
use super::requests::{Kind, Requests};
use super::stats::Stats;
use super::watch_stats::WatchStats;
use crate::client::Target;

/// Which wire protocol the fleet speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The OpenClaw gateway protocol: challenge, `connect`, replies matched by id.
    Rollcall,
    /// Raw frames against an echo server: no handshake beyond the upgrade, and
    /// each text frame back answers the oldest request in flight.
    Echo,
}

/// Everything the clients of one run share.
pub struct SimulatedFleet {
    /// Where to connect.
    pub target: Target,
    /// Which protocol to speak.
    pub protocol: Protocol,
    /// The frames to send.
    pub requests: Requests,
    /// The run's id; client instance ids are `load-RUN-N`.
    pub run_id: String,
    /// Requests each beacon client keeps in flight; `None` means the open loop.
    pub in_flight: Option<u32>,
    /// Beacon period in the open loop.
    pub beacon_interval: Duration,
    /// Requests each reader keeps in flight.
    pub reader_in_flight: u32,
    /// Bound on connect + upgrade + challenge + `connect` reply.
    pub handshake_timeout: Duration,
    /// Local addresses to bind before connecting, used round-robin; empty: no bind.
    pub source_ips: Vec<IpAddr>,
    /// One wake-up per beacon client for churn; empty when churn is off.
    pub churn: Box<[Notify]>,
    /// Where every figure goes.
    pub stats: Stats,
    /// The feed watchers ask for.
    pub watch_feed: WatchFeed,
    /// The watchers' `client.mode`.
    pub watch_mode: String,
    /// What the watchers hold and record; its length is the number of watchers.
    pub watch: WatchStats,
}

impl SimulatedFleet {
    pub(super) fn source_ip(&self, client: u32) -> Option<IpAddr> {
        if self.source_ips.is_empty() {
            None
        } else {
            Some(self.source_ips[client as usize % self.source_ips.len()])
        }
    }

    pub(super) fn request(&self, kind: Kind, client: u32, id: u64) -> Vec<u8> {
        match kind {
            Kind::Beacon => self.requests.beacon(client, id),
            Kind::Reader => self.requests.presence(id),
        }
    }

    /// Requests kept in flight, or `None` for the timed open loop.
    pub(super) fn window(&self, kind: Kind) -> Option<u32> {
        match kind {
            Kind::Beacon => self.in_flight,
            Kind::Reader => Some(self.reader_in_flight),
        }
    }
}
