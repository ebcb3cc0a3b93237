//! Presence semantics (docs/protocol.md §5, §6, §8): pure, deterministic, no I/O.

mod changelog;
mod diagnosis;
mod diff;
mod duplicates;
mod entry;
mod entry_ref;
mod host_stats;
mod key;
mod list;
mod pressure;
mod provenance;
mod remote;
mod report;
mod row;
mod snapshot;
mod source;
mod status;
mod store;
pub mod text;

pub use changelog::{ChangeLog, DEFAULT_LOG_KEYS, Merged};
pub use diagnosis::{DoctorConfig, MAX_FINDINGS_PER_KIND, diagnose, human, write_name};
pub use diff::{RowDiff, changed_rows};
pub use entry::{
    Entry, MAX_ENCODED_BYTES, MAX_FIELD_BYTES, MAX_LIST_ITEMS, MAX_TEXT_BYTES, Millis, Patch,
    fallback_text, is_loopback,
};
pub use host_stats::{HostStats, HostStatsBook, MAX_CPU_COUNT};
pub use key::Key;
pub use pressure::Pressure;
pub use provenance::{ConnTag, KeySource, Origin, RECENT_WRITES, Write, WriteKind, Writer};
pub use remote::{Holder, NodeId, RemoteOp, RemoteRow, Verdict, arbitrate, mark_disconnected};
pub use report::{CapReport, Finding, FindingKind, MAX_KEYS_PER_FINDING, Report, RowReport};
pub use row::{ParsedRow, RowJson};
pub use snapshot::{Snapshot, SnapshotEntry};
pub use source::{
    BeaconInput, ConnectInfo, TEXT_KEY_CHARS, beacon, beacon_key, beacon_patch, connect,
    connect_reason, disconnect_reason,
};
pub use status::{ACTIVE_MAX_AGE, IDLE_MAX_AGE, Status};
pub use store::{
    ConnId, DEFAULT_MAX_ENTRIES, DEFAULT_TTL, Outcome, RENEWALS_PER_EXPIRY, RenewalPass,
    SCAN_PER_RENEWAL, Store, StoreConfig, StoreStats,
};
