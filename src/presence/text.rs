//! The `Node: HOST (IP) · app VERSION · last input N s ago · mode MODE · reason REASON`
//! beacon text, as OpenClaw nodes write it.
//!
//! The literals match ASCII-case-insensitively after trimming; the values
//! keep the case they were written in. A text that does not have the whole
//! form yields nothing: a half-parsed line is worse than none.

/// The values a well-formed beacon text carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedText<'a> {
    /// Host name: no spaces and no `(`.
    pub host: &'a str,
    /// The text between the parentheses.
    pub ip: &'a str,
    /// The app version.
    pub version: &'a str,
    /// The digits of `last input N s ago`.
    pub last_input_seconds: u64,
    /// The mode.
    pub mode: &'a str,
    /// Everything after `reason`.
    pub reason: &'a str,
}

/// The separator between the text's parts.
const DOT: char = '·';

/// Parses a beacon text; `None` unless it has the whole form.
pub fn parse(text: &str) -> Option<ParsedText<'_>> {
    let mut cur = Cursor(text.trim());
    cur.literal("node:")?;
    cur.skip_ws();
    let host = cur.take_while(|c| !c.is_whitespace() && c != '(');
    if host.is_empty() {
        return None;
    }
    cur.skip_ws();
    cur.literal("(")?;
    let ip = cur.take_while(|c| c != ')').trim();
    cur.literal(")")?;
    if ip.is_empty() {
        return None;
    }
    cur.separator()?;
    cur.word("app")?;
    let version = cur.value_until_dot()?;
    cur.separator()?;
    cur.literal("last")?;
    cur.word("input")?;
    let digits = cur.take_while(|c| c.is_ascii_digit());
    let last_input_seconds = digits.parse().ok()?;
    cur.skip_ws();
    cur.literal("s")?;
    cur.word("ago")?;
    cur.separator()?;
    cur.word("mode")?;
    let mode = cur.value_until_dot()?;
    cur.separator()?;
    cur.word("reason")?;
    let reason = cur.0.trim();
    if reason.is_empty() {
        return None;
    }
    Some(ParsedText {
        host,
        ip,
        version,
        last_input_seconds,
        mode,
        reason,
    })
}

/// Writes `text` in the form [`parse`] reads:
/// `Node: HOST (IP) · app VERSION · last input N s ago · mode MODE · reason REASON`.
/// The values are written as given; a value that breaks the form (a space
/// in the host, a `·` in the mode) does not parse back.
pub fn write(out: &mut impl std::fmt::Write, text: &ParsedText<'_>) -> std::fmt::Result {
    write!(
        out,
        "Node: {} ({}) {DOT} app {} {DOT} last input {} s ago {DOT} mode {} {DOT} reason {}",
        text.host, text.ip, text.version, text.last_input_seconds, text.mode, text.reason
    )
}

/// [`write()`] into a new string.
pub fn format(text: &ParsedText<'_>) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    write(&mut out, text).expect("write to String");
    out
}

/// The first `max` characters of `text`, never split inside a character.
pub fn prefix_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

