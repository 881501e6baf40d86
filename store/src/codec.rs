//! What both adapters share between the model and their rows: value columns, series kinds,
//! device states, and the shaping of a sample batch into rows.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use model::{DeviceKey, DeviceState, Path, Sample, TimestampNs, Value};

use crate::{Error, Result};

/// The kind of a series: the kind of the first value written to it (deletes aside). Numbers
/// are stored as `f64` whatever their kind; the kind says how to turn them back into a
/// [`Value`], and how to read the text of kinds stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Uint,
    Float,
    Bool,
    String,
    Decimal,
    Bytes,
    LeafList,
    Any,
}

/// Text stored for a NaN float, whose number column would be NULL on SQLite (it stores NaN
/// as NULL) and so read back as a delete.
const NAN_TEXT: &str = "NaN";

impl Kind {
    /// The kind a value gives a new series. A delete has no kind of its own: a series that
    /// is only ever deleted is `float`, which reads any later number or text as itself.
    pub(crate) fn of(value: &Value) -> Self {
        match value {
            Value::Int(_) => Self::Int,
            Value::Uint(_) => Self::Uint,
            Value::Float(_) | Value::Deleted => Self::Float,
            Value::Bool(_) => Self::Bool,
            Value::String(_) => Self::String,
            Value::Decimal { .. } => Self::Decimal,
            Value::Bytes(_) => Self::Bytes,
            Value::LeafList(_) => Self::LeafList,
            Value::Any { .. } => Self::Any,
        }
    }

    /// The name stored in `series.kind`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Uint => "uint",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::String => "string",
            Self::Decimal => "decimal",
            Self::Bytes => "bytes",
            Self::LeafList => "leaflist",
            Self::Any => "any",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "int" => Self::Int,
            "uint" => Self::Uint,
            "float" => Self::Float,
            "bool" => Self::Bool,
            "string" => Self::String,
            "decimal" => Self::Decimal,
            "bytes" => Self::Bytes,
            "leaflist" => Self::LeafList,
            "any" => Self::Any,
            other => return Err(Error::Corrupt(format!("unknown series kind {other:?}"))),
        })
    }

    /// Whether the kind charts (its values live in the number column).
    fn numeric(self) -> bool {
        matches!(
            self,
            Self::Int | Self::Uint | Self::Float | Self::Bool | Self::Decimal
        )
    }
}

/// How an `Any` is kept in `value_text`.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAny {
    type_url: String,
    /// Standard base64.
    value: String,
}

/// The `(value, value_text)` columns of a value.
///
/// - Numbers become `f64` in `value`: integers beyond ±2^53 (large `uint` counters,
///   mostly) lose their low bits, which charts cannot show anyway; exact 64-bit counters
///   would need a `numeric` or `bigint` column and are left to the rollup work. Booleans
///   are stored as 0 and 1. A NaN float is the text `NaN` (see [`NAN_TEXT`]).
/// - Decimals are the nearest `f64` in `value`, so they chart, plus their exact text
///   (`123.45`) in `value_text`: the only rows with both columns set.
/// - Text is `value_text`; bytes are standard base64 there; leaf-lists are the JSON array
///   of their values in the model's serde form (`[{"uint":1},{"string":"a"}]`), exact for
///   every kind; an `Any` is `{"type_url": ..., "value": base64}`.
/// - A delete is a row with both columns NULL, so the store keeps it in time order with
///   the series' values and reads it back as [`Value::Deleted`] (a gap in charts).
pub(crate) fn encode(value: &Value) -> (Option<f64>, Option<String>) {
    match value {
        Value::Float(v) if v.is_nan() => (None, Some(NAN_TEXT.to_owned())),
        Value::Int(_) | Value::Uint(_) | Value::Float(_) | Value::Bool(_) => (value.as_f64(), None),
        Value::Decimal { .. } => (value.as_f64(), Some(value.to_string())),
        Value::String(s) => (None, Some(text(s))),
        Value::Bytes(b) => (None, Some(BASE64.encode(b))),
        Value::LeafList(items) => (None, Some(text(&json(items)))),
        Value::Any { type_url, value } => {
            let stored = StoredAny {
                type_url: type_url.clone(),
                value: BASE64.encode(value),
            };
            (None, Some(text(&json(&stored))))
        }
        Value::Deleted => (None, None),
    }
}

