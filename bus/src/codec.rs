//! The wire codec: a version byte, then the body.
//!
//! - Version 2 (written): compact binary. Each message names its device once; the paths
//!   of a samples message are listed once (a dictionary, front-coded: each path as the
//!   length it shares with the previous one plus the rest) and referenced by index;
//!   timestamps are zig-zag varint deltas from the previous sample's; integers are
//!   varints. A typical counter sample costs 3-6 bytes besides its path's first mention.
//! - Version 1 (read): the JSON body earlier releases wrote, so a web node of this
//!   release understands a collector of the previous one during a rolling upgrade.
//!
//! A version this release does not know (a newer collector) is refused with a clear error
//! and counted, never misread. Decoding is bounded: lengths are checked against what
//! remains, leaf-lists nest at most [`MAX_DEPTH`] deep.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use model::{DeviceEvent, DeviceKey, DeviceState, Path, Sample, Value};

use crate::{BusMessage, Error, Result};

/// Version of the format `encode` writes.
pub const CODEC_VERSION: u8 = 2;
/// The JSON format of earlier releases, still read.
pub const JSON_VERSION: u8 = 1;
/// Deepest leaf-list nesting decoded.
pub const MAX_DEPTH: u32 = 4;

const KIND_SAMPLES: u8 = 1;
const KIND_STATE: u8 = 2;
const KIND_PLACEMENT: u8 = 3;
const KIND_COLLECTOR_HEALTH: u8 = 4;

