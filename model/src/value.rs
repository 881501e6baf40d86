//! Typed telemetry values.

use serde::{Deserialize, Serialize};

/// A leaf value as reported by a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// Signed integer.
    Int(i64),
    /// Unsigned integer (most counters).
    Uint(u64),
    /// Floating point.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Text (enumerations such as oper-status, descriptions).
    String(String),
}

impl Value {
    /// The value as a number, when it is one. Booleans count as 0/1 so they chart.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(v) => Some(v as f64),
            Value::Uint(v) => Some(v as f64),
            Value::Float(v) => Some(v),
            Value::Bool(v) => Some(if v { 1.0 } else { 0.0 }),
            Value::String(_) => None,
        }
    }

    /// The value as text, for values that are not numbers.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Uint(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(v) => f.write_str(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_chart_and_text_does_not() {
        assert_eq!(Value::Uint(7).as_f64(), Some(7.0));
        assert_eq!(Value::Int(-2).as_f64(), Some(-2.0));
        assert_eq!(Value::Bool(true).as_f64(), Some(1.0));
        assert_eq!(Value::String("UP".into()).as_f64(), None);
        assert_eq!(Value::String("UP".into()).as_text(), Some("UP"));
    }
}
