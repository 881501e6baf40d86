//! Subscribe responses decoded straight from their protobuf bytes.
//!
//! A collector receives the same few hundred leaf paths from each device over and over.
//! Decoding a response into prost's structs first allocates every path element name, key
//! and value string again, only for the [`PathCache`] to find the path it already has;
//! at fleet scale that allocation was the collector's largest cost (docs/PERFORMANCE.md,
//! "Fourth round"). [`decode_response`] walks the protobuf encoding instead: a prefix or
//! a path is looked up by its bytes, and only a path never seen before, and each value,
//! is decoded with prost.
//!
//! The result is exactly what prost plus [`crate::decode_notification_cached`] give
//! (tests compare both on the same bytes). Whatever the fast walk does not handle (the
//! deprecated `error` response and `value` field, a singular field sent twice, which
//! protobuf merges, groups, or malformed bytes) goes to prost and that path, so errors
//! are prost's own.

use std::sync::{Arc, PoisonError, RwLock};

use model::{DeviceKey, Path, Value};
use prost::Message as _;

use crate::cache::{LeafId, PathCache, leaf_id};
use crate::notification::{DecodeError, Decoded, Leaves, path_error};
use crate::{gnmi, value};

/// What a Subscribe response carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// A notification: its timestamp and what it decodes to.
    Update {
        /// Device timestamp, ns since the epoch.
        timestamp: i64,
        /// Samples, their leaf ids, and what could not be read.
        decoded: Decoded,
    },
    /// `sync_response` with its value.
    Sync(bool),
    /// The deprecated in-stream error.
    Error {
        /// gRPC-style code the device gave.
        code: u32,
        /// Its message.
        message: String,
    },
    /// Nothing this version reads (an extension only, or an empty response).
    Other,
}

/// Decodes one `SubscribeResponse` from `bytes`, with the collector's [`PathCache`]. An
/// error means the bytes are not a `SubscribeResponse` (prost's message).
pub fn decode_response(
    bytes: &[u8],
    device: &DeviceKey,
    cache: &mut PathCache,
) -> Result<Response, prost::DecodeError> {
    let filling = &mut Filling {
        cache: &mut *cache,
        prefix: None,
    };
    if let Some(response) = fast(bytes, device, filling) {
        return Ok(response);
    }
    let response = gnmi::SubscribeResponse::decode(bytes)?;
    use gnmi::subscribe_response::Response as R;
    #[allow(deprecated)]
    Ok(match response.response {
        Some(R::Update(n)) => Response::Update {
            timestamp: n.timestamp,
            decoded: crate::decode_notification_cached(device, &n, cache),
        },
        Some(R::SyncResponse(s)) => Response::Sync(s),
        Some(R::Error(e)) => Response::Error {
            code: e.code,
            message: e.message,
        },
        None => Response::Other,
    })
}

/// [`decode_response`] with a cache shared by many sessions: a response whose paths are
/// all known is decoded under a read lock (sessions do not wait for each other), and
/// only one with a new path takes the write lock.
pub fn decode_response_shared(
    bytes: &[u8],
    device: &DeviceKey,
    cache: &RwLock<PathCache>,
) -> Result<Response, prost::DecodeError> {
    {
        // A poisoned lock only means another session panicked mid-lookup; the cache
        // holds no invariant a half-done lookup can break.
        let read = cache.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(response) = fast(bytes, device, &mut Reading(&read)) {
            return Ok(response);
        }
    }
    let mut write = cache.write().unwrap_or_else(PoisonError::into_inner);
    decode_response(bytes, device, &mut write)
}

/// How the fast walk turns prefix and path bytes into paths.
trait Paths {
    /// The serial of a prefix; `None` to give up the fast walk.
    fn prefix(&mut self, bytes: Option<&[u8]>) -> Option<u64>;
    /// The full path under prefix `serial`; `None` to give up the fast walk.
    fn leaf(
        &mut self,
        serial: u64,
        prefix: Option<&[u8]>,
        path: Option<&[u8]>,
    ) -> Option<crate::Result<(Arc<Path>, LeafId)>>;
}

/// Known paths only: anything new gives up (to be done again with [`Filling`]).
struct Reading<'a>(&'a PathCache);

