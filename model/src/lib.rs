//! The telemetry data model shared by every netpulse crate.
//!
//! Owns device names, the one canonical string form of telemetry paths, typed values,
//! samples and device state. Pure data: serde only. This crate must not import anything
//! that does IO (no tokio, no sqlx, no tonic) and must not read the clock; callers pass
//! timestamps in.

use std::sync::Arc;

mod device;
mod path;
mod value;

pub use device::{DeviceEvent, DeviceKey, DeviceKeyError, DeviceState};
pub use path::{MULTI_LEVEL_WILDCARD, Path, PathElem, PathError, WILDCARD};
pub use value::{MAX_DECIMAL_PRECISION, Value};

/// Nanoseconds since the Unix epoch, UTC: the unit gNMI uses for timestamps.
pub type TimestampNs = i64;

/// One observation of one leaf of one device.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Device that reported the value.
    pub device: DeviceKey,
    /// Canonical path of the leaf, shared: a collector hands out one `Arc` per leaf it has
    /// seen, so a sample costs no path allocation.
    pub path: Arc<Path>,
    /// Device timestamp of the observation, ns since the epoch.
    pub ts: TimestampNs,
    /// The observed value.
    pub value: Value,
}
