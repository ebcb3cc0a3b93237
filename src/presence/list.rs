//! The published list as a persistent structure: rows in list order, in
//! chunks that carry their rows' JSON already joined, so two versions share
//! every chunk neither of them changed.
//!
//! Shape: a [`List`] is a vector of parts, a part a vector of chunks, a
//! chunk a vector of rows plus `bytes`, the rows' JSON each preceded by a
//! comma. Every level is behind an `Arc`. The writer owns one `List` and
//! edits it with `Arc::make_mut`: a node that a published snapshot still
//! reaches has a second owner, so it is copied (path copying) and the
//! snapshot keeps the old one; a node only the writer holds is edited in
//! place. Publishing clones the root: one reference count.
//!
//! Invariants, true of every list a snapshot holds (after [`List::seal`]):
//! - rows are in list order, `ts` descending, ties by key ascending, and a
//!   key appears at most once;
//! - no chunk and no part is empty; a chunk holds at most [`MAX_CHUNK`]
//!   rows and a part at most [`MAX_PART`] chunks;
//! - a chunk's `bytes` is exactly `,json` for each of its rows, in order,
//!   and each row's `json` is a slice of it; a part's `bytes` and the
//!   list's `bytes` are the sums of the lengths below them;
//! - a chunk's `deflated`, once filled, is its `bytes` compressed by the
//!   function its first reader gave; a seal that rejoins a chunk empties it;
//! - a chunk's `sum`, once filled, is the checksum of its `bytes`, and a
//!   part's the checksum of its chunks' `bytes` joined
//!   ([`List::checksum`]); a seal that rejoins a chunk or seals a part
//!   empties theirs;
//! - nothing is `dirty`. Between two seals, `dirty` marks exactly the
//!   chunks and parts edited since the last seal; only the writer's list
//!   has them, and it alone holds them (an edit copied them first).
//!
//! Costs: a publish's removals and inserts go in as two batches in list
//! order (`list/batch.rs`), each found by galloping forward from the one
//! before, so k edits cost O(k log(n / k)) to find their places plus the
//! copy of each chunk and part they touch (O([`MAX_CHUNK`] + [`MAX_PART`])),
//! once per publish; [`List::seal`] visits every part
//! (O(n / ([`MAX_CHUNK`] · [`MAX_PART`]) + edits)) and rejoins only the
//! edited chunks; [`diff`] skips every part and chunk two lists share.

use super::entry::Millis;
use super::key::Key;
use super::row::SnapshotEntry;
use bytes::Bytes;
use std::cmp::Ordering;
use std::fmt;
use std::sync::OnceLock;
// Under the model checker, the list's nodes count their owners with
// loom's `Arc`, so loom explores the writer's uniqueness checks against
// readers cloning and dropping snapshots (loom-tests/src/list.rs).
#[cfg(rollcall_loom)]
use loom::sync::Arc;
#[cfg(not(rollcall_loom))]
use std::sync::Arc;

/// Most rows in a chunk: a chunk is copied whole when one of its rows
/// changes, and joined again at the next seal (about 22 KB of JSON at 350
/// bytes a row), so it stays small; an insert splits a fuller one. 16 was
/// slower at a million rows in `benches/publish.rs` (more parts to find
/// and copy).
pub const MAX_CHUNK: usize = 64;
/// A chunk edited below this many rows is merged with the next at a seal.
const MIN_CHUNK: usize = MAX_CHUNK / 4;
/// Most chunks in a part: the same trade between the copy of an edited part
/// (one pointer per chunk) and the parts a seal visits.
pub const MAX_PART: usize = 64;
/// A part edited below this many chunks is merged with the next at a seal.
const MIN_PART: usize = MAX_PART / 4;

/// One chunk of consecutive rows and their joined JSON.
#[derive(Clone)]
struct Chunk {
    rows: Vec<SnapshotEntry>,
    /// `,json` of every row, in order; stale while `dirty`.
    bytes: Bytes,
    /// `bytes` compressed, by the first reader that asked
    /// ([`List::deflated_chunks`]): every version sharing the chunk shares
    /// it, and a list no compressing client reads never fills it.
    deflated: OnceLock<Bytes>,
    /// The checksum of `bytes`, by the first reader that asked
    /// ([`List::checksum`]), shared like `deflated`.
    sum: OnceLock<u32>,
    dirty: bool,
}

