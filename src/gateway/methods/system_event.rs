//! `system-event`: a presence beacon (§5.2), from an `operator.admin`
//! connection or a node. Acknowledged only once applied (read-your-writes).

use super::Reply;
use crate::engine::Event;
use crate::gateway::handshake::Session;
use crate::gateway::outbox::Out;
use crate::gateway::push::unavailable;
use crate::gateway::state::State;
use crate::presence;
use crate::protocol::{ErrorShape, OPERATOR_ADMIN, Role, parse_system_event};
use simd_json::OwnedValue;

/// Validates the beacon and pushes it to the engine.
pub fn call(state: &State, session: &Session, id: String, params: Option<&OwnedValue>) -> Reply {
    if session.role != Role::Node && !session.scopes.iter().any(|s| s == OPERATOR_ADMIN) {
        return Reply::Refuse(
            id,
            ErrorShape::missing_scope(OPERATOR_ADMIN, &[OPERATOR_ADMIN]),
        );
    }
    let params = match parse_system_event(params) {
        Ok(params) => params,
        Err(why) => return Reply::Refuse(id, ErrorShape::invalid_params("system-event", why)),
    };
    let (key, patch) = presence::beacon(params.beacon, &state.self_info.host);
    if key == *state.self_key() {
        let error = ErrorShape::invalid_request(
            "invalid system-event params: the key is reserved for the gateway's own entry",
        );
        return Reply::Refuse(id, error);
    }
    match state.sender.try_push_acked(Event::Beacon { key, patch }) {
        Ok(applied) => {
            let size = id.len() + 64;
            Reply::Send(Out::Applied { id, applied }, size)
        }
        Err(e) => Reply::Refuse(id, unavailable(&e)),
    }
}
