//! The `Device` custom resource: one network device to collect from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::INTERVAL_PATTERN;
use crate::limits::{
    ADDRESS_PATTERN, HOST_KEY_PATTERN, MAX_COMMAND_LEN, MAX_COMMANDS, MAX_DURATION_LEN,
    MAX_HOST_KEY_LEN, MAX_NAME_LEN, MAX_PATH_LEN, MAX_PROMPT_LEN, MAX_SUBSCRIPTIONS, MAX_WEIGHT,
    NAME_PATTERN, PATH_PATTERN, SECRET_KEY_PATTERN,
};
use crate::port;
use crate::secret::SecretKeyRef;

/// Port gNMI targets listen on by default (IANA-assigned to gNMI).
pub const DEFAULT_GNMI_PORT: u16 = 57400;

/// Port SSH servers listen on by default.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// Sample interval of the default subscriptions.
pub const DEFAULT_SAMPLE_INTERVAL: &str = "10s";

/// Interval of an SSH command that does not name one.
pub const DEFAULT_COMMAND_INTERVAL: &str = "60s";

/// Paths subscribed to when a device does not list its own: OpenConfig interface counters
/// and operational status.
pub const DEFAULT_SUBSCRIPTION_PATHS: [&str; 2] = [
    "/interfaces/interface[name=*]/state/counters",
    "/interfaces/interface[name=*]/state/oper-status",
];

/// Key read from the credentials Secret for the user name unless `usernameKey` says otherwise.
pub const DEFAULT_USERNAME_KEY: &str = "username";

/// Key read from the credentials Secret for the password unless `passwordKey` says otherwise.
pub const DEFAULT_PASSWORD_KEY: &str = "password";

/// Key read from `ssh.knownHostsSecret` unless it names another.
pub const DEFAULT_KNOWN_HOSTS_KEY: &str = "known_hosts";

/// A network device that netpulse collects telemetry from.
///
/// The operator places each Device on one collector of its pool, records the owner in
/// `status.collector` and the label `netpulse.io/collector`, and bumps `status.epoch` on every
/// change of owner.
// The printcolumn(...) lists repeat `type_ = "..."`, which is not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "netpulse.io",
    version = "v1alpha1",
    kind = "Device",
    namespaced,
    status = "DeviceStatus",
    derive = "PartialEq",
    shortname = "dev",
    shortname = "npdev",
    category = "netpulse",
    doc = "A network device that netpulse collects gNMI telemetry and CLI state from.",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(name = "Pool", type_ = "string", json_path = ".spec.pool"),
    printcolumn(name = "Collector", type_ = "string", json_path = ".status.collector"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.gnmi.enabled || has(self.ssh)",
    "message": "nothing to collect: keep gnmi enabled or add an ssh block"
}]))]
pub struct DeviceSpec {
    /// IPv4 or IPv6 literal, or DNS host name, of the device. No port: ports go in
    /// `gnmi.port` and `ssh.port`.
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = ADDRESS_PATTERN))]
    pub address: String,

    /// Name of the CollectorPool (same namespace) that collects this device. When unset, the
    /// namespace's only pool is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = NAME_PATTERN))]
    pub pool: Option<String>,

    /// Secret (same namespace) holding the user name and password for gNMI and SSH, and
    /// the SSH enable secret under `enable-secret` if the device's `enable` asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<SecretRef>,

    /// gNMI collection: streaming telemetry subscriptions.
    #[serde(default)]
    pub gnmi: GnmiSpec,

    /// SSH collection: CLI commands polled at intervals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSpec>,

    /// Relative collection cost used by placement until the device's cost is measured
    /// (1 = an average device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_WEIGHT))]
    pub weight: Option<u32>,
}

/// Reference to a Secret holding device credentials. Passwords are never written inline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the Secret, in the Device's namespace.
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = NAME_PATTERN))]
    pub name: String,

    /// Key holding the user name (default `username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = SECRET_KEY_PATTERN))]
    pub username_key: Option<String>,

    /// Key holding the password (default `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = SECRET_KEY_PATTERN))]
    pub password_key: Option<String>,
}

