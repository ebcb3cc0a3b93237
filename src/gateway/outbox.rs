//! A connection's outbound queue and the task that writes it to the socket.
//!
//! Everything a connection sends goes through its [`Outbox`], in order. The
//! outbox counts the bytes it holds. Once they exceed `maxBufferedBytes`,
//! broadcast events for this connection are dropped ([`Outbox::try_event`]
//! says so), and a further reply closes the connection as a slow consumer
//! ([`Outbox::reply`] fails). A connection with nothing unsent always gets
//! the next frame, however large: a list bigger than the limit must still
//! reach clients that keep up. One stuck client therefore never holds
//! memory beyond its limit plus one frame, nor slows the broadcaster.
//!
//! Replies that read presence are rendered by the writer task when their
//! turn comes, after every earlier `system-event` of the connection was
//! applied: that ordering is what gives read-your-writes.

use super::state::State;
use crate::engine::now_millis;
use crate::protocol::{ErrorShape, write_response_err, write_response_ok, write_response_ok_with};
use bytes::Bytes;
use fastwebsockets::{Frame, Payload, WebSocketWrite};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot};

/// Something to send.
pub enum Out {
    /// A complete text frame.
    Text(Bytes),
    /// The `{"ok":true}` reply to `id`, sent once the event was applied.
    Applied {
        /// Request id.
        id: String,
        /// Completes with the version the event was applied at.
        applied: oneshot::Receiver<u64>,
    },
    /// A `system-presence` reply, rendered from the snapshot when sent.
    Presence {
        /// Request id.
        id: String,
    },
    /// A `health` reply, rendered when sent.
    Health {
        /// Request id.
        id: String,
    },
    /// A pong for a ping.
    Pong(Vec<u8>),
    /// The echo of a client's close frame; the writer stops after it.
    CloseEcho(Vec<u8>),
    /// A close frame; the writer stops after it.
    Close(u16, &'static str),
}

/// The reply did not fit: the connection must close as a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowConsumer;

/// Producer side of one connection's queue.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<(Out, usize)>,
    /// Bytes queued and not yet written. Relaxed is enough: it is a budget
    /// estimate, never used to order memory.
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl Outbox {
    /// Queues a broadcast event; `false` if it was dropped for this
    /// connection (over the limit, or the connection is closing).
    pub fn try_event(&self, frame: Bytes) -> bool {
        let size = frame.len();
        // "Exceed" is about what is already unsent (§7), not about whether
        // this frame would cross the limit.
        if self.queued.load(Ordering::Relaxed) > self.limit {
            return false;
        }
        self.queued.fetch_add(size, Ordering::Relaxed);
        if self.tx.send((Out::Text(frame), size)).is_err() {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Queues a reply of about `size` bytes. Fails when the connection
    /// has fallen behind: its unsent bytes already exceed the limit. A
    /// `size` of 0 marks what must go out regardless (control frames, the
    /// challenge, shutdown notices).
    pub fn reply(&self, out: Out, size: usize) -> Result<(), SlowConsumer> {
        if size > 0 && self.queued.load(Ordering::Relaxed) > self.limit {
            return Err(SlowConsumer);
        }
        self.queued.fetch_add(size, Ordering::Relaxed);
        // A send error means the writer already stopped (socket gone): the
        // reader will see the close too, so there is nothing to report.
        let _ = self.tx.send((out, size));
        Ok(())
    }

    /// Queues a close frame regardless of the budget.
    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.tx.send((Out::Close(code, reason), 0));
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// Creates an outbox and the receiver its writer task drains.
pub fn outbox(limit: usize) -> (Outbox, mpsc::UnboundedReceiver<(Out, usize)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Outbox {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            limit,
        },
        rx,
    )
}

/// Writes the queue to the socket until a close is written, the queue
/// closes, or the socket fails.
pub async fn run_writer<W: AsyncWrite + Unpin>(
    mut ws: WebSocketWrite<W>,
    mut rx: mpsc::UnboundedReceiver<(Out, usize)>,
    outbox: Outbox,
    state: Arc<State>,
) {
    let mut buf = Vec::with_capacity(256);
    while let Some((out, size)) = rx.recv().await {
        buf.clear();
        let result = match out {
            Out::Text(bytes) => ws.write_frame(Frame::text(Payload::Borrowed(&bytes))).await,
            Out::Applied { id, applied } => {
                match applied.await {
                    Ok(_) => write_response_ok(&mut buf, &id, br#"{"ok":true}"#),
                    Err(_) => write_response_err(
                        &mut buf,
                        &id,
                        &ErrorShape::unavailable("presence engine is shutting down", 1000),
                    ),
                }
                ws.write_frame(Frame::text(Payload::Borrowed(&buf))).await
            }
            Out::Presence { id } => {
                {
                    // The guard must not live across the write's `.await`.
                    let snapshot = state.reader.load();
                    buf.reserve(snapshot.list_json().len() + id.len() + 64);
                    write_response_ok_with(&mut buf, &id, |out| {
                        snapshot.write_list(now_millis(), out)
                    });
                }
                ws.write_frame(Frame::text(Payload::Borrowed(&buf))).await
            }
            Out::Health { id } => {
                write_response_ok(&mut buf, &id, &state.health_json());
                ws.write_frame(Frame::text(Payload::Borrowed(&buf))).await
            }
            Out::Pong(data) => ws.write_frame(Frame::pong(Payload::Owned(data))).await,
            Out::CloseEcho(data) => {
                let _ = ws.write_frame(Frame::close_raw(Payload::Owned(data))).await;
                break;
            }
            Out::Close(code, reason) => {
                let _ = ws.write_frame(Frame::close(code, reason.as_bytes())).await;
                break;
            }
        };
        outbox.queued.fetch_sub(size, Ordering::Relaxed);
        if result.is_err() {
            break;
        }
    }
    // Dropping `rx` makes later `try_event`/`reply` calls fail fast.
}
