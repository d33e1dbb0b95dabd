//! Reading a definition file and locating positions in it.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use std::net::Ipv4Addr;
use toml::Spanned;

use crate::cluster::is_dns_name;
use crate::error::DefError;
use crate::units::parse_size;

/// The text of one definition file, kept so byte spans from the parser can become lines.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// Reads `path`; a missing or unreadable file is a [`DefError`] naming it.
    pub fn read(path: &Path) -> Result<SourceFile, DefError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(SourceFile { path: path.to_path_buf(), text }),
            Err(err) => Err(DefError::new(path, None, "", format!("cannot read file: {err}"))),
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// 1-based line of the start of a span.
    pub fn line_of_span(&self, span: &Range<usize>) -> usize {
        self.line_of(span.start)
    }

    /// An error at a span of this file.
    pub fn error_at(&self, span: &Range<usize>, field: &str, message: impl Into<String>) -> DefError {
        DefError::new(&self.path, Some(self.line_of_span(span)), field, message)
    }

    /// The line of a field given by its dotted path (`cluster`, `machines[2]`, `hosts[1].ip`),
    /// for checks made after parsing, when the parser's spans are gone. A field the file does
    /// not give (a default, a generated value) takes the line of its nearest enclosing entry
    /// (`hosts[1]`); `None` when not even its first part is in the file.
    pub fn line_of_field(&self, field: &str) -> Option<usize> {
        use toml::de::{DeTable, DeValue};
        let root = DeTable::parse(&self.text).ok()?;
        let mut table = root.get_ref();
        let mut found: Option<&Spanned<DeValue>> = None;
        'path: for part in field.split('.') {
            let (key, indices) = part.split_once('[').unwrap_or((part, ""));
            if let Some(value) = found {
                match value.get_ref() {
                    DeValue::Table(inner) => table = inner,
                    _ => break,
                }
            }
            let Some((_, mut value)) = table.iter().find(|(k, _)| k.get_ref() == key) else { break };
            found = Some(value);
            for index in indices.split('[').map(|i| i.trim_end_matches(']')).filter(|i| !i.is_empty()) {
                let item = match (value.get_ref(), index.parse::<usize>()) {
                    (DeValue::Array(items), Ok(index)) => items.get(index),
                    _ => None,
                };
                let Some(item) = item else { break 'path };
                value = item;
                found = Some(value);
            }
        }
        found.map(|value| self.line_of_span(&value.span()))
    }

    /// An error in this file whose line is unknown (a missing field, say).
    pub fn error(&self, field: &str, message: impl Into<String>) -> DefError {
        DefError::new(&self.path, None, field, message)
    }

    /// Parses the whole file as TOML into `T`. Syntax and type errors carry the line the
    /// parser stopped at and, where the message names one, the field.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, DefError> {
        toml::from_str::<T>(&self.text).map_err(|err| {
            let line = err.span().map(|span| self.line_of_span(&span));
            let message = err.message().trim().to_string();
            let field = field_named_in(&message).unwrap_or_default();
            DefError::new(&self.path, line, field, message)
        })
    }
}

/// Collects the errors of one file while its fields are checked.
pub struct Checker<'a> {
    pub src: &'a SourceFile,
    pub errors: Vec<DefError>,
}

impl<'a> Checker<'a> {
    pub fn new(src: &'a SourceFile) -> Self {
        Checker { src, errors: Vec::new() }
    }
    pub fn at<T>(&mut self, spanned: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.errors.push(self.src.error_at(&spanned.span(), field, message));
    }
    pub fn missing(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(self.src.error(field, message));
    }
    /// A required field: its value, or an error naming it.
    pub fn required<'v, T>(&mut self, value: &'v Option<Spanned<T>>, field: &str) -> Option<&'v Spanned<T>> {
        if value.is_none() {
            self.missing(field, "is required");
        }
        value.as_ref()
    }
    pub fn ipv4(&mut self, value: &Spanned<String>, field: &str) -> Option<Ipv4Addr> {
        match value.get_ref().trim().parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.at(value, field, format!("`{}` is not an IPv4 address", value.get_ref()));
                None
            }
        }
    }
    pub fn size(&mut self, value: &Spanned<toml::Value>, field: &str) -> Option<u64> {
        let parsed = match value.get_ref() {
            toml::Value::String(text) => parse_size(text),
            toml::Value::Integer(n) if *n > 0 => Ok(*n as u64),
            toml::Value::Integer(n) => Err(format!("{n} is not a positive size")),
            other => Err(format!("expected a size like \"20G\", found {}", other.type_str())),
        };
        match parsed {
            Ok(bytes) => Some(bytes),
            Err(message) => {
                self.at(value, field, message);
                None
            }
        }
    }
    pub fn dns_name(&mut self, value: &Spanned<String>, field: &str) -> bool {
        let ok = is_dns_name(value.get_ref());
        if !ok {
            self.at(
                value,
                field,
                format!(
                    "`{}` is not a valid host name (letters, digits and `-` in dot-separated labels)",
                    value.get_ref()
                ),
            );
        }
        ok
    }
}

/// serde names the offending field in backquotes (`unknown field `x``, `missing field `y``).
fn field_named_in(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    let name = &message[start..start + len];
    let looks_like_field = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    (message.contains("field") && looks_like_field).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        let src = SourceFile { path: "x.toml".into(), text: "a = 1\nb = 2\n".into() };
        assert_eq!(src.line_of(0), 1);
        assert_eq!(src.line_of(6), 2);
        assert_eq!(src.line_of(1000), 3);
    }

    #[test]
    fn lines_of_fields() {
        let text = "name = \"c\"\nmachines = [\n  \"a\",\n  \"b\",\n]\n[network]\nip = \"10.0.0.1\"\n\n[[hosts]]\nname = \"h1\"\n[[hosts]]\nname = \"h2\"\nip = \"10.0.0.2\"\n";
        let src = SourceFile { path: "x.toml".into(), text: text.into() };
        assert_eq!(src.line_of_field("name"), Some(1));
        assert_eq!(src.line_of_field("machines[1]"), Some(4));
        assert_eq!(src.line_of_field("network.ip"), Some(7));
        assert_eq!(src.line_of_field("hosts[1].ip"), Some(13));
        assert_eq!(src.line_of_field("hosts[0].ip"), Some(9), "not given: the entry's line");
        assert_eq!(src.line_of_field("network.bridge"), Some(6), "not given: the table's line");
        assert_eq!(src.line_of_field("machines[7]"), Some(2));
        assert_eq!(src.line_of_field("cluster"), None);
    }

    #[test]
    fn unknown_field_is_named() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: Option<u32>,
        }
        let src = SourceFile { path: "x.toml".into(), text: "a = 1\nbogus = 2\n".into() };
        let err = src.parse::<T>().unwrap_err();
        assert_eq!(err.field, "bogus");
        assert_eq!(err.line, Some(2));
    }
}
