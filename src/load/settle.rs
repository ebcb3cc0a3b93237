//! The end of a run with watchers: once the other clients have stopped,
//! wait until every watcher holds the gateway's last presence version, or
//! `--settle` runs out, and say how many got there.
//!
//! The gateway's version comes from `health`, asked every
//! [`POLL`] over one probe connection (mode `cli`, no scopes: it changes no
//! presence and receives none). If the probe cannot connect or answer, the
//! highest version any watcher holds stands in, and the summary says so.
//!
//! Invariants:
//! - Bounded: at most `--settle` plus one `health` round trip (itself
//!   bounded by `--handshake-timeout`).
//! - It ends early only when every connected watcher holds the gateway's
//!   version and that version did not change since the previous poll, so a
//!   change still being published does not end it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::fleet::SimulatedFleet;
use super::progress::LoadProgress;
use super::simulated_client::{close, dial};
use super::watch_stats::Convergence;
use crate::client::handshake::next_text;
use crate::client::{Envelope, WsConn, hello};

/// How often the gateway's version and the watchers' are compared.
pub const POLL: Duration = Duration::from_millis(100);

/// How a settle ended.
pub(super) struct Settled {
    /// Convergence at the last comparison.
    pub end: Convergence,
    /// The version compared with.
    pub final_version: u64,
    /// `health` or `watchers`.
    pub final_version_from: &'static str,
    /// Seconds it took.
    pub secs: f64,
}

/// A connection that asks the gateway for its presence version; `--fill`
/// uses one too, to resume its feed where the gateway is.
pub(super) struct Probe {
    conn: WsConn,
    next_id: u64,
}

#[derive(Deserialize)]
struct HealthReply {
    payload: HealthPayload,
}

#[derive(Deserialize)]
struct HealthPayload {
    presence: HealthPresence,
}

#[derive(Deserialize)]
struct HealthPresence {
    version: u64,
}

impl Probe {
    /// Opens the probe; `None` when it cannot connect or is refused.
    pub(super) async fn open(fleet: &SimulatedFleet) -> Option<Probe> {
        let opening = async {
            let mut conn = dial(fleet, 0).await.ok()?;
            let reply = hello(&mut conn, fleet.requests.probe_connect())
                .await
                .ok()?;
            reply.ok.then_some(Probe { conn, next_id: 1 })
        };
        tokio::time::timeout(fleet.handshake_timeout, opening)
            .await
            .ok()
            .flatten()
    }

    /// Closes the probe's connection.
    pub(super) async fn close(mut self) {
        close(&mut self.conn).await;
    }

    /// The gateway's presence version; `None` if it did not answer in time.
    pub(super) async fn version(&mut self, fleet: &SimulatedFleet) -> Option<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let asking = async {
            let frame = fastwebsockets::Frame::text(fastwebsockets::Payload::Owned(
                fleet.requests.health(id),
            ));
            self.conn.write.write_frame(frame).await.ok()?;
            let want = id.to_string();
            loop {
                let text = next_text(&mut self.conn).await.ok()?;
                let msg: Envelope = serde_json::from_slice(text).ok()?;
                if msg.kind == "res" && msg.id.as_deref() == Some(want.as_str()) {
                    let reply: HealthReply = serde_json::from_slice(text).ok()?;
                    return Some(reply.payload.presence.version);
                }
            }
        };
        tokio::time::timeout(fleet.handshake_timeout, asking)
            .await
            .ok()
            .flatten()
    }
}

/// Ctrl-C, while it has not fired yet.
type Interrupt<'a> = Option<&'a mut Pin<Box<dyn Future<Output = ()> + Send>>>;

/// Waits up to `length` for the watchers to converge, reporting progress;
/// `interrupt` (Ctrl-C), when given, ends the wait early.
pub(super) async fn settle(
    fleet: &SimulatedFleet,
    length: Duration,
    mut interrupt: Interrupt<'_>,
    progress: &mut dyn FnMut(LoadProgress),
) -> Settled {
    let start = Instant::now();
    let mut deadline = start + length;
    let mut probe = Probe::open(fleet).await;
    let mut last = None;
    loop {
        let (target, from) = final_version(fleet, &mut probe).await;
        let end = fleet.watch.convergence(target);
        progress(LoadProgress::Settle {
            elapsed: start.elapsed(),
            length,
            held: end.held,
            converged: end.converged,
        });
        let stable = last.replace(target) == Some(target);
        if (stable && end.converged == end.held) || Instant::now() + POLL > deadline {
            return Settled {
                end,
                final_version: target,
                final_version_from: from,
                secs: start.elapsed().as_secs_f64(),
            };
        }
        if pause(&mut interrupt).await {
            deadline = Instant::now();
        }
    }
}

/// The version to compare with, and where it came from: the gateway's
/// while the probe answers (a probe that fails once is dropped), else the
/// highest any watcher holds.
async fn final_version(fleet: &SimulatedFleet, probe: &mut Option<Probe>) -> (u64, &'static str) {
    if let Some(p) = probe.as_mut() {
        if let Some(v) = p.version(fleet).await {
            return (v, "health");
        }
        *probe = None;
    }
    (fleet.watch.highest(), "watchers")
}

/// Sleeps one [`POLL`]; true when Ctrl-C came first.
async fn pause(interrupt: &mut Interrupt<'_>) -> bool {
    let Some(stop) = interrupt.as_mut() else {
        tokio::time::sleep(POLL).await;
        return false;
    };
    tokio::select! {
        _ = tokio::time::sleep(POLL) => false,
        _ = stop.as_mut() => {
            // A finished future must not be polled again.
            *interrupt = None;
            true
        }
    }
}