impl Paths for Reading<'_> {
    fn prefix(&mut self, bytes: Option<&[u8]>) -> Option<u64> {
        self.0.raw_prefix(bytes)
    }

    fn leaf(
        &mut self,
        serial: u64,
        _prefix: Option<&[u8]>,
        path: Option<&[u8]>,
    ) -> Option<crate::Result<(Arc<Path>, LeafId)>> {
        self.0.raw_leaf(serial, path).map(Ok)
    }
}

/// Known paths from the cache, new ones decoded and added to it.
struct Filling<'a> {
    cache: &'a mut PathCache,
    /// The notification's prefix, decoded once when first needed.
    prefix: Option<Option<gnmi::Path>>,
}

impl Filling<'_> {
    fn decoded_prefix(&mut self, bytes: Option<&[u8]>) -> Option<Option<&gnmi::Path>> {
        if self.prefix.is_none() {
            self.prefix = Some(match bytes {
                Some(b) => Some(gnmi::Path::decode(b).ok()?),
                None => None,
            });
        }
        self.prefix.as_ref().map(Option::as_ref)
    }
}

impl Paths for Filling<'_> {
    fn prefix(&mut self, bytes: Option<&[u8]>) -> Option<u64> {
        if let Some(serial) = self.cache.raw_prefix(bytes) {
            return Some(serial);
        }
        // Checked before it is remembered: a cached prefix is known to decode.
        self.decoded_prefix(bytes)?;
        Some(self.cache.insert_raw_prefix(bytes))
    }

    fn leaf(
        &mut self,
        serial: u64,
        prefix: Option<&[u8]>,
        path: Option<&[u8]>,
    ) -> Option<crate::Result<(Arc<Path>, LeafId)>> {
        if let Some(found) = self.cache.raw_leaf(serial, path) {
            return Some(Ok(found));
        }
        let wire = match path {
            Some(b) => Some(gnmi::Path::decode(b).ok()?),
            None => None,
        };
        let full = crate::path::full_path(self.decoded_prefix(prefix)?, wire.as_ref());
        Some(full.map(|full| {
            let full = Arc::new(full);
            let id = leaf_id(&full);
            self.cache.insert_raw_leaf(serial, path, full.clone(), id);
            (full, id)
        }))
    }
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A cursor over protobuf bytes. `None` from any method: not something the fast walk
/// handles (malformed, or a group).
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for (i, byte) in self.bytes.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                // A tenth byte may only carry the top bit of the value.
                if i == 9 && *byte > 1 {
                    return None;
                }
                self.bytes = &self.bytes[i + 1..];
                return Some(value);
            }
        }
        None
    }

    /// The next field number and wire type; `Some(None)` at the end.
    fn key(&mut self) -> Option<Option<(u32, u8)>> {
        if self.bytes.is_empty() {
            return Some(None);
        }
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).ok().filter(|f| *f > 0)?;
        Some(Some((field, (key & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(taken)
    }

    fn delimited(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n)
    }

    fn skip(&mut self, wire_type: u8) -> Option<()> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => None,
        }
    }

    /// Each field of the message, with a reader for its value.
    fn fields(mut self, mut each: impl FnMut(u32, u8, &mut Self) -> Option<()>) -> Option<()> {
        while let Some((field, wire_type)) = self.key()? {
            each(field, wire_type, &mut self)?;
        }
        Some(())
    }
}

/// Sets a singular field once; a second occurrence (which protobuf would merge) is left
/// to prost.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

fn fast(bytes: &[u8], device: &DeviceKey, paths: &mut dyn Paths) -> Option<Response> {
    let mut notification = None;
    let mut sync = None;
    Reader::new(bytes).fields(|field, wire_type, r| match (field, wire_type) {
        (1, LEN) => once(&mut notification, r.delimited()?),
        (3, VARINT) => once(&mut sync, r.varint()? != 0),
        // Extensions are checked as prost would (it decodes them).
        (5, LEN) => crate::gnmi_ext::Extension::decode(r.delimited()?)
            .ok()
            .map(drop),
        (1 | 3..=5, _) => None,
        (_, t) => r.skip(t),
    })?;
    match (notification, sync) {
        (Some(n), None) => notification_fast(n, device, paths),
        (None, Some(s)) => Some(Response::Sync(s)),
        (None, None) => Some(Response::Other),
        (Some(_), Some(_)) => None,
    }
}

