//! The fleet task's inbound side: other gateways' change messages and
//! hashes, checked at the trust boundary (`validate.rs`) and queued to the
//! writer as `RemoteOp`s.
//!
//! Invariants: nothing from a node that is not registered with a live
//! lease (as last polled) is applied; a row that fails validation is
//! dropped whole and counted; every `ts` is clamped to our clock plus the
//! allowed skew before the store sees it.

use super::FleetError;
use super::link::Link;
use super::peers::{Action, OnMessage};
use super::task::{RELAXED, Task, disconnect, timed};
use super::validate::{self, MAX_MESSAGE_BYTES};
use super::wire::FleetMessage;
use crate::clock::{Millis, now_millis};
use crate::presence::{Key, RemoteOp, RemoteRow};
use std::sync::Arc;

impl Task {
    pub(super) async fn on_message(
        &mut self,
        link: &mut Link,
        raw: &redis::Msg,
    ) -> Result<(), FleetError> {
        let payload = raw.get_payload_bytes();
        if payload.len() > MAX_MESSAGE_BYTES {
            // Its origin's stamp moves ahead; the next polls reload it.
            tracing::warn!(bytes = payload.len(), "ignoring an oversized fleet message");
            self.status.unheard.fetch_add(1, RELAXED);
            return Ok(());
        }
        let message: FleetMessage = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "ignoring a fleet message that does not parse");
                self.status.unheard.fetch_add(1, RELAXED);
                return Ok(());
            }
        };
        if message.node == self.config.node_id {
            return self.on_own(link, &message).await;
        }
        let FleetMessage {
            node,
            boot,
            seq,
            reset,
            at,
            beat,
            ..
        } = &message;
        let verdict = self.peers.message(node, boot, *seq, *reset, *beat);
        if verdict == OnMessage::Unheard {
            // A ghost, a lapsed peer or a new boot: the poll decides.
            self.status.unheard.fetch_add(1, RELAXED);
            self.poll_soon = true;
            return Ok(());
        }
        self.peers.clock(node, *at, now_millis());
        match verdict {
            OnMessage::Apply if message.upserts.len() <= self.config.max_rows => {
                self.status.messages_in.fetch_add(1, RELAXED);
                self.apply(message).await
            }
            OnMessage::Skip => Ok(()),
            _ => self.reload(link, &message.node).await,
        }
    }

    /// Our own message came back: if it is the heartbeat published
    /// after a poll, every message published before that poll has been
    /// read, and a peer whose stamp it saw ahead lost messages.
    async fn on_own(&mut self, link: &mut Link, message: &FleetMessage) -> Result<(), FleetError> {
        let ours = message.beat && message.boot == self.config.boot;
        let Some((_, generation)) = self.marker.filter(|&(at, _)| ours && message.at == at) else {
            return Ok(());
        };
        self.marker = None;
        for action in self.peers.caught_up(generation) {
            if let Action::Reload(node) = action {
                tracing::info!(%node, "fleet: messages from this gateway were lost; reloading its rows");
                self.reload(link, &node).await?;
            }
        }
        Ok(())
    }

    async fn apply(&mut self, message: FleetMessage) -> Result<(), FleetError> {
        let node: Arc<str> = Arc::from(message.node.as_str());
        let now = now_millis();
        let rows = message.upserts.into_iter().filter_map(|r| r.into_row());
        let rows: Vec<RemoteRow> = rows.collect();
        let mut ops: Vec<RemoteOp> = self
            .screen_parsed(&message.node, rows, now)
            .into_iter()
            .map(|row| RemoteOp::Upsert {
                node: Arc::clone(&node),
                row: Box::new(row),
            })
            .collect();
        let removed = message.removed.iter().filter_map(|k| Key::parse(k));
        ops.extend(removed.map(|key| RemoteOp::Remove {
            node: Arc::clone(&node),
            key,
        }));
        let Some(last) = ops.pop() else {
            return Ok(());
        };
        for op in ops {
            self.push(op).await?;
        }
        // The last row's acknowledgement says when the whole message is
        // visible to readers: that is its propagation delay.
        let applied = self.push_acked(last).await?;
        let (at, propagation) = (message.at, self.status.propagation.clone());
        tokio::spawn(async move {
            if applied.await.is_ok() {
                let ms = now_millis().saturating_sub(at).max(0);
                propagation.observe(ms as f64 / 1000.0);
            }
        });
        Ok(())
    }

    /// Replaces what the store holds of `node` with its hash; a gateway
    /// without a lease has no live connection and pins nothing. Reading a
    /// large fleet outlasts our lease: a reload renews it when a third of
    /// the lease has passed since the last renewal.
    pub(super) async fn reload(&mut self, link: &mut Link, node: &str) -> Result<(), FleetError> {
        let started = std::time::Instant::now();
        // Not bounded as a whole: a large hash takes many pages, each one
        // bounded by the link's response timeout.
        let loaded = link.load(node, self.config.max_rows).await?;
        let read = started.elapsed();
        self.status.reloads.fetch_add(1, RELAXED);
        self.status
            .rows_loaded
            .fetch_add(loaded.raw.len() as u64, RELAXED);
        self.peers
            .loaded(node, loaded.lease.as_deref(), loaded.stamp.as_ref());
        if loaded.len > self.config.max_rows as u64 {
            tracing::warn!(%node, rows = loaded.len, max = self.config.max_rows,
                "fleet gateway holds more rows than --max-entries; reading only that many");
        }
        let mut rows = self.screen_rows(node, loaded.raw, now_millis());
        if loaded.lease.is_none() {
            rows.iter_mut().for_each(disconnect);
        }
        let (count, screened) = (rows.len(), started.elapsed());
        self.push(RemoteOp::Reset {
            node: Arc::from(node),
            rows,
        })
        .await?;
        tracing::debug!(%node, rows = count, read_ms = read.as_millis() as u64,
            screened_ms = screened.as_millis() as u64, queued_ms = started.elapsed().as_millis() as u64,
            "fleet: reloaded a gateway's rows");
        if self.claimed && self.last_renewed.elapsed() >= self.config.lease / 3 {
            self.renew(link).await?;
        }
        Ok(())
    }

    /// Parses and checks the records of one hash; its pinned row, if
    /// any, becomes `node`'s self row.
    pub(super) fn screen_rows(
        &mut self,
        node: &str,
        raw: Vec<(String, Vec<u8>)>,
        now: Millis,
    ) -> Vec<RemoteRow> {
        let super::validate::Screened {
            rows,
            refused,
            clamped,
        } = self.screen.hash(raw, now);
        self.status.clamped.fetch_add(clamped, RELAXED);
        for (key, error) in &refused {
            self.refuse(node, key, error);
        }
        for row in rows.iter().filter(|row| row.pinned) {
            self.peers.may_pin(node, &row.key);
        }
        rows
    }

    /// Checks parsed rows: bounds, `ts`, `pinned`.
    fn screen_parsed(&mut self, node: &str, rows: Vec<RemoteRow>, now: Millis) -> Vec<RemoteRow> {
        let mut kept = Vec::with_capacity(rows.len());
        for mut row in rows {
            let may_pin = row.pinned && self.peers.may_pin(node, &row.key);
            match self.screen.check(&mut row, now, may_pin) {
                Ok(clamped) => {
                    if clamped {
                        self.status.clamped.fetch_add(1, RELAXED);
                    }
                    kept.push(row);
                }
                Err(error) => self.refuse(node, row.key.as_str(), &error),
            }
        }
        kept
    }

    fn refuse(&self, node: &str, key: &str, error: &validate::Invalid) {
        let before = self.status.rejected.fetch_add(1, RELAXED);
        // The first few say what is wrong; a flood says it once per 1000.
        if before < 10 || before % 1000 == 0 {
            let key: String = key.chars().take(64).collect();
            tracing::warn!(%node, key = %key.escape_debug(), %error, "fleet: refusing a row read from redis");
        }
    }

    /// Reads every peer's lease and stamp: reloads new, restarted,
    /// returning and lagging peers, lapses dead ones, prunes dead ones'
    /// expired rows.
    pub(super) async fn poll_peers(&mut self, link: &mut Link) -> Result<(), FleetError> {
        let polls = timed(link.leases()).await?;
        let dead: Vec<String> = polls
            .iter()
            .filter(|poll| poll.lease.is_none())
            .map(|poll| poll.node.clone())
            .collect();
        for action in self.peers.observe(polls) {
            match action {
                Action::Reload(node) => self.reload(link, &node).await?,
                Action::Lapse(node) => {
                    tracing::info!(%node, "fleet gateway lease lapsed; its connections read as disconnected");
                    self.status.lapses.fetch_add(1, RELAXED);
                    self.push(RemoteOp::Lapse { node: node.into() }).await?;
                }
            }
        }
        for node in dead {
            timed(link.prune(&node, now_millis())).await?;
        }
        self.status.peers.store(self.peers.alive() as u64, RELAXED);
        Ok(())
    }
}
