//! `gnmi::TypedValue` <-> `model::Value`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use model::{MAX_DECIMAL_PRECISION, Path, Value};

use crate::cache::{LeafId, leaf_id};
use crate::gnmi::{self, Encoding, typed_value::Value as Tv};
use crate::json;
use crate::notification::{DecodeError, Leaves};

/// Why `proto_bytes` values are refused.
const PROTO_BYTES_UNSUPPORTED: &str =
    "proto_bytes values need the device's protobuf schema, which netpulse does not have";

/// The leaves `typed`, the value of `path`, holds, into `out`; problems go to `errors`.
///
/// Typed scalars map one to one: `string_val` and `ascii_val` are text, `float_val` and
/// `double_val` floats, `decimal_val` an exact `Decimal` (precision at most 18, as in
/// YANG), `bytes_val` bytes, `any_val` a raw `Any`, `leaflist_val` a `LeafList` of
/// scalars (JSON elements must be scalars; leaf-lists do not nest). `json_val` and
/// `json_ietf_val` are flattened into one leaf per path ([`crate::json`]). `proto_bytes`
/// and a missing value are errors.
pub(crate) fn leaves(path: Arc<Path>, id: LeafId, typed: &gnmi::TypedValue, out: &mut Leaves<'_>) {
    let decoded = match &typed.value {
        Some(Tv::JsonVal(bytes)) => return flatten(&path, bytes, false, out),
        Some(Tv::JsonIetfVal(bytes)) => return flatten(&path, bytes, true, out),
        Some(Tv::LeaflistVal(array)) => array
            .element
            .iter()
            .map(scalar)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::LeafList)
            .map_err(|reason| format!("leaf-list element: {reason}")),
        None => Err("update without a value".to_owned()),
        Some(_) => scalar(typed),
    };
    match decoded {
        Ok(value) => out.push(path, id, value),
        Err(reason) => out.errors.push(DecodeError::new(&path, reason)),
    }
}

/// The leaves of a JSON value: new paths below `path`, each with its own id.
fn flatten(path: &Path, bytes: &[u8], ietf: bool, out: &mut Leaves<'_>) {
    let mut flat = Vec::new();
    json::flatten(path, bytes, ietf, &mut flat, &mut out.errors);
    for (path, value) in flat {
        let id = leaf_id(&path);
        out.push(Arc::new(path), id, value);
    }
}