/// Encodes a message for the wire (version [`CODEC_VERSION`]).
pub fn encode(message: &BusMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(CODEC_VERSION);
    match message {
        BusMessage::Samples { device, samples } => {
            out.push(KIND_SAMPLES);
            put_str(&mut out, device.as_str());
            // Dictionary of the paths, in order of first use; samples refer to it. Paths
            // are told apart by their `Arc` (a collector hands out one per leaf), so a
            // path never costs a deep comparison; an equal path under another `Arc` is
            // only listed twice.
            let mut seen: HashMap<*const Path, usize> = HashMap::new();
            let mut index: Vec<usize> = Vec::with_capacity(samples.len());
            let mut texts: Vec<String> = Vec::new();
            for s in samples {
                let at = *seen.entry(Arc::as_ptr(&s.path)).or_insert_with(|| {
                    let mut text = String::with_capacity(64);
                    // Writing into a String cannot fail.
                    let _ = write!(text, "{}", s.path);
                    texts.push(text);
                    texts.len() - 1
                });
                index.push(at);
            }
            // Front coding: each path as the length it shares with the previous one and
            // the rest (interface counters share most of their text).
            put_varint(&mut out, texts.len() as u64);
            let mut previous = "";
            for text in &texts {
                let shared = text
                    .bytes()
                    .zip(previous.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                put_varint(&mut out, shared as u64);
                put_bytes(&mut out, &text.as_bytes()[shared..]);
                previous = text;
            }
            put_varint(&mut out, samples.len() as u64);
            let mut previous = 0i64;
            for (s, at) in samples.iter().zip(index) {
                put_varint(&mut out, at as u64);
                put_varint(&mut out, zigzag(s.ts.wrapping_sub(previous)));
                previous = s.ts;
                put_value(&mut out, &s.value);
            }
        }
        BusMessage::State(event) => {
            out.push(KIND_STATE);
            put_str(&mut out, event.device.as_str());
            put_str(&mut out, event.state.as_str());
            match &event.error {
                None => out.push(0),
                Some(error) => {
                    out.push(1);
                    put_str(&mut out, error);
                }
            }
            put_varint(&mut out, zigzag(event.ts));
        }
        BusMessage::Placement(p) => {
            out.push(KIND_PLACEMENT);
            put_str(&mut out, &p.pool);
            put_str(&mut out, p.device.as_str());
            put_str(&mut out, &p.collector);
            put_varint(&mut out, p.epoch);
            put_varint(&mut out, zigzag(p.ts));
        }
        BusMessage::CollectorHealth(h) => {
            out.push(KIND_COLLECTOR_HEALTH);
            put_str(&mut out, &h.collector);
            put_str(&mut out, &h.pool);
            for n in [h.devices, h.synced, h.degraded, h.unreachable] {
                put_varint(&mut out, u64::from(n));
            }
            put_varint(&mut out, h.samples_written);
            put_varint(&mut out, zigzag(h.ts));
        }
    }
    out
}

/// Encodes a message in the version 1 (JSON) format: what the previous release wrote.
pub fn encode_json(message: &BusMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(JSON_VERSION);
    if let Err(error) = serde_json::to_writer(&mut out, message) {
        tracing::error!(%error, "Bus message could not be encoded");
    }
    out
}

/// Decodes a message from the wire: version 2, or version 1 JSON; refuses other versions
/// and malformed bodies.
pub fn decode(bytes: &[u8]) -> Result<BusMessage> {
    match bytes.split_first() {
        None => Err(Error::Decode("empty message".into())),
        Some((&CODEC_VERSION, body)) => {
            let mut r = Reader { bytes: body };
            let message = r.message()?;
            if !r.bytes.is_empty() {
                return Err(Error::Decode(format!(
                    "version 2 body: {} bytes after the message",
                    r.bytes.len()
                )));
            }
            Ok(message)
        }
        Some((&JSON_VERSION, body)) => {
            serde_json::from_slice(body).map_err(|e| Error::Decode(format!("version 1 body: {e}")))
        }
        Some((version, _)) => Err(Error::Decode(format!(
            "unsupported codec version {version} (this release reads {JSON_VERSION} and {CODEC_VERSION})"
        ))),
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

const V_INT: u8 = 0;
const V_UINT: u8 = 1;
const V_FLOAT: u8 = 2;
const V_FALSE: u8 = 3;
const V_TRUE: u8 = 4;
const V_STRING: u8 = 5;
const V_DECIMAL: u8 = 6;
const V_BYTES: u8 = 7;
const V_LEAF_LIST: u8 = 8;
const V_ANY: u8 = 9;
const V_DELETED: u8 = 10;

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Int(i) => {
            out.push(V_INT);
            put_varint(out, zigzag(*i));
        }
        Value::Uint(u) => {
            out.push(V_UINT);
            put_varint(out, *u);
        }
        Value::Float(f) => {
            out.push(V_FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Bool(b) => out.push(if *b { V_TRUE } else { V_FALSE }),
        Value::String(s) => {
            out.push(V_STRING);
            put_str(out, s);
        }
        Value::Decimal { digits, precision } => {
            out.push(V_DECIMAL);
            put_varint(out, zigzag(*digits));
            put_varint(out, u64::from(*precision));
        }
        Value::Bytes(b) => {
            out.push(V_BYTES);
            put_bytes(out, b);
        }
        Value::LeafList(items) => {
            out.push(V_LEAF_LIST);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
        Value::Any { type_url, value } => {
            out.push(V_ANY);
            put_str(out, type_url);
            put_bytes(out, value);
        }
        Value::Deleted => out.push(V_DELETED),
    }
}

/// Paths most recently decoded on this thread, so a stream of messages about the same
/// leaves parses each path once and shares one `Arc` per leaf (as the collector does).
const PATH_CACHE: usize = 16_384;

thread_local! {
    static PATHS: RefCell<HashMap<String, Arc<Path>>> = RefCell::new(HashMap::new());
}

fn cached_path(text: &str) -> Result<Arc<Path>> {
    if let Some(p) = PATHS.with(|c| c.borrow().get(text).cloned()) {
        return Ok(p);
    }
    let path: Path = text
        .parse()
        .map_err(|e| bad(&format!("path {text:?}: {e}")))?;
    let path = Arc::new(path);
    PATHS.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= PATH_CACHE {
            cache.clear();
        }
        cache.insert(text.to_owned(), path.clone());
    });
    Ok(path)
}

/// Reads a version 2 body; every error says what was being read.
struct Reader<'a> {
    bytes: &'a [u8],
}

fn bad(what: &str) -> Error {
    Error::Decode(format!("version 2 body: {what}"))
}

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &str) -> Result<u8> {
        let (&b, rest) = self
            .bytes
            .split_first()
            .ok_or_else(|| bad(&format!("ends before {what}")))?;
        self.bytes = rest;
        Ok(b)
    }

    fn varint(&mut self, what: &str) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad(&format!("{what}: varint longer than 10 bytes")))
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        let len = self.varint(what)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= self.bytes.len())
            .ok_or_else(|| bad(&format!("{what}: length {len} past the end")))?;
        let (b, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(b)
    }

    fn str(&mut self, what: &str) -> Result<&'a str> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| bad(&format!("{what} is not UTF-8")))
    }

    /// A count of items each at least one byte long: never more than what remains.
    fn count(&mut self, what: &str) -> Result<usize> {
        let n = self.varint(what)?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.bytes.len())
            .ok_or_else(|| bad(&format!("{what}: {n} items cannot fit")))
    }

    fn device(&mut self) -> Result<DeviceKey> {
        let name = self.str("device name")?;
        DeviceKey::new(name).map_err(|e| bad(&format!("device name {name:?}: {e}")))
    }

    fn message(&mut self) -> Result<BusMessage> {
        match self.byte("message kind")? {
            KIND_SAMPLES => {
                let device = self.device()?;
                let n_paths = self.count("path count")?;
                let mut paths: Vec<Arc<Path>> = Vec::with_capacity(n_paths);
                let mut text: Vec<u8> = Vec::with_capacity(64);
                for _ in 0..n_paths {
                    let shared = self.varint("shared path length")?;
                    let shared = usize::try_from(shared)
                        .ok()
                        .filter(|s| *s <= text.len())
                        .ok_or_else(|| {
                            bad(&format!("path shares {shared} bytes of a shorter one"))
                        })?;
                    text.truncate(shared);
                    text.extend_from_slice(self.bytes("path")?);
                    let s = std::str::from_utf8(&text).map_err(|_| bad("a path is not UTF-8"))?;
                    paths.push(cached_path(s)?);
                }
                let n = self.count("sample count")?;
                let mut samples = Vec::with_capacity(n);
                let mut ts = 0i64;
                for _ in 0..n {
                    let at = self.varint("path index")?;
                    let path = usize::try_from(at)
                        .ok()
                        .and_then(|i| paths.get(i))
                        .ok_or_else(|| bad(&format!("path index {at} of {n_paths}")))?
                        .clone();
                    ts = ts.wrapping_add(unzigzag(self.varint("timestamp")?));
                    let value = self.value(0)?;
                    samples.push(Sample {
                        device: device.clone(),
                        path,
                        ts,
                        value,
                    });
                }
                Ok(BusMessage::Samples { device, samples })
            }
            KIND_STATE => {
                let device = self.device()?;
                let name = self.str("state")?;
                let state = DeviceState::parse(name)
                    .ok_or_else(|| bad(&format!("unknown device state {name:?}")))?;
                let error = match self.byte("error flag")? {
                    0 => None,
                    1 => Some(self.str("error")?.to_owned()),
                    other => return Err(bad(&format!("error flag {other}"))),
                };
                let ts = unzigzag(self.varint("timestamp")?);
                Ok(BusMessage::State(DeviceEvent {
                    device,
                    state,
                    error,
                    ts,
                }))
            }
            KIND_PLACEMENT => Ok(BusMessage::Placement(crate::Placement {
                pool: self.str("pool")?.to_owned(),
                device: self.device()?,
                collector: self.str("collector")?.to_owned(),
                epoch: self.varint("epoch")?,
                ts: unzigzag(self.varint("timestamp")?),
            })),
            KIND_COLLECTOR_HEALTH => {
                let collector = self.str("collector")?.to_owned();
                let pool = self.str("pool")?.to_owned();
                let mut counts = [0u32; 4];
                for c in &mut counts {
                    *c = u32::try_from(self.varint("device count")?)
                        .map_err(|_| bad("device count too large"))?;
                }
                let [devices, synced, degraded, unreachable] = counts;
                Ok(BusMessage::CollectorHealth(crate::CollectorHealth {
                    collector,
                    pool,
                    devices,
                    synced,
                    degraded,
                    unreachable,
                    samples_written: self.varint("samples written")?,
                    ts: unzigzag(self.varint("timestamp")?),
                }))
            }
            other => Err(bad(&format!("unknown message kind {other}"))),
        }
    }

    fn value(&mut self, depth: u32) -> Result<Value> {
        Ok(match self.byte("value")? {
            V_INT => Value::Int(unzigzag(self.varint("int")?)),
            V_UINT => Value::Uint(self.varint("uint")?),
            V_FLOAT => {
                if self.bytes.len() < 8 {
                    return Err(bad("ends inside a float"));
                }
                let (b, rest) = self.bytes.split_at(8);
                self.bytes = rest;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Float(f64::from_le_bytes(a))
            }
            V_FALSE => Value::Bool(false),
            V_TRUE => Value::Bool(true),
            V_STRING => Value::String(self.str("string")?.to_owned()),
            V_DECIMAL => {
                let digits = unzigzag(self.varint("decimal digits")?);
                let precision = u32::try_from(self.varint("decimal precision")?)
                    .map_err(|_| bad("decimal precision too large"))?;
                Value::Decimal { digits, precision }
            }
            V_BYTES => Value::Bytes(self.bytes("bytes")?.to_vec()),
            V_LEAF_LIST => {
                if depth >= MAX_DEPTH {
                    return Err(bad("leaf-lists nested too deep"));
                }
                let n = self.count("leaf-list length")?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::LeafList(items)
            }
            V_ANY => Value::Any {
                type_url: self.str("type URL")?.to_owned(),
                value: self.bytes("any value")?.to_vec(),
            },
            V_DELETED => Value::Deleted,
            other => return Err(bad(&format!("unknown value tag {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{DeviceKey, Sample, Value};

    fn message() -> BusMessage {
        let device = DeviceKey::new("leaf1").unwrap();
        BusMessage::Samples {
            device: device.clone(),
            samples: vec![Sample {
                device,
                path: "/interfaces/interface[name=e1]/state/counters/in-octets"
                    .parse::<model::Path>()
                    .unwrap()
                    .into(),
                ts: 1_700_000_000_000_000_000,
                value: Value::Uint(42),
            }],
        }
    }

    #[test]
    fn round_trips() {
        let m = message();
        assert_eq!(decode(&encode(&m)).unwrap(), m);
    }

    /// Every value kind crosses the bus unchanged, deletes included.
    #[test]
    fn every_value_kind_round_trips() {
        let device = DeviceKey::new("leaf1").unwrap();
        let values = [
            Value::Decimal {
                digits: -12345,
                precision: 3,
            },
            Value::Bytes(vec![0, 255]),
            Value::LeafList(vec![Value::Uint(1), Value::String("a".into())]),
            Value::Any {
                type_url: "type.googleapis.com/x.Y".into(),
                value: vec![8, 1],
            },
            Value::Deleted,
        ];
        let m = BusMessage::Samples {
            device: device.clone(),
            samples: values
                .into_iter()
                .map(|value| Sample {
                    device: device.clone(),
                    path: "/a".parse::<model::Path>().unwrap().into(),
                    ts: 1,
                    value,
                })
                .collect(),
        };
        assert_eq!(decode(&encode(&m)).unwrap(), m);
    }

    #[test]
    fn placement_and_collector_health_round_trip_in_both_formats() {
        let messages = [
            BusMessage::Placement(crate::Placement {
                pool: "core".into(),
                device: DeviceKey::new("leaf1").unwrap(),
                collector: "core-collector-7f9c-x2".into(),
                epoch: 12,
                ts: 1_800_000_000_000_000_000,
            }),
            BusMessage::CollectorHealth(crate::CollectorHealth {
                collector: "core-collector-7f9c-x2".into(),
                pool: "core".into(),
                devices: 500,
                synced: 497,
                degraded: 2,
                unreachable: 1,
                samples_written: 4_000_000,
                ts: 1_800_000_000_000_000_000,
            }),
        ];
        for m in messages {
            assert_eq!(decode(&encode(&m)).unwrap(), m);
            assert_eq!(decode(&encode_json(&m)).unwrap(), m);
        }
    }

    /// A web node of this release reads what a collector of the previous release sent.
    #[test]
    fn the_previous_releases_json_is_read() {
        let m = message();
        let old = encode_json(&m);
        assert_eq!(old[0], JSON_VERSION);
        assert_eq!(decode(&old).unwrap(), m);
        let state = BusMessage::State(model::DeviceEvent {
            device: DeviceKey::new("leaf1").unwrap(),
            state: model::DeviceState::Unreachable,
            error: Some("connection refused".into()),
            ts: -5,
        });
        assert_eq!(decode(&encode_json(&state)).unwrap(), state);
        assert_eq!(decode(&encode(&state)).unwrap(), state);
    }

    #[test]
    fn binary_is_compact_and_shares_paths() {
        let device = DeviceKey::new("leaf1").unwrap();
        let path: Arc<model::Path> = "/interfaces/interface[name=e1]/state/counters/in-octets"
            .parse::<model::Path>()
            .unwrap()
            .into();
        let samples: Vec<Sample> = (0..100)
            .map(|i| Sample {
                device: device.clone(),
                path: path.clone(),
                ts: 1_700_000_000_000_000_000 + i * 1_000_000_000,
                value: Value::Uint(1_000_000 + i as u64 * 1_500),
            })
            .collect();
        let m = BusMessage::Samples { device, samples };
        let binary = encode(&m);
        let json = encode_json(&m);
        assert_eq!(decode(&binary).unwrap(), m);
        // One path text, then ~10 bytes per sample (delta ts, varint value).
        assert!(binary.len() < 1_200, "{} bytes", binary.len());
        assert!(
            binary.len() * 10 < json.len(),
            "{} vs {}",
            binary.len(),
            json.len()
        );
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let mut bytes = encode(&message());
        bytes[0] = 3;
        let err = decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("unsupported codec version 3"), "{err}");
        assert!(decode(&[]).is_err());
        // Every truncation of a valid message is refused, never misread or a panic.
        let whole = encode(&message());
        for cut in 1..whole.len() {
            assert!(decode(&whole[..cut]).is_err(), "cut at {cut}");
        }
        let err = decode(&[2, 1, 200, 200, 200, 200, 1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("past the end"), "{err}");
        let mut trailing = whole.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        // Leaf-lists nested deeper than the limit.
        let mut deep = vec![2u8, 1];
        deep.extend([5, b'l', b'e', b'a', b'f', b'1']);
        deep.extend([1, 0, 2, b'/', b'a', 1, 0, 0]);
        deep.extend([8, 1].repeat(6));
        deep.push(10);
        let err = decode(&deep).unwrap_err().to_string();
        assert!(err.contains("nested too deep"), "{err}");
        assert!(decode(b"\x01{not json").is_err());
        assert!(
            decode(&[2, 9])
                .unwrap_err()
                .to_string()
                .contains("unknown message kind 9")
        );
        assert!(
            decode(b"\x01{\"kind\":\"samples\",\"device\":\"Bad Name\",\"samples\":[]}").is_err()
        );
    }
}
