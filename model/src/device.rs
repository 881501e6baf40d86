//! Device identity and state.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::TimestampNs;

/// Longest device name accepted: the Kubernetes object-name limit.
const MAX_NAME_LEN: usize = 253;

/// The name of a device, unique within an installation.
///
/// Same rules as a Kubernetes object name (lowercase letters, digits, `-` and `.`, starting
/// and ending with an alphanumeric), so a `Device` resource name is always a valid key.
/// Cloning is cheap (a shared string): every sample carries its device's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceKey(Arc<str>);

/// Why a string is not a valid device name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid device name {name:?}: {reason}")]
pub struct DeviceKeyError {
    /// The rejected name.
    pub name: String,
    /// What rule it breaks.
    pub reason: &'static str,
}

impl DeviceKey {
    /// Validates and wraps a device name.
    pub fn new(name: impl Into<String>) -> Result<Self, DeviceKeyError> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("must not be empty")
        } else if name.len() > MAX_NAME_LEN {
            Some("must be at most 253 characters")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            Some("may contain only lowercase letters, digits, '-' and '.'")
        } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
        {
            Some("must start and end with a letter or digit")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(DeviceKeyError { name, reason }),
            None => Ok(Self(name.into())),
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DeviceKey {
    type Error = DeviceKeyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<DeviceKey> for String {
    fn from(key: DeviceKey) -> Self {
        key.0.to_string()
    }
}

impl std::str::FromStr for DeviceKey {
    type Err = DeviceKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Collection state of a device, as the collector that owns it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Known, but no collector has tried it yet.
    #[default]
    Pending,
    /// A session is being opened (or re-opened after a failure).
    Connecting,
    /// The device answered and has sent its initial data (gNMI `sync_response`).
    Synced,
    /// Connected, but part of what was asked for is missing or refused.
    Degraded,
    /// The last attempt to reach the device failed; it will be retried.
    Unreachable,
}

impl DeviceState {
    /// Stable lowercase name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Connecting => "connecting",
            Self::Synced => "synced",
            Self::Degraded => "degraded",
            Self::Unreachable => "unreachable",
        }
    }

    /// Parses the stored name; unknown names map to `None`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "connecting" => Self::Connecting,
            "synced" => Self::Synced,
            "degraded" => Self::Degraded,
            "unreachable" => Self::Unreachable,
            _ => return None,
        })
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of a device's collection state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEvent {
    /// The device whose state changed.
    pub device: DeviceKey,
    /// The new state.
    pub state: DeviceState,
    /// The last error in plain words, when the state is the result of one.
    pub error: Option<String>,
    /// When the change happened, ns since the epoch.
    pub ts: TimestampNs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_follow_kubernetes_rules() {
        for ok in ["leaf1", "spine-01.dc1", "a", "0"] {
            assert!(DeviceKey::new(ok).is_ok(), "{ok} should be valid");
        }
        for (bad, why) in [
            ("", "empty"),
            ("Leaf1", "lowercase"),
            ("-leaf", "start"),
            ("leaf-", "start and end"),
            ("leaf_1", "only lowercase"),
        ] {
            let err = DeviceKey::new(bad).expect_err(bad);
            assert!(err.reason.contains(why), "{bad}: {}", err.reason);
        }
        assert!(DeviceKey::new("a".repeat(254)).is_err());
    }

    #[test]
    fn device_state_round_trips_through_its_name() {
        for s in [
            DeviceState::Pending,
            DeviceState::Connecting,
            DeviceState::Synced,
            DeviceState::Degraded,
            DeviceState::Unreachable,
        ] {
            assert_eq!(DeviceState::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeviceState::parse("up"), None);
    }
}