/// JSON text of a value that always serialises (no maps with non-string keys, no
/// failing `Serialize` impls).
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Free text (values, error messages) as stored: PostgreSQL text cannot hold NUL, so both
/// backends store U+FFFD in its place and agree.
pub(crate) fn text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// Health reports as stored JSON text, one per device (the last report of a device wins),
/// sorted by device name so that concurrent writers lock rows in one order. NUL in any
/// string or key becomes U+FFFD, as in text values (PostgreSQL's `jsonb` refuses NUL).
pub(crate) fn health_rows(reports: &[crate::HealthReport]) -> Vec<(&str, String)> {
    let by_name: std::collections::BTreeMap<&str, &serde_json::Value> = reports
        .iter()
        .map(|r| (r.device.as_str(), &r.health))
        .collect();
    by_name
        .into_iter()
        .map(|(name, health)| (name, without_nul(health).to_string()))
        .collect()
}

fn without_nul(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        J::String(s) => J::String(text(s)),
        J::Array(items) => J::Array(items.iter().map(without_nul).collect()),
        J::Object(map) => J::Object(map.iter().map(|(k, v)| (text(k), without_nul(v))).collect()),
        other => other.clone(),
    }
}

/// Parses a stored health report.
pub(crate) fn health(json: Option<String>) -> Result<Option<serde_json::Value>> {
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| Error::Corrupt(format!("stored health is not JSON: {e}")))
    })
    .transpose()
}

/// Rebuilds a value from its columns and its series' kind.
///
/// Both columns NULL is a delete. A number with text is a decimal. A number alone reads
/// back as the series kind when it fits that kind (so a series whose kind changed over
/// time still returns what was stored) and as `Float` otherwise. Text alone reads as the
/// series kind (bytes, leaf-list, `Any`, NaN for number kinds) when it has that kind's
/// form, else as text.
pub(crate) fn decode(kind: Kind, value: Option<f64>, text: Option<String>) -> Result<Value> {
    let v = match (value, text) {
        (None, None) => return Ok(Value::Deleted),
        (Some(v), Some(text)) => {
            return Ok(Value::parse_decimal(&text).unwrap_or(Value::Float(v)));
        }
        (None, Some(text)) => return Ok(decode_text(kind, text)),
        (Some(v), None) => v,
    };
    // `i64::MAX as f64` rounds up to 2^63, and `as` saturates: a stored i64::MAX (or
    // u64::MAX) reads back as itself.
    let integral = v.is_finite() && v.fract() == 0.0;
    Ok(match kind {
        Kind::Int if integral && v >= i64::MIN as f64 && v <= i64::MAX as f64 => {
            Value::Int(v as i64)
        }
        Kind::Uint if integral && v >= 0.0 && v <= u64::MAX as f64 => Value::Uint(v as u64),
        Kind::Bool if v == 0.0 || v == 1.0 => Value::Bool(v == 1.0),
        _ => Value::Float(v),
    })
}

fn decode_text(kind: Kind, text: String) -> Value {
    let decoded = match kind {
        _ if kind.numeric() => (text == NAN_TEXT).then_some(Value::Float(f64::NAN)),
        Kind::Bytes => BASE64.decode(&text).ok().map(Value::Bytes),
        Kind::LeafList => serde_json::from_str(&text).ok().map(Value::LeafList),
        Kind::Any => serde_json::from_str::<StoredAny>(&text)
            .ok()
            .and_then(|any| {
                let value = BASE64.decode(&any.value).ok()?;
                Some(Value::Any {
                    type_url: any.type_url,
                    value,
                })
            }),
        _ => None,
    };
    decoded.unwrap_or(Value::String(text))
}

