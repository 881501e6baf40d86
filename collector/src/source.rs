//! Where a collector's devices come from: a devices file (single-node and file-driven
//! deployments) or a list built in process (the built-in simulator), both fixed
//! ([`crate::membership::fixed`]); on Kubernetes, the watch of the Devices placed on the
//! pod ([`crate::k8s`]).

use std::net::SocketAddr;

use crds::devices_file::{self, DeviceEntry};
use crds::{DeviceSpec, Subscription};
use model::DeviceKey;

use crate::Result;

/// Subscriptions of a plain-text device sampled every `interval`: interface counters and
/// oper-status, the OpenConfig leaves every router has.
pub fn interface_subscriptions(interval: &str) -> Vec<Subscription> {
    vec![
        Subscription::sample("/interfaces/interface[name=*]/state/counters", interval),
        Subscription::sample("/interfaces/interface[name=*]/state/oper-status", interval),
    ]
}

/// Devices listed in a devices file; errors name the file, the device and the field.
pub fn from_file(path: &std::path::Path) -> Result<Vec<DeviceEntry>> {
    Ok(devices_file::load(path)?)
}

/// A plain-text gNMI device at `addr` with the interface subscriptions.
pub fn plain_text_device(name: DeviceKey, addr: SocketAddr, interval: &str) -> DeviceEntry {
    let mut spec = DeviceSpec::new(addr.ip().to_string());
    spec.gnmi.port = addr.port();
    spec.gnmi.insecure = true;
    spec.gnmi.subscriptions = interface_subscriptions(interval);
    DeviceEntry { name, spec }
}
