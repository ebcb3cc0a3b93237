//! Typed reads of fields from a JSON params object, and `ParamError`, which names the field and
//! the rule it broke.
//!
//! Invariants: a field path is written the way the client sees it (`client.mode`, `auth.token`);
//! the key looked up is its last segment. A JSON `null` counts as an absent field, so clients that
//! write `"displayName": null` are treated like clients that leave it out. Limits are checked
//! before anything is copied, so an oversized field costs no allocation.

use simd_json::prelude::*;

use super::frame::Params;

/// A params field that is missing, of the wrong type, or over a limit.
///
/// `Display` is the WHY of `invalid METHOD params: WHY`; every variant names the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A required field is absent or `null`.
    #[error("{field} is required")]
    Required {
        /// Path of the field, e.g. `client.id`.
        field: &'static str,
    },
    /// A field has the wrong JSON type, or a number is out of range.
    #[error("{field} must be {expected}")]
    WrongType {
        /// Path of the field.
        field: &'static str,
        /// What it must be, as a noun phrase: `a string`, `an integer >= 1`.
        expected: &'static str,
    },
    /// A string that must carry text is empty (or, where noted, blank).
    #[error("{field} must be non-empty")]
    Empty {
        /// Path of the field.
        field: &'static str,
    },
    /// A string is longer than its limit, in UTF-8 bytes.
    #[error("{field} exceeds {limit} bytes")]
    TooLong {
        /// Path of the field.
        field: &'static str,
        /// The largest accepted length in bytes.
        limit: usize,
    },
    /// An array has more items than its limit.
    #[error("{field} exceeds {limit} items")]
    TooManyItems {
        /// Path of the field.
        field: &'static str,
        /// The largest accepted number of items.
        limit: usize,
    },
    /// An item of an array has the wrong JSON type.
    #[error("{field}[{index}] must be {expected}")]
    ItemWrongType {
        /// Path of the array.
        field: &'static str,
        /// Zero-based position of the offending item.
        index: usize,
        /// What each item must be.
        expected: &'static str,
    },
    /// An item of an array is longer than its limit, in UTF-8 bytes.
    #[error("{field}[{index}] exceeds {limit} bytes")]
    ItemTooLong {
        /// Path of the array.
        field: &'static str,
        /// Zero-based position of the offending item.
        index: usize,
        /// The largest accepted item length in bytes.
        limit: usize,
    },
    /// A string is not one of the values the field allows.
    #[error("{field} must be one of {allowed}")]
    NotOneOf {
        /// Path of the field.
        field: &'static str,
        /// The allowed values, comma-separated.
        allowed: &'static str,
    },
}

impl ParamError {
    /// Path of the field the error is about, e.g. `client.mode`.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Required { field }
            | Self::WrongType { field, .. }
            | Self::Empty { field }
            | Self::TooLong { field, .. }
            | Self::TooManyItems { field, .. }
            | Self::ItemWrongType { field, .. }
            | Self::ItemTooLong { field, .. }
            | Self::NotOneOf { field, .. } => field,
        }
    }
}

/// A JSON object being read field by field, in place in the frame.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    /// The object; only read, never changed.
    map: Params<'a>,
}

impl<'a> Fields<'a> {
    /// The request's params, which must be an object.
    pub(crate) fn params(params: Option<Params<'a>>) -> Result<Self, ParamError> {
        params
            .filter(Params::is_object)
            .map(|map| Self { map })
            .ok_or(ParamError::WrongType {
                field: "params",
                expected: "an object",
            })
    }

    /// The field at `path` as sent, `null` included.
    pub(crate) fn raw(&self, path: &'static str) -> Option<Params<'a>> {
        let key = path.rsplit_once('.').map_or(path, |(_, key)| key);
        self.map.get(key)
    }

    /// The field at `path`, with `null` read as absent.
    fn value(&self, path: &'static str) -> Option<Params<'a>> {
        self.raw(path).filter(|value| !value.is_null())
    }

    /// A required, non-empty string of at most `max_len` bytes.
    pub(crate) fn required_str(
        &self,
        path: &'static str,
        max_len: usize,
    ) -> Result<&'a str, ParamError> {
        let text = self
            .optional_str(path, max_len)?
            .ok_or(ParamError::Required { field: path })?;
        if text.is_empty() {
            return Err(ParamError::Empty { field: path });
        }
        Ok(text)
    }

    /// An optional string of at most `max_len` bytes, as sent (empty strings included).
    pub(crate) fn optional_str(
        &self,
        path: &'static str,
        max_len: usize,
    ) -> Result<Option<&'a str>, ParamError> {
        let Some(value) = self.value(path) else {
            return Ok(None);
        };
        let text = value.into_string().ok_or(ParamError::WrongType {
            field: path,
            expected: "a string",
        })?;
        if text.len() > max_len {
            return Err(ParamError::TooLong {
                field: path,
                limit: max_len,
            });
        }
        Ok(Some(text))
    }