/// Consecutive chunks.
#[derive(Clone)]
struct Part {
    chunks: Vec<Arc<Chunk>>,
    /// Sum of the chunks' `bytes` lengths; stale while `dirty`.
    bytes: usize,
    /// The checksum of the chunks' `bytes` joined ([`List::checksum`]).
    sum: OnceLock<u32>,
    dirty: bool,
}

/// Rows in list order; see the module docs.
#[derive(Clone, Default)]
pub struct List {
    parts: Arc<Vec<Arc<Part>>>,
    /// Rows in all parts.
    rows: usize,
    /// Sum of the parts' `bytes`; stale while `dirty`.
    bytes: usize,
    /// Edited since the last seal.
    dirty: bool,
}

impl fmt::Debug for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("List")
            .field("rows", &self.rows)
            .field("bytes", &self.bytes)
            .field("parts", &self.parts.len())
            .finish()
    }
}

/// `Arc::make_mut` (which loom's `Arc` lacks): the value, copied first if
/// anything else owns it.
fn make_mut<T: Clone>(node: &mut Arc<T>) -> &mut T {
    if Arc::get_mut(node).is_none() {
        *node = Arc::new(T::clone(node));
    }
    Arc::get_mut(node).expect("a node just copied has one owner")
}

/// Where the row at (`ts`, `key`) goes relative to `row`, in list order.
fn place(ts: Millis, key: &Key, row: &SnapshotEntry) -> Ordering {
    row.ts.cmp(&ts).then_with(|| key.cmp(&row.key))
}

/// List order of two rows.
fn order(a: &SnapshotEntry, b: &SnapshotEntry) -> Ordering {
    place(a.ts, &a.key, b)
}

/// The index of the last item whose first row is at or before (`ts`,
/// `key`), or 0 when every item starts after it.
fn locate<T>(items: &[T], ts: Millis, key: &Key, first: impl Fn(&T) -> &SnapshotEntry) -> usize {
    items
        .partition_point(|item| place(ts, key, first(item)) != Ordering::Less)
        .saturating_sub(1)
}

fn part_first(part: &Arc<Part>) -> &SnapshotEntry {
    chunk_first(&part.chunks[0])
}

fn chunk_first(chunk: &Arc<Chunk>) -> &SnapshotEntry {
    &chunk.rows[0]
}

impl List {
    /// Rows in the list.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Length of all chunks' bytes together: the list's JSON without its
    /// brackets, each row preceded by a comma.
    pub fn bytes_len(&self) -> usize {
        self.bytes
    }

    /// The rows, in list order.
    pub fn iter(&self) -> impl Iterator<Item = &SnapshotEntry> + Clone {
        self.parts
            .iter()
            .flat_map(|part| part.chunks.iter())
            .flat_map(|chunk| chunk.rows.iter())
    }