impl SecretRef {
    /// The key holding the user name.
    pub fn username_key(&self) -> &str {
        self.username_key.as_deref().unwrap_or(DEFAULT_USERNAME_KEY)
    }

    /// The key holding the password.
    pub fn password_key(&self) -> &str {
        self.password_key.as_deref().unwrap_or(DEFAULT_PASSWORD_KEY)
    }
}

/// gNMI collection settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(self.insecure && has(self.tls))",
        "message": "gnmi.insecure and gnmi.tls are mutually exclusive: insecure turns TLS off"
    },
    {
        "rule": "!self.enabled || size(self.subscriptions) > 0",
        "message": "gnmi.subscriptions must not be empty while gnmi is enabled"
    },
    {
        "rule": "!has(self.pollInterval) || (has(self.mode) && self.mode != 'stream')",
        "message": "pollInterval applies only to mode poll or once"
    }
]))]
pub struct GnmiSpec {
    /// Whether to collect over gNMI at all; `false` for SSH-only devices.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// TCP port of the gNMI target.
    #[serde(default = "default_gnmi_port", deserialize_with = "port::deserialize")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,

    /// Plain-text gRPC without TLS. For labs and simulators only.
    #[serde(default)]
    pub insecure: bool,

    /// TLS settings; without them TLS is used with the system trust roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Preferred encoding; the collector falls back to what the target supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,

    /// What to subscribe to. Defaults to interface counters and oper-status sampled every 10s.
    #[serde(default = "default_subscriptions")]
    #[schemars(length(max = MAX_SUBSCRIPTIONS))]
    pub subscriptions: Vec<Subscription>,

    /// How the subscriptions are served: `stream` (default; the device pushes, each
    /// subscription in its own mode), `poll` (one stream, polled every `pollInterval`) or
    /// `once` (a fresh one-off subscription every `pollInterval`).
    #[serde(default, skip_serializing_if = "SubscribeMode::is_stream")]
    pub mode: SubscribeMode,

    /// Interval of mode `poll` and `once`; 100ms..24h, default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_DURATION_LEN), regex(pattern = INTERVAL_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('100ms') && duration(self) <= duration('24h')",
        "message": "must be between 100ms and 24h"
    }]))]
    pub poll_interval: Option<String>,

    /// Ask only for changes, without the initial values (gNMI `updates_only`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub updates_only: bool,
}

impl Default for GnmiSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            port: DEFAULT_GNMI_PORT,
            insecure: false,
            tls: None,
            encoding: None,
            subscriptions: default_subscriptions(),
            mode: SubscribeMode::Stream,
            poll_interval: None,
            updates_only: false,
        }
    }
}

/// How a device's subscriptions are served (gNMI `SubscriptionList.mode`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscribeMode {
    /// A long-lived stream the device pushes into.
    #[default]
    Stream,
    /// A long-lived stream the collector polls.
    Poll,
    /// A one-off subscription, repeated.
    Once,
}

impl SubscribeMode {
    /// Whether this is the default, `stream`.
    pub fn is_stream(&self) -> bool {
        *self == Self::Stream
    }
}

/// TLS settings for gNMI.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSpec {
    /// Secret whose `ca.crt` holds the CA bundle that signs the device certificate. Without
    /// it the system trust roots are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = NAME_PATTERN))]
    pub ca_secret: Option<String>,

    /// `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) presented as client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = NAME_PATTERN))]
    pub client_cert_secret: Option<String>,

    /// Name expected in the device certificate, when it differs from `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = ADDRESS_PATTERN))]
    pub server_name: Option<String>,
}

/// gNMI encodings netpulse can decode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Protobuf-typed values.
    Proto,
    /// JSON values.
    Json,
    /// RFC 7951 JSON values.
    JsonIetf,
}

