//! Port numbers in specs: reading them with an error that names the allowed range.

use serde::{Deserialize, Deserializer};

/// Deserializes a TCP port, refusing 0 and values above 65535 with
/// `invalid value 70000, expected 1..=65535` rather than serde's `expected u16`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let value = i64::deserialize(deserializer)?;
    u16::try_from(value)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("invalid value {value}, expected 1..=65535"))
        })
}
