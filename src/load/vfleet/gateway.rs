//! One simulated gateway: it takes its node id's lease, writes its rows and
//! its self entry, publishes row changes in batches, renews its lease, and
//! gives the lease back at the end; all through the fleet's own
//! [`Link`](crate::fleet::Link), so the keys, transactions, stamps and
//! messages are exactly a real gateway's.
//!
//! Invariant: a row's `ts` is the simulator's clock when it was written,
//! and its expiry in Redis is `ts + ttl`, as a real gateway writes it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::now_millis;
use crate::fleet::{Keys, Link, Outbound, Record};
use crate::presence::{Entry, Key, Millis};

/// Rows written per transaction while a gateway loads its hash.
const LOAD_CHUNK: usize = 5_000;
/// Bound on one Redis step.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What every simulated gateway adds to.
#[derive(Debug, Default)]
pub struct Counters {
    /// Rows written to Redis (the initial load and every change).
    pub rows_written: AtomicU64,
    /// Row changes published.
    pub changes: AtomicU64,
    /// Change messages published.
    pub messages: AtomicU64,
    /// Redis steps that failed.
    pub errors: AtomicU64,
    /// Gateways that stopped renewing their lease (`--lapse`).
    pub lapsed: AtomicU64,
    /// Gateways whose rows are all written.
    pub loaded: AtomicU64,
}

/// What one gateway is told.
pub struct Plan {
    /// Its index (node id `vfleet-INDEX`).
    pub index: u32,
    /// Rows it holds.
    pub rows: u64,
    /// Its changes per second.
    pub rate: f64,
}

/// What every gateway shares.
pub struct Shared {
    /// The fleet's Redis.
    pub client: redis::Client,
    /// The fleet's key names.
    pub keys: Keys,
    /// Lease length.
    pub lease: Duration,
    /// Presence TTL (ms).
    pub ttl: Millis,
    /// Batch period.
    pub batch: Duration,
    /// Counters.
    pub counters: Counters,
    /// Set when the changes begin (every gateway loaded) and when they end.
    pub phase: watch::Sender<Phase>,
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Gateways write their rows.
    Load,
    /// Changes run.
    Change,
    /// Stop: give the lease back.
    Stop,
}

/// The node id of gateway `index`.
pub fn node_id(index: u32) -> String {
    format!("vfleet-{index}")
}

fn row_key(index: u32, row: u64) -> Key {
    Key::parse(&format!("vfleet-{index}-{row}")).expect("not blank")
}

fn row_record(index: u32, row: u64, change: u64, text: String, now: Millis) -> Vec<u8> {
    let node = node_id(index);
    let key = row_key(index, row);
    let entry = Entry {
        instance_id: Some(key.as_str().to_owned()),
        host: Some(format!("{node}-host-{}", row % 1000)),
        mode: Some("vfleet".into()),
        roles: vec!["node".into()],
        reason: Some(format!("change {change}")),
        gateway_id: Some(node),
        text,
        ts: now,
        ..Entry::default()
    };
    let json = serde_json::to_vec(&entry).expect("an Entry always encodes");
    let mut out = Vec::with_capacity(json.len() + 64);
    Record::write(&mut out, key.as_str(), true, false, &json);
    out
}

fn self_record(index: u32, now: Millis) -> (Key, Vec<u8>) {
    let node = node_id(index);
    let entry = Entry {
        instance_id: Some(node.clone()),
        host: Some(node.clone()),
        mode: Some("gateway".into()),
        reason: Some("self".into()),
        gateway_id: Some(node.clone()),
        text: format!("Gateway: {node} (simulated by rollcall load fleet-sim)"),
        ts: now,
        ..Entry::default()
    };
    let json = serde_json::to_vec(&entry).expect("an Entry always encodes");
    let key = Key::parse(&node).expect("not blank");
    let mut out = Vec::with_capacity(json.len() + 64);
    Record::write(&mut out, key.as_str(), true, true, &json);
    (key, out)
}

async fn timed<T>(step: impl Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
    match tokio::time::timeout(IO_TIMEOUT, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {IO_TIMEOUT:?}")),
    }
}