/// Parses a stored device state.
pub(crate) fn state(s: &str) -> Result<DeviceState> {
    DeviceState::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown device state {s:?}")))
}

/// Parses a stored canonical path.
pub(crate) fn path(s: &str) -> Result<Path> {
    s.parse()
        .map_err(|e| Error::Corrupt(format!("stored path is not canonical: {e}")))
}

/// A distinct series of a batch.
#[derive(Debug)]
pub(crate) struct SeriesKey<'a> {
    pub device: &'a DeviceKey,
    /// Canonical path string.
    pub path: String,
    /// Kind of its first sample in the batch that is not a delete (of its first sample if
    /// all are), used if the series is created.
    pub kind: Kind,
}

/// One sample of a batch, its series not resolved yet.
#[derive(Debug)]
struct PendingRow {
    series: usize,
    ts: i64,
    value: Option<f64>,
    text: Option<String>,
}

/// A batch split into its distinct series and its rows.
#[derive(Debug)]
pub(crate) struct Batch<'a> {
    pub series: Vec<SeriesKey<'a>>,
    rows: Vec<PendingRow>,
    /// Samples refused, with the first reason of each device.
    pub rejected: u64,
    pub rejections: Vec<crate::Rejection>,
}

/// Why `ts` is not admitted when the store's clock reads `now`, if it is not.
pub(crate) fn implausible(ts: TimestampNs, now: TimestampNs) -> Option<String> {
    let ahead = i64::try_from(crate::MAX_SAMPLE_AHEAD.as_nanos()).unwrap_or(i64::MAX);
    if ts < crate::OLDEST_SAMPLE_TS {
        Some(format!(
            "timestamp {ts} ns is before 2000-01-01 (device clock not set?)"
        ))
    } else if ts > now.saturating_add(ahead) {
        Some(format!(
            "timestamp {ts} ns is {}s ahead of the store's clock (more than {}s)",
            (ts - now) / 1_000_000_000,
            crate::MAX_SAMPLE_AHEAD.as_secs()
        ))
    } else {
        None
    }
}

impl<'a> Batch<'a> {
    /// Splits `samples`, converting timestamps to the backend's unit with `ts`; samples
    /// whose timestamps are implausible at `now` are counted in `rejected` instead.
    pub(crate) fn new(
        samples: &'a [Sample],
        ts: impl Fn(TimestampNs) -> i64,
        now: TimestampNs,
    ) -> Self {
        let mut index: HashMap<(&DeviceKey, String), usize> = HashMap::new();
        let mut series = Vec::new();
        // Whether each series' kind so far comes from deletes only.
        let mut kind_from_delete = Vec::new();
        let mut rows = Vec::with_capacity(samples.len());
        let mut rejected = 0;
        let mut rejections: Vec<crate::Rejection> = Vec::new();
        for sample in samples {
            if let Some(reason) = implausible(sample.ts, now) {
                rejected += 1;
                if !rejections.iter().any(|r| r.device == sample.device) {
                    rejections.push(crate::Rejection {
                        device: sample.device.clone(),
                        reason: format!("{}: {reason}", sample.path),
                    });
                }
                continue;
            }
            let path = sample.path.to_string();
            let next = series.len();
            let i = *index
                .entry((&sample.device, path))
                .or_insert_with_key(|key| {
                    series.push(SeriesKey {
                        device: key.0,
                        path: key.1.clone(),
                        kind: Kind::of(&sample.value),
                    });
                    kind_from_delete.push(sample.value.is_deleted());
                    next
                });
            if kind_from_delete[i] && !sample.value.is_deleted() {
                series[i].kind = Kind::of(&sample.value);
                kind_from_delete[i] = false;
            }
            let (value, text) = encode(&sample.value);
            rows.push(PendingRow {
                series: i,
                ts: ts(sample.ts),
                value,
                text,
            });
        }
        Self {
            series,
            rows,
            rejected,
            rejections,
        }
    }

