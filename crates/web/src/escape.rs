//! Text made safe for where the web puts it, for what is built in code rather than in a
//! template: the login and file pages, the trends chart, links and redirects.
//!
//! - [`html`]: askama's own HTML escaper, the one every template uses; its numeric
//!   references (`&#60;`, `&#38;`, `&#39;`...) are valid in HTML and XML alike, so it serves
//!   the SVG chart too.
//! - [`url_component`], [`url_path`]: percent-encoding with the sets of askama's
//!   `urlencode_strict` and `urlencode` filters, so that links built in code and in templates
//!   agree.

use askama::filters::Escaper;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters (letters, digits, `-._~`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// The same, `/` kept.
const PATH: &AsciiSet = &COMPONENT.remove(b'/');

/// Text made safe for HTML and XML content and quoted attribute values.
pub fn html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    // Writing to a String cannot fail.
    let _ = askama::filters::Html.write_escaped_str(&mut escaped, text);
    escaped
}

/// Percent-encodes a path segment or a query value (`/` too).
pub fn url_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Percent-encodes a path to carry in a query value, keeping its `/`.
pub fn url_path(text: &str) -> String {
    utf8_percent_encode(text, PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ASCII character and some beyond.
    fn samples() -> Vec<String> {
        let mut all: Vec<String> = (0u8..128).map(|b| (b as char).to_string()).collect();
        all.extend(["é", "ünï/code", "a b&c=d?e#f", "100%", "\u{1F600}"].map(String::from));
        all
    }

    #[test]
    fn urls_are_encoded_as_the_templates_encode_them() {
        for text in samples() {
            let strict = askama::filters::urlencode_strict(&text).unwrap().to_string();
            assert_eq!(url_component(&text), strict, "{text:?}");
            let keeping_slashes = askama::filters::urlencode(&text).unwrap().to_string();
            assert_eq!(url_path(&text), keeping_slashes, "{text:?}");
        }
        assert_eq!(url_component("ts_ok-1.2~x"), "ts_ok-1.2~x");
        assert_eq!(url_component("a/b c&é"), "a%2Fb%20c%26%C3%A9");
        assert_eq!(url_path("/sessions?suite=a&x=é"), "/sessions%3Fsuite%3Da%26x%3D%C3%A9");
    }

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(html("<a href=\"x\">'&'</a>"), "&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;");
        assert_eq!(html("plain ünï text"), "plain ünï text");
    }
}
