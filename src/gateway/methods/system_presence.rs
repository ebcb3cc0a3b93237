//! `system-presence`: the presence list, for a connection with a read scope.

use super::Reply;
use crate::gateway::admission::Admission;
use crate::gateway::outbox::Out;
use crate::gateway::state::State;
use crate::protocol::{ErrorShape, OPERATOR_READ, READ_SCOPES, grants_read};

/// Replies with the list, rendered when the reply's turn comes.
pub fn call(state: &State, session: &Admission, id: String) -> Reply {
    if !grants_read(&session.scopes) {
        return Reply::Refuse(id, ErrorShape::missing_scope(OPERATOR_READ, &READ_SCOPES));
    }
    let size = state.reader.load().list_len() + id.len() + 64;
    Reply::Send(Out::Presence { id }, size)
}
