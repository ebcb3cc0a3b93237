//! The presence entry, the patch an upsert carries, and the merge rule.
//!
//! Invariants after every [`Entry::merge`]:
//! - `text` is never empty (it falls back to `Node: HOST · mode MODE`);
//! - `roles` and `scopes` hold trimmed, non-blank, unique items, old items
//!   first, at most [`MAX_LIST_ITEMS`] each (the oldest go first);
//! - every string is at most [`MAX_FIELD_BYTES`] (`text`: [`MAX_TEXT_BYTES`]),
//!   so an entry's JSON is at most [`MAX_ENCODED_BYTES`], however many
//!   writes it had (docs/protocol.md §5.1);
//! - `ip` is never a loopback address;
//! - no string field is blank: a blank value in a patch counts as absent.

use super::provenance::Writer;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub use crate::clock::Millis;

/// Most `roles` and `scopes` a row keeps (docs/protocol.md §5.1): real
/// clients have one role and a handful of scopes; a client sending new
/// ones on every write must not grow its row.
pub const MAX_LIST_ITEMS: usize = 16;
/// Longest string field a row keeps, in bytes: the beacon limit
/// (docs/protocol.md §5.2), applied to every source (connect, fleet peers,
/// the state file).
pub const MAX_FIELD_BYTES: usize = 256;
/// Longest `text` a row keeps, in bytes: the beacon limit.
pub const MAX_TEXT_BYTES: usize = 4096;
/// String fields besides `text` and the two lists.
const STRING_FIELDS: usize = 13;
/// An upper bound on one entry's JSON: every string at its limit, each
/// byte escaped at worst as `\u00XX` (6 bytes), plus names and punctuation.
pub const MAX_ENCODED_BYTES: usize =
    6 * (MAX_TEXT_BYTES + MAX_FIELD_BYTES * (STRING_FIELDS + 2 * MAX_LIST_ITEMS)) + 1024;

/// One row of the presence list. Field order is the wire order of
/// docs/protocol.md §5; `ts` is last, which lets a snapshot refresh the self
/// entry's `ts` by splicing digits instead of re-encoding it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Entry {
    /// Stable identity of the instance, when it reported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Host name or display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Non-loopback IP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Application version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Operating system and release, e.g. `darwin 24.1.0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Device family, e.g. `Mac`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// Hardware model, e.g. `Mac14,3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_identifier: Option<String>,
    /// Client mode (`ui`, `webchat`, `node`, `gateway`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Seconds since the user's last input on that instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_input_seconds: Option<u64>,
    /// Why this entry was last written (`connect`, `periodic`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Device identity hint from the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// `client.id` from the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Union of every role reported for this key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Union of every scope reported for this key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// **(rollcall)** Node id of the fleet gateway holding the live
    /// connection (docs/protocol.md §8). Only set in fleet mode, so a lone
    /// gateway's rows are unchanged; the store stamps it, never a client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    /// Human-readable summary line; never empty once merged.
    pub text: String,
    /// Server time of the last write, ms since the epoch.
    pub ts: Millis,
}

/// The fields one upsert carries. `None` means "not carried": the old value
/// stays. Blank strings are treated as not carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    /// See [`Entry::instance_id`].
    pub instance_id: Option<String>,
    /// See [`Entry::host`].
    pub host: Option<String>,
    /// See [`Entry::ip`]. A loopback address is dropped by the merge.
    pub ip: Option<String>,
    /// See [`Entry::version`].
    pub version: Option<String>,
    /// See [`Entry::platform`].
    pub platform: Option<String>,
    /// See [`Entry::device_family`].
    pub device_family: Option<String>,
    /// See [`Entry::model_identifier`].
    pub model_identifier: Option<String>,
    /// See [`Entry::mode`].
    pub mode: Option<String>,
    /// `None`: keep; `Some(None)`: clear; `Some(Some(n))`: set.
    pub last_input_seconds: Option<Option<u64>>,
    /// See [`Entry::reason`].
    pub reason: Option<String>,
    /// See [`Entry::device_id`].
    pub device_id: Option<String>,
    /// See [`Entry::client_id`].
    pub client_id: Option<String>,
    /// Roles to add to the union.
    pub roles: Vec<String>,
    /// Scopes to add to the union.
    pub scopes: Vec<String>,
    /// See [`Entry::text`].
    pub text: Option<String>,
    /// Who sent it and where its key came from: kept by the store as the
    /// row's provenance, never merged into the entry.
    pub by: Writer,
}

