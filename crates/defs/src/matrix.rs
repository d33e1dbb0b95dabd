//! Case instances: a test case with a `[matrix]` or `[[parametrize]]` in its `case.toml`
//! runs once per combination of values, each an instance with its own name and tags.
//!
//! `[matrix]` gives each key a list of values (or a range, `{ from, to, samples, scale }`)
//! and expands into every combination, keys in the order the file writes them, the first
//! key varying slowest. `[[parametrize]]` lists the combinations one entry at a time.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::source::Checker;
use crate::tags::{is_tag_name, BUILTIN_TAGS};

/// At most this many instances per case (a matrix's product, or `[[parametrize]]` entries).
pub const MAX_INSTANCES: usize = 1000;

/// One instance of a test case: its values, in declared key order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CaseInstance {
    /// `case` for a case without a matrix, else `case[size=64,mode=sync]`.
    pub name: String,
    pub params: Vec<(String, String)>,
}

impl CaseInstance {
    /// The one instance of a case without a matrix.
    pub fn plain(case: &str) -> CaseInstance {
        CaseInstance { name: case.to_string(), params: Vec::new() }
    }

    /// The instance of `case` with `params` (keys in declared order).
    pub fn new(case: &str, params: Vec<(String, String)>) -> CaseInstance {
        CaseInstance { name: instance_name(case, &params), params }
    }
}

/// `case[k1=v1,k2=v2]`, or `case` when there are no values.
pub fn instance_name(case: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return case.to_string();
    }
    let values: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{case}[{}]", values.join(","))
}

/// The test case an instance name belongs to: `copy` for `copy[size=64]`.
pub fn case_of(instance: &str) -> &str {
    instance.split_once('[').map_or(instance, |(case, _)| case)
}

/// Whether `text` can be a value in an instance name: not empty, and no whitespace,
/// control character, `[`, `]`, `,` or `=` (they would make the name ambiguous).
pub fn check_value(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("an empty value cannot be part of an instance name".into());
    }
    let bad = text.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, '[' | ']' | ',' | '='));
    match bad {
        None => Ok(()),
        Some(c) => Err(format!(
            "`{}` cannot be part of an instance name (`case[key=value,...]`): it holds {}; \
             values may not hold whitespace, control characters, `[`, `]`, `,` or `=`",
            text.escape_debug(),
            match c {
                c if c.is_whitespace() => "whitespace".to_string(),
                c if c.is_control() => "a control character".to_string(),
                c => format!("`{c}`"),
            }
        )),
    }
}

/// How a range's samples are spread between its ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Evenly spaced.
    Linear,
    /// Evenly spaced on a log scale (a constant ratio); both ends must be > 0.
    Log,
}

/// An end of a range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Number::Int(n) => n as f64,
            Number::Float(f) => f,
        }
    }
}

/// The values of a range as text: `samples` (at least 2) values from `from` to `to`, both
/// included. When both ends are integers the values are integers rounded to the nearest
/// (half away from zero), and values that rounding makes equal appear once, in order.
/// Otherwise they are floats, rounded to 15 significant digits (to drop the noise of the
/// arithmetic) and printed in their shortest form (`0.25`, `1`). A log scale needs both
/// ends > 0 (checked by the caller).
pub fn sweep(from: Number, to: Number, samples: usize, scale: Scale) -> Vec<String> {
    let samples = samples.max(2);
    let last = (samples - 1) as f64;
    let mut values: Vec<String> = Vec::with_capacity(samples);
    for i in 0..samples {
        let text = match (from, to) {
            _ if i == 0 => number_text(from),
            _ if i == samples - 1 => number_text(to),
            (Number::Int(a), Number::Int(b)) if scale == Scale::Linear => {
                // Exactly: (a·(n-1-i) + b·i) / (n-1), rounded half away from zero.
                let (a, b, i, den) = (i128::from(a), i128::from(b), i as i128, (samples - 1) as i128);
                let num = a * (den - i) + b * i;
                let rounded = if num >= 0 { (2 * num + den) / (2 * den) } else { -((-2 * num + den) / (2 * den)) };
                rounded.to_string()
            }
            (Number::Int(_), Number::Int(_)) => {
                let value = log_point(from.as_f64(), to.as_f64(), i as f64 / last);
                format!("{}", value.round() as i64)
            }
            _ => {
                let (a, b) = (from.as_f64(), to.as_f64());
                let value = match scale {
                    Scale::Linear => (a * (last - i as f64) + b * i as f64) / last,
                    Scale::Log => log_point(a, b, i as f64 / last),
                };
                float_text(value)
            }
        };
        if !values.contains(&text) {
            values.push(text);
        }
    }
    values
}

