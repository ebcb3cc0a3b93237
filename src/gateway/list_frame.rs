//! A reply that carries the presence list (`hello-ok`, `system-presence`):
//! its own bytes, with the list's rows spliced in at one point, straight
//! from the published snapshot's chunks.
//!
//! Invariant: the frame's text is `buf[..split]` + every chunk of the
//! snapshot's rows ([`Snapshot::rest_chunks`]) + `buf[split..]`. The chunks
//! are shared with the snapshot, so a thousand hellos copy no list; on
//! permessage-deflate connections each chunk goes out as its own
//! compressed segment ([`deflate_segment`]), made once for every version
//! that shares the chunk, so a new version compresses only the chunks it
//! changed, and a hello costs no compression at all once they are made.

use crate::clock::Millis;
use crate::compress::deflate_segment;
use crate::presence::Snapshot;
use bytes::Bytes;
use std::sync::Arc;

/// Rows shorter than this go out uncompressed: the stored blocks around
/// them would cost more than compressing saves.
pub const DEFLATE_MIN_ROWS: usize = 256;

/// Bytes a compressed list adds besides its segments: the stored-block
/// headers around the reply's own bytes and the message end.
const DEFLATE_OVERHEAD: usize = 16;

/// A text frame, possibly with a snapshot's rows inside it.
#[derive(Debug)]
pub struct ListFrame {
    buf: Vec<u8>,
    split: usize,
    rows: Option<Arc<Snapshot>>,
}

impl ListFrame {
    /// A frame with no list inside.
    pub fn plain(buf: Vec<u8>) -> ListFrame {
        ListFrame {
            split: buf.len(),
            buf,
            rows: None,
        }
    }

    /// Renders a frame with `write`, which gets the buffer and a function
    /// that writes the list of `snapshot` (its self entry stamped `now`; the
    /// other rows are spliced in from the snapshot's chunks when the frame
    /// is written). `write` calls it at most once.
    pub fn render(
        snapshot: &Arc<Snapshot>,
        now: Millis,
        write: impl FnOnce(&mut Vec<u8>, &mut dyn FnMut(&mut Vec<u8>)),
    ) -> ListFrame {
        let mut buf = Vec::with_capacity(1024);
        let mut split = None;
        let mut list = |out: &mut Vec<u8>| {
            snapshot.write_list_head(now, out);
            split = Some(out.len());
            out.push(b']');
        };
        write(&mut buf, &mut list);
        match split {
            Some(split) => ListFrame {
                buf,
                split,
                rows: Some(Arc::clone(snapshot)),
            },
            None => ListFrame::plain(buf),
        }
    }

    /// The frame's length in bytes, uncompressed.
    pub fn len(&self) -> usize {
        self.buf.len() + self.rows.as_ref().map_or(0, |r| r.rest_len())
    }

    /// True for an empty frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes before the rows, and those after.
    pub fn around(&self) -> (&[u8], &[u8]) {
        self.buf.split_at(self.split)
    }

    /// True when a permessage-deflate connection gets this frame
    /// compressed: it carries enough rows for that to pay.
    pub fn compresses(&self) -> bool {
        self.rows
            .as_ref()
            .is_some_and(|r| r.rest_len() >= DEFLATE_MIN_ROWS)
    }

    /// The plain frame's pieces, in order: the bytes before the rows, each
    /// chunk of rows, the bytes after.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> + Clone {
        let (before, after) = self.around();
        let rows = self.rows.iter().flat_map(|r| r.rest_chunks());
        std::iter::once(before)
            .chain(rows.map(|c| &c[..]))
            .chain(std::iter::once(after))
    }

    /// The compressed segments of the rows, in order (made by the first
    /// caller for each chunk); none for a frame without rows.
    pub fn segments(&self) -> impl Iterator<Item = &Bytes> + Clone {
        self.rows
            .iter()
            .flat_map(|r| r.rest_deflated(deflate_segment))
    }

    /// The whole plain frame as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.pieces().collect::<Vec<_>>().concat())
    }
}

/// The bytes the list of `snapshot` costs in a reply on the wire: plain,
/// or, when `deflate` and it pays, as compressed segments (compressing the
/// chunks not compressed yet, which its writer would do anyway).
pub fn wire_len(snapshot: &Snapshot, deflate: bool) -> usize {
    let plain = snapshot.list_len();
    if !deflate || snapshot.rest_len() < DEFLATE_MIN_ROWS {
        return plain;
    }
    let segments: usize = snapshot
        .rest_deflated(deflate_segment)
        .map(Bytes::len)
        .sum();
    plain - snapshot.rest_len() + segments + DEFLATE_OVERHEAD
}
