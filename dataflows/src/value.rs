//! Feature values, as they leave the dataflow and as the store keeps them (JSON).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// One feature value. Defaults (0, null, empty) are never produced: a feature back at its
/// default is absent from the output collection, and the store writes a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Float(F64),
}

impl Value {
    /// A duration kept as exact milliseconds, shown in seconds.
    pub fn seconds_from_ms(ms: i64) -> Value {
        Value::Float(F64::new(ms as f64 / 1000.0))
    }

    /// The value as a JSON document.
    pub fn to_json(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Float(f) => json_number(f.get()),
        }
    }
}

fn json_number(f: f64) -> String {
    if f.is_finite() {
        format!("{f}")
    } else {
        "null".to_string()
    }
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
    fn values_render_as_json_numbers() {
        assert_eq!(Value::Int(42).to_json(), "42");
        assert_eq!(Value::Float(F64::new(30.0)).to_json(), "30");
        assert_eq!(Value::Float(F64::new(2.5)).to_json(), "2.5");
        assert_eq!(Value::Float(F64::new(f64::NAN)).to_json(), "null");
    }
}
