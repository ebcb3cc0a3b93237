//! The Redis side of the fleet: one [`Link`] per connection attempt, with
//! the few batched operations the fleet task needs. Every write is one
//! atomic pipeline (MULTI/EXEC), so other gateways never read half a batch,
//! and the change message is published inside it, after the rows.
//!
//! Invariant: only this gateway writes its own `rows`, `expiry`, `stamp`
//! and `lease` keys; it reads, never writes, the other gateways' (except
//! pruning rows of a dead gateway that are past their expiry). The lease
//! is only ever taken when it is free or already ours ([`CLAIM`]), unless
//! the operator asked to take it over.

use super::outbound::Outbound;
use super::peers::Poll;
use super::wire::{self, Keys, Stamp};
use crate::presence::{Key, Millis};
use redis::aio::ConnectionManager;
use std::time::Duration;

/// Takes or renews the lease if it is free or ours (or `ARGV[4]` is 1:
/// take over), registers the node, and reads what anti-entropy compares:
/// returns {other holder or false, stamp or false, rows in the hash}.
/// KEYS: lease, nodes, stamp, rows; ARGV: boot, lease ms, node, takeover.
const CLAIM: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and ARGV[4] ~= '1' then
  return {holder, redis.call('GET', KEYS[3]), redis.call('HLEN', KEYS[4])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return {false, redis.call('GET', KEYS[3]), redis.call('HLEN', KEYS[4])}
";

/// Reads a node's lease, stamp and (when it holds at most `ARGV[1]` rows)
/// its whole hash, in one atomic step: {lease, stamp, rows, fields}.
/// A larger hash is read after it with HSCAN (`Link::scan`). KEYS: rows,
/// lease, stamp.
const LOAD: &str = r"
local n = redis.call('HLEN', KEYS[1])
local lease = redis.call('GET', KEYS[2])
local stamp = redis.call('GET', KEYS[3])
if n > tonumber(ARGV[1]) then return {lease, stamp, n, false} end
return {lease, stamp, n, redis.call('HGETALL', KEYS[1])}
";

/// The largest hash read in one atomic step; a larger one is read in
/// HSCAN pages of [`SCAN_PAGE`], so no single command holds Redis (and
/// every other gateway's writes) for long, nor waits for one huge reply.
/// Reading the stamp first is what keeps a paged read in step with the
/// change messages: every change the pages miss, or show newer than the
/// stamp, comes in a message numbered after it, applied after the read.
pub const LOAD_WHOLE: usize = 5_000;
/// Fields asked for per HSCAN page.
const SCAN_PAGE: usize = 5_000;

/// The most node ids a poll reads: far more than a real fleet has, so a
/// node set stuffed with garbage costs bounded work per poll.
pub const MAX_NODES: usize = 1024;

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

/// A node's hash as read from Redis, with its lease and stamp.
pub struct Loaded {
    /// Its lease's boot id, if held.
    pub lease: Option<String>,
    /// The stamp beside the hash.
    pub stamp: Option<Stamp>,
    /// How many rows the hash holds (more than `raw` when over the bound).
    pub len: u64,
    /// Its fields, unparsed: key and record bytes.
    pub raw: Vec<(String, Vec<u8>)>,
}

/// What one heartbeat found.
pub struct Beat {
    /// Another boot holds this node id's lease: ours was not renewed.
    pub taken_by: Option<String>,
    /// The stamp beside our hash.
    pub stamp: Option<Stamp>,
    /// How many rows our hash holds.
    pub rows: u64,
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
    /// announces it; `rows` is how many the hash holds after it. `reset`
    /// first empties the hash: the batch is then everything this gateway
    /// holds, and receivers reload it.
    pub async fn write(
        &mut self,
        out: &Outbound,
        own: Option<(Key, Vec<u8>)>,
        (reset, rows_after): (bool, u64),
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
        let stamp = Stamp {
            boot: self.boot.clone(),
            seq: self.seq,
            rows: rows_after,
        };
        pipe.set(self.keys.stamp(&self.node), stamp.encode())
            .ignore();
        pipe.sadd(self.keys.nodes(), &self.node).ignore();
        pipe.publish(self.keys.channel(), message).ignore();
        pipe.query_async::<()>(&mut self.con).await
    }

    /// Publishes a heartbeat: our clock and last message number.
    pub async fn beat(&mut self, now: Millis) -> redis::RedisResult<()> {
        let message = wire::beat_message(&self.node, &self.boot, self.seq, now);
        redis::cmd("PUBLISH")
            .arg(self.keys.channel())
            .arg(message)
            .query_async::<()>(&mut self.con)
            .await
    }

    /// The stamp our last write left, if this link wrote anything.
    pub fn stamp(&self, rows: u64) -> Stamp {
        Stamp {
            boot: self.boot.clone(),
            seq: self.seq,
            rows,
        }
    }

    /// Takes or renews the lease unless another boot holds it (`takeover`
    /// takes it anyway), and reads our stamp and row count.
    pub async fn heartbeat(&mut self, takeover: bool) -> redis::RedisResult<Beat> {
        let (taken_by, stamp, rows): (Option<String>, Option<String>, u64) =
            redis::Script::new(CLAIM)
                .key(self.keys.lease(&self.node))
                .key(self.keys.nodes())
                .key(self.keys.stamp(&self.node))
                .key(self.keys.rows(&self.node))
                .arg(&self.boot)
                .arg(self.lease_ms())
                .arg(&self.node)
                .arg(if takeover { "1" } else { "0" })
                .invoke_async(&mut self.con)
                .await?;
        let stamp = stamp.as_deref().and_then(Stamp::parse);
        Ok(Beat {
            taken_by,
            stamp,
            rows,
        })
    }

    /// Gives up the lease at once (graceful shutdown), if it is still
    /// ours: the others mark this gateway's remaining live rows
    /// disconnected now, not later.
    pub async fn release(&mut self) -> redis::RedisResult<()> {
        redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end",
        )
        .key(self.keys.lease(&self.node))
        .arg(&self.boot)
        .invoke_async::<()>(&mut self.con)
        .await
    }

    /// Every other registered node id (at most [`MAX_NODES`]) with its
    /// lease and stamp.
    pub async fn leases(&mut self) -> redis::RedisResult<Vec<Poll>> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.nodes())
            .query_async(&mut self.con)
            .await?;
        if nodes.len() > MAX_NODES {
            tracing::warn!(
                nodes = nodes.len(),
                "fleet node set is larger than {MAX_NODES}; reading the first {MAX_NODES}"
            );
        }
        let nodes: Vec<String> = nodes
            .into_iter()
            .filter(|n| *n != self.node)
            .take(MAX_NODES)
            .collect();
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.get(self.keys.lease(node)).get(self.keys.stamp(node));
        }
        let read: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut self.con).await?;
        let polls = nodes.into_iter().zip(read);
        Ok(polls
            .map(|(node, (lease, stamp))| Poll {
                node,
                lease,
                stamp: stamp.as_deref().and_then(Stamp::parse),
            })
            .collect())
    }

    /// `node`'s hash (at most `max_rows` fields), lease and stamp.
    pub async fn load(&mut self, node: &str, max_rows: usize) -> redis::RedisResult<Loaded> {
        type Read = (
            Option<String>,
            Option<String>,
            u64,
            Option<Vec<(String, Vec<u8>)>>,
        );
        let (lease, stamp, len, raw): Read = redis::Script::new(LOAD)
            .key(self.keys.rows(node))
            .key(self.keys.lease(node))
            .key(self.keys.stamp(node))
            .arg(max_rows.min(LOAD_WHOLE))
            .invoke_async(&mut self.con)
            .await?;
        let raw = match raw {
            Some(raw) => raw,
            None => self.scan(node, max_rows).await?,
        };
        let stamp = stamp.as_deref().and_then(Stamp::parse);
        Ok(Loaded {
            lease,
            stamp,
            len,
            raw,
        })
    }

    /// The first `max_rows` fields of a hash, page by page.
    async fn scan(
        &mut self,
        node: &str,
        max_rows: usize,
    ) -> redis::RedisResult<Vec<(String, Vec<u8>)>> {
        let mut raw = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
                .arg(self.keys.rows(node))
                .arg(cursor)
                .arg("COUNT")
                .arg(SCAN_PAGE)
                .query_async(&mut self.con)
                .await?;
            raw.extend(page.into_iter().take(max_rows - raw.len()));
            if next == 0 || raw.len() >= max_rows {
                return Ok(raw);
            }
            cursor = next;
        }
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
