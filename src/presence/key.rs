//! Presence keys: the normalised name an entry is stored under.
//!
//! Invariant: a [`Key`] is never blank, and it is always the trimmed,
//! lowercased form of its source, so two spellings of one instance
//! (`Mac-Mini ` and `mac-mini`) always land on the same entry.

use arcstr::ArcStr;
use std::fmt;

/// A normalised presence key. Cheap to clone (one reference count), and
/// one pointer wide: every row holds its key twice (the store's slot and
/// the list's row), so a key is 8 bytes, not an `Arc<str>`'s 16 (issue 19).
/// Compared, ordered and hashed as its text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(ArcStr);

impl Key {
    /// Normalises `source` (trim, then lowercase). A blank source has no key.
    pub fn parse(source: &str) -> Option<Key> {
        let trimmed = source.trim();
        if trimmed.is_empty() {
            return None;
        }
        // Lowercasing can only grow or keep the text, never make it blank.
        // ASCII (the usual id) is lowercased without Unicode's tables, and
        // copied once when it is lowercase already.
        let key = if !trimmed.is_ascii() {
            ArcStr::from(trimmed.to_lowercase())
        } else if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
            ArcStr::from(trimmed.to_ascii_lowercase())
        } else {
            ArcStr::from(trimmed)
        };
        Some(Key(key))
    }

    /// Whether `source` normalises to this key (`Key::parse(source)` equals
    /// it), without allocating when `source` is ASCII.
    pub fn is_parsed_from(&self, source: &str) -> bool {
        let trimmed = source.trim();
        if trimmed.is_ascii() {
            // A key holds no ASCII capitals, so this is `parse` == self.
            return trimmed.eq_ignore_ascii_case(self.as_str());
        }
        Key::parse(trimmed).is_some_and(|key| key == *self)
    }

    /// The first source that is not blank, normalised.
    pub fn first_of<'a>(sources: impl IntoIterator<Item = Option<&'a str>>) -> Option<Key> {
        sources.into_iter().flatten().find_map(Key::parse)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_trimmed_and_lowercased() {
        assert_eq!(Key::parse("  Mac-Mini ").unwrap().as_str(), "mac-mini");
        assert_eq!(Key::parse("ÄBC").unwrap().as_str(), "äbc");
    }

    #[test]
    fn a_key_is_one_pointer() {
        // Two per row at a million rows (benches/README.md).
        assert_eq!(std::mem::size_of::<Key>(), 8);
        assert_eq!(std::mem::size_of::<Option<Key>>(), 8);
    }

    #[test]
    fn blank_key_counts_as_absent() {
        assert_eq!(Key::parse(""), None);
        assert_eq!(Key::parse(" \t\n"), None);
    }

    #[test]
    fn first_of_skips_blank_and_missing_sources() {
        let key = Key::first_of([None, Some("  "), Some("B"), Some("c")]);
        assert_eq!(key.unwrap().as_str(), "b");
        assert_eq!(Key::first_of([None, Some("")]), None);
    }

    #[test]
    fn is_parsed_from_matches_the_normalised_source() {
        let key = Key::parse("Mac-Mini").unwrap();
        assert!(key.is_parsed_from(" MAC-mini\t"));
        assert!(!key.is_parsed_from("mac-mini2"));
        assert!(!key.is_parsed_from("  "));
        let key = Key::parse("ÄBC").unwrap();
        assert!(key.is_parsed_from("äBc "));
        assert!(!key.is_parsed_from("abc"));
    }

    proptest::proptest! {
        #[test]
        fn is_parsed_from_agrees_with_parse(a in "[ aAbBÄäΣσς-]{0,6}", b in "[ aAbBÄäΣσς-]{0,6}") {
            if let Some(key) = Key::parse(&a) {
                proptest::prop_assert_eq!(key.is_parsed_from(&b), Key::parse(&b) == Some(key.clone()));
                proptest::prop_assert!(key.is_parsed_from(&a));
            }
        }
    }
}
