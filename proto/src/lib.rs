//! gNMI wire types and the conversions between them and the netpulse data model.
//!
//! Owns the gNMI `.proto` files (written from the published openconfig/gnmi
//! specification, gNMI 0.10.0, so field numbers match real devices and tools), the
//! prost messages and tonic client/server generated from them at build time (with
//! protox: no system `protoc`), and small pure helpers that translate paths and values
//! between the wire form and [`model`].
//!
//! This crate does no IO of its own beyond what tonic's generated transport code offers
//! to callers, and must not depend on any role crate (collector, web, simulator, ...).

mod cache;
pub mod codec;
pub mod json;
mod notification;
mod path;
mod value;
pub mod wire;

pub use cache::{LeafId, PathCache, leaf_id};
pub use notification::{DecodeError, Decoded, decode_notification, decode_notification_cached};
pub use path::full_path;
pub use value::{to_typed_value, to_value};

/// Messages and service of the `gnmi` package (gNMI 0.10.0).
#[allow(
    missing_docs,
    deprecated,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]
pub mod gnmi {
    tonic::include_proto!("gnmi");
}

/// Messages of the `gnmi_ext` package: the extensions gNMI requests and responses carry.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]
pub mod gnmi_ext {
    tonic::include_proto!("gnmi_ext");
}

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A gNMI path that has no netpulse form: an empty or reserved-character element or
    /// key name, or a legacy `element` string that is not exactly one path element.
    #[error("invalid gNMI path {path}: {reason}")]
    InvalidPath {
        /// The offending path, rendered for humans.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::gnmi;

    /// Clients address the service by this name (`/gnmi.gNMI/Subscribe`, ...).
    #[test]
    fn service_name_matches_the_specification() {
        assert_eq!(gnmi::g_nmi_server::SERVICE_NAME, "gnmi.gNMI");
    }

    /// Spot checks of field numbers against bytes a spec-conformant peer produces, so an
    /// accidental edit of the `.proto` files cannot break interoperability unnoticed.
    #[test]
    fn wire_encoding_uses_the_published_field_numbers() {
        use gnmi::{subscribe_response::Response, typed_value::Value};
        let sync = gnmi::SubscribeResponse {
            response: Some(Response::SyncResponse(true)),
            extension: Vec::new(),
        };
        assert_eq!(sync.encode_to_vec(), [0x18, 0x01]); // field 3, varint
        let double = gnmi::TypedValue {
            value: Some(Value::DoubleVal(0.0)),
        };
        assert_eq!(double.encode_to_vec(), [0x71, 0, 0, 0, 0, 0, 0, 0, 0]); // field 14, i64
        let uint = gnmi::TypedValue {
            value: Some(Value::UintVal(5)),
        };
        assert_eq!(uint.encode_to_vec(), [0x18, 0x05]); // field 3
        let json_ietf = gnmi::TypedValue {
            value: Some(Value::JsonIetfVal(b"1".to_vec())),
        };
        assert_eq!(json_ietf.encode_to_vec(), [0x5a, 0x01, b'1']); // field 11, bytes
        let notification = gnmi::Notification {
            timestamp: 1,
            update: vec![gnmi::Update::default()],
            atomic: true,
            ..Default::default()
        };
        // timestamp = 1, update = 4, atomic = 6
        assert_eq!(
            notification.encode_to_vec(),
            [0x08, 0x01, 0x22, 0x00, 0x30, 0x01]
        );
        let path = gnmi::Path {
            origin: "o".into(),
            elem: vec![gnmi::PathElem {
                name: "n".into(),
                key: [("k".to_owned(), "v".to_owned())].into(),
            }],
            target: "t".into(),
            ..Default::default()
        };
        // origin = 2, elem = 3 { name = 1, key = 2 { key = 1, value = 2 } }, target = 4
        assert_eq!(
            path.encode_to_vec(),
            [
                0x12, 1, b'o', 0x1a, 11, 0x0a, 1, b'n', 0x12, 6, 0x0a, 1, b'k', 0x12, 1, b'v',
                0x22, 1, b't'
            ]
        );
        let subscription = gnmi::Subscription {
            mode: gnmi::SubscriptionMode::Sample as i32,
            sample_interval: 1,
            heartbeat_interval: 2,
            ..Default::default()
        };
        // mode = 2 (SAMPLE = 2), sample_interval = 3, heartbeat_interval = 5
        assert_eq!(
            subscription.encode_to_vec(),
            [0x10, 0x02, 0x18, 0x01, 0x28, 0x02]
        );
        let list = gnmi::SubscriptionList {
            mode: gnmi::subscription_list::Mode::Poll as i32,
            encoding: gnmi::Encoding::JsonIetf as i32,
            updates_only: true,
            ..Default::default()
        };
        // mode = 5 (POLL = 2), encoding = 8 (JSON_IETF = 4), updates_only = 9
        assert_eq!(list.encode_to_vec(), [0x28, 0x02, 0x40, 0x04, 0x48, 0x01]);
        let get = gnmi::GetRequest {
            r#type: gnmi::get_request::DataType::State as i32,
            encoding: gnmi::Encoding::Proto as i32,
            ..Default::default()
        };
        // type = 3 (STATE = 2), encoding = 5 (PROTO = 2)
        assert_eq!(get.encode_to_vec(), [0x18, 0x02, 0x28, 0x02]);
        let caps = gnmi::CapabilityResponse {
            g_nmi_version: "x".into(),
            ..Default::default()
        };
        assert_eq!(caps.encode_to_vec(), [0x1a, 1, b'x']); // gNMI_version = 3
    }
}
