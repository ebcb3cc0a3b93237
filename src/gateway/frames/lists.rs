//! Writing the frames that carry a snapshot's rows (`hello-ok`,
//! `system-presence`, a full-list `presence` event): the message's own
//! bytes around the rows' shared chunks, or, with permessage-deflate,
//! around the chunks' shared compressed segments (`list_frame.rs`). A small
//! one is gathered like any small frame; a large one goes out in one
//! vectored write, after what was gathered, with as many slices as the
//! list has chunks.

use super::{FrameWriter, GATHER_FRAME_MAX, WRITE_BUFFER_KEEP, write_all_vectored};
use crate::compress::{write_message_end, write_stored};
use crate::gateway::list_frame::ListFrame;
use crate::protocol::ws;
use crate::protocol::{Opcode, SharedEvent};
use std::io::{self, IoSlice};
use tokio::io::{AsyncWrite, AsyncWriteExt};

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Writes a shared event with this connection's `tail`: its head, the
    /// rows that follow it if any (a snapshot's chunks, for a full-list
    /// `presence`, as [`FrameWriter::write_list`] writes a list), the tail.
    pub(super) async fn write_shared_event(
        &mut self,
        event: &SharedEvent,
        tail: &[u8],
    ) -> io::Result<()> {
        let Some(head) = event.deflated().filter(|_| self.deflate) else {
            let pieces = std::iter::once(&event.head()[..])
                .chain(event.rows().map(|c| &c[..]))
                .chain(std::iter::once(tail));
            return self.write_pieces(Opcode::Text, false, pieces).await;
        };
        let mut stored = std::mem::take(&mut self.stored);
        stored.clear();
        write_stored(&mut stored, tail);
        write_message_end(&mut stored);
        let pieces = std::iter::once(&head.bytes[..])
            .chain(event.segments().map(|s| &s[..]))
            .chain(std::iter::once(&stored[..]));
        let written = self.write_pieces(Opcode::Text, true, pieces).await;
        self.stored = stored;
        written
    }

    /// Writes a reply carrying a snapshot's rows: compressed, as the rows'
    /// shared segments between stored blocks of the reply's own bytes, when
    /// the connection negotiated permessage-deflate and that pays; else
    /// plain, chunk by chunk.
    pub async fn write_list(&mut self, frame: &ListFrame) -> io::Result<()> {
        if !(self.deflate && frame.compresses()) {
            return self.write_pieces(Opcode::Text, false, frame.pieces()).await;
        }
        let mut stored = std::mem::take(&mut self.stored);
        stored.clear();
        let (before, after) = frame.around();
        write_stored(&mut stored, before);
        let mid = stored.len();
        write_stored(&mut stored, after);
        write_message_end(&mut stored);
        let segments = frame.segments().map(|s| &s[..]);
        let pieces = std::iter::once(&stored[..mid])
            .chain(segments)
            .chain(std::iter::once(&stored[mid..]));
        let written = self.write_pieces(Opcode::Text, true, pieces).await;
        if stored.capacity() > WRITE_BUFFER_KEEP {
            stored = Vec::new();
        }
        self.stored = stored;
        written
    }

    /// Writes one frame whose payload is `pieces` joined, however many
    /// there are, with RSV1 set when they are one compressed message:
    /// gathered when small, else in one vectored write after what was
    /// gathered.
    pub(super) async fn write_pieces<'a>(
        &mut self,
        opcode: Opcode,
        compressed: bool,
        pieces: impl Iterator<Item = &'a [u8]> + Clone,
    ) -> io::Result<()> {
        let len: usize = pieces.clone().map(<[u8]>::len).sum();
        let mut header = [0u8; ws::MAX_HEADER_LEN];
        let n = ws::write_header_with(&mut header, opcode, compressed, len);
        if n + len <= GATHER_FRAME_MAX {
            return self.gather(&header[..n], pieces).await;
        }
        let mut slices = vec![IoSlice::new(&self.gathered), IoSlice::new(&header[..n])];
        for piece in pieces.filter(|p| !p.is_empty()) {
            slices.push(IoSlice::new(piece));
        }
        write_all_vectored(&mut self.io, &mut slices).await?;
        self.gathered.clear();
        self.io.flush().await
    }
}
