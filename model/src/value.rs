//! Typed telemetry values.
//!
//! One variant per kind of leaf a gNMI `TypedValue` can carry once JSON has been flattened
//! into leaves (see `proto::decode_notification`), plus [`Value::Deleted`] for the
//! deletions a notification reports.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

/// Most fraction digits a decimal may have: YANG `decimal64` allows 1 to 18, and an `i64`
/// holds at most 19 significant digits, so more would only ever be leading zeros.
pub const MAX_DECIMAL_PRECISION: u32 = 18;

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
    /// An exact decimal number, `digits × 10^-precision` (gNMI `Decimal64`, YANG
    /// `decimal64`): `Decimal { digits: 12345, precision: 2 }` is 123.45. Kept exact so the
    /// store can keep the text the device sent; charts use [`Value::as_f64`].
    Decimal {
        /// The unscaled digits, sign included.
        digits: i64,
        /// Digits after the decimal point.
        precision: u32,
    },
    /// Raw bytes (gNMI `bytes_val`, YANG `binary`).
    Bytes(Vec<u8>),
    /// A leaf-list: the scalars of one leaf, in the device's order (gNMI `leaflist_val`).
    LeafList(Vec<Value>),
    /// A protobuf `Any` the device sent, kept raw: netpulse has no schema to decode it.
    Any {
        /// Identifies the message type (`type.googleapis.com/pkg.Message`).
        type_url: String,
        /// The encoded message.
        value: Vec<u8>,
    },
    /// The device deleted the path (gNMI `Notification.delete`).
    ///
    /// A value rather than a separate sample kind, so a delete travels through every
    /// channel a sample does (batches, bus, store, chart points) in time order with the
    /// updates of its path, and every consumer must decide what it means: charts show a
    /// gap, latest-value views show "deleted".
    Deleted,
}

impl Value {
    /// The value as a number, when it charts: integers, floats, decimals, and booleans as
    /// 0/1. Text, bytes, leaf-lists, `Any` and deletes give `None` (a gap in a chart).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(v) => Some(v as f64),
            Value::Uint(v) => Some(v as f64),
            Value::Float(v) => Some(v),
            Value::Bool(v) => Some(if v { 1.0 } else { 0.0 }),
            Value::Decimal { digits, precision } => Some(decimal_f64(digits, precision)),
            Value::String(_)
            | Value::Bytes(_)
            | Value::LeafList(_)
            | Value::Any { .. }
            | Value::Deleted => None,
        }
    }

    /// The value as text, for values that are text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is a delete rather than an observed value.
    pub fn is_deleted(&self) -> bool {
        matches!(self, Value::Deleted)
    }

    /// Reads the exact decimal text [`Value::Decimal`] displays (`-123.45`, `0.001`,
    /// `42`): an optional `-`, digits, optionally `.` and digits. The precision is the
    /// number of digits after the point, so `1.50` keeps its precision of 2. `None` when
    /// the text is not of that form, has more than [`MAX_DECIMAL_PRECISION`] fraction
    /// digits, or does not fit an `i64` of digits.
    pub fn parse_decimal(text: &str) -> Option<Value> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if int.is_empty()
            || (unsigned.contains('.') && frac.is_empty())
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let precision = u32::try_from(frac.len()).ok()?;
        if precision > MAX_DECIMAL_PRECISION {
            return None;
        }
        // Through i128 so that i64::MIN, whose magnitude has no i64, still parses.
        let magnitude: i128 = format!("{int}{frac}").parse().ok()?;
        let digits = i64::try_from(if negative { -magnitude } else { magnitude }).ok()?;
        Some(Value::Decimal { digits, precision })
    }
}

/// `digits × 10^-precision` as the nearest float (one rounding, not one per digit).
fn decimal_f64(digits: i64, precision: u32) -> f64 {
    match i32::try_from(precision) {
        Ok(p) if p <= 22 => digits as f64 / 10f64.powi(p),
        // Beyond 10^22 powers of ten are inexact; parsing the exact text rounds once.
        _ => format!("{digits}e-{precision}").parse().unwrap_or(0.0),
    }
}

/// Writes `digits × 10^-precision` exactly: `-123.45`, `0.05`, `7`.
fn write_decimal(f: &mut fmt::Formatter<'_>, digits: i64, precision: u32) -> fmt::Result {
    if precision > MAX_DECIMAL_PRECISION {
        // Not a decimal a device sends; scientific notation keeps it exact and short.
        return write!(f, "{digits}e-{precision}");
    }
    let magnitude = digits.unsigned_abs().to_string();
    let precision = precision as usize;
    if digits < 0 {
        f.write_char('-')?;
    }
    if precision == 0 {
        return f.write_str(&magnitude);
    }
    let padded = format!("{magnitude:0>width$}", width = precision + 1);
    let (int, frac) = padded.split_at(padded.len() - precision);
    write!(f, "{int}.{frac}")
}

