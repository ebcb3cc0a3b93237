//! Terminal safety: what the CLI prints of rows and reports never carries
//! a raw control character. A row's `displayName` could otherwise hold
//! `ESC ] 52 ; c ; … BEL` (write the operator's clipboard), `ESC [ 8 m`
//! (hide what follows), a carriage return (overwrite a line) or a bidi
//! override (reorder it). Each such character is shown as `\u001b`, which
//! is also a valid escape inside a JSON string, so JSON output stays JSON.
//!
//! Escaped: C0 controls, DEL, C1 controls, and the bidi embedding,
//! override, isolate and mark characters.

use serde_json::Value;
use std::borrow::Cow;
use std::fmt::Write;

/// True for a character a terminal may act on instead of showing.
fn is_unsafe(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape<'a>(s: &'a str, keep: &[char]) -> Cow<'a, str> {
    if !s.chars().any(|c| is_unsafe(c) && !keep.contains(&c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) && !keep.contains(&c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` with every unsafe character (newlines and tabs too) shown as
/// `\uXXXX`: for one field of a table or a line of a report.
pub fn visible(s: &str) -> Cow<'_, str> {
    escape(s, &[])
}

/// JSON text with every unsafe character shown as `\uXXXX`, keeping the
/// newlines and tabs that lay it out. JSON escapes C0 controls inside
/// strings already; this also covers DEL, C1 and bidi characters, and
/// anything raw a server sent.
pub fn visible_json(s: &str) -> Cow<'_, str> {
    escape(s, &['\n', '\t'])
}

/// Escapes every string inside `value` (keys included) with [`visible`].
pub fn visible_strings(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(escaped) = visible(s) {
                *s = escaped;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(visible_strings),
        Value::Object(map) => {
            let unsafe_keys = map.keys().any(|k| matches!(visible(k), Cow::Owned(_)));
            if unsafe_keys {
                let old = std::mem::take(map);
                for (key, item) in old {
                    map.insert(visible(&key).into_owned(), item);
                }
            }
            map.values_mut().for_each(visible_strings);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The adversarial run's display name: clipboard write, then hidden text.
    const HOSTILE: &str =
        "\u{1b}]52;c;Y3VybCBldmlsfHNo\u{7}mini\u{1b}[8m\r\u{9b}2J\u{7f}\u{202e}txt";

    fn raw_controls(s: &str) -> usize {
        s.chars().filter(|&c| is_unsafe(c)).count()
    }

    #[test]
    fn every_control_is_shown_not_sent() {
        let shown = visible(HOSTILE);
        assert_eq!(raw_controls(&shown), 0, "{shown}");
        assert!(shown.starts_with("\\u001b]52;c;"), "{shown}");
        assert!(shown.contains("\\u0007mini\\u001b[8m\\u000d\\u009b2J\\u007f\\u202etxt"));
        assert!(matches!(visible("plain mini"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_output_stays_valid_json() {
        let list = json!([{ "host": HOSTILE }]);
        let text = serde_json::to_string_pretty(&list).unwrap();
        let shown = visible_json(&text);
        assert_eq!(raw_controls(&shown.replace(['\n', '\t'], "")), 0);
        let back: Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, list, "the escapes decode to the same strings");
    }

    #[test]
    fn strings_in_a_value_are_escaped_keys_included() {
        let mut value = json!({"rows": [{"host": HOSTILE}], "\u{1b}k": 1});
        visible_strings(&mut value);
        let host = value["rows"][0]["host"].as_str().unwrap();
        assert!(
            host.starts_with("\\u001b]52;c;") && raw_controls(host) == 0,
            "{host}"
        );
        assert_eq!(value["\\u001bk"], 1, "{value}");
    }
}
