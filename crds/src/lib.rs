//! The netpulse custom resources (`netpulse.io/v1alpha1`): `Device` and `CollectorPool`,
//! their schemas, and their validation.
//!
//! Owns the resource types (kube derive + schemars), the CRD YAML generated from them and
//! the drift check of the committed copy, the validation shared by the API server (schema
//! and CEL rules) and Rust ([`DeviceSpec::validate`]), and the single-node devices file
//! ([`devices_file`]), which holds Device specs without Kubernetes.
//!
//! Depends on `model` only among netpulse crates. Does no network IO and talks to no API
//! server: file IO is limited to the devices file and the CRD directory.

mod crdgen;
mod device;
pub mod devices_file;
mod duration;
mod limits;
pub mod ownership;
mod pool;
mod port;
mod secret;
mod validate;

pub use crdgen::{CrdDrift, DriftProblem, REGENERATE_HINT, check_crds, crds, write_crds};
pub use device::{
    CliPlatform, DEFAULT_COMMAND_INTERVAL, DEFAULT_GNMI_PORT, DEFAULT_KNOWN_HOSTS_KEY,
    DEFAULT_PASSWORD_KEY, DEFAULT_SAMPLE_INTERVAL, DEFAULT_SSH_PORT, DEFAULT_SUBSCRIPTION_PATHS,
    DEFAULT_USERNAME_KEY, Device, DevicePhase, DeviceSpec, DeviceStatus, Encoding, GnmiSpec,
    SecretRef, SshCommand, SshHostKeyStatus, SshMode, SshSpec, SubscribeMode, Subscription,
    SubscriptionMode, SyncHealth, TlsSpec, default_subscriptions,
};
pub use duration::{
    DURATION_PATTERN, DurationError, INTERVAL_PATTERN, MAX_INTERVAL, MIN_INTERVAL, parse_duration,
};
pub use limits::ADDRESS_PATTERN;
pub use pool::{
    CollectorPool, CollectorPoolSpec, CollectorPoolStatus, CollectorScaling,
    DEFAULT_MAX_LOAD_FACTOR, DEFAULT_URL_KEY, DatabaseSpec, LoadFactor, PlacementSpec, PoolPhase,
    RedisSpec, RetentionSpec, WebAutoscaling, WebScaling,
};
pub use secret::SecretKeyRef;
pub use validate::{FieldError, validate_address};

/// API group of the netpulse resources.
pub const GROUP: &str = "netpulse.io";

/// API version of the netpulse resources.
pub const VERSION: &str = "v1alpha1";

/// Label naming the collector pod that owns a Device.
pub const COLLECTOR_LABEL: &str = "netpulse.io/collector";