    /// The batch of `samples` at the store's clock, or the report to return at once when
    /// none is admissible (an empty call, or every sample refused).
    pub(crate) fn admit(
        samples: &'a [Sample],
        ts: impl Fn(TimestampNs) -> i64,
    ) -> std::result::Result<Self, crate::WriteReport> {
        let mut batch = Self::new(samples, ts, crate::now_ns());
        if batch.admitted() == 0 {
            return Err(crate::WriteReport {
                rejected: batch.rejected,
                rejections: std::mem::take(&mut batch.rejections),
                ..crate::WriteReport::default()
            });
        }
        Ok(batch)
    }

    /// The report of a written batch: `admitted` samples of which `fenced` were refused
    /// (those of devices `stale`) and `written` were new.
    pub(crate) fn report(
        &mut self,
        admitted: usize,
        written: u64,
        fenced: u64,
        device_ids: &[i64],
        stale: &[i64],
    ) -> crate::WriteReport {
        crate::WriteReport {
            rejected: self.rejected,
            rejections: std::mem::take(&mut self.rejections),
            fenced,
            fenced_devices: device_names(self, device_ids, stale),
            ..crate::WriteReport::of(admitted - fenced as usize, written)
        }
    }

    /// Samples admitted (rows not taken yet).
    pub(crate) fn admitted(&self) -> usize {
        self.rows.len()
    }

    /// Takes the rows out, with their resolved ids (`device_ids[i]`, `series_ids[i]` for
    /// `self.series[i]`), in storage order.
    pub(crate) fn take_rows(&mut self, device_ids: &[i64], series_ids: &[i64]) -> Rows {
        let mut rows: Vec<Row> = std::mem::take(&mut self.rows)
            .into_iter()
            .map(|r| Row {
                series_id: series_ids[r.series],
                device_id: device_ids[r.series],
                ts: r.ts,
                value: r.value,
                text: r.text,
            })
            .collect();
        // One global order for every writer, so concurrent batches touching the same rows
        // (an old and a new owner during a handoff) lock them in the same order and cannot
        // deadlock. Stable: of two samples with one (series, ts), the first one is stored.
        rows.sort_by_key(|r| (r.series_id, r.ts));
        Rows { rows }
    }
}

/// One sample ready for storage, `ts` in the backend's unit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub series_id: i64,
    pub device_id: i64,
    pub ts: i64,
    pub value: Option<f64>,
    pub text: Option<String>,
}

/// The rows of a batch, ordered by (series id, ts).
#[derive(Debug)]
pub(crate) struct Rows {
    pub rows: Vec<Row>,
}

/// The devices of `batch` named in `fence`, as (device id, fence epoch), each once.
pub(crate) fn fenced_ids(
    batch: &Batch<'_>,
    device_ids: &[i64],
    fence: &crate::Fence,
) -> Result<Vec<(i64, i64)>> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    if fence.is_empty() {
        return Ok(out);
    }
    for (series, id) in batch.series.iter().zip(device_ids) {
        if let Some(epoch) = fence.get(series.device)
            && !out.iter().any(|(d, _)| d == id)
        {
            out.push((*id, epoch_to_db(*epoch)?));
        }
    }
    Ok(out)
}

/// The fenced devices whose stored epoch (`current`: id, epoch) is newer than the fence's.
pub(crate) fn stale_devices(fenced: &[(i64, i64)], current: &[(i64, i64)]) -> Vec<i64> {
    current
        .iter()
        .filter(|(id, epoch)| fenced.iter().any(|(f, held)| f == id && epoch > held))
        .map(|(id, _)| *id)
        .collect()
}

/// The names of devices `ids` of `batch`, each once.
pub(crate) fn device_names(batch: &Batch<'_>, device_ids: &[i64], ids: &[i64]) -> Vec<DeviceKey> {
    let mut names: Vec<DeviceKey> = Vec::new();
    for (series, id) in batch.series.iter().zip(device_ids) {
        if ids.contains(id) && !names.contains(series.device) {
            names.push(series.device.clone());
        }
    }
    names
}