    /// The chunks' joined JSON, in list order.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> + Clone {
        debug_assert!(!self.dirty, "read a list only after its seal");
        self.parts
            .iter()
            .flat_map(|part| part.chunks.iter())
            .map(|chunk| &chunk.bytes)
    }

    /// The chunks' joined JSON as [`List::chunks`] gives it, each passed
    /// through `deflate` once for every version that shares the chunk: the
    /// first call for a chunk fills its cache, later ones (from any thread,
    /// at any version holding it) read it. `deflate` must be the same
    /// function at every call.
    pub fn deflated_chunks<'a>(
        &'a self,
        deflate: fn(&[u8]) -> Bytes,
    ) -> impl Iterator<Item = &'a Bytes> + Clone + 'a {
        debug_assert!(!self.dirty, "read a list only after its seal");
        self.parts
            .iter()
            .flat_map(|part| part.chunks.iter())
            .map(move |chunk| chunk.deflated.get_or_init(|| deflate(&chunk.bytes)))
    }

    /// The checksum of the chunks' joined JSON ([`List::chunks`] end to
    /// end), from one checksum per chunk and one per part, each kept with
    /// its node for every version that shares it: after a publish, only the
    /// chunks and parts it edited are summed again, and the parts' sums are
    /// combined, O(parts). `hash` gives the checksum of some bytes and
    /// `combine(a, b, len)` that of two byte strings joined, from theirs
    /// and the second one's length (gzip's CRC-32 has both); they must be
    /// the same functions at every call.
    pub fn checksum(&self, hash: fn(&[u8]) -> u32, combine: fn(u32, u32, usize) -> u32) -> u32 {
        debug_assert!(!self.dirty, "read a list only after its seal");
        let sum_part = |part: &Part| {
            part.chunks.iter().fold(hash(&[]), |sum, chunk| {
                let chunk_sum = *chunk.sum.get_or_init(|| hash(&chunk.bytes));
                combine(sum, chunk_sum, chunk.bytes.len())
            })
        };
        self.parts.iter().fold(hash(&[]), |sum, part| {
            let part_sum = *part.sum.get_or_init(|| sum_part(part));
            combine(sum, part_sum, part.bytes)
        })
    }

    /// The row at (`ts`, `key`), if there is one.
    pub fn get(&self, ts: Millis, key: &Key) -> Option<&SnapshotEntry> {
        if self.parts.is_empty() {
            return None;
        }
        let part = &self.parts[locate(&self.parts, ts, key, part_first)];
        let chunk = &part.chunks[locate(&part.chunks, ts, key, chunk_first)];
        let at = chunk
            .rows
            .binary_search_by(|row| place(ts, key, row).reverse());
        at.ok().map(|at| &chunk.rows[at])
    }

    /// Adds `row`, whose key the list must not hold. Its `json` is the
    /// row's alone until the next seal joins it into its chunk. (The
    /// writer adds its rows in batches: `list/batch.rs`.)
    #[cfg(any(test, rollcall_loom))]
    pub fn insert(&mut self, row: SnapshotEntry) {
        self.insert_rows(vec![row]);
    }

    /// Removes the row at (`ts`, `key`); false if there is none.
    #[cfg(any(test, rollcall_loom))]
    pub fn remove(&mut self, ts: Millis, key: &Key) -> bool {
        self.remove_rows(&mut [(ts, key.clone())]) == 1
    }

    /// Merges edited chunks and parts that became small into their next
    /// neighbour, joins the edited chunks' JSON again, and clears every
    /// `dirty`: afterwards the list may be published.
    pub fn seal(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        // Only the writer's list is ever dirty, and it alone holds what it
        // edited, so these `make_mut`s copy nothing.
        let parts = make_mut(&mut self.parts);
        let mut p = 0;
        while p < parts.len() {
            if parts[p].dirty {
                while parts[p].chunks.len() < MIN_PART
                    && p + 1 < parts.len()
                    && parts[p].chunks.len() + parts[p + 1].chunks.len() <= MAX_PART
                {
                    let next = parts.remove(p + 1);
                    make_mut(&mut parts[p])
                        .chunks
                        .extend(next.chunks.iter().cloned());
                }
                make_mut(&mut parts[p]).seal();
            }
            p += 1;
        }
        self.bytes = parts.iter().map(|part| part.bytes).sum();
    }
}

impl Part {
    /// [`List::seal`] for one part.
    fn seal(&mut self) {
        let chunks = &mut self.chunks;
        let mut c = 0;
        while c < chunks.len() {
            if chunks[c].dirty {
                while chunks[c].rows.len() < MIN_CHUNK
                    && c + 1 < chunks.len()
                    && chunks[c].rows.len() + chunks[c + 1].rows.len() <= MAX_CHUNK
                {
                    let next = chunks.remove(c + 1);
                    make_mut(&mut chunks[c])
                        .rows
                        .extend(next.rows.iter().cloned());
                }
                make_mut(&mut chunks[c]).join();
            }
            c += 1;
        }
        self.bytes = chunks.iter().map(|chunk| chunk.bytes.len()).sum();
        // A copy made for an edit carries the old chunks' checksum.
        self.sum = OnceLock::new();
        self.dirty = false;
    }
}

impl Chunk {
    /// A chunk of `rows` that the next seal joins.
    fn edited(rows: Vec<SnapshotEntry>) -> Chunk {
        Chunk {
            rows,
            bytes: Bytes::new(),
            deflated: OnceLock::new(),
            sum: OnceLock::new(),
            dirty: true,
        }
    }