struct Cursor<'a>(&'a str);

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        self.0 = self.0.trim_start();
    }

    /// Consumes an ASCII literal, ignoring ASCII case.
    fn literal(&mut self, lit: &str) -> Option<()> {
        let head = self.0.as_bytes().get(..lit.len())?;
        if head.eq_ignore_ascii_case(lit.as_bytes()) {
            // `lit` is ASCII and matched, so `lit.len()` is a char boundary.
            self.0 = &self.0[lit.len()..];
            Some(())
        } else {
            None
        }
    }

    /// A literal word followed by at least one whitespace character.
    fn word(&mut self, lit: &str) -> Option<()> {
        self.skip_ws();
        self.literal(lit)?;
        if !self.0.starts_with(char::is_whitespace) {
            return None;
        }
        self.skip_ws();
        Some(())
    }

    fn separator(&mut self) -> Option<()> {
        self.skip_ws();
        self.0 = self.0.strip_prefix(DOT)?;
        self.skip_ws();
        Some(())
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let end = self.0.find(|c| !keep(c)).unwrap_or(self.0.len());
        let (taken, rest) = self.0.split_at(end);
        self.0 = rest;
        taken
    }

    fn value_until_dot(&mut self) -> Option<&'a str> {
        let value = self.take_while(|c| c != DOT).trim();
        (!value.is_empty()).then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str =
        "Node: mac-mini (10.0.0.7) · app 2.1.0 · last input 3 s ago · mode ui · reason periodic";

    #[test]
    fn parses_the_whole_form() {
        let parsed = parse(LINE).unwrap();
        assert_eq!(
            parsed,
            ParsedText {
                host: "mac-mini",
                ip: "10.0.0.7",
                version: "2.1.0",
                last_input_seconds: 3,
                mode: "ui",
                reason: "periodic",
            }
        );
    }

    #[test]
    fn parse_reads_back_what_format_writes() {
        let text = ParsedText {
            host: "load-7",
            ip: "10.0.0.7",
            version: "0.1.0",
            last_input_seconds: 42,
            mode: "backend",
            reason: "periodic xxx",
        };
        let line = format(&text);
        assert_eq!(parse(&line), Some(text));
        assert_eq!(format(&parse(LINE).unwrap()), LINE);
    }

    #[test]
    fn literals_match_case_insensitively_and_values_keep_case() {
        let line = "  NODE: Mac-Mini (10.0.0.7) · APP 2.1.0-Beta · Last Input 12s ago · MODE UI · REASON Launch now ";
        let parsed = parse(line).unwrap();
        assert_eq!(parsed.host, "Mac-Mini");
        assert_eq!(parsed.version, "2.1.0-Beta");
        assert_eq!(parsed.last_input_seconds, 12);
        assert_eq!(parsed.mode, "UI");
        assert_eq!(parsed.reason, "Launch now");
    }

    #[test]
    fn non_ascii_values_parse() {
        let line = "Node: bürø (fe80::1) · app ✓1 · last input 0 s ago · mode nöde · reason 起動";
        let parsed = parse(line).unwrap();
        assert_eq!(parsed.host, "bürø");
        assert_eq!(parsed.ip, "fe80::1");
        assert_eq!(parsed.version, "✓1");
        assert_eq!(parsed.mode, "nöde");
        assert_eq!(parsed.reason, "起動");
    }

    #[test]
    fn partial_forms_yield_nothing() {
        for text in [
            "hello",
            "Node: mini",
            "Node: (10.0.0.7) · app 1 · last input 3 s ago · mode ui · reason x",
            "Node: mini () · app 1 · last input 3 s ago · mode ui · reason x",
            "Node: mini (10.0.0.7) · app 1 · last input x s ago · mode ui · reason x",
            "Node: mini (10.0.0.7) · app 1 · last input 3 s ago · mode ui · reason ",
            "Node: mini (10.0.0.7) · app  · last input 3 s ago · mode ui · reason x",
            "Node: mini (10.0.0.7) app 1 · last input 3 s ago · mode ui · reason x",
            "Node: mini (10.0.0.7) · app 1 · last input 99999999999999999999999 s ago · mode ui · reason x",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn host_stops_at_parenthesis() {
        let parsed =
            parse("Node: mini(10.0.0.7) · app 1 · last input 3 s ago · mode ui · reason x")
                .unwrap();
        assert_eq!(parsed.host, "mini");
    }

    #[test]
    fn prefix_never_splits_a_character() {
        assert_eq!(prefix_chars("abc", 64), "abc");
        let text = "é".repeat(70);
        let cut = prefix_chars(&text, 64);
        assert_eq!(cut.chars().count(), 64);
        assert_eq!(cut.len(), 128);
        assert_eq!(prefix_chars("日本語", 2), "日本");
    }
}
