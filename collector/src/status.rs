//! Where device state changes go besides the store and the bus: a [`StateSink`], such as
//! the Kubernetes Device status writer (`crate::k8s`). Sinks take reports without
//! waiting; rate limiting and retries are theirs. Besides states, a sink hears of the SSH
//! host key a device is trusted with on first use ([`StateSink::host_key`]), which the
//! status writer shows in every later status of the device.

pub use crds::SshHostKeyStatus;
use model::{DeviceKey, DeviceState};

use crate::membership::Role;

/// One device state change, as this collector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateReport {
    /// The device.
    pub device: DeviceKey,
    /// Owner or incoming owner.
    pub role: Role,
    /// The epoch this collector holds the device at.
    pub epoch: u64,
    /// The spec generation the session runs, when known.
    pub generation: Option<i64>,
    /// The new state.
    pub state: DeviceState,
    /// The error, in plain words, when the state has one.
    pub error: Option<String>,
    /// When the state changed, ns since the Unix epoch.
    pub at: i64,
}

/// Takes state reports; must not block (it is called from device sessions).
pub trait StateSink: Send + Sync + std::fmt::Debug {
    /// Queues `report`; a newer report of the same device may replace it.
    fn report(&self, report: StateReport);

    /// The device is no longer collected here: drop anything queued for it.
    fn forget(&self, device: &DeviceKey);

    /// The SSH host key `device` is trusted with on first use: learned just now, or
    /// recorded earlier and loaded. Called on every connection; a sink acts on changes.
    /// Sinks that show no host keys ignore it.
    fn host_key(&self, device: &DeviceKey, key: SshHostKeyStatus) {
        let _ = (device, key);
    }
}