/// An epoch as stored (`bigint`/`INTEGER`).
pub(crate) fn epoch_to_db(epoch: u64) -> Result<i64> {
    i64::try_from(epoch).map_err(|_| crate::Error::EpochTooLarge(epoch))
}

/// A stored epoch.
pub(crate) fn epoch_from_db(epoch: i64) -> Result<u64> {
    u64::try_from(epoch).map_err(|_| crate::Error::Corrupt(format!("negative epoch {epoch}")))
}

impl Rows {
    /// Drops the rows of `stale` devices (whose stored epoch outgrew the fence); returns
    /// how many were dropped.
    pub(crate) fn drop_devices(&mut self, stale: &[i64]) -> u64 {
        if stale.is_empty() {
            return 0;
        }
        let before = self.rows.len();
        self.rows.retain(|r| !stale.contains(&r.device_id));
        (before - self.rows.len()) as u64
    }

    /// The sample that becomes each series' last value: its newest one, the first of equals
    /// (the one the insert keeps). Ordered by series id.
    pub(crate) fn newest_per_series(&self) -> Vec<&Row> {
        let mut newest: Vec<&Row> = Vec::new();
        for row in &self.rows {
            match newest.last_mut() {
                Some(last) if last.series_id == row.series_id => {
                    if row.ts > last.ts {
                        *last = row;
                    }
                }
                _ => newest.push(row),
            }
        }
        newest
    }