impl Patch {
    /// A patch that only sets `reason`, as a disconnect writes.
    pub fn reason(reason: &str) -> Patch {
        Patch {
            reason: Some(reason.to_owned()),
            ..Patch::default()
        }
    }
}

impl Entry {
    /// True if the two entries differ at most in `ts`: one is the other
    /// renewed (docs/protocol.md §5.4). Every field is named, so a new field
    /// cannot be forgotten here.
    pub fn same_but_ts(&self, other: &Entry) -> bool {
        let Entry {
            instance_id,
            host,
            ip,
            version,
            platform,
            device_family,
            model_identifier,
            mode,
            last_input_seconds,
            reason,
            device_id,
            client_id,
            roles,
            scopes,
            gateway_id,
            text,
            ts: _,
        } = self;
        *instance_id == other.instance_id
            && *host == other.host
            && *ip == other.ip
            && *version == other.version
            && *platform == other.platform
            && *device_family == other.device_family
            && *model_identifier == other.model_identifier
            && *mode == other.mode
            && *last_input_seconds == other.last_input_seconds
            && *reason == other.reason
            && *device_id == other.device_id
            && *client_id == other.client_id
            && *roles == other.roles
            && *scopes == other.scopes
            && *gateway_id == other.gateway_id
            && *text == other.text
    }

    /// Overlays `patch` on this entry and stamps it with `ts`.
    pub fn merge(&mut self, patch: Patch, ts: Millis) {
        overlay(&mut self.instance_id, patch.instance_id);
        overlay(&mut self.host, patch.host);
        overlay(&mut self.ip, patch.ip.filter(|ip| !is_loopback(ip)));
        overlay(&mut self.version, patch.version);
        overlay(&mut self.platform, patch.platform);
        overlay(&mut self.device_family, patch.device_family);
        overlay(&mut self.model_identifier, patch.model_identifier);
        overlay(&mut self.mode, patch.mode);
        if let Some(last_input) = patch.last_input_seconds {
            self.last_input_seconds = last_input;
        }
        overlay(&mut self.reason, patch.reason);
        overlay(&mut self.device_id, patch.device_id);
        overlay(&mut self.client_id, patch.client_id);
        union_into(&mut self.roles, patch.roles);
        union_into(&mut self.scopes, patch.scopes);
        if let Some(text) = patch.text.filter(|t| !t.trim().is_empty()) {
            self.text = text.trim().to_owned();
        }
        if self.text.is_empty() {
            self.text = fallback_text(self.host.as_deref(), self.mode.as_deref());
        }
        self.clamp();
        self.ts = ts;
    }

    /// Cuts every field to its bound (see [`MAX_ENCODED_BYTES`]): strings
    /// at a character boundary, lists keeping their newest items. Merges
    /// call it; so do rows that arrive whole (fleet peers, the state file).
    pub fn clamp(&mut self) {
        for field in [
            &mut self.instance_id,
            &mut self.host,
            &mut self.ip,
            &mut self.version,
            &mut self.platform,
            &mut self.device_family,
            &mut self.model_identifier,
            &mut self.mode,
            &mut self.reason,
            &mut self.device_id,
            &mut self.client_id,
            &mut self.gateway_id,
        ]
        .into_iter()
        .flatten()
        {
            cut(field, MAX_FIELD_BYTES);
        }
        cut(&mut self.text, MAX_TEXT_BYTES);
        for list in [&mut self.roles, &mut self.scopes] {
            let over = list.len().saturating_sub(MAX_LIST_ITEMS);
            list.drain(..over);
            list.iter_mut().for_each(|item| cut(item, MAX_FIELD_BYTES));
        }
    }
}

