//! A publish's edits to the list as two batches: the rows it drops
//! ([`List::remove_rows`]) and the rows it adds ([`List::insert_rows`]),
//! each sorted into list order and applied in one walk of the list.
//!
//! Each target is found from the place of the one before it (a galloping
//! search forward from the current part and chunk), so the parts and
//! chunks a batch touches are visited once, in order, instead of a
//! search from the root per row; the rows a batch adds to one chunk are
//! merged into it at once.

use super::{
    Arc, Chunk, List, MAX_CHUNK, MAX_PART, OnceLock, Part, chunk_first, make_mut, order,
    part_first, place,
};
use crate::presence::entry::Millis;
use crate::presence::key::Key;
use crate::presence::row::SnapshotEntry;
use std::cmp::Ordering;

/// Rows per chunk, and chunks per part, when a batch splits one that grew
/// past its maximum: three quarters full, so the next few inserts fit.
const SPLIT_CHUNK: usize = MAX_CHUNK * 3 / 4;
const SPLIT_PART: usize = MAX_PART * 3 / 4;

/// The index of the last item at or after `from` whose first row is at or
/// before (`ts`, `key`), or `from` when none after it is: galloping
/// forward from `from`, which must be such an item (or 0).
fn locate_from<T>(
    items: &[T],
    from: usize,
    ts: Millis,
    key: &Key,
    first: impl Fn(&T) -> &SnapshotEntry,
) -> usize {
    let at_or_before = |item: &T| place(ts, key, first(item)) != Ordering::Less;
    let (mut at, mut step) = (from, 1);
    while at + step < items.len() && at_or_before(&items[at + step]) {
        at += step;
        step *= 2;
    }
    let end = (at + step).min(items.len());
    at + items[at + 1..end].partition_point(at_or_before)
}

/// `items` cut into consecutive pieces of at most `size`, as even as
/// possible.
fn split_even<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let pieces = items.len().div_ceil(size);
    let (base, longer) = (items.len() / pieces, items.len() % pieces);
    let mut items = items.into_iter();
    (0..pieces)
        .map(|i| {
            items
                .by_ref()
                .take(base + usize::from(i < longer))
                .collect()
        })
        .collect()
}

impl List {
    /// Removes the rows at `removed` (each named at most once, in any
    /// order: they are sorted into list order first); returns how many
    /// were found.
    pub fn remove_rows(&mut self, removed: &mut [(Millis, Key)]) -> usize {
        if removed.is_empty() || self.parts.is_empty() {
            return 0;
        }
        // List order: `ts` descending, ties by key.
        removed.sort_unstable_by(|(a_ts, a), (b_ts, b)| b_ts.cmp(a_ts).then_with(|| a.cmp(b)));
        let removed = &*removed;
        let parts = make_mut(&mut self.parts);
        let (mut p, mut c, mut found) = (0, 0, 0);
        for (ts, key) in removed {
            debug_assert!(!parts.is_empty(), "every removed row is listed");
            let Some(next) = parts
                .get(p)
                .map(|_| locate_from(parts, p, *ts, key, part_first))
            else {
                break;
            };
            if next != p {
                (p, c) = (next, 0);
            }
            c = locate_from(&parts[p].chunks, c, *ts, key, chunk_first);
            let at = parts[p].chunks[c]
                .rows
                .binary_search_by(|row| place(*ts, key, row).reverse());
            let Ok(at) = at else { continue };
            found += 1;
            let part = make_mut(&mut parts[p]);
            part.dirty = true;
            let chunk = make_mut(&mut part.chunks[c]);
            chunk.dirty = true;
            chunk.rows.remove(at);
            if chunk.rows.is_empty() {
                part.chunks.remove(c);
                if part.chunks.is_empty() {
                    parts.remove(p);
                    (p, c) = (p.min(parts.len().saturating_sub(1)), 0);
                } else {
                    c = c.min(part.chunks.len() - 1);
                }
            }
        }
        self.rows -= found;
        self.dirty |= found > 0;
        found
    }

    /// Adds `added` (in any order: sorted into list order first), none of
    /// whose keys the list holds. Their `json` is each row's alone until
    /// the next seal.
    pub fn insert_rows(&mut self, mut added: Vec<SnapshotEntry>) {
        if added.is_empty() {
            return;
        }
        added.sort_unstable_by(order);
        self.rows += added.len();
        self.dirty = true;
        let parts = make_mut(&mut self.parts);
        let mut added = added.into_iter().peekable();
        if parts.is_empty() {
            let first = added.next().expect("not empty");
            parts.push(Arc::new(Part {
                chunks: vec![Arc::new(Chunk::edited(vec![first]))],
                bytes: 0,
                sum: OnceLock::new(),
                dirty: true,
            }));
        }
        let (mut p, mut c) = (0, 0);
        while let Some(row) = added.peek() {
            let (ts, key) = (row.ts, row.key.clone());
            let next = locate_from(parts, p, ts, &key, part_first);
            if next != p {
                (p, c) = (next, 0);
            }
            c = locate_from(&parts[p].chunks, c, ts, &key, chunk_first);
            // The rows that go into chunk `c`: those before the next
            // chunk's first row, here or in the next part.
            let bound = match parts[p].chunks.get(c + 1) {
                Some(chunk) => Some(chunk_first(chunk)),
                None => parts.get(p + 1).map(part_first),
            }
            .map(|row| (row.ts, row.key.clone()));
            let mut run = Vec::new();
            while let Some(row) = added.next_if(|row| {
                bound.as_ref().is_none_or(|(ts, key)| {
                    let order = row.ts.cmp(ts).reverse().then_with(|| row.key.cmp(key));
                    order == Ordering::Less
                })
            }) {
                run.push(row);
            }
            let part = make_mut(&mut parts[p]);
            part.dirty = true;
            let chunk = make_mut(&mut part.chunks[c]);
            chunk.dirty = true;
            chunk.rows = merge(std::mem::take(&mut chunk.rows), run);
            if chunk.rows.len() > MAX_CHUNK {
                let pieces = split_even(std::mem::take(&mut chunk.rows), SPLIT_CHUNK);
                let pieces = pieces.into_iter().map(|rows| Arc::new(Chunk::edited(rows)));
                part.chunks.splice(c..=c, pieces);
            }
            if part.chunks.len() > MAX_PART {
                let chunks = std::mem::take(&mut part.chunks);
                let pieces = split_even(chunks, SPLIT_PART).into_iter().map(|chunks| {
                    Arc::new(Part {
                        chunks,
                        bytes: 0,
                        sum: OnceLock::new(),
                        dirty: true,
                    })
                });
                parts.splice(p..=p, pieces);
                c = 0;
            }
        }
    }
}

/// Two runs of rows in list order, merged into one.
fn merge(old: Vec<SnapshotEntry>, new: Vec<SnapshotEntry>) -> Vec<SnapshotEntry> {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut old, mut new) = (old.into_iter().peekable(), new.into_iter().peekable());
    loop {
        let next = match (old.peek(), new.peek()) {
            (Some(a), Some(b)) => {
                debug_assert!(
                    a.key != b.key || a.ts != b.ts,
                    "a key is listed at most once"
                );
                if place(b.ts, &b.key, a) == Ordering::Less {
                    new.next()
                } else {
                    old.next()
                }
            }
            (Some(_), None) => old.next(),
            (None, Some(_)) => new.next(),
            (None, None) => return out,
        };
        out.extend(next);
    }
}