    /// Joins the rows' JSON into `bytes`, and points each row's `json` into
    /// it, so the buffer a row was encoded into, or the chunk it came from,
    /// is freed once no snapshot needs it.
    fn join(&mut self) {
        // Rows are exactly as many as the vector holds: an insert or a
        // split may have left it up to four times too large.
        if self.rows.capacity() > self.rows.len() {
            let mut exact = Vec::with_capacity(self.rows.len());
            exact.append(&mut self.rows);
            self.rows = exact;
        }
        let len = self.rows.iter().map(|row| row.json.len() + 1).sum();
        let mut joined = Vec::with_capacity(len);
        for row in &self.rows {
            joined.push(b',');
            joined.extend_from_slice(&row.json);
        }
        self.bytes = super::row::point_into(&mut self.rows, joined);
        // A copy made for an edit carries the old rows' compressed bytes.
        self.deflated = OnceLock::new();
        self.sum = OnceLock::new();
        self.dirty = false;
    }
}

/// A position in a list, walking it row by row while able to skip a whole
/// part or chunk.
struct Cursor<'a> {
    parts: &'a [Arc<Part>],
    part: usize,
    chunk: usize,
    row: usize,
}

impl<'a> Cursor<'a> {
    fn new(list: &'a List) -> Self {
        Cursor {
            parts: &list.parts,
            part: 0,
            chunk: 0,
            row: 0,
        }
    }

    fn row(&self) -> Option<&'a SnapshotEntry> {
        let part = self.parts.get(self.part)?;
        Some(&part.chunks[self.chunk].rows[self.row])
    }

    /// The part this cursor is at the start of.
    fn part_start(&self) -> Option<&'a Arc<Part>> {
        (self.chunk == 0 && self.row == 0)
            .then(|| self.parts.get(self.part))
            .flatten()
    }

    /// The chunk this cursor is at the start of.
    fn chunk_start(&self) -> Option<&'a Arc<Chunk>> {
        let part = self.parts.get(self.part).filter(|_| self.row == 0)?;
        Some(&part.chunks[self.chunk])
    }

    fn next_part(&mut self) {
        self.part += 1;
        self.chunk = 0;
        self.row = 0;
    }

    fn next_chunk(&mut self) {
        self.row = 0;
        self.chunk += 1;
        if self.chunk == self.parts[self.part].chunks.len() {
            self.next_part();
        }
    }

    fn next_row(&mut self) {
        self.row += 1;
        if self.row == self.parts[self.part].chunks[self.chunk].rows.len() {
            self.next_chunk();
        }
    }
}

/// The difference between two lists of one writer: `added` gets the rows
/// of `after` that `before` does not have as they are (new, moved or
/// rewritten), `dropped` the rows of `before` that `after` does not have as
/// they are; both in list order. A row is "as it is" when its place and
/// its `seq` (the write that made it) are the same. Parts and chunks the two lists
/// share are skipped whole, so the cost is O(parts and chunks that differ
/// × their size), not O(rows).
pub fn diff<'a>(
    before: &'a List,
    after: &'a List,
    added: &mut Vec<&'a SnapshotEntry>,
    dropped: &mut Vec<&'a SnapshotEntry>,
) {
    let (mut a, mut b) = (Cursor::new(before), Cursor::new(after));
    loop {
        if let (Some(x), Some(y)) = (a.part_start(), b.part_start()) {
            if Arc::ptr_eq(x, y) {
                a.next_part();
                b.next_part();
                continue;
            }
        }
        if let (Some(x), Some(y)) = (a.chunk_start(), b.chunk_start()) {
            if Arc::ptr_eq(x, y) {
                a.next_chunk();
                b.next_chunk();
                continue;
            }
        }
        match (a.row(), b.row()) {
            (None, None) => return,
            (Some(x), None) => {
                dropped.push(x);
                a.next_row();
            }
            (None, Some(y)) => {
                added.push(y);
                b.next_row();
            }
            (Some(x), Some(y)) => match order(x, y) {
                Ordering::Less => {
                    dropped.push(x);
                    a.next_row();
                }
                Ordering::Greater => {
                    added.push(y);
                    b.next_row();
                }
                Ordering::Equal => {
                    if x.seq != y.seq {
                        dropped.push(x);
                        added.push(y);
                    }
                    a.next_row();
                    b.next_row();
                }
            },
        }
    }
}

// A path, so the file is found the same way when loom-tests includes
// this one by its path (which makes it a `mod.rs`-like file there).
#[path = "list/batch.rs"]
mod batch;
#[cfg(all(test, not(rollcall_loom)))]
mod tests;