/// One gNMI subscription.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.mode == 'sample' || !has(self.sampleInterval)",
        "message": "sampleInterval applies only to mode sample"
    },
    {
        "rule": "self.mode == 'sample' || !self.suppressRedundant",
        "message": "suppressRedundant applies only to mode sample"
    }
]))]
pub struct Subscription {
    /// Path in canonical gNMI string form, e.g. `/interfaces/interface[name=*]/state/counters`,
    /// optionally prefixed by an origin (`openconfig:/...`).
    #[schemars(length(min = 1, max = MAX_PATH_LEN), regex(pattern = PATH_PATTERN))]
    pub path: String,

    /// How the target sends updates.
    #[serde(default)]
    pub mode: SubscriptionMode,

    /// Interval between samples (mode `sample`), e.g. `10s`, `500ms`; 100ms..24h. When unset
    /// the target chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_DURATION_LEN), regex(pattern = INTERVAL_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('100ms') && duration(self) <= duration('24h')",
        "message": "must be between 100ms and 24h"
    }]))]
    pub sample_interval: Option<String>,

    /// Longest silence before the target re-sends a value (on_change, or sample with
    /// suppressRedundant); 100ms..24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_DURATION_LEN), regex(pattern = INTERVAL_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('100ms') && duration(self) <= duration('24h')",
        "message": "must be between 100ms and 24h"
    }]))]
    pub heartbeat_interval: Option<String>,

    /// Skip samples whose value did not change (mode `sample` only).
    #[serde(default)]
    pub suppress_redundant: bool,
}

impl Subscription {
    /// A `sample` subscription of `path` every `interval`.
    pub fn sample(path: impl Into<String>, interval: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            mode: SubscriptionMode::Sample,
            sample_interval: Some(interval.into()),
            heartbeat_interval: None,
            suppress_redundant: false,
        }
    }
}

/// gNMI subscription modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionMode {
    /// Sent every sample interval.
    #[default]
    Sample,
    /// Sent when the value changes.
    OnChange,
    /// The target picks sample or on_change per leaf.
    TargetDefined,
}

/// SSH collection settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.hostKey) || has(self.knownHostsSecret) || self.trustOnFirstUse",
    "message": "ssh needs a way to verify the host key: set hostKey, knownHostsSecret or trustOnFirstUse: true"
}]))]
pub struct SshSpec {
    /// TCP port of the SSH server.
    #[serde(default = "default_ssh_port", deserialize_with = "port::deserialize")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,

    /// Expected host public key, OpenSSH format: `ssh-ed25519 AAAAC3Nza...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_HOST_KEY_LEN), regex(pattern = HOST_KEY_PATTERN))]
    pub host_key: Option<String>,

    /// Secret holding an OpenSSH `known_hosts` file (key `known_hosts` unless named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_secret: Option<SecretKeyRef>,

    /// Accept the host key seen on first connection and pin it in status. For labs.
    #[serde(default)]
    pub trust_on_first_use: bool,

    /// Commands to run, each at its own interval.
    #[schemars(length(min = 1, max = MAX_COMMANDS))]
    pub commands: Vec<SshCommand>,

    /// The device's CLI dialect; when unset it is detected from `show version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<CliPlatform>,

    /// How commands run: in an interactive shell with a PTY (`shell`, the default: many
    /// network OSes only behave there), or one exec channel per command (`exec`).
    #[serde(default)]
    pub mode: SshMode,

    /// Regular expression matching the device's prompt at the end of output, overriding
    /// the platform's (e.g. `^leaf[0-9]+#\s*$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_PROMPT_LEN))]
    pub prompt: Option<String>,

    /// Also offer legacy key exchange, host key and cipher algorithms (SHA-1
    /// Diffie-Hellman, ssh-rsa, CBC ciphers) for old platforms that need them.
    #[serde(default)]
    pub legacy_algorithms: bool,

    /// The AAA (TACACS+/RADIUS) server group that authenticates this device's logins:
    /// sessions are capped per group so a reconnect storm does not overwhelm it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = SECRET_KEY_PATTERN))]
    pub aaa_group: Option<String>,

