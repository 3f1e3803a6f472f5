//! Feature values, as they leave the dataflow and as the store keeps them (JSON).

use std::cmp::Ordering;
use std::fmt::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One feature value. Defaults (0, null, empty) are never produced: a feature back at its
/// default is absent from the output collection, and the store writes a tombstone.
// `PartialEq` is written out (below) only for its order of comparison; it means what the
// derived one would, so the derived `Hash` agrees with it.
#[allow(clippy::derived_hash_with_manual_eq)]
#[derive(Clone, Debug, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Float(F64),
    /// Key → number, keys ascending. Shared, keys and all: an aggregation keeps the value it
    /// last emitted to retract it later, and a copy is then a count, not a map of strings.
    Map(Arc<[(Arc<str>, F64)]>),
    List(Arc<[Arc<str>]>),
}

/// Equal exactly when `Ord` says so. A map's numbers are compared before its keys: an
/// aggregation compares each new value with the last, and two shares maps of one viewer
/// almost always differ in a number while their keys match, so this is decided without
/// comparing the key strings.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b.iter()).all(|(x, y)| x.1 == y.1)
                    && a.iter().zip(b.iter()).all(|(x, y)| x.0 == y.0)
            }
            (Value::List(a), Value::List(b)) => a == b,
            _ => false,
        }
    }
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
    /// A map of `entries`, keys ascending.
    pub fn map<K: Into<Arc<str>>>(entries: impl IntoIterator<Item = (K, F64)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A list of `items`, in order.
    pub fn list<K: Into<Arc<str>>>(items: impl IntoIterator<Item = K>) -> Value {
        Value::List(items.into_iter().map(Into::into).collect())
    }

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
        let map = Value::map([("a\"b", F64::new(0.25)), ("c", F64::new(0.75))]);
        assert_eq!(map.to_json(), r#"{"a\"b":0.25,"c":0.75}"#);
        assert_eq!(Value::list(["x", "y\n"]).to_json(), r#"["x","y\u000a"]"#);
        assert_eq!(Value::list::<&str>([]).to_json(), "[]");
    }

    #[test]
    fn values_are_equal_exactly_when_they_order_equal() {
        let map =
            |entries: &[(&str, f64)]| Value::map(entries.iter().map(|(k, v)| (*k, F64::new(*v))));
        let values = [
            Value::Int(1),
            Value::Int(2),
            Value::Float(F64::new(1.0)),
            Value::Float(F64::new(f64::NAN)),
            map(&[]),
            map(&[("a", 0.5), ("b", 0.5)]),
            map(&[("a", 0.5), ("c", 0.5)]),
            map(&[("a", 0.25), ("b", 0.75)]),
            map(&[("a", 1.0)]),
            Value::list::<&str>([]),
            Value::list(["a"]),
            Value::list(["a", "b"]),
        ];
        for a in &values {
            for b in &values {
                assert_eq!(a == b, a.cmp(b) == Ordering::Equal, "{a:?} and {b:?}");
            }
            assert_eq!(a, &a.clone());
        }
    }
}
