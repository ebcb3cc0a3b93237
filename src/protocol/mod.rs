//! The wire protocol: frames, `connect` and `system-event` params, and errors on the wire.
//!
//! Invariants: pure code with no I/O and no async runtime, so proptest and the fuzzer can
//! drive it directly. Client mistakes come back as error values that name the field or rule;
//! nothing here panics on client input. The limits each parser enforces are documented
//! constants in its own module (`connect::MAX_NAME_LEN`, `system_event::MAX_TEXT_LEN`, ...).

mod close;
pub mod connect;
pub mod device;
pub mod error;
mod events;
pub mod frame;
pub mod message;
mod method;
pub mod node_event_params;
mod params;
mod replies;
pub mod system_event_params;
#[cfg(test)]
mod wire_tests;
pub mod ws;

pub use close::{Close, CloseCode};
pub use connect::{
    ClientInfo, ClientMode, ConnectAuth, ConnectError, ConnectParams, KNOWN_SCOPES, OPERATOR_ADMIN,
    OPERATOR_READ, OPERATOR_WRITE, PROTOCOL_VERSION, READ_SCOPES, Role, SUPPORTED_PROTOCOLS,
    grants_read, negotiate, parse_connect,
};
pub use device::{DeviceAuthError, DeviceBlock, ProvenDevice, Signed};
pub use error::{ErrorCode, ErrorShape};
pub use events::{
    Delta, HEALTH_VERSION, SHUTDOWN_REASON, SharedEvent, state_version, write_challenge,
    write_delta_payload, write_sse_presence,
};
pub use frame::{
    FrameError, INVALID_FRAME_ID, Params, Request, StateVersion, parse_request, write_event_with,
    write_response_err, write_response_ok, write_response_ok_with,
};
pub use message::{MessageError, Opcode, Progress, Reassembler};
pub use method::{EVENTS, METHOD_NAMES, Method};
pub use node_event_params::{NodeEventParams, parse_node_event};
pub use params::ParamError;
pub use replies::{FanoutHealth, Health, Hello, OK_PAYLOAD, Policy, write_health, write_hello};
pub use system_event_params::{SystemEventParams, parse_system_event};
