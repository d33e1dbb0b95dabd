//! Escaping for XML 1.0 (and HTML, which takes the same): what scripts print can hold any
//! character, and a report must stay well-formed whatever they printed.
//!
//! Characters XML 1.0 does not allow at all (control characters but tab, newline and
//! carriage return; U+FFFE and U+FFFF) cannot even be written as references, so they are
//! replaced by U+FFFD, the replacement character: a reader sees that something was there.

/// Whether XML 1.0 allows `c` in a document (`Char` of the XML 1.0 grammar; Rust's `char`
/// is never a surrogate).
pub fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Text content: `&`, `<`, `>` escaped, carriage returns kept as references (a parser would
/// turn them into newlines), disallowed characters replaced.
pub fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if allowed(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// An attribute value (in double or single quotes): as [`text`], plus both quotes, and
/// tabs and newlines as references so that the parser's attribute normalization keeps them.
pub fn attr(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if allowed(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(text("a < b && c > d \"q\" 'q'"), "a &lt; b &amp;&amp; c &gt; d \"q\" 'q'");
        assert_eq!(attr("a<b&\"c\"'d'"), "a&lt;b&amp;&quot;c&quot;&#39;d&#39;");
        assert_eq!(attr("two\nlines\tand\r"), "two&#10;lines&#9;and&#13;");
        assert_eq!(text("keep\nnewlines\tand tabs\r"), "keep\nnewlines\tand tabs&#13;");
    }

    #[test]
    fn characters_xml_forbids_are_replaced() {
        // NUL, BEL, ESC (colour codes), vertical tab, form feed, U+FFFE, U+FFFF.
        let raw = "a\u{0}b\u{7}c\u{1b}[31md\u{b}\u{c}e\u{FFFE}\u{FFFF}f";
        assert_eq!(text(raw), "a\u{FFFD}b\u{FFFD}c\u{FFFD}[31md\u{FFFD}\u{FFFD}e\u{FFFD}\u{FFFD}f");
        assert_eq!(attr(raw), text(raw));
        // Allowed at the edges of the ranges.
        for c in ['\u{20}', '\u{D7FF}', '\u{E000}', '\u{FFFD}', '\u{10000}', '\u{10FFFF}', 'é', '€'] {
            assert!(allowed(c), "{c:?}");
            assert_eq!(text(&c.to_string()), c.to_string());
        }
        // DEL and C1 controls are allowed (discouraged) in XML 1.0.
        assert!(allowed('\u{7f}') && allowed('\u{85}'));
    }
}