    /// The newest timestamp of each device, ordered by device id.
    pub(crate) fn newest_per_device(&self) -> Vec<(i64, i64)> {
        let mut newest: HashMap<i64, i64> = HashMap::new();
        for row in &self.rows {
            let ts = newest.entry(row.device_id).or_insert(row.ts);
            *ts = (*ts).max(row.ts);
        }
        let mut newest: Vec<(i64, i64)> = newest.into_iter().collect();
        newest.sort_unstable();
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test timestamps count from here (plausible, see `implausible`).
    const BASE: TimestampNs = crate::OLDEST_SAMPLE_TS;

    fn sample(device: &str, path: &str, ts: i64, value: Value) -> Sample {
        Sample {
            device: DeviceKey::new(device).expect("test value"),
            path: path.parse::<model::Path>().expect("test value").into(),
            ts: BASE + ts,
            value,
        }
    }

    #[test]
    fn implausible_timestamps_are_refused_one_by_one_with_a_reason_per_device() {
        let now = BASE + 1_000_000_000_000;
        let hour = 3_600_000_000_000;
        let samples = vec![
            sample("a", "/x", 1, Value::Uint(1)),
            Sample {
                ts: 0,
                ..sample("a", "/x", 0, Value::Uint(2))
            },
            Sample {
                ts: now + 2 * hour,
                ..sample("a", "/y", 0, Value::Uint(3))
            },
            Sample {
                ts: now + hour,
                ..sample("b", "/x", 0, Value::Uint(4))
            },
            Sample {
                ts: BASE - 1,
                ..sample("b", "/z", 0, Value::Uint(5))
            },
        ];
        let batch = Batch::new(&samples, |ns| ns, now);
        assert_eq!(
            batch.admitted(),
            2,
            "the on-time and the one-hour-ahead samples"
        );
        assert_eq!(batch.rejected, 3);
        let reasons: Vec<(&str, &str)> = batch
            .rejections
            .iter()
            .map(|r| (r.device.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 2, "one per device: {reasons:?}");
        assert_eq!(reasons[0].0, "a");
        assert!(
            reasons[0]
                .1
                .starts_with("/x: timestamp 0 ns is before 2000-01-01")
        );
        assert_eq!(reasons[1].0, "b");
        assert!(reasons[1].1.starts_with("/z: "), "{reasons:?}");
        assert!(implausible(now + 2 * hour, now).is_some_and(|r| r.contains("7200s ahead")));
    }

    #[test]
    fn values_round_trip_through_their_columns() {
        for value in [
            Value::Int(-42),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Uint(0),
            Value::Uint(1 << 53),
            Value::Uint(u64::MAX),
            Value::Float(1.5),
            Value::Float(-0.25),
            Value::Float(f64::INFINITY),
            Value::Bool(true),
            Value::Bool(false),
            Value::String("UP".into()),
            Value::String(String::new()),
            Value::String("ünïcode ✓".into()),
            Value::Decimal {
                digits: 12345,
                precision: 2,
            },
            Value::Decimal {
                digits: i64::MIN,
                precision: 18,
            },
            Value::Decimal {
                digits: -10,
                precision: 0,
            },
            Value::Bytes(vec![0, 1, 0xfe, 0xff]),
            Value::Bytes(vec![]),
            Value::LeafList(vec![
                Value::Uint(1),
                Value::Int(-1),
                Value::String("a".into()),
                Value::Decimal {
                    digits: 15,
                    precision: 1,
                },
                Value::Bytes(vec![7]),
            ]),
            Value::LeafList(vec![]),
            Value::Any {
                type_url: "type.googleapis.com/x.Y".into(),
                value: vec![8, 150, 1],
            },
            Value::Deleted,
        ] {
            let (v, t) = encode(&value);
            assert_eq!(decode(Kind::of(&value), v, t).expect("test value"), value);
        }
    }

    #[test]
    fn new_kinds_have_documented_columns() {
        let decimal = Value::Decimal {
            digits: 12345,
            precision: 2,
        };
        assert_eq!(encode(&decimal), (Some(123.45), Some("123.45".into())));
        assert_eq!(
            encode(&Value::Bytes(vec![0, 1, 0xfe])),
            (None, Some("AAH+".into()))
        );
        assert_eq!(
            encode(&Value::LeafList(vec![
                Value::Uint(1),
                Value::String("a".into())
            ])),
            (None, Some(r#"[{"uint":1},{"string":"a"}]"#.into()))
        );
        assert_eq!(
            encode(&Value::Any {
                type_url: "t".into(),
                value: vec![1],
            }),
            (None, Some(r#"{"type_url":"t","value":"AQ=="}"#.into()))
        );
        assert_eq!(encode(&Value::Deleted), (None, None));
        assert_eq!(encode(&Value::Float(f64::NAN)), (None, Some("NaN".into())));
    }

    #[test]
    fn deletes_read_back_as_deletes_in_every_kind() {
        for kind in [Kind::Int, Kind::Float, Kind::String, Kind::Bytes, Kind::Any] {
            assert_eq!(
                decode(kind, None, None).expect("test value"),
                Value::Deleted
            );
        }
    }

    #[test]
    fn text_not_of_the_series_kind_reads_back_as_text() {
        for kind in [Kind::Bytes, Kind::LeafList, Kind::Any, Kind::Uint] {
            assert_eq!(
                decode(kind, None, Some("not {base64".into())).expect("test value"),
                Value::String("not {base64".into()),
                "{kind:?}"
            );
        }
        assert_eq!(
            decode(Kind::String, None, Some("NaN".into())).expect("test value"),
            Value::String("NaN".into())
        );
        assert!(matches!(
            decode(Kind::Uint, None, Some("NaN".into())),
            Ok(Value::Float(v)) if v.is_nan()
        ));
        // A decimal row keeps its exact text whatever the series kind.
        assert_eq!(
            decode(Kind::String, Some(0.5), Some("0.50".into())).expect("test value"),
            Value::Decimal {
                digits: 50,
                precision: 2
            }
        );
    }

    #[test]
    fn a_series_created_by_a_delete_takes_the_kind_of_its_first_value() {
        let samples = vec![
            sample("a", "/x", 1, Value::Deleted),
            sample("a", "/x", 2, Value::Uint(3)),
            sample("a", "/y", 1, Value::Deleted),
            sample("a", "/z", 1, Value::String("s".into())),
            sample("a", "/z", 2, Value::Deleted),
        ];
        let kinds: Vec<Kind> = Batch::new(&samples, |ns| ns, BASE)
            .series
            .iter()
            .map(|s| s.kind)
            .collect();
        assert_eq!(kinds, vec![Kind::Uint, Kind::Float, Kind::String]);
    }

    #[test]
    fn nul_in_text_becomes_a_replacement_character() {
        assert_eq!(
            encode(&Value::String("a\0b".into())),
            (None, Some("a\u{FFFD}b".into()))
        );
    }

    #[test]
    fn uint_beyond_2_pow_53_loses_low_bits() {
        let (v, t) = encode(&Value::Uint((1 << 53) + 1));
        assert_eq!(
            decode(Kind::Uint, v, t).expect("test value"),
            Value::Uint(1 << 53)
        );
    }

    #[test]
    fn numbers_that_do_not_fit_the_kind_read_back_as_floats() {
        assert_eq!(
            decode(Kind::Int, Some(1.5), None).expect("test value"),
            Value::Float(1.5)
        );
        assert_eq!(
            decode(Kind::Uint, Some(-1.0), None).expect("test value"),
            Value::Float(-1.0)
        );
        assert_eq!(
            decode(Kind::Bool, Some(2.0), None).expect("test value"),
            Value::Float(2.0)
        );
        assert_eq!(
            decode(Kind::String, Some(2.0), None).expect("test value"),
            Value::Float(2.0)
        );
        assert_eq!(
            decode(Kind::Int, None, Some("x".into())).expect("test value"),
            Value::String("x".into())
        );
    }

    #[test]
    fn kinds_and_states_parse_their_stored_names() {
        for kind in [
            Kind::Int,
            Kind::Uint,
            Kind::Float,
            Kind::Bool,
            Kind::String,
            Kind::Decimal,
            Kind::Bytes,
            Kind::LeafList,
            Kind::Any,
        ] {
            assert_eq!(Kind::parse(kind.as_str()).expect("test value"), kind);
        }
        assert!(matches!(Kind::parse("u64"), Err(Error::Corrupt(_))));
        assert_eq!(state("synced").expect("test value"), DeviceState::Synced);
        assert!(matches!(state("up"), Err(Error::Corrupt(_))));
        assert!(matches!(path("no-slash"), Err(Error::Corrupt(_))));
    }

    #[test]
    fn batches_group_series_and_order_rows() {
        let samples = vec![
            sample("b", "/x", 30, Value::Uint(3)),
            sample("a", "/y", 10, Value::String("up".into())),
            sample("b", "/x", 10, Value::Uint(1)),
            sample("b", "/x", 30, Value::Uint(99)),
            sample("b", "/x", 20, Value::Float(2.0)),
        ];
        let batch = Batch::new(&samples, |ns| (ns - BASE) / 10, BASE);
        let keys: Vec<(&str, &str, Kind)> = batch
            .series
            .iter()
            .map(|s| (s.device.as_str(), s.path.as_str(), s.kind))
            .collect();
        assert_eq!(
            keys,
            vec![("b", "/x", Kind::Uint), ("a", "/y", Kind::String)]
        );

        let mut batch = batch;
        let rows = batch.take_rows(&[7, 6], &[20, 10]);
        let order: Vec<(i64, i64, Option<f64>)> = rows
            .rows
            .iter()
            .map(|r| (r.series_id, r.ts, r.value))
            .collect();
        assert_eq!(
            order,
            vec![
                (10, 1, None),
                (20, 1, Some(1.0)),
                (20, 2, Some(2.0)),
                (20, 3, Some(3.0)),
                (20, 3, Some(99.0)),
            ]
        );
        let newest: Vec<(i64, i64, Option<f64>)> = rows
            .newest_per_series()
            .iter()
            .map(|r| (r.series_id, r.ts, r.value))
            .collect();
        assert_eq!(newest, vec![(10, 1, None), (20, 3, Some(3.0))]);
        assert_eq!(rows.newest_per_device(), vec![(6, 1), (7, 3)]);
    }
}
