//! Text from outside (a message's `Subject:` and `From:`, a server's reply) made safe to show:
//! the one place that decides which characters could drive a terminal or reorder what a reader
//! sees, and what replaces them. Every printer goes through it; what is stored stays as it came.
//!
//! Replaced: the C0 controls (tab and line ends included), DEL, the C1 controls (U+0080–U+009F:
//! many terminals read U+009B as CSI), and the bidirectional controls (U+061C, U+200E, U+200F,
//! U+202A–U+202E, U+2066–U+2069) that make `exe.pdf` read as `fdp.exe`. Tab, CR and LF become a
//! space — whitespace a folded header may well hold, shown as what it means. Everything else
//! becomes U+FFFD (�), visibly: the reader sees that something was removed, where a silent
//! deletion would let `\x1b[2J` pass for ordinary text and hide that the sender tried.

use std::borrow::Cow;

/// What stands for a replaced control that is not whitespace.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Whether `c` is a character no printer may pass through: C0, DEL, C1 or a bidi control.
pub fn is_control(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// One line: every control replaced, line ends included, so nothing from outside can start a
/// line of its own (a forged `error:`) either. For a field (a subject, an address, a reply).
pub fn line(text: &str) -> Cow<'_, str> {
    replace(text, false)
}

/// Lines of our own making that may hold text from outside: like [`line`], but `\n` is kept.
/// What the CLI applies to everything it prints.
pub fn text(text: &str) -> Cow<'_, str> {
    replace(text, true)
}

/// A JSON document (as serde_json writes it) with the controls it leaves raw — DEL, C1, the
/// bidi controls; it escapes C0 itself — written as `\uXXXX`. The same JSON value, every
/// character kept for the program that reads it, and nothing for a terminal to act on. Valid
/// because outside strings JSON holds only ASCII punctuation, letters and whitespace.
pub fn json(document: &str) -> Cow<'_, str> {
    // Raw tab and line ends can only be JSON's own whitespace, between tokens.
    let bad = |c: char| is_control(c) && !matches!(c, '\t' | '\n' | '\r');
    if !document.chars().any(bad) {
        return Cow::Borrowed(document);
    }
    let mut out = String::with_capacity(document.len() + 16);
    for c in document.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn replace(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let bad = |c: char| is_control(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(bad) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| match c {
                _ if !bad(c) => c,
                '\t' | '\r' | '\n' => ' ',
                _ => REPLACEMENT,
            })
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_lose_their_introducers_and_keep_their_text() {
        let cases = [
            // Erase the screen and home the cursor.
            ("a\x1b[2J\x1b[Hb", "a\u{fffd}[2J\u{fffd}[Hb"),
            // OSC 52: write the clipboard, ended by BEL.
            (
                "x\x1b]52;c;cm0gLXJmIH4K\x07y",
                "x\u{fffd}]52;c;cm0gLXJmIH4K\u{fffd}y",
            ),
            // CSI as the single C1 character U+009B.
            ("red \u{9b}31m text", "red \u{fffd}31m text"),
            // Right-to-left override: `fdp.exe` would show as `exe.pdf`.
            ("invoice \u{202e}fdp.exe", "invoice \u{fffd}fdp.exe"),
            // The other bidi controls, DEL, NUL and the ends of the C1 range.
            (
                "\u{61c}\u{200e}\u{200f}\u{202a}\u{2066}\u{2069}\x7f\0\u{80}\u{9f}",
                "\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}",
            ),
            // Whitespace becomes a space; a backspace (overprinting) does not survive.
            ("a\tb\r\nc\x08d", "a b  c\u{fffd}d"),
        ];
        for (input, want) in cases {
            assert_eq!(line(input), want, "{input:?}");
        }
    }

    #[test]
    fn ordinary_text_is_untouched_and_not_copied() {
        for s in ["", "Grüße aus Köln — ✓", "שלום עולם", "a\u{a0}b\u{2028}"] {
            assert!(matches!(line(s), Cow::Borrowed(_)), "{s:?}");
            assert!(matches!(text(s), Cow::Borrowed(_)), "{s:?}");
            assert!(matches!(json(s), Cow::Borrowed(_)), "{s:?}");
        }
    }

    #[test]
    fn text_keeps_line_breaks_but_not_carriage_returns() {
        assert_eq!(text("one\ntwo\r\x1b[1Athree"), "one\ntwo \u{fffd}[1Athree");
        assert_eq!(line("one\ntwo"), "one two");
    }

    #[test]
    fn json_escapes_what_serde_leaves_raw_and_reads_back_the_same() {
        let subject = "a\x1b]52;c;eA==\x07 \u{9b}2J \u{202e}gpj.exe\x7f";
        let document = serde_json::json!({ "subject": subject }).to_string();
        let safe = json(&document);
        assert!(!safe.chars().any(is_control), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["subject"], subject);
        assert!(
            safe.contains("\\u009b") && safe.contains("\\u202e"),
            "{safe}"
        );
    }
}
