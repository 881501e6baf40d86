//! `gnmi::Notification` -> samples: the one decoding entry point collectors use.

use std::fmt;
use std::sync::Arc;

use model::{DeviceKey, Path, Sample, TimestampNs, Value};

use crate::cache::{LeafId, PathCache};
use crate::{gnmi, value};

/// What a notification decodes to: its samples, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// One sample per leaf of every readable update, then one [`Value::Deleted`] sample
    /// per readable delete, all with the notification's timestamp.
    pub samples: Vec<Sample>,
    /// The [`LeafId`] of each sample's path, in the same order.
    pub ids: Vec<LeafId>,
    /// One error per update or delete whose path cannot be read, per update without a
    /// readable value, and per unreadable part of a JSON value (see [`crate::json`]).
    pub errors: Vec<DecodeError>,
}
/// Why part of a notification could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    /// The path concerned: canonical when it could be read, else a best-effort rendering
    /// of what the device sent.
    pub path: String,
    /// What is wrong, in plain words.
    pub reason: String,
}

impl DecodeError {
    pub(crate) fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Decodes every update and delete of `n`, reported by `device`.
///
/// Each update's path is the notification prefix joined with its path; its value (`val`,
/// or the deprecated `value` of old targets) gives one sample per leaf: typed scalars,
/// decimals, bytes, leaf-lists and `Any` give one, JSON gives one per leaf (see
/// [`crate::json`] for the flattening rules). Each delete gives a [`Value::Deleted`]
/// sample at its path, which may be a leaf or a whole subtree (a list entry, usually).
/// Whatever cannot be read becomes a [`DecodeError`] and the rest is still decoded.
pub fn decode_notification(device: &DeviceKey, n: &gnmi::Notification) -> Decoded {
    decode_notification_cached(device, n, &mut PathCache::new(0))
}

/// [`decode_notification`] with the device's [`PathCache`]: the same result, but a leaf
/// path seen before is shared rather than rebuilt (what collectors use per session).
pub fn decode_notification_cached(
    device: &DeviceKey,
    n: &gnmi::Notification,
    cache: &mut PathCache,
) -> Decoded {
    let mut out = Leaves::new(device, n.timestamp, n.update.len() + n.delete.len());
    let prefix = n.prefix.as_ref();
    let resolved = cache.prefix(prefix);
    for update in &n.update {
        let (path, id) = match cache.leaf(resolved, prefix, update.path.as_ref()) {
            Ok(found) => found,
            Err(e) => {
                out.errors.push(path_error(e));
                continue;
            }
        };
        #[allow(deprecated)]
        match (&update.val, &update.value) {
            (Some(typed), _) => value::leaves(path, id, typed, &mut out),
            (None, Some(legacy)) => value::legacy_leaves(path, id, legacy, &mut out),
            (None, None) => out
                .errors
                .push(DecodeError::new(&path, "update without a value")),
        }
    }
    for delete in &n.delete {
        match cache.leaf(resolved, prefix, Some(delete)) {
            Ok((path, id)) => out.push(path, id, Value::Deleted),
            Err(e) => out.errors.push(path_error(e)),
        }
    }
    out.finish()
}

/// The samples of one notification as they are decoded, all at its timestamp.
#[derive(Debug)]
pub(crate) struct Leaves<'a> {
    device: &'a DeviceKey,
    ts: TimestampNs,
    samples: Vec<Sample>,
    ids: Vec<LeafId>,
    /// What could not be read.
    pub(crate) errors: Vec<DecodeError>,
}

