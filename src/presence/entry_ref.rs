//! An encoded entry read back without copying its strings ([`EntryRef`]),
//! and the merge of a patch onto it: the writer's path for a write to a
//! published row, whose entry is kept only as JSON (issue 19).
//!
//! Invariant: `EntryRef::parse(json).merged(patch, ts)` equals
//! `decode(json)` merged with `patch` at `ts` ([`Entry::merge`]), for every
//! `json` that [`encode`](super::row) wrote. Strings borrow from the JSON
//! unless they hold escapes; only the fields the patch does not replace
//! are copied into the result, so a beacon that reports most fields
//! costs one scan of the old row and few allocations, not a parse into
//! a dozen new `String`s that the merge then drops.

use super::entry::{Entry, Millis, Patch, carried, is_loopback};
use serde::Deserialize;
use serde::de::{Deserializer, Visitor};
use std::borrow::Cow;
use std::fmt;

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Borrowing<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Borrowing<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(value)))
            }

            fn visit_str<E>(self, value: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(value.to_owned())))
            }

            fn visit_string<E>(self, value: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(Borrowing(std::marker::PhantomData))
    }
}

impl Text<'_> {
    fn owned(&self) -> String {
        self.0.clone().into_owned()
    }
}

/// An [`Entry`] whose strings borrow from the JSON it was read from. The
/// fields are the entry's, in the same wire names.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct EntryRef<'a> {
    #[serde(borrow)]
    instance_id: Option<Text<'a>>,
    #[serde(borrow)]
    host: Option<Text<'a>>,
    #[serde(borrow)]
    ip: Option<Text<'a>>,
    #[serde(borrow)]
    version: Option<Text<'a>>,
    #[serde(borrow)]
    platform: Option<Text<'a>>,
    #[serde(borrow)]
    device_family: Option<Text<'a>>,
    #[serde(borrow)]
    model_identifier: Option<Text<'a>>,
    #[serde(borrow)]
    mode: Option<Text<'a>>,
    last_input_seconds: Option<u64>,
    #[serde(borrow)]
    reason: Option<Text<'a>>,
    #[serde(borrow)]
    device_id: Option<Text<'a>>,
    #[serde(borrow)]
    client_id: Option<Text<'a>>,
    #[serde(borrow)]
    roles: Vec<Text<'a>>,
    #[serde(borrow)]
    scopes: Vec<Text<'a>>,
    #[serde(borrow)]
    gateway_id: Option<Text<'a>>,
    #[serde(borrow)]
    text: Text<'a>,
    ts: Millis,
}

impl<'a> EntryRef<'a> {
    /// Reads back what `row::encode` wrote.
    pub(crate) fn parse(json: &'a [u8]) -> EntryRef<'a> {
        // Checked as UTF-8 once, whole, so the parser need not check each
        // string again.
        let json = std::str::from_utf8(json).expect("a row's json is text");
        serde_json::from_str(json).expect("a row's json is an encoded Entry")
    }

    /// The result of [`Entry::merge`] of `patch` at `ts` onto this entry,
    /// copying only the fields the patch does not replace.
    pub(crate) fn merged(&self, patch: Patch, ts: Millis) -> Entry {
        let keep = |new: &Option<String>, old: &Option<Text<'_>>| {
            if carried(new) {
                None
            } else {
                old.as_ref().map(Text::owned)
            }
        };
        let ip_replaced = patch
            .ip
            .as_deref()
            .is_some_and(|ip| !ip.trim().is_empty() && !is_loopback(ip));
        let mut next = Entry {
            instance_id: keep(&patch.instance_id, &self.instance_id),
            host: keep(&patch.host, &self.host),
            ip: if ip_replaced {
                None
            } else {
                self.ip.as_ref().map(Text::owned)
            },
            version: keep(&patch.version, &self.version),
            platform: keep(&patch.platform, &self.platform),
            device_family: keep(&patch.device_family, &self.device_family),
            model_identifier: keep(&patch.model_identifier, &self.model_identifier),
            mode: keep(&patch.mode, &self.mode),
            last_input_seconds: self.last_input_seconds,
            reason: keep(&patch.reason, &self.reason),
            device_id: keep(&patch.device_id, &self.device_id),
            client_id: keep(&patch.client_id, &self.client_id),
            roles: self.roles.iter().map(Text::owned).collect(),
            scopes: self.scopes.iter().map(Text::owned).collect(),
            gateway_id: self.gateway_id.as_ref().map(Text::owned),
            text: if carried(&patch.text) {
                String::new()
            } else {
                self.text.owned()
            },
            ts: self.ts,
        };
        next.merge(patch, ts);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::row::{decode, encode};

    fn old() -> Entry {
        let mut old = Entry::default();
        old.merge(
            Patch {
                instance_id: Some("Mini-1".into()),
                host: Some("mini \"quoted\" \\ é".into()),
                ip: Some("10.0.0.1".into()),
                version: Some("1.0".into()),
                mode: Some("ui".into()),
                device_id: Some("dev\u{1}ice".into()),
                roles: vec!["node".into(), "op\nerator".into()],
                scopes: vec!["operator.read".into()],
                text: Some("old \u{2028} text".into()),
                last_input_seconds: Some(Some(4)),
                ..Patch::default()
            },
            1,
        );
        old.gateway_id = Some("gw-a".into());
        old
    }

    fn patches() -> Vec<Patch> {
        vec![
            Patch::default(),
            Patch::reason("disconnect"),
            Patch {
                host: Some(" ".into()),
                ip: Some("127.0.0.1".into()),
                text: Some("  ".into()),
                ..Patch::default()
            },
            Patch {
                instance_id: Some("mini-2".into()),
                host: Some("big".into()),
                ip: Some("10.0.0.2".into()),
                version: Some("2.0".into()),
                platform: Some("darwin".into()),
                device_family: Some("Mac".into()),
                model_identifier: Some("Mac14,3".into()),
                mode: Some("node".into()),
                reason: Some("periodic".into()),
                device_id: Some("d2".into()),
                client_id: Some("c2".into()),
                text: Some("new".into()),
                roles: vec!["operator".into(), " node ".into()],
                scopes: (0..20).map(|i| format!("s{i}")).collect(),
                last_input_seconds: Some(None),
                ..Patch::default()
            },
        ]
    }

    #[test]
    fn merged_from_json_equals_merge_of_the_decoded_entry() {
        for old in [old(), Entry::default()] {
            let json = encode(&old);
            for patch in patches() {
                let mut expected = decode(&json);
                expected.merge(patch.clone(), 9);
                assert_eq!(EntryRef::parse(&json).merged(patch, 9), expected);
            }
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let json = encode(&old());
        let parsed = EntryRef::parse(&json);
        assert!(matches!(parsed.mode, Some(Text(Cow::Borrowed("ui")))));
        assert!(matches!(parsed.host, Some(Text(Cow::Owned(_)))));
        assert_eq!(parsed.host.unwrap().0, "mini \"quoted\" \\ é");
    }
}