/// The point a fraction `t` of the way from `from` to `to` on a log scale.
fn log_point(from: f64, to: f64, t: f64) -> f64 {
    from * (to / from).powf(t)
}

fn number_text(n: Number) -> String {
    match n {
        Number::Int(n) => n.to_string(),
        Number::Float(f) => float_text(f),
    }
}

/// A float rounded to 15 significant digits, in its shortest form.
fn float_text(value: f64) -> String {
    let rounded: f64 = format!("{value:.14e}").parse().unwrap_or(value);
    let rounded = if rounded == 0.0 { 0.0 } else { rounded };
    rounded.to_string()
}

/// Every combination of the axes' values, the first axis varying slowest.
pub fn combinations(axes: &[(String, Vec<String>)]) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (key, values) in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |value| {
                    let mut combination = prefix.clone();
                    combination.push((key.clone(), value.clone()));
                    combination
                })
            })
            .collect();
    }
    out
}

/// How many combinations the axes make (saturating: a huge product stays huge).
pub fn combination_count(axes: &[(String, Vec<String>)]) -> usize {
    axes.iter().fold(1usize, |count, (_, values)| count.saturating_mul(values.len()))
}

// ---------------------------------------------------------------------------------------
// Reading `[matrix]` and `[[parametrize]]` from case.toml
// ---------------------------------------------------------------------------------------

/// A TOML value with the span of every part, tables in the order the file writes them.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Scalar(toml::Value),
    Array(Vec<Spanned<Node>>),
    Table(Vec<(String, Spanned<Node>)>),
    Datetime,
}

