//! The Redis side of the fleet: one [`Link`] per connection attempt, with
//! the few batched operations the fleet task needs. Every write is one
//! atomic pipeline (MULTI/EXEC), so other gateways never read half a batch,
//! and the change message is published inside it, after the rows.
//!
//! Invariant: only this gateway writes its own `rows`, `expiry` and
//! `lease` keys; it reads, never writes, the other gateways' (except
//! pruning rows of a dead gateway that are past their expiry).

use super::outbound::Outbound;
use super::wire::{self, Keys, Record};
use crate::presence::{Key, Millis, RemoteRow};
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::time::Duration;

/// Drops a dead gateway's rows past their expiry, and the gateway from
/// the node set once it has none. KEYS: rows, expiry, nodes; ARGV: now, node.
const PRUNE: &str = r"
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, key in ipairs(gone) do redis.call('HDEL', KEYS[1], key) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return #gone
";

/// A connected fleet link.
pub struct Link {
    con: ConnectionManager,
    keys: Keys,
    node: String,
    boot: String,
    lease: Duration,
    ttl: Millis,
    /// The number of the last message published under `boot`.
    seq: u64,
}

/// A peer's rows as read from Redis, and whether its lease is held.
pub struct Loaded {
    /// Its lease's boot id, if held.
    pub lease: Option<String>,
    /// Its rows.
    pub rows: Vec<RemoteRow>,
}

impl Link {
    /// Connects to `url` within `timeout`.
    pub async fn connect(
        client: &redis::Client,
        identity: (&Keys, &str, &str),
        lease: Duration,
        ttl: Millis,
        timeout: Duration,
    ) -> redis::RedisResult<Link> {
        let (keys, node, boot) = identity;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let con = client.get_connection_manager_with_config(config).await?;
        Ok(Link {
            con,
            keys: keys.clone(),
            node: node.to_owned(),
            boot: boot.to_owned(),
            lease,
            ttl,
            seq: 0,
        })
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Writes one batch of own rows (and, if given, the self entry) and
    /// announces it. `reset` first empties the hash: the batch is then
    /// everything this gateway holds, and receivers reload it.
    pub async fn write(
        &mut self,
        out: &Outbound,
        own: Option<(Key, Vec<u8>)>,
        reset: bool,
        now: Millis,
    ) -> redis::RedisResult<()> {
        let (rows, expiry) = (self.keys.rows(&self.node), self.keys.expiry(&self.node));
        self.seq += 1;
        let mut message = wire::begin_message(&self.node, &self.boot, self.seq, reset, now);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if reset {
            pipe.del(&rows).ignore().del(&expiry).ignore();
        }
        let own = own.map(|(key, record)| (key, record, now.saturating_add(self.ttl)));
        let records = out.records.iter().chain(own.as_ref());
        for (key, record, at) in records {
            pipe.hset(&rows, key.as_str(), record).ignore();
            pipe.zadd(&expiry, key.as_str(), *at).ignore();
            if !reset {
                wire::push_record(&mut message, record);
            }
        }
        if !out.removed.is_empty() {
            let removed: Vec<&str> = out.removed.iter().map(Key::as_str).collect();
            pipe.hdel(&rows, &removed).ignore();
            pipe.zrem(&expiry, &removed).ignore();
        }
        let removed = out.removed.iter().map(Key::as_str).filter(|_| !reset);
        let message = wire::finish_message(message, removed);
        self.heartbeat_into(&mut pipe);
        pipe.publish(self.keys.channel(), message).ignore();
        pipe.query_async::<()>(&mut self.con).await
    }

    fn heartbeat_into(&self, pipe: &mut redis::Pipeline) {
        pipe.cmd("SET")
            .arg(self.keys.lease(&self.node))
            .arg(&self.boot)
            .arg("PX")
            .arg(self.lease_ms())
            .ignore();
        pipe.sadd(self.keys.nodes(), &self.node).ignore();
    }

    /// Renews the lease.
    pub async fn heartbeat(&mut self) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        self.heartbeat_into(&mut pipe);
        pipe.query_async::<()>(&mut self.con).await
    }

    /// Gives up the lease at once (graceful shutdown): the others mark
    /// this gateway's remaining live rows disconnected now, not later.
    pub async fn release(&mut self) -> redis::RedisResult<()> {
        redis::cmd("DEL")
            .arg(self.keys.lease(&self.node))
            .query_async::<()>(&mut self.con)
            .await
    }

    /// Every other node id with the boot id its lease holds, if any.
    pub async fn leases(&mut self) -> redis::RedisResult<Vec<(String, Option<String>)>> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.nodes())
            .query_async(&mut self.con)
            .await?;
        let nodes: Vec<String> = nodes.into_iter().filter(|n| *n != self.node).collect();
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.get(self.keys.lease(node));
        }
        let leases: Vec<Option<String>> = pipe.query_async(&mut self.con).await?;
        Ok(nodes.into_iter().zip(leases).collect())
    }

    /// `node`'s rows and lease. Records that do not parse are skipped.
    pub async fn load(&mut self, node: &str) -> redis::RedisResult<Loaded> {
        let mut pipe = redis::pipe();
        pipe.hgetall(self.keys.rows(node))
            .get(self.keys.lease(node));
        let (raw, lease): (HashMap<String, Vec<u8>>, Option<String>) =
            pipe.query_async(&mut self.con).await?;
        let mut rows = Vec::with_capacity(raw.len());
        for (key, bytes) in raw {
            match serde_json::from_slice::<Record>(&bytes) {
                Ok(record) => rows.extend(record.into_row()),
                Err(error) => tracing::warn!(%node, %key, %error, "skipping a fleet record"),
            }
        }
        Ok(Loaded { lease, rows })
    }

    /// Prunes a dead gateway's expired rows; returns how many went.
    pub async fn prune(&mut self, node: &str, now: Millis) -> redis::RedisResult<u64> {
        redis::Script::new(PRUNE)
            .key(self.keys.rows(node))
            .key(self.keys.expiry(node))
            .key(self.keys.nodes())
            .arg(now)
            .arg(node)
            .invoke_async(&mut self.con)
            .await
    }
}
