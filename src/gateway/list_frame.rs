//! A reply that carries the presence list (`hello-ok`, `system-presence`):
//! its own bytes, with the list's shared rows spliced in at one point.
//!
//! Invariant: the frame's text is `buf[..split]` + the rows + `buf[split..]`.
//! The rows are the same [`SharedRows`] for every reply at a version, so a
//! thousand hellos neither copy the list nor, on permessage-deflate
//! connections, compress it more than once (see `connection.rs`).

use crate::clock::now_millis;
use crate::compress::{RowsCache, SharedRows};
use crate::presence::Snapshot;
use bytes::Bytes;
use std::sync::Arc;

/// A text frame, possibly with shared rows inside it.
#[derive(Debug)]
pub struct ListFrame {
    buf: Vec<u8>,
    split: usize,
    rows: Option<Arc<SharedRows>>,
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
    /// that writes the list of `snapshot` (its self entry stamped now; the
    /// other rows are spliced in from `cache`). `write` calls it at most once.
    pub fn render(
        snapshot: &Snapshot,
        cache: &RowsCache,
        write: impl FnOnce(&mut Vec<u8>, &mut dyn FnMut(&mut Vec<u8>)),
    ) -> ListFrame {
        let mut buf = Vec::with_capacity(1024);
        let mut split = None;
        let mut list = |out: &mut Vec<u8>| {
            snapshot.write_list_head(now_millis(), out);
            split = Some(out.len());
            out.push(b']');
        };
        write(&mut buf, &mut list);
        match split {
            Some(split) => ListFrame {
                buf,
                split,
                rows: Some(cache.get(snapshot.version(), || snapshot.list_rest())),
            },
            None => ListFrame::plain(buf),
        }
    }

    /// The frame's length in bytes, uncompressed.
    pub fn len(&self) -> usize {
        self.buf.len() + self.rows.as_ref().map_or(0, |r| r.plain().len())
    }

    /// True for an empty frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes before the rows, and those after.
    pub fn around(&self) -> (&[u8], &[u8]) {
        self.buf.split_at(self.split)
    }

    /// The shared rows, if the frame has any.
    pub fn rows(&self) -> Option<&Arc<SharedRows>> {
        self.rows.as_ref()
    }

    /// The three parts of the plain frame, in order.
    pub fn parts(&self) -> [&[u8]; 3] {
        let (before, after) = self.around();
        let rows = self.rows.as_ref().map_or(&[][..], |r| &r.plain()[..]);
        [before, rows, after]
    }

    /// The whole frame as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.parts().concat())
    }
}