    /// An optional string of at most `max_len` bytes; blank (empty or all-whitespace) reads
    /// as absent, matching the presence rule that a blank value is no value (§5.1).
    pub(crate) fn optional_text(
        &self,
        path: &'static str,
        max_len: usize,
    ) -> Result<Option<String>, ParamError> {
        Ok(self.optional_text_ref(path, max_len)?.map(str::to_owned))
    }

    /// [`Self::optional_text`], borrowed from the frame.
    pub(crate) fn optional_text_ref(
        &self,
        path: &'static str,
        max_len: usize,
    ) -> Result<Option<&'a str>, ParamError> {
        Ok(self
            .optional_str(path, max_len)?
            .filter(|text| !text.trim().is_empty()))
    }

    /// An optional array of strings (absent reads as empty), with at most `max_items` items of
    /// at most `max_item_len` bytes each.
    pub(crate) fn string_array(
        &self,
        path: &'static str,
        max_items: usize,
        max_item_len: usize,
    ) -> Result<Vec<String>, ParamError> {
        let items = self.string_array_ref(path, max_items, max_item_len)?;
        Ok(items.into_iter().map(str::to_owned).collect())
    }

    /// [`Self::string_array`], borrowed from the frame.
    pub(crate) fn string_array_ref(
        &self,
        path: &'static str,
        max_items: usize,
        max_item_len: usize,
    ) -> Result<Vec<&'a str>, ParamError> {
        let Some(value) = self.value(path) else {
            return Ok(Vec::new());
        };
        let items = value.as_array().ok_or(ParamError::WrongType {
            field: path,
            expected: "an array of strings",
        })?;
        if items.len() > max_items {
            return Err(ParamError::TooManyItems {
                field: path,
                limit: max_items,
            });
        }
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let text = item.into_string().ok_or(ParamError::ItemWrongType {
                    field: path,
                    index,
                    expected: "a string",
                })?;
                if text.len() > max_item_len {
                    return Err(ParamError::ItemTooLong {
                        field: path,
                        index,
                        limit: max_item_len,
                    });
                }
                Ok(text)
            })
            .collect()
    }

    /// Checks that an optional field, if present, is an array of strings; nothing is copied.
    pub(crate) fn check_string_array(&self, path: &'static str) -> Result<(), ParamError> {
        let Some(value) = self.value(path) else {
            return Ok(());
        };
        let items = value.as_array().ok_or(ParamError::WrongType {
            field: path,
            expected: "an array of strings",
        })?;
        match items.iter().position(|item| item.as_str().is_none()) {
            Some(index) => Err(ParamError::ItemWrongType {
                field: path,
                index,
                expected: "a string",
            }),
            None => Ok(()),
        }
    }

    /// Checks that an optional field, if present, is an object whose values are booleans.
    pub(crate) fn check_bool_map(&self, path: &'static str) -> Result<(), ParamError> {
        let Some(value) = self.value(path) else {
            return Ok(());
        };
        let wrong = ParamError::WrongType {
            field: path,
            expected: "an object of booleans",
        };
        let map = value.as_object().ok_or(wrong.clone())?;
        if map.values().all(|item| item.as_bool().is_some()) {
            Ok(())
        } else {
            Err(wrong)
        }
    }

    /// A required object.
    pub(crate) fn required_object(&self, path: &'static str) -> Result<Self, ParamError> {
        self.optional_object(path)?
            .ok_or(ParamError::Required { field: path })
    }

    /// An optional object.
    pub(crate) fn optional_object(&self, path: &'static str) -> Result<Option<Self>, ParamError> {
        let Some(value) = self.value(path) else {
            return Ok(None);
        };
        Some(value)
            .filter(Params::is_object)
            .map(|map| Some(Self { map }))
            .ok_or(ParamError::WrongType {
                field: path,
                expected: "an object",
            })
    }

    /// A required integer no smaller than `min`; `expected` describes the rule for the error.
    /// An optional non-negative integer; `null` counts as absent.
    pub(crate) fn optional_u64(
        &self,
        path: &'static str,
        expected: &'static str,
    ) -> Result<Option<u64>, ParamError> {
        match self.value(path) {
            None => Ok(None),
            Some(value) if value.is_null() => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or(ParamError::WrongType {
                field: path,
                expected,
            }),
        }
    }

    pub(crate) fn required_u64_at_least(
        &self,
        path: &'static str,
        min: u64,
        expected: &'static str,
    ) -> Result<u64, ParamError> {
        let value = self
            .value(path)
            .ok_or(ParamError::Required { field: path })?;
        value
            .as_u64()
            .filter(|number| *number >= min)
            .ok_or(ParamError::WrongType {
                field: path,
                expected,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Params<'static> {
        crate::protocol::frame::test_params(json.as_bytes())
    }

    #[test]
    fn missing_or_non_object_params_are_rejected() {
        let expected = ParamError::WrongType {
            field: "params",
            expected: "an object",
        };
        assert_eq!(Fields::params(None).err(), Some(expected.clone()));
        assert_eq!(
            Fields::params(Some(object("[1]"))).err(),
            Some(expected.clone())
        );
        assert_eq!(expected.to_string(), "params must be an object");
    }

    #[test]
    fn nested_paths_look_up_their_last_segment() {
        let value = object(r#"{"mode":"cli"}"#);
        let fields = Fields::params(Some(value)).unwrap();
        assert_eq!(fields.required_str("client.mode", 8), Ok("cli"));
    }

    #[test]
    fn null_reads_as_absent() {
        let value = object(r#"{"a":null,"b":null}"#);
        let fields = Fields::params(Some(value)).unwrap();
        assert_eq!(fields.optional_str("a", 8), Ok(None));
        assert_eq!(
            fields.required_str("b", 8),
            Err(ParamError::Required { field: "b" })
        );
        assert!(fields.raw("a").is_some_and(|v| v.is_null()));
    }

    #[test]
    fn string_limits_count_bytes_not_chars() {
        // "é" is two bytes in UTF-8.
        let value = object(r#"{"s":"éé"}"#);
        let fields = Fields::params(Some(value)).unwrap();
        assert_eq!(fields.optional_str("s", 4), Ok(Some("éé")));
        assert_eq!(
            fields.optional_str("s", 3),
            Err(ParamError::TooLong {
                field: "s",
                limit: 3
            })
        );
    }

    #[test]
    fn array_item_errors_name_the_index() {
        let value = object(r#"{"xs":["a",1],"ys":["a","bbbb"]}"#);
        let fields = Fields::params(Some(value)).unwrap();
        let err = fields.string_array("xs", 8, 8).unwrap_err();
        assert_eq!(err.to_string(), "xs[1] must be a string");
        let err = fields.string_array("ys", 8, 3).unwrap_err();
        assert_eq!(err.to_string(), "ys[1] exceeds 3 bytes");
        let err = fields.string_array("ys", 1, 8).unwrap_err();
        assert_eq!(err.to_string(), "ys exceeds 1 items");
    }

    #[test]
    fn blank_optional_text_reads_as_absent() {
        let value = object(r#"{"a":"  ","b":" x "}"#);
        let fields = Fields::params(Some(value)).unwrap();
        assert_eq!(fields.optional_text("a", 8), Ok(None));
        assert_eq!(fields.optional_text("b", 8), Ok(Some(" x ".to_owned())));
    }

    #[test]
    fn bool_map_rejects_non_boolean_values() {
        let value = object(r#"{"ok":{"a":true,"b":false},"bad":{"a":1},"arr":[]}"#);
        let fields = Fields::params(Some(value)).unwrap();
        assert_eq!(fields.check_bool_map("ok"), Ok(()));
        assert_eq!(
            fields.check_bool_map("bad").unwrap_err().to_string(),
            "bad must be an object of booleans"
        );
        assert!(fields.check_bool_map("arr").is_err());
    }

    #[test]
    fn every_error_reports_its_field() {
        let errors = [
            ParamError::Required { field: "f" },
            ParamError::WrongType {
                field: "f",
                expected: "a string",
            },
            ParamError::Empty { field: "f" },
            ParamError::TooLong {
                field: "f",
                limit: 1,
            },
            ParamError::TooManyItems {
                field: "f",
                limit: 1,
            },
            ParamError::ItemWrongType {
                field: "f",
                index: 0,
                expected: "a string",
            },
            ParamError::ItemTooLong {
                field: "f",
                index: 0,
                limit: 1,
            },
            ParamError::NotOneOf {
                field: "f",
                allowed: "a, b",
            },
        ];
        for err in errors {
            assert_eq!(err.field(), "f");
            assert!(err.to_string().starts_with('f'), "{err}");
        }
    }
}