fn notification_fast(bytes: &[u8], device: &DeviceKey, paths: &mut dyn Paths) -> Option<Response> {
    // First the timestamp and prefix, wherever they are among the updates.
    let mut timestamp = None;
    let mut prefix = None;
    let mut items = 0;
    Reader::new(bytes).fields(|field, wire_type, r| match (field, wire_type) {
        (1, VARINT) => once(&mut timestamp, r.varint()? as i64),
        (2, LEN) => once(&mut prefix, r.delimited()?),
        // The deprecated alias: a string, so prost checks it is UTF-8.
        (3, LEN) => std::str::from_utf8(r.delimited()?).ok().map(drop),
        (4 | 5, LEN) => {
            items += 1;
            r.skip(wire_type)
        }
        (6, VARINT) => r.skip(wire_type),
        (1..=6, _) => None,
        (_, t) => r.skip(t),
    })?;
    let timestamp = timestamp.unwrap_or(0);
    let serial = paths.prefix(prefix)?;
    let mut out = Leaves::new(device, timestamp, items);
    Reader::new(bytes).fields(|field, wire_type, r| {
        if (field, wire_type) != (4, LEN) {
            // Checked by the first walk.
            return r.skip(wire_type);
        }
        let (path, val) = update_fast(r.delimited()?)?;
        let (path, id) = match paths.leaf(serial, prefix, path)? {
            Ok(found) => found,
            Err(e) => {
                out.errors.push(path_error(e));
                return Some(());
            }
        };
        match val {
            Some(v) => match scalar_fast(v) {
                Some(value) => out.push(path, id, value),
                None => {
                    let typed = gnmi::TypedValue::decode(v).ok()?;
                    value::leaves(path, id, &typed, &mut out);
                }
            },
            None => out
                .errors
                .push(DecodeError::new(&path, "update without a value")),
        }
        Some(())
    })?;
    Reader::new(bytes).fields(|field, wire_type, r| {
        if (field, wire_type) != (5, LEN) {
            return r.skip(wire_type);
        }
        match paths.leaf(serial, prefix, Some(r.delimited()?))? {
            Ok((path, id)) => out.push(path, id, Value::Deleted),
            Err(e) => out.errors.push(path_error(e)),
        }
        Some(())
    })?;
    Some(Response::Update {
        timestamp,
        decoded: out.finish(),
    })
}

/// A typed value of the common scalar kinds read straight from its bytes, as
/// [`value::leaves`] reads it from prost's struct (and without its second copy of
/// strings); `None` leaves every other kind, and anything unusual, to that path.
fn scalar_fast(bytes: &[u8]) -> Option<Value> {
    let mut value = None;
    Reader::new(bytes).fields(|field, wire_type, r| {
        let v = match (field, wire_type) {
            (1 | 12, LEN) => Value::String(std::str::from_utf8(r.delimited()?).ok()?.to_owned()),
            (2, VARINT) => Value::Int(r.varint()? as i64),
            (3, VARINT) => Value::Uint(r.varint()?),
            (4, VARINT) => Value::Bool(r.varint()? != 0),
            (6, FIXED32) => {
                Value::Float(f64::from(f32::from_le_bytes(r.take(4)?.try_into().ok()?)))
            }
            (14, FIXED64) => Value::Float(f64::from_le_bytes(r.take(8)?.try_into().ok()?)),
            (1..=14, _) => return None,
            (_, t) => return r.skip(t),
        };
        once(&mut value, v)
    })?;
    value
}

