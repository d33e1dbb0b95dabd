//! CSV text as RFC 4180 has it: fields separated by commas, records ended by CRLF, a field
//! holding a comma, a quote, CR or LF quoted with its quotes doubled.

use std::borrow::Cow;

/// One field, quoted when it needs to be.
pub fn field(text: &str) -> Cow<'_, str> {
    if text.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", text.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(text)
    }
}

/// Appends one record, its CRLF included.
pub fn push_record(out: &mut String, fields: &[&str]) {
    for (index, text) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&field(text));
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed_and_quotes_doubled() {
        assert_eq!(field("plain ünï"), "plain ünï");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("cr\r"), "\"cr\r\"");
        assert_eq!(field(""), "");
        let mut out = String::new();
        push_record(&mut out, &["x", "y,z", ""]);
        push_record(&mut out, &["1"]);
        assert_eq!(out, "x,\"y,z\",\r\n1\r\n");
    }
}
