//! `gnmi::TypedValue` <-> `model::Value`.

use model::Value;

use crate::gnmi::{self, Encoding, typed_value::Value as Tv};

/// The scalar a typed value carries, if netpulse can store it.
///
/// Typed scalars map one to one (`ascii_val` is text, the deprecated `float_val` and
/// `decimal_val` become floats). `json_val` and `json_ietf_val` are decoded when they hold
/// a JSON scalar; in `json_ietf_val`, a string that is a plain decimal integer becomes a
/// number, because RFC 7951 encodes 64-bit integers (most counters) as strings. JSON
/// objects, arrays and null, bytes, leaf-lists, `Any` and protobuf bytes give `None`.
pub fn to_value(typed: &gnmi::TypedValue) -> Option<Value> {
    #[allow(deprecated)]
    match typed.value.as_ref()? {
        Tv::StringVal(s) | Tv::AsciiVal(s) => Some(Value::String(s.clone())),
        Tv::IntVal(v) => Some(Value::Int(*v)),
        Tv::UintVal(v) => Some(Value::Uint(*v)),
        Tv::BoolVal(v) => Some(Value::Bool(*v)),
        Tv::FloatVal(v) => Some(Value::Float(f64::from(*v))),
        Tv::DoubleVal(v) => Some(Value::Float(*v)),
        Tv::DecimalVal(d) => {
            let scale = 10f64.powi(i32::try_from(d.precision).ok()?);
            Some(Value::Float(d.digits as f64 / scale))
        }
        Tv::JsonVal(bytes) => json_scalar(bytes, false),
        Tv::JsonIetfVal(bytes) => json_scalar(bytes, true),
        Tv::BytesVal(_) | Tv::LeaflistVal(_) | Tv::AnyVal(_) | Tv::ProtoBytes(_) => None,
    }
}

/// A scalar as a typed value in `encoding`, the way a target answers.
///
/// `PROTO` and `BYTES` give typed scalars (`uint_val`, `double_val`, ...); `ASCII` gives
/// the text form; `JSON` gives the scalar as JSON text; `JSON_IETF` does too, except that
/// integers are JSON strings, as RFC 7951 requires for 64-bit types.
pub fn to_typed_value(value: &Value, encoding: Encoding) -> gnmi::TypedValue {
    let value = match encoding {
        Encoding::Proto | Encoding::Bytes => match value {
            Value::Int(v) => Tv::IntVal(*v),
            Value::Uint(v) => Tv::UintVal(*v),
            Value::Float(v) => Tv::DoubleVal(*v),
            Value::Bool(v) => Tv::BoolVal(*v),
            Value::String(v) => Tv::StringVal(v.clone()),
        },
        Encoding::Ascii => Tv::AsciiVal(value.to_string()),
        Encoding::Json => Tv::JsonVal(json_text(value, false)),
        Encoding::JsonIetf => Tv::JsonIetfVal(json_text(value, true)),
    };
    gnmi::TypedValue { value: Some(value) }
}

fn json_text(value: &Value, ietf: bool) -> Vec<u8> {
    let json = match value {
        Value::Int(v) if ietf => serde_json::Value::String(v.to_string()),
        Value::Uint(v) if ietf => serde_json::Value::String(v.to_string()),
        Value::Int(v) => serde_json::Value::from(*v),
        Value::Uint(v) => serde_json::Value::from(*v),
        Value::Float(v) => serde_json::Value::from(*v),
        Value::Bool(v) => serde_json::Value::Bool(*v),
        Value::String(v) => serde_json::Value::String(v.clone()),
    };
    json.to_string().into_bytes()
}

fn json_scalar(bytes: &[u8], ietf: bool) -> Option<Value> {
    match serde_json::from_slice::<serde_json::Value>(bytes).ok()? {
        serde_json::Value::Bool(b) => Some(Value::Bool(b)),
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(Value::Uint)
            .or_else(|| n.as_i64().map(Value::Int))
            .or_else(|| n.as_f64().map(Value::Float)),
        serde_json::Value::String(s) if ietf => Some(ietf_integer(&s).unwrap_or(Value::String(s))),
        serde_json::Value::String(s) => Some(Value::String(s)),
        serde_json::Value::Null | serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            None
        }
    }
}

