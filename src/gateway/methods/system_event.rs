//! `system-event`: a presence beacon (§5.2), from an `operator.admin`
//! connection, or from a node for its own entry only. Acknowledged only
//! once applied (read-your-writes).

use super::Reply;
use crate::engine::Event;
use crate::gateway::admission::Admission;
use crate::gateway::outbox::Out;
use crate::gateway::push::unavailable;
use crate::gateway::state::State;
use crate::presence::{self, BeaconInput, Key, text};
use crate::protocol::{ErrorShape, OPERATOR_ADMIN, Params, Role, parse_system_event};

/// Validates the beacon and pushes it to the engine.
pub fn call(state: &State, session: &Admission, id: String, params: Option<Params<'_>>) -> Reply {
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
    let beacon = &params.beacon;
    let parsed = text::parse(beacon.text);
    // A node always writes its own entry, whatever the text parses to.
    let (key, source) = match session.role {
        Role::Node => match node_key(session, beacon) {
            Ok(own) => (own, session.own_source),
            Err(error) => return Reply::Refuse(id, error),
        },
        Role::Operator => presence::beacon_key(beacon, parsed.as_ref(), &state.self_info.host),
    };
    let mut patch = presence::beacon_patch(beacon, parsed.as_ref(), source);
    patch.by.conn = Some(session.conn_tag);
    if key == *state.self_key() {
        let error = ErrorShape::invalid_request(
            "invalid system-event params: the key is reserved for the gateway's own entry",
        );
        return Reply::Refuse(id, error);
    }
    // A row another principal holds is theirs while they are connected
    // (§5.1).
    if !state.claims.may_write(&key, &session.principal) {
        return Reply::Refuse(id, ErrorShape::not_owner(key.as_str()));
    }
    if session.own_key.as_ref() != Some(&key) {
        let limit = state.config.max_beacon_rows;
        let admitted = session
            .beacon_rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(
                &key,
                tokio::time::Instant::now(),
                limit,
                state.config.presence_ttl,
            );
        if let Err(over) = admitted {
            return Reply::Refuse(id, ErrorShape::beacon_rows_limit(limit, over.retry_after));
        }
    }
    match state.sender.try_push_acked(Event::Beacon { key, patch }) {
        Ok(applied) => {
            let size = id.len() + 64;
            Reply::Send(Out::Applied { id, applied }, size)
        }
        Err(e) => Reply::Refuse(id, unavailable(&e)),
    }
}

/// The key a node's beacon writes: its own (the key its connect upserted).
/// A `deviceId` or `instanceId` naming another key is refused.
fn node_key(session: &Admission, beacon: &BeaconInput<'_>) -> Result<Key, ErrorShape> {
    let Some(own) = &session.own_key else {
        return Err(ErrorShape::not_own_entry(""));
    };
    for named in [beacon.device_id, beacon.instance_id].into_iter().flatten() {
        // Blank names nothing; the own key is checked without allocating.
        if own.is_parsed_from(named) {
            continue;
        }
        if let Some(key) = Key::parse(named) {
            return Err(ErrorShape::not_own_entry(key.as_str()));
        }
    }
    Ok(own.clone())
}
