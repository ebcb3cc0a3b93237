//! Redis is a trust boundary (docs/protocol.md §8): every row read from a hash
//! or a change message is checked here, like client input, before it can
//! reach the store. Pure: the fleet task passes the reader's clock.
//!
//! What a row that passes holds:
//! - a key and string fields within the client limits (§5.2), `roles`
//!   and `scopes` within the merge bound (§5.1); a longer string is
//!   refused, not cut (no honest gateway writes one);
//! - a `ts` no later than the reader's clock plus the allowed skew, so a
//!   peer whose clock runs ahead can neither outlive the TTL nor sort
//!   ahead of local rows by more than the skew;
//! - `pinned` only on the origin's own self row (`mode: "gateway"`).

use crate::presence::{
    Entry, MAX_ENCODED_BYTES, MAX_FIELD_BYTES as MAX_FIELD_LEN, MAX_TEXT_BYTES as MAX_TEXT_LEN,
    Millis, RemoteRow,
};
use thiserror::Error;

/// The largest record parsed at all: a bounded entry's JSON, plus its key
/// (escaped at worst 6 bytes a byte) and the record's own fields.
pub const MAX_RECORD_BYTES: usize = MAX_ENCODED_BYTES + 6 * MAX_FIELD_LEN + 64;
/// The largest change message parsed: a batch of a few hundred rows.
/// A bigger one is not parsed; its origin's hash is reloaded instead.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Why a row from Redis was refused (it is dropped, never half-applied).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Invalid {
    /// A field is longer than a client may send.
    #[error("field {field} is {len} bytes (at most {max})")]
    FieldTooLong {
        /// The wire name of the field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The record is larger than any valid one.
    #[error("record is {0} bytes (at most {MAX_RECORD_BYTES})")]
    RecordTooLarge(usize),
    /// The record is not a record.
    #[error("record does not parse: {0}")]
    Malformed(String),
    /// The key is blank.
    #[error("key is blank")]
    BlankKey,
}

/// The reader's side of the boundary: its clock bound.
#[derive(Debug, Clone, Copy)]
pub struct Screen {
    /// How far ahead of the reader's clock a `ts` may be.
    pub max_skew: Millis,
}

impl Screen {
    /// Checks `row` read at `now`, clamping its `ts` and bounding its
    /// arrays. `pinned_ok` says whether this key may be the origin's self
    /// row. Returns whether `ts` had to be clamped.
    pub fn check(
        &self,
        row: &mut RemoteRow,
        now: Millis,
        pinned_ok: bool,
    ) -> Result<bool, Invalid> {
        bounded("key", row.key.as_str(), MAX_FIELD_LEN)?;
        check_entry(&mut row.entry)?;
        row.pinned &= pinned_ok && row.entry.mode.as_deref() == Some("gateway");
        let latest = now.saturating_add(self.max_skew);
        let clamped = row.entry.ts > latest;
        row.entry.ts = row.entry.ts.clamp(0, latest);
        Ok(clamped)
    }
}

impl Screen {
    /// Parses and checks the records of one hash, read at `now`: the
    /// valid rows (at most one of them pinned), why each other one was
    /// refused, and how many had their `ts` clamped.
    pub fn hash(&self, raw: Vec<(String, Vec<u8>)>, now: Millis) -> Screened {
        let mut pinned = false;
        let mut out = Screened {
            rows: Vec::with_capacity(raw.len()),
            refused: Vec::new(),
            clamped: 0,
        };
        for (key, bytes) in raw {
            let checked = parse_record(&bytes).and_then(|mut row| {
                let may_pin = row.pinned && !pinned;
                self.check(&mut row, now, may_pin)
                    .map(|clamped| (row, clamped))
            });
            match checked {
                Ok((row, clamped)) => {
                    pinned |= row.pinned;
                    out.clamped += u64::from(clamped);
                    out.rows.push(row);
                }
                Err(error) => out.refused.push((key, error)),
            }
        }
        out
    }
}