/// A plain decimal integer (`0`, `42`, `-7`; no sign `+`, no leading zeros, no spaces).
fn ietf_integer(s: &str) -> Option<Value> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !plain {
        return None;
    }
    if s.starts_with('-') {
        s.parse().ok().map(Value::Int)
    } else {
        s.parse().ok().map(Value::Uint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv(value: Tv) -> gnmi::TypedValue {
        gnmi::TypedValue { value: Some(value) }
    }

    #[test]
    #[allow(deprecated)]
    fn typed_scalars_map_one_to_one() {
        let cases = [
            (Tv::IntVal(-3), Some(Value::Int(-3))),
            (Tv::UintVal(u64::MAX), Some(Value::Uint(u64::MAX))),
            (Tv::FloatVal(1.5), Some(Value::Float(1.5))),
            (Tv::DoubleVal(2.25), Some(Value::Float(2.25))),
            (Tv::BoolVal(true), Some(Value::Bool(true))),
            (Tv::StringVal("UP".into()), Some(Value::String("UP".into()))),
            (
                Tv::AsciiVal("text".into()),
                Some(Value::String("text".into())),
            ),
            (
                Tv::DecimalVal(gnmi::Decimal64 {
                    digits: 12345,
                    precision: 2,
                }),
                Some(Value::Float(123.45)),
            ),
            (Tv::BytesVal(vec![1, 2]), None),
            (Tv::ProtoBytes(vec![1]), None),
            (Tv::LeaflistVal(gnmi::ScalarArray::default()), None),
        ];
        for (typed, want) in cases {
            assert_eq!(to_value(&tv(typed.clone())), want, "{typed:?}");
        }
        assert_eq!(to_value(&gnmi::TypedValue::default()), None);
    }

    #[test]
    fn json_scalars_are_decoded() {
        let json = |s: &str| to_value(&tv(Tv::JsonVal(s.as_bytes().to_vec())));
        assert_eq!(json("42"), Some(Value::Uint(42)));
        assert_eq!(json("18446744073709551615"), Some(Value::Uint(u64::MAX)));
        assert_eq!(json("-42"), Some(Value::Int(-42)));
        assert_eq!(json("0.5"), Some(Value::Float(0.5)));
        assert_eq!(json("false"), Some(Value::Bool(false)));
        assert_eq!(json("\"UP\""), Some(Value::String("UP".into())));
        // Plain JSON keeps numeric-looking strings as text.
        assert_eq!(json("\"42\""), Some(Value::String("42".into())));
        for not_scalar in ["null", "[1,2]", "{\"a\":1}", "not json", ""] {
            assert_eq!(json(not_scalar), None, "{not_scalar}");
        }
    }

    #[test]
    fn json_ietf_integer_strings_become_numbers() {
        let ietf = |s: &str| to_value(&tv(Tv::JsonIetfVal(s.as_bytes().to_vec())));
        assert_eq!(
            ietf("\"1234567890123\""),
            Some(Value::Uint(1_234_567_890_123))
        );
        assert_eq!(ietf("\"-5\""), Some(Value::Int(-5)));
        assert_eq!(ietf("\"0\""), Some(Value::Uint(0)));
        assert_eq!(ietf("7"), Some(Value::Uint(7)));
        for text in [
            "UP",
            "007",
            "+1",
            "1.5",
            "",
            "-",
            "1 2",
            "99999999999999999999",
        ] {
            let quoted = format!("\"{text}\"");
            assert_eq!(ietf(&quoted), Some(Value::String(text.into())), "{text}");
        }
    }

    #[test]
    fn values_encode_per_requested_encoding_and_decode_back() {
        let values = [
            Value::Uint(9_000_000_000),
            Value::Int(-1),
            Value::Float(0.25),
            Value::Bool(true),
            Value::String("DOWN".into()),
        ];
        for encoding in [
            Encoding::Proto,
            Encoding::Json,
            Encoding::JsonIetf,
            Encoding::Bytes,
        ] {
            for v in &values {
                let typed = to_typed_value(v, encoding);
                assert_eq!(to_value(&typed).as_ref(), Some(v), "{encoding:?} {v:?}");
            }
        }
        assert_eq!(
            to_typed_value(&Value::Uint(5), Encoding::JsonIetf).value,
            Some(Tv::JsonIetfVal(b"\"5\"".to_vec()))
        );
        assert_eq!(
            to_typed_value(&Value::Uint(5), Encoding::Json).value,
            Some(Tv::JsonVal(b"5".to_vec()))
        );
        assert_eq!(
            to_typed_value(&Value::Uint(5), Encoding::Proto).value,
            Some(Tv::UintVal(5))
        );
        assert_eq!(
            to_typed_value(&Value::Bool(true), Encoding::Ascii).value,
            Some(Tv::AsciiVal("true".into()))
        );
    }
}