    /// Secret holding an OpenSSH private key to log in with (key `ssh-privatekey` unless
    /// named, as in a `kubernetes.io/ssh-auth` Secret; a passphrase, if any, under
    /// `passphrase` in the same Secret). The user name comes from `credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_secret: Option<SecretKeyRef>,
}

/// A CLI dialect netpulse parses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CliPlatform {
    /// Arista EOS.
    #[serde(rename = "arista_eos")]
    AristaEos,
    /// Cisco IOS and IOS-XE.
    #[serde(rename = "cisco_ios")]
    CiscoIos,
}

/// How SSH commands run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SshMode {
    /// An interactive shell with a PTY, prompt detection and paging turned off.
    #[default]
    Shell,
    /// One exec channel per command.
    Exec,
}

/// One CLI command polled over SSH.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SshCommand {
    /// The command line, e.g. `show interfaces counters`.
    #[schemars(length(min = 1, max = MAX_COMMAND_LEN), regex(pattern = r"\S"))]
    pub command: String,

    /// How often to run it; 100ms..24h.
    #[serde(default = "default_command_interval")]
    #[schemars(length(min = 1, max = MAX_DURATION_LEN), regex(pattern = INTERVAL_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('100ms') && duration(self) <= duration('24h')",
        "message": "must be between 100ms and 24h"
    }]))]
    pub interval: String,
}

/// Observed state of a Device, written by the operator (placement) and the owning collector
/// (connection state).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatus {
    /// Pod name of the collector that owns the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,

    /// Ownership epoch, bumped on every change of owner. The store refuses writes carrying an
    /// older epoch, which fences off a partitioned former owner.
    #[serde(default)]
    pub epoch: u64,

    /// Summary of where the device is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DevicePhase>,

    /// Detailed conditions (`Assigned`, `Connected`, `Synced`), each with observedGeneration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The last error, in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,

    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Whether the device sends what it was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_health: Option<SyncHealth>,

    /// The SSH host key trusted on first use (`ssh.trustOnFirstUse`): learned on the first
    /// connection and required ever after; a device presenting another key is refused
    /// (`lastError` names both fingerprints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<SshHostKeyStatus>,
}

/// An SSH host key learned on first use, as the collector recorded it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshHostKeyStatus {
    /// The key's algorithm as OpenSSH names it, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// SHA-256 fingerprint as `ssh-keygen -l` prints it: `SHA256:` and unpadded base64.
    pub fingerprint: String,
    /// When the key was learned (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub learned_at: String,
}

/// Lifecycle phase of a Device.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DevicePhase {
    /// Not yet placed on a collector.
    Pending,
    /// Placed on a collector that has not connected yet.
    Assigned,
    /// Connected and sending everything asked for.
    Connected,
    /// Connected, but some subscriptions or commands fail or fall behind.
    Degraded,
    /// The last connection attempt failed; it is retried with backoff.
    Unreachable,
}

/// Expected against received samples over a fixed window, as counted by the collector.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncHealth {
    /// Length of the counting window, in seconds.
    pub window_seconds: u32,
    /// Samples the subscriptions should have produced in the window.
    pub expected_samples: u64,
    /// Samples received in the window.
    pub received_samples: u64,
}

fn default_true() -> bool {
    true
}

fn default_gnmi_port() -> u16 {
    DEFAULT_GNMI_PORT
}

fn default_ssh_port() -> u16 {
    DEFAULT_SSH_PORT
}

fn default_command_interval() -> String {
    DEFAULT_COMMAND_INTERVAL.to_owned()
}

/// The subscriptions of a device that lists none.
pub fn default_subscriptions() -> Vec<Subscription> {
    DEFAULT_SUBSCRIPTION_PATHS
        .iter()
        .map(|path| Subscription::sample(*path, DEFAULT_SAMPLE_INTERVAL))
        .collect()
}

impl DeviceSpec {
    /// A spec for `address` with every other field at its default.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            pool: None,
            credentials: None,
            gnmi: GnmiSpec::default(),
            ssh: None,
            weight: None,
        }
    }
}