/// One hash after [`Screen::hash`].
#[derive(Debug, Default)]
pub struct Screened {
    /// The rows that passed, `ts` clamped, arrays bounded.
    pub rows: Vec<RemoteRow>,
    /// Each refused field's key and why.
    pub refused: Vec<(String, Invalid)>,
    /// How many rows had a `ts` past the skew bound.
    pub clamped: u64,
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<(), Invalid> {
    if value.len() > max {
        return Err(Invalid::FieldTooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// String fields within the client limits; arrays cut to the merge bound
/// (the newest items stay, as the merge keeps them).
fn check_entry(entry: &mut Entry) -> Result<(), Invalid> {
    let fields = [
        ("instanceId", &entry.instance_id),
        ("host", &entry.host),
        ("ip", &entry.ip),
        ("version", &entry.version),
        ("platform", &entry.platform),
        ("deviceFamily", &entry.device_family),
        ("modelIdentifier", &entry.model_identifier),
        ("mode", &entry.mode),
        ("reason", &entry.reason),
        ("deviceId", &entry.device_id),
        ("clientId", &entry.client_id),
        ("gatewayId", &entry.gateway_id),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            bounded(field, value, MAX_FIELD_LEN)?;
        }
    }
    bounded("text", &entry.text, MAX_TEXT_LEN)?;
    for (field, items) in [("roles", &entry.roles), ("scopes", &entry.scopes)] {
        for item in items {
            bounded(field, item, MAX_FIELD_LEN)?;
        }
    }
    // Lists over the merge bound keep their newest items, as a merge would.
    entry.clamp();
    Ok(())
}

/// Parses one stored record, refusing oversized ones before parsing.
pub fn parse_record(bytes: &[u8]) -> Result<RemoteRow, Invalid> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(Invalid::RecordTooLarge(bytes.len()));
    }
    let record: super::wire::Record =
        serde_json::from_slice(bytes).map_err(|e| Invalid::Malformed(e.to_string()))?;
    record.into_row().ok_or(Invalid::BlankKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Key, MAX_LIST_ITEMS};

    const SCREEN: Screen = Screen { max_skew: 5_000 };

    fn row(ts: Millis) -> RemoteRow {
        RemoteRow {
            key: Key::parse("k").unwrap(),
            entry: Entry {
                text: "t".into(),
                mode: Some("ui".into()),
                ts,
                ..Entry::default()
            },
            live: true,
            pinned: true,
        }
    }

    #[test]
    fn a_ts_from_the_future_is_clamped_to_the_skew_bound() {
        let mut future = row(4_102_444_800_000);
        assert_eq!(SCREEN.check(&mut future, 1_000_000, false), Ok(true));
        assert_eq!(future.entry.ts, 1_005_000);
        let mut fine = row(1_004_000);
        assert_eq!(SCREEN.check(&mut fine, 1_000_000, false), Ok(false));
        assert_eq!(fine.entry.ts, 1_004_000);
        let mut negative = row(-5);
        SCREEN.check(&mut negative, 1_000_000, false).unwrap();
        assert_eq!(negative.entry.ts, 0);
    }

    #[test]
    fn pinned_holds_only_for_the_origins_gateway_row() {
        let mut client = row(1);
        SCREEN.check(&mut client, 10, true).unwrap();
        assert!(!client.pinned, "a client row is never pinned");
        let mut own = row(1);
        own.entry.mode = Some("gateway".into());
        SCREEN.check(&mut own, 10, true).unwrap();
        assert!(own.pinned);
        let mut second = row(1);
        second.entry.mode = Some("gateway".into());
        SCREEN.check(&mut second, 10, false).unwrap();
        assert!(!second.pinned, "only one self row per node");
    }

    #[test]
    fn oversized_fields_are_refused_and_arrays_cut_to_the_merge_bound() {
        let mut long = row(1);
        long.entry.host = Some("h".repeat(MAX_FIELD_LEN + 1));
        assert_eq!(
            SCREEN.check(&mut long, 10, false),
            Err(Invalid::FieldTooLong {
                field: "host",
                len: MAX_FIELD_LEN + 1,
                max: MAX_FIELD_LEN
            })
        );
        let mut text = row(1);
        text.entry.text = "t".repeat(MAX_TEXT_LEN + 1);
        assert!(SCREEN.check(&mut text, 10, false).is_err());
        let mut many = row(1);
        many.entry.roles = (0..40).map(|i| format!("r{i}")).collect();
        SCREEN.check(&mut many, 10, false).unwrap();
        assert_eq!(many.entry.roles.len(), MAX_LIST_ITEMS);
        assert_eq!(many.entry.roles[0], "r24", "the newest items stay");
    }

    #[test]
    fn a_hash_keeps_its_valid_rows_and_one_pinned_row() {
        let record = |key: &str| {
            format!(r#"{{"key":"{key}","live":true,"pinned":true,"entry":{{"mode":"gateway","text":"t","ts":1}}}}"#)
                .into_bytes()
        };
        let raw = vec![
            ("a".to_string(), record("a")),
            ("b".to_string(), record("b")),
            ("c".to_string(), b"nope".to_vec()),
        ];
        let Screened { rows, refused, .. } = SCREEN.hash(raw, 10);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.iter().filter(|r| r.pinned).count(), 1);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "c");
    }

    #[test]
    fn records_are_bounded_before_they_are_parsed() {
        let huge = vec![b' '; MAX_RECORD_BYTES + 1];
        assert_eq!(
            parse_record(&huge),
            Err(Invalid::RecordTooLarge(MAX_RECORD_BYTES + 1))
        );
        assert!(matches!(parse_record(b"{"), Err(Invalid::Malformed(_))));
        let blank = br#"{"key":" ","entry":{"ts":1}}"#;
        assert_eq!(parse_record(blank), Err(Invalid::BlankKey));
        let fine = br#"{"key":"k","live":true,"entry":{"text":"t","ts":1}}"#;
        assert!(parse_record(fine).unwrap().live);
    }
}
