//! `health`: uptime and the presence version, for any connected client.

use super::Reply;
use crate::gateway::outbox::Out;

/// About how many bytes a `health` reply takes besides its id.
const HEALTH_BYTES: usize = 128;

/// Replies with the health payload, rendered when the reply's turn comes.
pub fn call(id: String) -> Reply {
    let size = id.len() + HEALTH_BYTES;
    Reply::Send(Out::Health { id }, size)
}
