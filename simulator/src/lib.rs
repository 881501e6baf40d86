//! Virtual network devices for demos, tests and benchmarks.
//!
//! Owns the simulated fleet: each device is a real gNMI target (tonic server) on its own
//! loopback address, serving OpenConfig interface state whose counters move like real
//! traffic (deterministic from a seed, monotonic, with a slow swing, noise, rare errors
//! and occasional link flaps). Capabilities, Get and Subscribe (STREAM with SAMPLE,
//! ON_CHANGE and TARGET_DEFINED; ONCE; POLL) are served; Set is refused.
//!
//! Depends on `model` and `proto` only among netpulse crates; it must not import any
//! other role crate (collector, web, operator, store, bus).

mod device;
mod fleet;
mod pattern;
mod target;
mod traffic;

use std::net::{Ipv4Addr, SocketAddr};

pub use fleet::{Fleet, FleetConfig, SimDevice};

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
}

/// Result with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
