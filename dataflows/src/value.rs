//! Feature values, as they leave the dataflow and as the store keeps them (JSON).

use std::cmp::Ordering;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// One feature value. Defaults (0, null, empty) are never produced: a feature back at its
/// default is absent from the output collection, and the store writes a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Float(F64),
    /// Key → number, keys ascending.
    Map(Vec<(String, F64)>),
    List(Vec<String>),
}

/// What a feature's values look like, and what it reads as when nothing falls in its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// Counts: default 0.
    Int,
    /// Sums in seconds: default 0.
    Float,
    /// Ratios: default null.
    Ratio,
    /// Key → share maps: default empty.
    Map,
    /// Lists: default empty.
    List,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::Ratio => "float or null",
            ValueType::Map => "map<string, float>",
            ValueType::List => "list<string>",
        }
    }

    /// The default value, as JSON.
    pub fn default_json(self) -> &'static str {
        match self {
            ValueType::Int | ValueType::Float => "0",
            ValueType::Ratio => "null",
            ValueType::Map => "{}",
            ValueType::List => "[]",
        }
    }
}

impl Value {
    /// A duration kept as exact milliseconds, shown in seconds.
    pub fn seconds_from_ms(ms: i64) -> Value {
        Value::Float(F64::new(ms as f64 / 1000.0))
    }

    /// The value as a JSON document.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        match self {
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => json_number(&mut out, f.get()),
            Value::Map(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_string(&mut out, key);
                    out.push(':');
                    json_number(&mut out, value.get());
                }
                out.push('}');
            }
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_string(&mut out, item);
                }
                out.push(']');
            }
        }
        out
    }
}

fn json_number(out: &mut String, f: f64) {
    if f.is_finite() {
        let _ = write!(out, "{f}");
    } else {
        out.push_str("null");
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An `f64` that is data: totally ordered (IEEE total order) and hashable by its bits.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct F64(f64);

impl F64 {
    pub fn new(f: f64) -> F64 {
        F64(f)
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for F64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for F64 {}

impl PartialOrd for F64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for F64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl std::hash::Hash for F64 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render_as_json() {
        assert_eq!(Value::Int(42).to_json(), "42");
        assert_eq!(Value::Float(F64::new(30.0)).to_json(), "30");
        assert_eq!(Value::Float(F64::new(2.5)).to_json(), "2.5");
        assert_eq!(Value::Float(F64::new(f64::NAN)).to_json(), "null");
        let map = Value::Map(vec![
            ("a\"b".into(), F64::new(0.25)),
            ("c".into(), F64::new(0.75)),
        ]);
        assert_eq!(map.to_json(), r#"{"a\"b":0.25,"c":0.75}"#);
        assert_eq!(
            Value::List(vec!["x".into(), "y\n".into()]).to_json(),
            r#"["x","y\u000a"]"#
        );
        assert_eq!(Value::List(vec![]).to_json(), "[]");
    }
}
