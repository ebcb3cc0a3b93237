//! `node.event` (docs/protocol.md §4), for role `node`: `node.host.stats`,
//! `node.presence.alive` and `node.presence.activity` renew the node's row
//! and answer `handled:true`, `reason:"updated"`; host stats are kept with
//! the row for the dashboard. A payload that is not a JSON object within
//! the bound answers `handled:false`, `reason:"invalid_payload"`; another
//! event `reason:"unsupported_event"`. Any other role is refused as
//! OpenClaw refuses it: `INVALID_REQUEST` `unauthorized role: operator`.

use super::Reply;
use crate::engine::Event;
use crate::gateway::admission::Admission;
use crate::gateway::outbox::Out;
use crate::gateway::push::unavailable;
use crate::gateway::state::State;
use crate::presence::HostStats;
use crate::protocol::node_event_params::{
    NODE_HOST_STATS, NODE_PRESENCE_ACTIVITY, NODE_PRESENCE_ALIVE,
};
use crate::protocol::{ErrorShape, Params, Role, parse_node_event, write_response_ok_with};
use bytes::Bytes;

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    Updated,
    InvalidPayload,
    Unsupported,
}

impl Handled {
    fn reason(self) -> &'static str {
        match self {
            Handled::Updated => "updated",
            Handled::InvalidPayload => "invalid_payload",
            Handled::Unsupported => "unsupported_event",
        }
    }
}

/// Validates the event, keeps host stats, renews the row, and answers.
pub fn call(state: &State, admission: &Admission, id: String, params: Option<Params<'_>>) -> Reply {
    if admission.role != Role::Node {
        let message = format!("unauthorized role: {}", admission.role.as_str());
        return Reply::Refuse(id, ErrorShape::invalid_request(message));
    }
    let params = match parse_node_event(params) {
        Ok(params) => params,
        Err(why) => return Reply::Refuse(id, ErrorShape::invalid_params("node.event", why)),
    };
    let payload = params.object();
    let handled = match (params.event.as_str(), payload) {
        (NODE_HOST_STATS, Some(payload)) => {
            match HostStats::parse(&payload, state.http.clock.now()) {
                Some(stats) => {
                    if let Some(key) = &admission.own_key {
                        let listed = state.reader.load_full();
                        state.http.host_stats.put(key.clone(), stats, &listed);
                    }
                    Handled::Updated
                }
                None => Handled::InvalidPayload,
            }
        }
        (NODE_PRESENCE_ALIVE | NODE_PRESENCE_ACTIVITY, Some(_)) => Handled::Updated,
        (NODE_HOST_STATS | NODE_PRESENCE_ALIVE | NODE_PRESENCE_ACTIVITY, None) => {
            Handled::InvalidPayload
        }
        _ => Handled::Unsupported,
    };
    if handled == Handled::Updated {
        if let Some(key) = admission.tracked.clone() {
            if let Err(e) = state.sender.try_push(Event::Renew { key }) {
                return Reply::Refuse(id, unavailable(&e));
            }
        }
    }
    let payload = serde_json::json!({
        "ok": true,
        "event": params.event,
        "handled": handled == Handled::Updated,
        "reason": handled.reason(),
    });
    let mut frame = Vec::with_capacity(id.len() + 128);
    write_response_ok_with(&mut frame, &id, |out| {
        serde_json::to_writer(out, &payload).expect("a JSON value always encodes");
    });
    let size = frame.len();
    Reply::Send(Out::Text(Bytes::from(frame)), size)
}
