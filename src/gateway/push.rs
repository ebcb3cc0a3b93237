//! Pushing a connection's events to the presence engine: a full or closed
//! queue is answered, never waited on (backpressure is a value).

use crate::engine::PushError;
use crate::protocol::ErrorShape;

/// How long a full queue asks clients to wait before retrying.
pub const RETRY_AFTER_MS: u64 = 100;

/// How long a stopping engine asks clients to wait before retrying
/// (elsewhere: the gateway is going away).
const SHUTDOWN_RETRY_AFTER_MS: u64 = 1000;

/// The `UNAVAILABLE` answer to a refused push.
pub fn unavailable<E>(e: &PushError<E>) -> ErrorShape {
    match e {
        PushError::Full(_) => ErrorShape::unavailable("presence queue is full", RETRY_AFTER_MS),
        PushError::Closed(_) => {
            ErrorShape::unavailable("gateway is shutting down", SHUTDOWN_RETRY_AFTER_MS)
        }
    }
}