impl<'a> Leaves<'a> {
    /// Room for `capacity` samples (one per update and delete, unless JSON).
    pub(crate) fn new(device: &'a DeviceKey, ts: TimestampNs, capacity: usize) -> Self {
        Self {
            device,
            ts,
            samples: Vec::with_capacity(capacity),
            ids: Vec::with_capacity(capacity),
            errors: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, path: Arc<Path>, id: LeafId, value: Value) {
        self.ids.push(id);
        self.samples.push(Sample {
            device: self.device.clone(),
            path,
            ts: self.ts,
            value,
        });
    }

    pub(crate) fn finish(self) -> Decoded {
        Decoded {
            samples: self.samples,
            ids: self.ids,
            errors: self.errors,
        }
    }
}

/// The error of an unreadable update or delete path (or prefix), shown as sent.
pub(crate) fn path_error(error: crate::Error) -> DecodeError {
    let crate::Error::InvalidPath { path, reason } = error;
    DecodeError {
        path,
        reason: format!("unreadable path: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gnmi::typed_value::Value as Tv;

    fn gpath(elems: &[(&str, &[(&str, &str)])]) -> gnmi::Path {
        crate::cache::tests::gpath("", elems)
    }

    fn update(path: gnmi::Path, value: Option<Tv>) -> gnmi::Update {
        gnmi::Update {
            path: Some(path),
            val: Some(gnmi::TypedValue { value }),
            ..Default::default()
        }
    }

    fn json_error(bytes: &[u8]) -> String {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .expect_err("test value")
            .to_string()
    }

    fn shown(decoded: &Decoded) -> (Vec<String>, Vec<String>) {
        let samples = decoded
            .samples
            .iter()
            .map(|s| format!("{} = {}", s.path, s.value))
            .collect();
        let errors = decoded.errors.iter().map(|e| e.to_string()).collect();
        (samples, errors)
    }

    #[test]
    fn every_update_and_delete_becomes_samples_or_errors() {
        let device = DeviceKey::new("leaf1").expect("test value");
        let mut prefix = gpath(&[
            ("interfaces", &[]),
            ("interface", &[("name", "Ethernet1/1")]),
        ]);
        prefix.origin = "openconfig".into();
        let n = gnmi::Notification {
            timestamp: 42,
            prefix: Some(prefix),
            update: vec![
                update(
                    gpath(&[("state", &[]), ("mtu", &[])]),
                    Some(Tv::UintVal(9000)),
                ),
                update(gpath(&[("", &[])]), Some(Tv::UintVal(1))),
                update(
                    gpath(&[("state", &[]), ("counters", &[])]),
                    Some(Tv::JsonIetfVal(
                        br#"{"in-octets": "12", "out-octets": "34"}"#.to_vec(),
                    )),
                ),
                update(gpath(&[("state", &[]), ("x", &[])]), None),
                update(
                    gpath(&[("state", &[]), ("y", &[])]),
                    Some(Tv::JsonIetfVal(b"{oops".to_vec())),
                ),
                update(
                    gpath(&[("state", &[]), ("z", &[])]),
                    Some(Tv::ProtoBytes(vec![1])),
                ),
                gnmi::Update {
                    path: Some(gpath(&[("state", &[]), ("none", &[])])),
                    ..Default::default()
                },
            ],
            delete: vec![
                gpath(&[("state", &[]), ("description", &[])]),
                gpath(&[("a]", &[])]),
            ],
            atomic: false,
        };
        let decoded = decode_notification(&device, &n);
        assert!(
            decoded
                .samples
                .iter()
                .all(|s| s.ts == 42 && s.device == device)
        );
        let (samples, errors) = shown(&decoded);
        let at = "openconfig:/interfaces/interface[name=Ethernet1/1]";
        assert_eq!(
            samples,
            vec![
                format!("{at}/state/mtu = 9000"),
                format!("{at}/state/counters/in-octets = 12"),
                format!("{at}/state/counters/out-octets = 34"),
                format!("{at}/state/description = deleted"),
            ]
        );
        assert_eq!(
            errors,
            vec![
                "/: unreadable path: empty element name".to_owned(),
                format!("{at}/state/x: update without a value"),
                format!("{at}/state/y: malformed JSON: {}", json_error(b"{oops")),
                format!(
                    "{at}/state/z: proto_bytes values need the device's protobuf schema, \
                     which netpulse does not have"
                ),
                format!("{at}/state/none: update without a value"),
                "/a]: unreadable path: element name \"a]\" contains one of / [ ] =".to_owned(),
            ]
        );
        assert_eq!(decoded.samples[3].value, Value::Deleted);
    }

    #[test]
    fn a_bad_prefix_fails_every_update_and_delete() {
        let device = DeviceKey::new("leaf1").expect("test value");
        let n = gnmi::Notification {
            prefix: Some(gpath(&[("a=b", &[])])),
            update: vec![update(gpath(&[("x", &[])]), Some(Tv::UintVal(1)))],
            delete: vec![gpath(&[("y", &[])])],
            ..Default::default()
        };
        let decoded = decode_notification(&device, &n);
        assert!(decoded.samples.is_empty());
        assert_eq!(decoded.errors.len(), 2);
        assert!(
            decoded.errors.iter().all(|e| e.path == "/a=b"),
            "{decoded:?}"
        );
    }

    #[test]
    fn a_json_list_update_is_keyed_per_entry() {
        let device = DeviceKey::new("leaf1").expect("test value");
        let n = gnmi::Notification {
            update: vec![update(
                gpath(&[("interfaces", &[])]),
                Some(Tv::JsonIetfVal(
                    br#"{"openconfig-interfaces:interface": [
                        {"name": "eth0", "state": {"counters": {"in-octets": "1"}}},
                        {"name": "eth1", "state": {"counters": {"in-octets": "2"}}}]}"#
                        .to_vec(),
                )),
            )],
            ..Default::default()
        };
        let (mut samples, errors) = shown(&decode_notification(&device, &n));
        samples.sort();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            samples,
            vec![
                "/interfaces/interface[name=eth0]/name = eth0",
                "/interfaces/interface[name=eth0]/state/counters/in-octets = 1",
                "/interfaces/interface[name=eth1]/name = eth1",
                "/interfaces/interface[name=eth1]/state/counters/in-octets = 2",
            ]
        );
    }
}
