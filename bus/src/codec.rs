//! The wire codec: a version byte followed by a JSON body.
//!
//! The version byte lets a web node and a collector of adjacent releases detect each
//! other's format and refuse cleanly what they cannot read. A compact binary body is a
//! later step (measured against this one in `bench/`).

use crate::{BusMessage, Error, Result};

/// Version of the format `encode` writes.
pub const CODEC_VERSION: u8 = 1;

/// Encodes a message for the wire.
pub fn encode(message: &BusMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(CODEC_VERSION);
    // Serialising plain data structs into a Vec cannot fail.
    if let Err(error) = serde_json::to_writer(&mut out, message) {
        tracing::error!(%error, "Bus message could not be encoded");
    }
    out
}

/// Decodes a message from the wire, refusing unknown versions and malformed bodies.
pub fn decode(bytes: &[u8]) -> Result<BusMessage> {
    match bytes.split_first() {
        None => Err(Error::Decode("empty message".into())),
        Some((&CODEC_VERSION, body)) => {
            serde_json::from_slice(body).map_err(|e| Error::Decode(format!("version 1 body: {e}")))
        }
        Some((version, _)) => Err(Error::Decode(format!(
            "unsupported codec version {version} (this release reads {CODEC_VERSION})"
        ))),
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
    fn refuses_other_versions_and_garbage() {
        let mut bytes = encode(&message());
        bytes[0] = 2;
        let err = decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("unsupported codec version 2"), "{err}");
        assert!(decode(&[]).is_err());
        assert!(decode(b"\x01{not json").is_err());
        assert!(
            decode(b"\x01{\"kind\":\"samples\",\"device\":\"Bad Name\",\"samples\":[]}").is_err()
        );
    }
}