impl fmt::Display for Value {
    /// A readable form: numbers and text as they are, decimals exactly, bytes in lowercase
    /// hex (`0x0a0b`), leaf-lists as `[a, b]`, `Any` as its type URL and size, deletes as
    /// `deleted`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Uint(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(v) => f.write_str(v),
            Value::Decimal { digits, precision } => write_decimal(f, *digits, *precision),
            Value::Bytes(bytes) => {
                f.write_str("0x")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Value::LeafList(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Value::Any { type_url, value } => write!(f, "{type_url} ({} bytes)", value.len()),
            Value::Deleted => f.write_str("deleted"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(digits: i64, precision: u32) -> Value {
        Value::Decimal { digits, precision }
    }

    #[test]
    fn numbers_chart_and_the_rest_does_not() {
        assert_eq!(Value::Uint(7).as_f64(), Some(7.0));
        assert_eq!(Value::Int(-2).as_f64(), Some(-2.0));
        assert_eq!(Value::Bool(true).as_f64(), Some(1.0));
        assert_eq!(decimal(12345, 2).as_f64(), Some(123.45));
        assert_eq!(decimal(-5, 0).as_f64(), Some(-5.0));
        assert_eq!(decimal(1, 30).as_f64(), Some(1e-30));
        for none in [
            Value::String("UP".into()),
            Value::Bytes(vec![1]),
            Value::LeafList(vec![Value::Uint(1)]),
            Value::Any {
                type_url: "t".into(),
                value: vec![],
            },
            Value::Deleted,
        ] {
            assert_eq!(none.as_f64(), None, "{none:?}");
        }
        assert_eq!(Value::String("UP".into()).as_text(), Some("UP"));
        assert!(Value::Deleted.is_deleted());
        assert!(!Value::Uint(0).is_deleted());
    }

    #[test]
    fn every_kind_displays_readably() {
        for (value, shown) in [
            (Value::Int(-3), "-3"),
            (Value::Float(0.5), "0.5"),
            (Value::String("UP".into()), "UP"),
            (decimal(12345, 2), "123.45"),
            (decimal(-5, 3), "-0.005"),
            (decimal(5, 0), "5"),
            (decimal(150, 2), "1.50"),
            (decimal(i64::MIN, 18), "-9.223372036854775808"),
            (decimal(7, 40), "7e-40"),
            (Value::Bytes(vec![0, 0xab, 0x10]), "0x00ab10"),
            (Value::Bytes(vec![]), "0x"),
            (
                Value::LeafList(vec![Value::Uint(1), Value::String("b".into())]),
                "[1, b]",
            ),
            (
                Value::Any {
                    type_url: "type.googleapis.com/x.Y".into(),
                    value: vec![1, 2, 3],
                },
                "type.googleapis.com/x.Y (3 bytes)",
            ),
            (Value::Deleted, "deleted"),
        ] {
            assert_eq!(value.to_string(), shown, "{value:?}");
        }
    }

    #[test]
    fn decimals_parse_their_display_form() {
        for (text, want) in [
            ("123.45", Some(decimal(12345, 2))),
            ("-0.005", Some(decimal(-5, 3))),
            ("1.50", Some(decimal(150, 2))),
            ("42", Some(decimal(42, 0))),
            ("-9.223372036854775808", Some(decimal(i64::MIN, 18))),
            ("9.223372036854775808", None),
            ("0.1234567890123456789", None),
            ("", None),
            ("-", None),
            ("1.", None),
            (".5", None),
            ("+1", None),
            ("1e5", None),
            ("1.2.3", None),
        ] {
            assert_eq!(Value::parse_decimal(text), want, "{text}");
            if let Some(v) = want {
                assert_eq!(v.to_string(), text);
            }
        }
    }

    #[test]
    fn serde_tags_every_kind() {
        for (value, json) in [
            (Value::Uint(1), r#"{"uint":1}"#),
            (
                decimal(12345, 2),
                r#"{"decimal":{"digits":12345,"precision":2}}"#,
            ),
            (Value::Bytes(vec![1, 2]), r#"{"bytes":[1,2]}"#),
            (
                Value::LeafList(vec![Value::Bool(true)]),
                r#"{"leaf_list":[{"bool":true}]}"#,
            ),
            (
                Value::Any {
                    type_url: "t".into(),
                    value: vec![9],
                },
                r#"{"any":{"type_url":"t","value":[9]}}"#,
            ),
            (Value::Deleted, r#""deleted""#),
        ] {
            assert_eq!(serde_json::to_string(&value).expect("test value"), json);
            assert_eq!(
                serde_json::from_str::<Value>(json).expect("test value"),
                value
            );
        }
    }
}