/// Cuts `s` to at most `max` bytes, never inside a character.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

/// True if a patch value counts as carried (present and not blank).
pub(crate) fn carried(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.trim().is_empty())
}

/// The text an entry gets when nothing reported one.
pub fn fallback_text(host: Option<&str>, mode: Option<&str>) -> String {
    format!(
        "Node: {} · mode {}",
        host.unwrap_or("unknown"),
        mode.unwrap_or("unknown")
    )
}

/// True for 127.0.0.0/8, `::1` and IPv4-mapped loopback (`::ffff:127.x.y.z`).
/// Text that is not an IP address is not loopback.
pub fn is_loopback(ip: &str) -> bool {
    match ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

fn overlay(slot: &mut Option<String>, new: Option<String>) {
    if let Some(value) = new {
        let trimmed = value.trim();
        if !trimmed.is_empty() {
            *slot = Some(if trimmed.len() == value.len() {
                value
            } else {
                trimmed.to_owned()
            });
        }
    }
}

/// Appends the trimmed, non-blank items of `new` that `list` lacks, in order.
fn union_into(list: &mut Vec<String>, new: Vec<String>) {
    for item in new {
        let item = item.trim();
        if !item.is_empty() && !list.iter().any(|have| have == item) {
            list.push(item.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch_host(host: &str) -> Patch {
        Patch {
            host: Some(host.into()),
            ..Patch::default()
        }
    }

    #[test]
    fn merge_keeps_fields_the_patch_does_not_carry() {
        let mut entry = Entry::default();
        entry.merge(
            Patch {
                host: Some("mini".into()),
                version: Some("1.0".into()),
                ..Patch::default()
            },
            10,
        );
        entry.merge(
            Patch {
                version: Some("1.1".into()),
                ..Patch::default()
            },
            20,
        );
        assert_eq!(entry.host.as_deref(), Some("mini"));
        assert_eq!(entry.version.as_deref(), Some("1.1"));
        assert_eq!(entry.ts, 20);
    }

    #[test]
    fn blank_patch_strings_count_as_absent() {
        let mut entry = Entry::default();
        entry.merge(patch_host("mini"), 1);
        entry.merge(patch_host("   "), 2);
        assert_eq!(entry.host.as_deref(), Some("mini"));
        entry.merge(patch_host("  big "), 3);
        assert_eq!(entry.host.as_deref(), Some("big"));
    }

    #[test]
    fn roles_and_scopes_union_old_items_first() {
        let mut entry = Entry::default();
        entry.merge(
            Patch {
                roles: vec!["operator".into()],
                scopes: vec!["operator.read".into(), " ".into()],
                ..Patch::default()
            },
            1,
        );
        entry.merge(
            Patch {
                roles: vec![" node ".into(), "operator".into()],
                scopes: vec!["operator.admin".into(), "operator.read".into()],
                ..Patch::default()
            },
            2,
        );
        assert_eq!(entry.roles, ["operator", "node"]);
        assert_eq!(entry.scopes, ["operator.read", "operator.admin"]);
    }

    #[test]
    fn roles_and_scopes_keep_the_newest_sixteen() {
        let mut entry = Entry::default();
        for round in 0..100_i64 {
            let new = |kind: &str| (0..32).map(|i| format!("{kind}-{round}-{i}")).collect();
            entry.merge(
                Patch {
                    roles: new("role"),
                    scopes: new("scope"),
                    ..Patch::default()
                },
                round,
            );
            assert_eq!(entry.roles.len(), MAX_LIST_ITEMS);
            assert_eq!(entry.scopes.len(), MAX_LIST_ITEMS);
        }
        assert_eq!(entry.roles.first().unwrap(), "role-99-16");
        assert_eq!(entry.scopes.last().unwrap(), "scope-99-31");
    }

    #[test]
    fn a_row_at_every_limit_encodes_within_its_bound() {
        let huge = "\u{1}".repeat(10_000);
        let mut entry = Entry {
            instance_id: Some(huge.clone()),
            host: Some(huge.clone()),
            ip: Some(huge.clone()),
            version: Some(huge.clone()),
            platform: Some(huge.clone()),
            device_family: Some(huge.clone()),
            model_identifier: Some(huge.clone()),
            mode: Some(huge.clone()),
            last_input_seconds: Some(u64::MAX),
            reason: Some(huge.clone()),
            device_id: Some(huge.clone()),
            client_id: Some(huge.clone()),
            roles: vec![huge.clone(); 40],
            scopes: vec![huge.clone(); 40],
            gateway_id: Some(huge.clone()),
            text: huge.clone(),
            ts: i64::MAX,
        };
        entry.clamp();
        let json = serde_json::to_vec(&entry).unwrap();
        assert!(json.len() <= MAX_ENCODED_BYTES, "{} bytes", json.len());
        let mut multibyte = "é".repeat(200);
        cut(&mut multibyte, MAX_FIELD_BYTES - 1);
        assert_eq!(
            multibyte.len(),
            MAX_FIELD_BYTES - 2,
            "never inside a character"
        );
    }

    #[test]
    fn empty_text_falls_back_to_host_and_mode() {
        let mut entry = Entry::default();
        entry.merge(patch_host("mini"), 1);
        assert_eq!(entry.text, "Node: mini · mode unknown");
        let mut bare = Entry::default();
        bare.merge(Patch::default(), 1);
        assert_eq!(bare.text, "Node: unknown · mode unknown");
    }

    #[test]
    fn reported_text_replaces_old_text() {
        let mut entry = Entry::default();
        entry.merge(patch_host("mini"), 1);
        entry.merge(
            Patch {
                text: Some(" hello ".into()),
                ..Patch::default()
            },
            2,
        );
        assert_eq!(entry.text, "hello");
    }

    #[test]
    fn loopback_ip_is_never_recorded_and_keeps_old_ip() {
        let mut entry = Entry::default();
        entry.merge(
            Patch {
                ip: Some("10.0.0.7".into()),
                ..Patch::default()
            },
            1,
        );
        for loopback in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] {
            entry.merge(
                Patch {
                    ip: Some(loopback.into()),
                    ..Patch::default()
                },
                2,
            );
            assert_eq!(entry.ip.as_deref(), Some("10.0.0.7"), "{loopback}");
        }
        entry.merge(Patch::default(), 3);
        assert_eq!(entry.ip.as_deref(), Some("10.0.0.7"));
    }

    #[test]
    fn last_input_can_be_set_kept_and_cleared() {
        let mut entry = Entry::default();
        entry.merge(
            Patch {
                last_input_seconds: Some(Some(5)),
                ..Patch::default()
            },
            1,
        );
        entry.merge(Patch::default(), 2);
        assert_eq!(entry.last_input_seconds, Some(5));
        entry.merge(
            Patch {
                last_input_seconds: Some(None),
                ..Patch::default()
            },
            3,
        );
        assert_eq!(entry.last_input_seconds, None);
    }

    #[test]
    fn json_omits_unknown_fields_and_keeps_wire_order() {
        let mut entry = Entry::default();
        entry.merge(
            Patch {
                instance_id: Some("i-1".into()),
                host: Some("mini".into()),
                mode: Some("ui".into()),
                last_input_seconds: Some(Some(3)),
                roles: vec!["node".into()],
                ..Patch::default()
            },
            42,
        );
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            json,
            r#"{"instanceId":"i-1","host":"mini","mode":"ui","lastInputSeconds":3,"roles":["node"],"text":"Node: mini · mode ui","ts":42}"#
        );
    }
}