/// Plays one gateway until the phase is [`Phase::Stop`] (or it lapses).
/// An error taking the lease or loading the rows ends it; later errors
/// are counted and the next batch retries.
pub async fn run(shared: &Shared, plan: Plan) -> Result<(), String> {
    let node = node_id(plan.index);
    let boot = uuid::Uuid::new_v4().to_string();
    let identity = (&shared.keys, node.as_str(), boot.as_str());
    let mut link = timed(Link::connect(
        &shared.client,
        identity,
        shared.lease,
        shared.ttl,
        IO_TIMEOUT,
    ))
    .await?;
    let beat = timed(link.heartbeat(false)).await?;
    if let Some(holder) = beat.taken_by {
        return Err(format!(
            "node id {node} is held by boot {holder}: is another fleet-sim running?"
        ));
    }
    load(shared, &plan, &mut link).await?;
    shared.counters.loaded.fetch_add(1, Relaxed);
    let mut phase = shared.phase.subscribe();
    let _ = phase.wait_for(|p| *p != Phase::Load).await;
    let mut sim = Changing {
        shared,
        plan,
        written: 0,
        budget: 0.0,
        cursor: 0,
        change: 0,
    };
    sim.changes(&mut link, &mut phase).await;
    let _ = timed(link.release()).await;
    Ok(())
}

/// Writes every row, `LOAD_CHUNK` per transaction, the first one a reset.
async fn load(shared: &Shared, plan: &Plan, link: &mut Link) -> Result<(), String> {
    let mut written = 0u64;
    loop {
        let now = now_millis();
        let end = (written + LOAD_CHUNK as u64).min(plan.rows);
        let mut out = Outbound::default();
        for row in written..end {
            let text = format!("vfleet-{} row {row}", plan.index);
            let record = row_record(plan.index, row, 0, text, now);
            out.records.push((
                row_key(plan.index, row),
                record,
                now.saturating_add(shared.ttl),
            ));
        }
        let reset = written == 0;
        let own = reset.then(|| self_record(plan.index, now));
        timed(link.write(&out, own, (reset, end + 1), now)).await?;
        shared.counters.messages.fetch_add(1, Relaxed);
        shared
            .counters
            .rows_written
            .fetch_add(end - written, Relaxed);
        written = end;
        if written >= plan.rows {
            return Ok(());
        }
    }
}

/// Resolves once the phase is [`Phase::Stop`] (or the sender is gone).
async fn stopping(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Stop).await;
}

/// A gateway in its change phase.
struct Changing<'a> {
    shared: &'a Shared,
    plan: Plan,
    /// When the self entry was last written (ms).
    written: Millis,
    /// Changes owed (fractional).
    budget: f64,
    /// The next row to change.
    cursor: u64,
    /// Changes made.
    change: u64,
}

impl Changing<'_> {
    async fn changes(&mut self, link: &mut Link, phase: &mut watch::Receiver<Phase>) {
        let mut batch = tokio::time::interval(self.shared.batch);
        let mut beat = tokio::time::interval(self.shared.lease / 3);
        batch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.written = now_millis();
        loop {
            tokio::select! {
                () = stopping(phase) => return,
                _ = beat.tick() => self.heartbeat(link).await,
                _ = batch.tick() => self.batch(link).await,
            }
        }
    }

    /// Renews the lease and publishes a beat (its clock and last message
    /// number), as a real gateway's heartbeat does.
    async fn heartbeat(&mut self, link: &mut Link) {
        match timed(link.heartbeat(false)).await {
            Ok(beat) if beat.taken_by.is_none() => {}
            Ok(_) | Err(_) => {
                self.shared.counters.errors.fetch_add(1, Relaxed);
                return;
            }
        }
        if timed(link.beat(now_millis())).await.is_err() {
            self.shared.counters.errors.fetch_add(1, Relaxed);
        }
    }

    async fn batch(&mut self, link: &mut Link) {
        self.budget += self.plan.rate * self.shared.batch.as_secs_f64();
        let due = self.budget.floor() as u64;
        self.budget -= due as f64;
        let now = now_millis();
        let self_due = now.saturating_sub(self.written) >= (self.shared.ttl / 3).clamp(1, 30_000);
        if due == 0 && !self_due {
            return;
        }
        let mut out = Outbound::default();
        for _ in 0..due {
            self.change += 1;
            let row = self.cursor;
            self.cursor = (self.cursor + 1) % self.plan.rows;
            let text = format!("vfleet-{} row {row}", self.plan.index);
            let record = row_record(self.plan.index, row, self.change, text, now);
            out.records.push((
                row_key(self.plan.index, row),
                record,
                now.saturating_add(self.shared.ttl),
            ));
        }
        let own = self_due.then(|| self_record(self.plan.index, now));
        match timed(link.write(&out, own, (false, self.plan.rows + 1), now)).await {
            Ok(()) => {
                let counters = &self.shared.counters;
                counters.messages.fetch_add(1, Relaxed);
                counters.changes.fetch_add(due, Relaxed);
                counters.rows_written.fetch_add(due, Relaxed);
                if self_due {
                    self.written = now;
                }
            }
            Err(_) => {
                self.shared.counters.errors.fetch_add(1, Relaxed);
            }
        }
    }
}
