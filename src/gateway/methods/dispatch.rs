//! Dispatch: one request in, one reply (or refusal) out, and the label the
//! request metrics count it under.

use super::{health, node_event, system_event, system_presence};
use crate::gateway::admission::Admission;
use crate::gateway::outbox::Out;
use crate::gateway::state::State;
use crate::protocol::{ErrorShape, Method, Request};

/// What to do about one request.
pub enum Reply {
    /// Queue this, about this many bytes.
    Send(Out, usize),
    /// Answer the request id with this error.
    Refuse(String, ErrorShape),
}

/// The reply to `request` from a connection with `session`, and the
/// method label to count it under.
pub fn dispatch(
    state: &State,
    session: &Admission,
    mut request: Request<'_>,
) -> (&'static str, Reply) {
    let id = std::mem::take(&mut request.id);
    let Some(method) = Method::parse(request.method) else {
        return if request.method == "connect" {
            let error = ErrorShape::invalid_request("already connected");
            ("connect", Reply::Refuse(id, error))
        } else {
            let error = ErrorShape::unknown_method(request.method);
            ("unknown", Reply::Refuse(id, error))
        };
    };
    let reply = match method {
        Method::SystemPresence => system_presence::call(state, session, id),
        Method::SystemEvent => system_event::call(state, session, id, request.params()),
        Method::Health => health::call(id),
        Method::NodeEvent => node_event::call(state, session, id, request.params()),
    };
    (method.as_str(), reply)
}