/// The `path` and `val` bytes of an update, each if present.
type UpdateBytes<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// The parts of an update; `None` for the deprecated `value` field.
fn update_fast(bytes: &[u8]) -> Option<UpdateBytes<'_>> {
    let (mut path, mut val) = (None, None);
    Reader::new(bytes).fields(|field, wire_type, r| match (field, wire_type) {
        (1, LEN) => once(&mut path, r.delimited()?),
        (3, LEN) => once(&mut val, r.delimited()?),
        (4, VARINT) => r.skip(wire_type),
        (1..=4, _) => None,
        (_, t) => r.skip(t),
    })?;
    Some((path, val))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gnmi::subscribe_response::Response as R;
    use crate::gnmi::typed_value::Value as Tv;
    use crate::path::tests::{elem, gpath as path};

    fn device() -> DeviceKey {
        DeviceKey::new("leaf1").unwrap()
    }

    fn update(p: Option<gnmi::Path>, v: Option<Tv>) -> gnmi::Update {
        gnmi::Update {
            path: p,
            val: v.map(|value| gnmi::TypedValue { value: Some(value) }),
            ..Default::default()
        }
    }

    /// What prost and `decode_notification_cached` make of the same bytes.
    fn reference(bytes: &[u8], cache: &mut PathCache) -> Result<Response, prost::DecodeError> {
        let response = gnmi::SubscribeResponse::decode(bytes)?;
        #[allow(deprecated)]
        Ok(match response.response {
            Some(R::Update(n)) => Response::Update {
                timestamp: n.timestamp,
                decoded: crate::decode_notification_cached(&device(), &n, cache),
            },
            Some(R::SyncResponse(s)) => Response::Sync(s),
            Some(R::Error(e)) => Response::Error {
                code: e.code,
                message: e.message,
            },
            None => Response::Other,
        })
    }

    /// Both decodes agree, with a cold and with a warm cache, and the fast walk took it.
    fn agrees(bytes: &[u8], fast_expected: bool) {
        let mut cache = PathCache::new(1000);
        let shared = RwLock::new(PathCache::new(1000));
        let mut reference_cache = PathCache::new(1000);
        for round in 0..2 {
            let want = reference(bytes, &mut reference_cache);
            for got in [
                decode_response(bytes, &device(), &mut cache),
                decode_response_shared(bytes, &device(), &shared),
            ] {
                match (&got, &want) {
                    (Ok(g), Ok(w)) => assert_eq!(g, w, "round {round}"),
                    (Err(g), Err(w)) => assert_eq!(g.to_string(), w.to_string()),
                    _ => panic!("round {round}: {got:?} vs {want:?}"),
                }
            }
        }
        assert_eq!(
            fast(
                bytes,
                &device(),
                &mut Filling {
                    cache: &mut PathCache::new(1000),
                    prefix: None
                }
            )
            .is_some(),
            fast_expected,
            "fast walk taken"
        );
    }

    fn notification(n: gnmi::Notification) -> Vec<u8> {
        gnmi::SubscribeResponse {
            response: Some(R::Update(n)),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn interface_notification(ts: i64, name: &str) -> gnmi::Notification {
        gnmi::Notification {
            timestamp: ts,
            prefix: Some(path(
                "openconfig",
                vec![
                    elem("interfaces", &[]),
                    elem("interface", &[("name", name)]),
                    elem("state", &[]),
                ],
            )),
            update: vec![
                update(
                    Some(path(
                        "",
                        vec![elem("counters", &[]), elem("in-octets", &[])],
                    )),
                    Some(Tv::UintVal(12_345_678_901)),
                ),
                update(
                    Some(path("", vec![elem("oper-status", &[])])),
                    Some(Tv::StringVal("UP".into())),
                ),
                update(Some(path("", vec![elem("mtu", &[])])), Some(Tv::IntVal(-9))),
                update(
                    Some(path("", vec![elem("load", &[])])),
                    Some(Tv::DoubleVal(0.25)),
                ),
            ],
            delete: vec![path("", vec![elem("description", &[])])],
            ..Default::default()
        }
    }

    #[test]
    fn typical_notifications_decode_as_prost_does() {
        agrees(
            &notification(interface_notification(
                1_700_000_000_000_000_000,
                "Ethernet1",
            )),
            true,
        );
        agrees(
            &notification(interface_notification(-5, "Ethernet1/1")),
            true,
        );
        // No prefix; keys in the update paths; several keys.
        let n = gnmi::Notification {
            timestamp: 7,
            update: vec![update(
                Some(path(
                    "",
                    vec![
                        elem("network-instances", &[]),
                        elem("network-instance", &[("name", "default")]),
                        elem("route", &[("prefix", "10.0.0.0/8"), ("origin", "bgp")]),
                        elem("metric", &[]),
                    ],
                )),
                Some(Tv::UintVal(20)),
            )],
            ..Default::default()
        };
        agrees(&notification(n), true);
    }

    #[test]
    #[allow(deprecated)]
    fn every_value_kind_and_json_decode_as_prost_does() {
        let values = vec![
            Tv::StringVal("x".into()),
            Tv::IntVal(i64::MIN),
            Tv::UintVal(u64::MAX),
            Tv::BoolVal(true),
            Tv::BytesVal(vec![0, 1, 255]),
            Tv::FloatVal(1.5),
            // Not NaN: samples are compared with `==`.
            Tv::DoubleVal(f64::NEG_INFINITY),
            Tv::DecimalVal(gnmi::Decimal64 {
                digits: 12345,
                precision: 2,
            }),
            Tv::LeaflistVal(gnmi::ScalarArray {
                element: vec![gnmi::TypedValue {
                    value: Some(Tv::IntVal(1)),
                }],
            }),
            Tv::AnyVal(prost_types::Any {
                type_url: "type.googleapis.com/x".into(),
                value: vec![1, 2],
            }),
            Tv::JsonVal(br#"{"a": 1, "b": {"c": "d"}}"#.to_vec()),
            Tv::JsonIetfVal(br#"{"openconfig-interfaces:mtu": 1500}"#.to_vec()),
            Tv::JsonVal(b"{not json".to_vec()),
            Tv::AsciiVal("ascii".into()),
            Tv::ProtoBytes(vec![9, 9]),
        ];
        let n = gnmi::Notification {
            timestamp: 3,
            prefix: Some(path("", vec![elem("system", &[])])),
            update: values
                .into_iter()
                .enumerate()
                .map(|(i, v)| update(Some(path("", vec![elem(&format!("v{i}"), &[])])), Some(v)))
                .collect(),
            ..Default::default()
        };
        agrees(&notification(n), true);
    }

    #[test]
    fn unreadable_paths_and_missing_values_are_errors_as_before() {
        let n = gnmi::Notification {
            timestamp: 1,
            prefix: Some(path("", vec![elem("a", &[])])),
            update: vec![
                update(Some(path("", vec![elem("b/c", &[])])), Some(Tv::IntVal(1))),
                update(Some(path("", vec![elem("ok", &[])])), None),
                update(None, Some(Tv::IntVal(2))),
                update(Some(path("", vec![elem("", &[])])), Some(Tv::IntVal(3))),
            ],
            delete: vec![path("", vec![elem("x", &[("", "1")])])],
            ..Default::default()
        };
        agrees(&notification(n), true);
        // A prefix that cannot be read fails every update under it.
        let n = gnmi::Notification {
            prefix: Some(path("", vec![elem("bad]", &[])])),
            update: vec![update(
                Some(path("", vec![elem("b", &[])])),
                Some(Tv::IntVal(1)),
            )],
            ..Default::default()
        };
        agrees(&notification(n), true);
    }

    #[test]
    #[allow(deprecated)]
    fn legacy_forms_go_to_prost_or_decode_the_same() {
        let legacy_path = gnmi::Path {
            element: vec!["interfaces".into(), "interface[name=Ethernet1]".into()],
            ..Default::default()
        };
        let n = gnmi::Notification {
            prefix: Some(legacy_path),
            update: vec![update(
                Some(path("", vec![elem("mtu", &[])])),
                Some(Tv::IntVal(1)),
            )],
            ..Default::default()
        };
        agrees(&notification(n), true);
        let n = gnmi::Notification {
            update: vec![gnmi::Update {
                path: Some(path("", vec![elem("mtu", &[])])),
                value: Some(gnmi::Value {
                    value: b"1500".to_vec(),
                    r#type: gnmi::Encoding::Json as i32,
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        agrees(&notification(n), false);
        let error = gnmi::SubscribeResponse {
            response: Some(R::Error(gnmi::Error {
                code: 3,
                message: "bad".into(),
                data: None,
            })),
            ..Default::default()
        };
        agrees(&error.encode_to_vec(), false);
    }

    #[test]
    fn sync_empty_and_extension_only_responses() {
        for sync in [true, false] {
            let r = gnmi::SubscribeResponse {
                response: Some(R::SyncResponse(sync)),
                ..Default::default()
            };
            agrees(&r.encode_to_vec(), true);
        }
        agrees(&[], true);
        // Field 5 (an extension) is skipped.
        agrees(&[0x2a, 0x00], true);
    }

    #[test]
    fn a_field_sent_twice_is_merged_by_prost() {
        // Two prefixes: protobuf merges them into one path of both elements.
        let mut bytes = Vec::new();
        let first = gnmi::Notification {
            prefix: Some(path("", vec![elem("a", &[])])),
            ..Default::default()
        };
        let second = gnmi::Notification {
            prefix: Some(path("", vec![elem("b", &[])])),
            update: vec![update(
                Some(path("", vec![elem("c", &[])])),
                Some(Tv::IntVal(1)),
            )],
            ..Default::default()
        };
        first.encode(&mut bytes).unwrap();
        second.encode(&mut bytes).unwrap();
        let response = [vec![0x0a], encode_len(bytes.len()), bytes].concat();
        agrees(&response, false);
        let Ok(Response::Update { decoded, .. }) =
            decode_response(&response, &device(), &mut PathCache::new(10))
        else {
            panic!("an update")
        };
        assert_eq!(decoded.samples[0].path.to_string(), "/a/b/c");
    }

    #[test]
    fn a_scalar_sent_twice_or_with_another_wire_type_is_read_as_prost_reads_it() {
        // Update { path: /x, val: <raw> }, in a notification, in a response.
        let response = |val: &[u8]| {
            let path = path("", vec![elem("x", &[])]).encode_to_vec();
            let update = [
                vec![0x0a],
                encode_len(path.len()),
                path,
                vec![0x1a],
                encode_len(val.len()),
                val.to_vec(),
            ]
            .concat();
            let n = [vec![0x22], encode_len(update.len()), update].concat();
            [vec![0x0a], encode_len(n.len()), n].concat()
        };
        // int_val 1 then int_val 2: prost keeps the last.
        agrees(&response(&[0x10, 0x01, 0x10, 0x02]), true);
        // int_val then string_val: the last member of the oneof wins.
        agrees(&response(&[0x10, 0x01, 0x0a, 0x01, b'a']), true);
        // int_val as a length-delimited field: prost's error.
        agrees_or_both_fail(&response(&[0x12, 0x01, 0x01]));
        // A string that is not UTF-8: prost's error.
        agrees_or_both_fail(&response(&[0x0a, 0x01, 0xff]));
        // float_val and double_val.
        agrees(&response(&[0x35, 0, 0, 0xc0, 0x3f]), true);
        agrees(&response(&[0x71, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]), true);
    }

    fn encode_len(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint(n as u64, &mut out);
        out
    }

    #[test]
    fn malformed_bytes_give_prosts_error_and_never_panic() {
        let good = notification(interface_notification(1, "Ethernet1"));
        // Every truncation, and every single-byte corruption.
        for end in 0..good.len() {
            agrees_or_both_fail(&good[..end]);
        }
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                agrees_or_both_fail(&bad);
            }
        }
    }

    fn agrees_or_both_fail(bytes: &[u8]) {
        let got = decode_response(bytes, &device(), &mut PathCache::new(100));
        let want = reference(bytes, &mut PathCache::new(100));
        match (&got, &want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w),
            (Err(g), Err(w)) => assert_eq!(g.to_string(), w.to_string()),
            _ => panic!("{got:?} vs {want:?} for {bytes:?}"),
        }
    }

    #[test]
    fn leaves_are_shared_across_notifications_and_prefixes_kept_apart() {
        let mut cache = PathCache::new(1000);
        let decode = |cache: &mut PathCache, name: &str| {
            let bytes = notification(interface_notification(1, name));
            match decode_response(&bytes, &device(), cache).unwrap() {
                Response::Update { decoded, .. } => decoded,
                other => panic!("{other:?}"),
            }
        };
        let a = decode(&mut cache, "Ethernet1");
        let b = decode(&mut cache, "Ethernet1");
        let c = decode(&mut cache, "Ethernet2");
        for (x, y) in a.samples.iter().zip(&b.samples) {
            assert!(Arc::ptr_eq(&x.path, &y.path));
        }
        assert_ne!(a.samples[0].path, c.samples[0].path);
        assert_eq!(a.ids, b.ids);
        assert_ne!(a.ids[0], c.ids[0]);
    }
}