/// The leaves of the deprecated `Update.value` old targets send: bytes plus an encoding.
#[allow(deprecated)]
pub(crate) fn legacy_leaves(
    path: Arc<Path>,
    id: LeafId,
    legacy: &gnmi::Value,
    out: &mut Leaves<'_>,
) {
    let bytes = &legacy.value;
    let decoded = match Encoding::try_from(legacy.r#type) {
        Ok(Encoding::Json) => return flatten(&path, bytes, false, out),
        Ok(Encoding::JsonIetf) => return flatten(&path, bytes, true, out),
        Ok(Encoding::Bytes) => Ok(Value::Bytes(bytes.clone())),
        Ok(Encoding::Ascii) => String::from_utf8(bytes.clone())
            .map(Value::String)
            .map_err(|_| "ASCII value that is not valid text".to_owned()),
        Ok(Encoding::Proto) => Err(PROTO_BYTES_UNSUPPORTED.to_owned()),
        Err(_) => Err(format!("unknown value encoding {}", legacy.r#type)),
    };
    match decoded {
        Ok(value) => out.push(path, id, value),
        Err(reason) => out.errors.push(DecodeError::new(&path, reason)),
    }
}

/// One scalar: any kind but a leaf-list; JSON must be a non-null JSON scalar.
fn scalar(typed: &gnmi::TypedValue) -> Result<Value, String> {
    #[allow(deprecated)]
    let value = match typed.value.as_ref() {
        None => return Err("typed value without a value".to_owned()),
        Some(Tv::StringVal(s) | Tv::AsciiVal(s)) => Value::String(s.clone()),
        Some(Tv::IntVal(v)) => Value::Int(*v),
        Some(Tv::UintVal(v)) => Value::Uint(*v),
        Some(Tv::BoolVal(v)) => Value::Bool(*v),
        Some(Tv::FloatVal(v)) => Value::Float(f64::from(*v)),
        Some(Tv::DoubleVal(v)) => Value::Float(*v),
        Some(Tv::DecimalVal(d)) if d.precision > MAX_DECIMAL_PRECISION => {
            return Err(format!(
                "decimal precision {} is more than {MAX_DECIMAL_PRECISION} digits",
                d.precision
            ));
        }
        Some(Tv::DecimalVal(d)) => Value::Decimal {
            digits: d.digits,
            precision: d.precision,
        },
        Some(Tv::BytesVal(b)) => Value::Bytes(b.clone()),
        Some(Tv::AnyVal(any)) => Value::Any {
            type_url: any.type_url.clone(),
            value: any.value.clone(),
        },
        Some(Tv::LeaflistVal(_)) => return Err("a leaf-list cannot hold a leaf-list".to_owned()),
        Some(Tv::JsonVal(bytes)) => return json_scalar(bytes, false),
        Some(Tv::JsonIetfVal(bytes)) => return json_scalar(bytes, true),
        Some(Tv::ProtoBytes(_)) => return Err(PROTO_BYTES_UNSUPPORTED.to_owned()),
    };
    Ok(value)
}

fn json_scalar(bytes: &[u8], ietf: bool) -> Result<Value, String> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON: {e}"))?;
    json::scalar_value(&json, ietf).ok_or_else(|| "JSON that is not a scalar".to_owned())
}

/// The value of `typed` when it is exactly one leaf (everything but JSON objects and
/// lists, and what [`crate::decode_notification`] reports as errors). Prefer
/// `decode_notification`, which also reads JSON subtrees and says what failed.
pub fn to_value(typed: &gnmi::TypedValue) -> Option<Value> {
    let root = Path::default();
    let device = model::DeviceKey::new("value").ok()?;
    let mut out = Leaves::new(&device, 0, 1);
    leaves(Arc::new(root.clone()), 0, typed, &mut out);
    let mut decoded = out.finish();
    match (
        decoded.samples.pop(),
        decoded.samples.is_empty() && decoded.errors.is_empty(),
    ) {
        (Some(sample), true) if *sample.path == root => Some(sample.value),
        _ => None,
    }
}

/// A value as a typed value in `encoding`, the way a target answers.
///
/// `PROTO` and `BYTES` give typed values (`uint_val`, `double_val`, `decimal_val`,
/// `bytes_val`, `leaflist_val`, `any_val`, ...); `ASCII` gives the display form; `JSON`
/// gives JSON text; `JSON_IETF` does too, except that integers and decimals are JSON
/// strings, as RFC 7951 requires for 64-bit types and `decimal64`. In JSON, bytes are
/// base64 strings (RFC 7951 `binary`) and an `Any` is `{"@type": url, "value": base64}`.
/// A delete has no value: the typed value is empty.
pub fn to_typed_value(value: &Value, encoding: Encoding) -> gnmi::TypedValue {
    if value.is_deleted() {
        return gnmi::TypedValue { value: None };
    }
    #[allow(deprecated)]
    let value = match encoding {
        Encoding::Proto | Encoding::Bytes => match value {
            Value::Int(v) => Tv::IntVal(*v),
            Value::Uint(v) => Tv::UintVal(*v),
            Value::Float(v) => Tv::DoubleVal(*v),
            Value::Bool(v) => Tv::BoolVal(*v),
            Value::String(v) => Tv::StringVal(v.clone()),
            Value::Decimal { digits, precision } => Tv::DecimalVal(gnmi::Decimal64 {
                digits: *digits,
                precision: *precision,
            }),
            Value::Bytes(v) => Tv::BytesVal(v.clone()),
            Value::LeafList(items) => Tv::LeaflistVal(gnmi::ScalarArray {
                element: items
                    .iter()
                    .map(|item| to_typed_value(item, encoding))
                    .collect(),
            }),
            Value::Any { type_url, value } => Tv::AnyVal(prost_types::Any {
                type_url: type_url.clone(),
                value: value.clone(),
            }),
            Value::Deleted => return gnmi::TypedValue { value: None },
        },
        Encoding::Ascii => Tv::AsciiVal(value.to_string()),
        Encoding::Json => Tv::JsonVal(json_value(value, false).to_string().into_bytes()),
        Encoding::JsonIetf => Tv::JsonIetfVal(json_value(value, true).to_string().into_bytes()),
    };
    gnmi::TypedValue { value: Some(value) }
}

fn json_value(value: &Value, ietf: bool) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Value::Int(v) if ietf => Json::String(v.to_string()),
        Value::Uint(v) if ietf => Json::String(v.to_string()),
        Value::Decimal { .. } if ietf => Json::String(value.to_string()),
        Value::Int(v) => Json::from(*v),
        Value::Uint(v) => Json::from(*v),
        Value::Float(v) => Json::from(*v),
        Value::Decimal { .. } => value.as_f64().map_or(Json::Null, Json::from),
        Value::Bool(v) => Json::Bool(*v),
        Value::String(v) => Json::String(v.clone()),
        Value::Bytes(v) => Json::String(BASE64.encode(v)),
        Value::LeafList(items) => Json::Array(items.iter().map(|v| json_value(v, ietf)).collect()),
        Value::Any { type_url, value } => serde_json::json!({
            "@type": type_url,
            "value": BASE64.encode(value),
        }),
        Value::Deleted => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv(value: Tv) -> gnmi::TypedValue {
        gnmi::TypedValue { value: Some(value) }
    }

    fn decode(typed: &gnmi::TypedValue) -> Result<Value, String> {
        let device = model::DeviceKey::new("value").unwrap();
        let mut out = Leaves::new(&device, 0, 1);
        leaves(Arc::default(), 0, typed, &mut out);
        let decoded = out.finish();
        match (decoded.samples.as_slice(), decoded.errors.as_slice()) {
            ([sample], []) => Ok(sample.value.clone()),
            ([], [e]) => Err(e.reason.clone()),
            other => panic!("{typed:?}: {other:?}"),
        }
    }

    #[test]
    #[allow(deprecated)]
    fn every_typed_value_kind_decodes() {
        let any = prost_types::Any {
            type_url: "type.googleapis.com/x.Y".into(),
            value: vec![8, 1],
        };
        let cases: Vec<(Tv, Result<Value, &str>)> = vec![
            (Tv::IntVal(-3), Ok(Value::Int(-3))),
            (Tv::UintVal(u64::MAX), Ok(Value::Uint(u64::MAX))),
            (Tv::FloatVal(1.5), Ok(Value::Float(1.5))),
            (Tv::DoubleVal(2.25), Ok(Value::Float(2.25))),
            (Tv::BoolVal(true), Ok(Value::Bool(true))),
            (Tv::StringVal("UP".into()), Ok(Value::String("UP".into()))),
            (
                Tv::AsciiVal("text".into()),
                Ok(Value::String("text".into())),
            ),
            (
                Tv::DecimalVal(gnmi::Decimal64 {
                    digits: 12345,
                    precision: 2,
                }),
                Ok(Value::Decimal {
                    digits: 12345,
                    precision: 2,
                }),
            ),
            (
                Tv::DecimalVal(gnmi::Decimal64 {
                    digits: 1,
                    precision: 19,
                }),
                Err("decimal precision 19"),
            ),
            (Tv::BytesVal(vec![0, 255]), Ok(Value::Bytes(vec![0, 255]))),
            (
                Tv::AnyVal(any),
                Ok(Value::Any {
                    type_url: "type.googleapis.com/x.Y".into(),
                    value: vec![8, 1],
                }),
            ),
            (
                Tv::LeaflistVal(gnmi::ScalarArray {
                    element: vec![
                        tv(Tv::StringVal("a".into())),
                        tv(Tv::UintVal(2)),
                        tv(Tv::JsonIetfVal(b"\"3\"".to_vec())),
                        tv(Tv::BoolVal(false)),
                    ],
                }),
                Ok(Value::LeafList(vec![
                    Value::String("a".into()),
                    Value::Uint(2),
                    Value::Uint(3),
                    Value::Bool(false),
                ])),
            ),
            (
                Tv::LeaflistVal(gnmi::ScalarArray::default()),
                Ok(Value::LeafList(vec![])),
            ),
            (
                Tv::LeaflistVal(gnmi::ScalarArray {
                    element: vec![tv(Tv::LeaflistVal(gnmi::ScalarArray::default()))],
                }),
                Err("cannot hold a leaf-list"),
            ),
            (
                Tv::LeaflistVal(gnmi::ScalarArray {
                    element: vec![tv(Tv::JsonVal(b"{}".to_vec()))],
                }),
                Err("not a scalar"),
            ),
            (
                Tv::LeaflistVal(gnmi::ScalarArray {
                    element: vec![gnmi::TypedValue::default()],
                }),
                Err("without a value"),
            ),
            (Tv::JsonVal(b"42".to_vec()), Ok(Value::Uint(42))),
            (Tv::JsonIetfVal(b"\"42\"".to_vec()), Ok(Value::Uint(42))),
            (Tv::JsonVal(b"{".to_vec()), Err("malformed JSON")),
            (Tv::ProtoBytes(vec![1]), Err("protobuf schema")),
        ];
        for (typed, want) in cases {
            let got = decode(&tv(typed.clone()));
            match (&got, &want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{typed:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{typed:?}: {got}"),
                _ => panic!("{typed:?}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(
            decode(&gnmi::TypedValue::default()),
            Err("update without a value".into())
        );
    }

    #[test]
    #[allow(deprecated)]
    fn legacy_values_decode_by_their_encoding() {
        let legacy = |encoding: Encoding, bytes: &[u8]| {
            let device = model::DeviceKey::new("value").unwrap();
            let mut out = Leaves::new(&device, 0, 1);
            let value = gnmi::Value {
                value: bytes.to_vec(),
                r#type: encoding as i32,
            };
            legacy_leaves(Arc::default(), 0, &value, &mut out);
            let decoded = out.finish();
            let out: Vec<(Path, Value)> = decoded
                .samples
                .into_iter()
                .map(|s| ((*s.path).clone(), s.value))
                .collect();
            (out, decoded.errors)
        };
        assert_eq!(
            legacy(Encoding::JsonIetf, b"\"7\"").0,
            vec![(Path::default(), Value::Uint(7))]
        );
        assert_eq!(
            legacy(Encoding::Json, b"\"7\"").0,
            vec![(Path::default(), Value::String("7".into()))]
        );
        assert_eq!(
            legacy(Encoding::Ascii, b"UP").0,
            vec![(Path::default(), Value::String("UP".into()))]
        );
        assert_eq!(
            legacy(Encoding::Bytes, &[1, 2]).0,
            vec![(Path::default(), Value::Bytes(vec![1, 2]))]
        );
        assert!(legacy(Encoding::Proto, &[1]).1[0].reason.contains("schema"));
        assert!(
            legacy(Encoding::Ascii, &[0xff]).1[0]
                .reason
                .contains("text")
        );
    }

    #[test]
    fn to_value_reads_single_leaves_only() {
        let json = |s: &str| to_value(&tv(Tv::JsonVal(s.as_bytes().to_vec())));
        assert_eq!(json("42"), Some(Value::Uint(42)));
        assert_eq!(json("18446744073709551615"), Some(Value::Uint(u64::MAX)));
        assert_eq!(json("-42"), Some(Value::Int(-42)));
        assert_eq!(json("0.5"), Some(Value::Float(0.5)));
        assert_eq!(json("false"), Some(Value::Bool(false)));
        assert_eq!(json("\"UP\""), Some(Value::String("UP".into())));
        assert_eq!(
            json("[1,2]"),
            Some(Value::LeafList(vec![Value::Uint(1), Value::Uint(2)]))
        );
        for not_one_leaf in ["null", "{\"a\":1}", "not json", ""] {
            assert_eq!(json(not_one_leaf), None, "{not_one_leaf}");
        }
        assert_eq!(to_value(&tv(Tv::ProtoBytes(vec![]))), None);
        assert_eq!(to_value(&gnmi::TypedValue::default()), None);
    }

    #[test]
    fn values_encode_per_requested_encoding_and_decode_back() {
        let decimal = Value::Decimal {
            digits: -1050,
            precision: 3,
        };
        let values = [
            Value::Uint(9_000_000_000),
            Value::Int(-1),
            Value::Float(0.25),
            Value::Bool(true),
            Value::String("DOWN".into()),
            Value::LeafList(vec![Value::Uint(1), Value::String("x".into())]),
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
        // Exact kinds survive the typed and the IETF forms; plain JSON has no decimals.
        let bytes = Value::Bytes(vec![0, 1, 254]);
        let any = Value::Any {
            type_url: "t".into(),
            value: vec![1],
        };
        for v in [&decimal, &bytes, &any] {
            let typed = to_typed_value(v, Encoding::Proto);
            assert_eq!(to_value(&typed).as_ref(), Some(v), "{v:?}");
        }
        assert_eq!(
            to_value(&to_typed_value(&decimal, Encoding::JsonIetf)),
            Some(decimal.clone())
        );
        assert_eq!(
            to_value(&to_typed_value(&decimal, Encoding::Json)),
            Some(Value::Float(-1.05))
        );
        assert_eq!(
            to_typed_value(&bytes, Encoding::Json).value,
            Some(Tv::JsonVal(b"\"AAH+\"".to_vec()))
        );
        assert_eq!(to_typed_value(&Value::Deleted, Encoding::Proto).value, None);
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