impl Node {
    fn type_str(&self) -> &'static str {
        match self {
            Node::Scalar(value) => value.type_str(),
            Node::Array(_) => "array",
            Node::Table(_) => "table",
            Node::Datetime => "datetime",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TOML value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Scalar(toml::Value::Boolean(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Scalar(toml::Value::Integer(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                i64::try_from(v)
                    .map(|v| Node::Scalar(toml::Value::Integer(v)))
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Scalar(toml::Value::Float(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Scalar(toml::Value::String(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
                Ok(Node::Scalar(toml::Value::String(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Node>>()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    // toml hands a datetime over as a map with one private key.
                    if key.starts_with("$__toml_private") {
                        map.next_value::<IgnoredAny>()?;
                        return Ok(Node::Datetime);
                    }
                    entries.push((key, map.next_value::<Spanned<Node>>()?));
                }
                Ok(Node::Table(entries))
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// The text of a scalar value (its tag value), as `[tags]` takes it.
pub(crate) fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether `key` may name a matrix or parametrize value; reports why not at `span`.
fn check_key(check: &mut Checker, span: &Range<usize>, field: &str, key: &str) -> bool {
    let problem = if !is_tag_name(key) {
        format!("`{key}` is not a tag name (letters, digits and `_`)")
    } else if BUILTIN_TAGS.contains(&key) {
        format!("`@{key}@` is built in and cannot be a matrix or parametrize key")
    } else {
        return true;
    };
    check.errors.push(check.src.error_at(span, field, problem));
    false
}

/// The text of one value of a list or entry, checked to fit in an instance name.
fn value_text(check: &mut Checker, value: &Spanned<Node>, field: &str) -> Option<String> {
    let text = match value.get_ref() {
        Node::Scalar(scalar) => scalar_text(scalar),
        _ => None,
    };
    let Some(text) = text else {
        let found = value.get_ref().type_str();
        check.at(value, field, format!("a value must be a string, number or boolean, found {found}"));
        return None;
    };
    match check_value(&text) {
        Ok(()) => Some(text),
        Err(message) => {
            check.at(value, field, message);
            None
        }
    }
}

/// The instances of case `case` from its `matrix` or `parametrize` (at most one of them
/// should be given); `None` when there were errors, all of them reported to `check`.
pub(crate) fn case_instances(
    check: &mut Checker,
    case: &str,
    matrix: Option<&Spanned<Node>>,
    parametrize: Option<&Spanned<Node>>,
) -> Option<Vec<CaseInstance>> {
    let errors_before = check.errors.len();
    let from_matrix = matrix.and_then(|m| matrix_instances(check, case, m));
    let from_list = parametrize.and_then(|p| parametrize_instances(check, case, p));
    if let (Some(_), Some(list)) = (matrix, parametrize) {
        check.at(list, "parametrize", "a case has either a [matrix] or [[parametrize]] entries, not both");
    }
    if check.errors.len() > errors_before {
        return None;
    }
    Some(from_matrix.or(from_list).unwrap_or_else(|| vec![CaseInstance::plain(case)]))
}

fn too_many(check: &mut Checker, at: &Spanned<Node>, field: &str, count: usize, what: &str) {
    let count = if count == usize::MAX { "more than 2^64".to_string() } else { count.to_string() };
    check.at(at, field, format!("{what} makes {count} instances; a case has at most {MAX_INSTANCES}"));
}

fn matrix_instances(check: &mut Checker, case: &str, matrix: &Spanned<Node>) -> Option<Vec<CaseInstance>> {
    let Node::Table(entries) = matrix.get_ref() else {
        let found = matrix.get_ref().type_str();
        check.at(matrix, "matrix", format!("expected a table ([matrix] with a list of values per key), found {found}"));
        return None;
    };
    if entries.is_empty() {
        check.at(matrix, "matrix", "gives no key: give each key a list of values, such as `size = [1, 64]`");
        return None;
    }
    let mut axes = Vec::new();
    let mut ok = true;
    for (key, value) in entries {
        let field = format!("matrix.{key}");
        if !check_key(check, &value.span(), &field, key) {
            ok = false;
            continue;
        }
        let values = match value.get_ref() {
            Node::Array(items) => list_values(check, value, items, &field),
            Node::Table(fields) => range_values(check, value, fields, &field),
            other => {
                check.at(
                    value,
                    &field,
                    format!(
                        "expected a list of values (`[1, 64]`) or a range \
                         (`{{ from = 1, to = 1024, samples = 5 }}`), found {}",
                        other.type_str()
                    ),
                );
                None
            }
        };
        match values {
            Some(values) => axes.push((key.clone(), values)),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    let count = combination_count(&axes);
    if count > MAX_INSTANCES {
        let sizes: Vec<String> = axes.iter().map(|(k, v)| format!("{} {k}", v.len())).collect();
        too_many(check, matrix, "matrix", count, &format!("the matrix ({})", sizes.join(" × ")));
        return None;
    }
    Some(combinations(&axes).into_iter().map(|params| CaseInstance::new(case, params)).collect())
}

fn list_values(check: &mut Checker, list: &Spanned<Node>, items: &[Spanned<Node>], field: &str) -> Option<Vec<String>> {
    if items.is_empty() {
        check.at(list, field, "the list is empty: give at least one value");
        return None;
    }
    let mut values: Vec<String> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        match value_text(check, item, &item_field) {
            Some(text) => match values.iter().position(|v| *v == text) {
                Some(first) => {
                    check.at(item, &item_field, format!("`{text}` is listed twice (as {field}[{first}] too)"));
                    ok = false;
                }
                None => values.push(text),
            },
            None => ok = false,
        }
    }
    ok.then_some(values)
}

fn range_values(
    check: &mut Checker,
    range: &Spanned<Node>,
    fields: &[(String, Spanned<Node>)],
    field: &str,
) -> Option<Vec<String>> {
    let mut ok = true;
    let mut from = None;
    let mut to = None;
    let mut samples = None;
    let mut scale = Some(Scale::Linear);
    for (name, value) in fields {
        let sub = format!("{field}.{name}");
        match name.as_str() {
            "from" | "to" => {
                let number = match value.get_ref() {
                    Node::Scalar(toml::Value::Integer(n)) => Some(Number::Int(*n)),
                    Node::Scalar(toml::Value::Float(f)) if f.is_finite() => Some(Number::Float(*f)),
                    Node::Scalar(toml::Value::Float(f)) => {
                        check.at(value, &sub, format!("{f} is not a finite number"));
                        None
                    }
                    other => {
                        check.at(value, &sub, format!("expected a number, found {}", other.type_str()));
                        None
                    }
                };
                ok &= number.is_some();
                if name == "from" {
                    from = Some((number, value));
                } else {
                    to = Some((number, value));
                }
            }
            "samples" => {
                samples = Some(match value.get_ref() {
                    Node::Scalar(toml::Value::Integer(n)) if *n >= 2 && *n <= MAX_INSTANCES as i64 => Some(*n as usize),
                    Node::Scalar(toml::Value::Integer(n)) if *n < 2 => {
                        check.at(value, &sub, format!("samples = {n}: a range has at least 2 (its two ends)"));
                        None
                    }
                    Node::Scalar(toml::Value::Integer(n)) => {
                        check.at(value, &sub, format!("samples = {n}: a case has at most {MAX_INSTANCES} instances"));
                        None
                    }
                    other => {
                        check.at(value, &sub, format!("expected a whole number, found {}", other.type_str()));
                        None
                    }
                });
                ok &= matches!(samples, Some(Some(_)));
            }
            "scale" => {
                scale = match value.get_ref() {
                    Node::Scalar(toml::Value::String(s)) if s == "linear" => Some(Scale::Linear),
                    Node::Scalar(toml::Value::String(s)) if s == "log" => Some(Scale::Log),
                    Node::Scalar(toml::Value::String(s)) => {
                        check.at(value, &sub, format!("unknown scale `{s}`: expected \"linear\" or \"log\""));
                        None
                    }
                    other => {
                        check.at(value, &sub, format!("expected \"linear\" or \"log\", found {}", other.type_str()));
                        None
                    }
                };
                ok &= scale.is_some();
            }
            _ => {
                check.at(value, &sub, format!("unknown field `{name}`: a range has from, to, samples and scale"));
                ok = false;
            }
        }
    }
    for (given, name) in [(from.is_some(), "from"), (to.is_some(), "to"), (samples.is_some(), "samples")] {
        if !given {
            check.at(range, &format!("{field}.{name}"), "is required in a range (from, to, samples and scale)");
            ok = false;
        }
    }
    if scale == Some(Scale::Log) {
        for (end, name) in [(&from, "from"), (&to, "to")] {
            if let Some((Some(number), at)) = end {
                if number.as_f64() <= 0.0 {
                    check.at(at, &format!("{field}.{name}"), "a log scale needs both ends greater than 0");
                    ok = false;
                }
            }
        }
    }
    if !ok {
        return None;
    }
    Some(sweep(from?.0?, to?.0?, samples??, scale?))
}

fn parametrize_instances(check: &mut Checker, case: &str, list: &Spanned<Node>) -> Option<Vec<CaseInstance>> {
    let Node::Array(entries) = list.get_ref() else {
        let found = list.get_ref().type_str();
        check.at(
            list,
            "parametrize",
            format!("expected an array of tables ([[parametrize]] entries, one per instance), found {found}"),
        );
        return None;
    };
    if entries.is_empty() {
        check.at(list, "parametrize", "lists no combination: give at least one [[parametrize]] entry");
        return None;
    }
    if entries.len() > MAX_INSTANCES {
        too_many(check, list, "parametrize", entries.len(), &format!("[[parametrize]] ({} entries)", entries.len()));
        return None;
    }
    let mut ok = true;
    let mut instances: Vec<CaseInstance> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_field = format!("parametrize[{i}]");
        let Node::Table(values) = entry.get_ref() else {
            let found = entry.get_ref().type_str();
            check.at(entry, &entry_field, format!("expected a table of values, found {found}"));
            ok = false;
            continue;
        };
        if values.is_empty() {
            check.at(entry, &entry_field, "gives no value: an entry sets at least one key");
            ok = false;
            continue;
        }
        let mut params = Vec::new();
        let mut entry_ok = true;
        for (key, value) in values {
            let field = format!("{entry_field}.{key}");
            if !check_key(check, &value.span(), &field, key) {
                entry_ok = false;
                continue;
            }
            match value_text(check, value, &field) {
                Some(text) => params.push((key.clone(), text)),
                None => entry_ok = false,
            }
        }
        if !entry_ok {
            ok = false;
            continue;
        }
        let instance = CaseInstance::new(case, params);
        if let Some(first) = seen.get(&instance.name) {
            check.at(entry, &entry_field, format!("instance `{}` is the same as parametrize[{first}]", instance.name));
            ok = false;
            continue;
        }
        seen.insert(instance.name.clone(), i);
        instances.push(instance);
    }
    ok.then_some(instances)
}

/// Checks a `[tags]` table (of a suite or a case): tag names, not built in, scalar values.
pub(crate) fn check_tags(
    check: &mut Checker,
    raw: Option<&BTreeMap<String, Spanned<toml::Value>>>,
) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    for (key, value) in raw.into_iter().flatten() {
        let field = format!("tags.{key}");
        if !is_tag_name(key) {
            check.at(value, &field, format!("`{key}` is not a tag name (letters, digits and `_`)"));
        } else if BUILTIN_TAGS.contains(&key.as_str()) {
            check.at(value, &field, format!("`@{key}@` is built in and cannot be redefined"));
        } else if let Some(text) = scalar_text(value.get_ref()) {
            tags.insert(key.clone(), text);
        } else {
            check.at(value, &field, "a tag's value must be a string, number or boolean");
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn names() {
        let params = vec![("size".to_string(), "64".to_string()), ("mode".to_string(), "sync".to_string())];
        assert_eq!(CaseInstance::new("copy", params).name, "copy[size=64,mode=sync]");
        assert_eq!(CaseInstance::plain("copy").name, "copy");
        assert_eq!(case_of("copy[size=64,mode=sync]"), "copy");
        assert_eq!(case_of("copy"), "copy");
    }

    #[test]
    fn combinations_vary_the_first_key_slowest() {
        let axes = vec![("size".to_string(), texts(&["1", "64"])), ("mode".to_string(), texts(&["sync", "async"]))];
        let names: Vec<String> =
            combinations(&axes).into_iter().map(|params| CaseInstance::new("c", params).name).collect();
        assert_eq!(
            names,
            ["c[size=1,mode=sync]", "c[size=1,mode=async]", "c[size=64,mode=sync]", "c[size=64,mode=async]"]
        );
        assert_eq!(combination_count(&axes), 4);
        assert_eq!(combinations(&[]), vec![Vec::<(String, String)>::new()]);
        let huge: Vec<(String, Vec<String>)> = (0..70).map(|i| (format!("k{i}"), texts(&["a", "b"]))).collect();
        assert_eq!(combination_count(&huge), usize::MAX);
    }

    #[test]
    fn values_must_fit_in_instance_names() {
        for good in ["64", "sync", "-1.5", "a_b-c.d/e", "ünï", "@x@"] {
            assert_eq!(check_value(good), Ok(()), "{good}");
        }
        for bad in ["", "a b", "a[", "b]", "x,y", "k=v", "tab\there", "new\nline", "bell\u{7}", "nbsp\u{a0}"] {
            assert!(check_value(bad).is_err(), "{bad:?}");
        }
        assert!(check_value("a b").unwrap_err().contains("whitespace"));
        assert!(check_value("x,y").unwrap_err().contains("`,`"));
        assert!(check_value("bell\u{7}").unwrap_err().contains("control"));
        assert!(check_value("").unwrap_err().contains("empty"));
    }

    #[test]
    fn linear_integer_sweeps() {
        use Number::Int;
        assert_eq!(sweep(Int(0), Int(100), 5, Scale::Linear), texts(&["0", "25", "50", "75", "100"]));
        assert_eq!(sweep(Int(1), Int(10), 4, Scale::Linear), texts(&["1", "4", "7", "10"]));
        // 1 + 9·k/5 = 1, 2.8, 4.6, 6.4, 8.2, 10: rounded to the nearest.
        assert_eq!(sweep(Int(1), Int(10), 6, Scale::Linear), texts(&["1", "3", "5", "6", "8", "10"]));
        // Halves round away from zero: 0, 0.5, 1 and 0, -0.5, -1.
        assert_eq!(sweep(Int(0), Int(1), 3, Scale::Linear), texts(&["0", "1"]));
        assert_eq!(sweep(Int(0), Int(-1), 3, Scale::Linear), texts(&["0", "-1"]));
        assert_eq!(sweep(Int(10), Int(0), 3, Scale::Linear), texts(&["10", "5", "0"]));
        // Rounding duplicates are removed, order kept.
        assert_eq!(sweep(Int(1), Int(3), 5, Scale::Linear), texts(&["1", "2", "3"]));
        assert_eq!(sweep(Int(i64::MIN), Int(i64::MAX), 2, Scale::Linear).len(), 2);
        assert_eq!(sweep(Int(-9), Int(9), 3, Scale::Linear), texts(&["-9", "0", "9"]));
    }

    #[test]
    fn log_integer_sweeps() {
        use Number::Int;
        // 1024^(k/4) = 1, 5.66, 32, 181.02, 1024.
        assert_eq!(sweep(Int(1), Int(1024), 5, Scale::Log), texts(&["1", "6", "32", "181", "1024"]));
        assert_eq!(sweep(Int(1), Int(1000), 4, Scale::Log), texts(&["1", "10", "100", "1000"]));
        assert_eq!(
            sweep(Int(1), Int(1_000_000), 7, Scale::Log),
            texts(&["1", "10", "100", "1000", "10000", "100000", "1000000"])
        );
        // 1, 1.41, 2, 2.83, 4, 5.66, 8: duplicates from rounding are dropped.
        assert_eq!(sweep(Int(1), Int(2), 5, Scale::Log), texts(&["1", "2"]));
        assert_eq!(sweep(Int(1), Int(8), 7, Scale::Log), texts(&["1", "2", "3", "4", "6", "8"]));
        assert_eq!(sweep(Int(4096), Int(4), 4, Scale::Log), texts(&["4096", "406", "40", "4"]));
    }

    #[test]
    fn float_sweeps() {
        use Number::{Float, Int};
        assert_eq!(sweep(Float(0.0), Float(1.0), 5, Scale::Linear), texts(&["0", "0.25", "0.5", "0.75", "1"]));
        assert_eq!(sweep(Float(0.1), Float(0.3), 3, Scale::Linear), texts(&["0.1", "0.2", "0.3"]));
        assert_eq!(
            sweep(Float(0.0), Float(1.0), 11, Scale::Linear),
            texts(&["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"])
        );
        // One float end makes the range float.
        assert_eq!(sweep(Int(1), Float(2.0), 3, Scale::Linear), texts(&["1", "1.5", "2"]));
        assert_eq!(sweep(Float(0.001), Float(1.0), 4, Scale::Log), texts(&["0.001", "0.01", "0.1", "1"]));
        assert_eq!(sweep(Float(1.0), Float(100.0), 3, Scale::Log), texts(&["1", "10", "100"]));
        assert_eq!(sweep(Float(1.0), Float(2.0), 3, Scale::Log), texts(&["1", "1.4142135623731", "2"]));
        assert_eq!(sweep(Float(-1.5), Float(1.5), 3, Scale::Linear), texts(&["-1.5", "0", "1.5"]));
    }
}
