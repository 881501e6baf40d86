//! Virtual network devices for demos, tests and benchmarks.
//!
//! Owns the simulated fleet: each device is a real gNMI target (tonic server) on its own
//! loopback address, serving OpenConfig interface state whose counters move like real
//! traffic (deterministic from a seed, monotonic, with a slow swing, noise, rare errors
//! and occasional link flaps), CPU and memory gauges, and LLDP neighbours forming a
//! leaf-spine fabric. Capabilities, Get and Subscribe (STREAM with SAMPLE, ON_CHANGE and
//! TARGET_DEFINED; ONCE; POLL) are served; Set is refused.
//!
//! A fleet can be a demanding peer: TLS with a generated CA (optionally demanding client
//! certificates), username/password metadata, and misbehaviour on demand (see
//! [`Misbehaviour`]), fleet-wide or per device.
//!
//! Devices can also serve SSH ([`FleetConfig::ssh`]): a russh server per device address
//! with an Arista EOS-like or Cisco IOS-like CLI (`show version`, `show interfaces`,
//! `show lldp neighbors`, `show running-config`) whose counters and neighbours are the
//! ones the same device serves over gNMI at that instant; exec and interactive shells
//! (prompts, `enable`, `--More--` paging, `terminal length 0`). Password, public-key and
//! keyboard-interactive authentication; the fleet's credentials if set, otherwise
//! [`DEFAULT_SSH_USERNAME`]/[`DEFAULT_SSH_PASSWORD`]. The host key comes from the seed
//! ([`Fleet::ssh_host_key`]).
//!
//! Depends on `model` and `proto` only among netpulse crates; it must not import any
//! other role crate (collector, web, operator, store, bus).

mod device;
mod fabric;
mod fleet;
mod misbehaviour;
mod pattern;
mod ssh;
mod target;
mod tls;
mod traffic;

use std::net::{Ipv4Addr, SocketAddr};

pub use fabric::Role;
pub use fleet::{Fleet, FleetConfig, SimDevice};
pub use misbehaviour::{Misbehaviour, ParseMisbehaviourError};
pub use ssh::{
    DEFAULT_SSH_PASSWORD, DEFAULT_SSH_USERNAME, ParsePlatformError, Platform, PlatformMix,
    SshConfig,
};
pub use target::{PASSWORD_KEY, USERNAME_KEY};

/// Why a fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The base address is outside 127.0.0.0/8.
    #[error("base address {0} is not a loopback address (127.0.0.0/8)")]
    NotLoopback(Ipv4Addr),
    /// The devices would need addresses past 127.255.255.254.
    #[error("{devices} devices starting at {base} would need addresses past 127.255.255.254")]
    AddressesExhausted {
        /// The configured base address.
        base: Ipv4Addr,
        /// The configured number of devices.
        devices: usize,
    },
    /// A device's address could not be bound (in use, or out of file descriptors).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address that failed.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A certificate for TLS could not be made.
    #[error("cannot make a TLS certificate: {0}")]
    Certificate(String),
    /// A device's TLS server could not be configured with its certificate.
    #[error("cannot configure TLS on {addr}")]
    Tls {
        /// The device's address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The shared listener cannot be used.
    #[error("cannot use a shared listener: {0}")]
    SharedListener(String),
    /// A misbehaviour override names a device the fleet does not have.
    #[error("misbehaviour for device index {index}, but the fleet has {devices} devices")]
    NoSuchDevice {
        /// The 0-based index given.
        index: usize,
        /// The number of devices.
        devices: usize,
    },
    /// An SSH key (an authorized key, or the host key) could not be used.
    #[error("SSH key: {0}")]
    SshKey(String),
}

/// Result with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
