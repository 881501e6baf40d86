//! The `CollectorPool` custom resource: one installation's collectors and web nodes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::DURATION_PATTERN;
use crate::limits::MAX_DURATION_LEN;
use crate::secret::SecretKeyRef;

/// Key read from `redis.urlSecret` and `database.urlSecret` unless they name another.
pub const DEFAULT_URL_KEY: &str = "url";

/// Bounded-load factor used when a pool does not set one.
pub const DEFAULT_MAX_LOAD_FACTOR: f64 = 1.25;

/// Largest bounded-load factor accepted; beyond it placement is no longer balanced.
pub const MAX_LOAD_FACTOR: f64 = 10.0;

/// A set of collector pods (and the web nodes serving their data) that devices are placed on.
// The printcolumn(...) lists repeat `type_ = "..."`, which is not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "netpulse.io",
    version = "v1alpha1",
    kind = "CollectorPool",
    namespaced,
    status = "CollectorPoolStatus",
    derive = "PartialEq",
    shortname = "cpool",
    category = "netpulse",
    doc = "A pool of netpulse collectors and web nodes that Devices are placed on.",
    scale(
        spec_replicas_path = ".spec.collectors.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyCollectors"
    ),
    printcolumn(name = "Devices", type_ = "integer", json_path = ".status.devices"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CollectorPoolSpec {
    /// Container image of netpulse, e.g. `ghcr.io/netpulse/netpulse:0.1.0`.
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,

    /// How many collector pods to run.
    #[serde(default)]
    pub collectors: CollectorScaling,

    /// How many web pods to run.
    #[serde(default)]
    pub web: WebScaling,

    /// Redis used for live updates between collectors and web nodes.
    pub redis: RedisSpec,

    /// PostgreSQL database holding the samples.
    pub database: DatabaseSpec,

    /// Placement of devices on collectors.
    #[serde(default)]
    pub placement: PlacementSpec,

    /// How long samples are kept at each resolution.
    #[serde(default)]
    pub retention: RetentionSpec,
}

/// Collector scaling policy. The operator runs enough collectors for
/// `devices / devicesPerReplica`, within `minReplicas..=maxReplicas`, unless `replicas` is set
/// (by hand, `kubectl scale` or an autoscaler through the scale subresource).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.minReplicas <= self.maxReplicas",
        "message": "collectors.minReplicas must not exceed collectors.maxReplicas"
    },
    {
        "rule": "!has(self.replicas) || (self.replicas >= self.minReplicas && self.replicas <= self.maxReplicas)",
        "message": "collectors.replicas must lie within minReplicas..maxReplicas"
    }
]))]
pub struct CollectorScaling {
    /// Fewest collector pods.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 10_000))]
    pub min_replicas: i32,

    /// Most collector pods.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 10_000))]
    pub max_replicas: i32,

    /// Devices one collector pod is sized for.
    #[serde(default = "default_devices_per_replica")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub devices_per_replica: i32,

    /// Fixed number of collector pods; the target of the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10_000))]
    pub replicas: Option<i32>,
}

impl Default for CollectorScaling {
    fn default() -> Self {
        Self {
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            devices_per_replica: default_devices_per_replica(),
            replicas: None,
        }
    }
}

/// Web scaling policy: a fixed number of replicas, or a HorizontalPodAutoscaler on CPU.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.replicas) && has(self.autoscaling))",
    "message": "web.replicas and web.autoscaling are mutually exclusive"
}]))]
pub struct WebScaling {
    /// Fixed number of web pods (default 1 when autoscaling is not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10_000))]
    pub replicas: Option<i32>,

    /// Scale web pods on CPU utilisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<WebAutoscaling>,
}

/// HorizontalPodAutoscaler settings for the web pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.minReplicas <= self.maxReplicas",
    "message": "web.autoscaling.minReplicas must not exceed maxReplicas"
}]))]
pub struct WebAutoscaling {
    /// Fewest web pods.
    #[serde(default = "default_web_min_replicas")]
    #[schemars(range(min = 1, max = 10_000))]
    pub min_replicas: i32,

    /// Most web pods.
    #[schemars(range(min = 1, max = 10_000))]
    pub max_replicas: i32,

    /// Average CPU utilisation, in percent of the request, the autoscaler aims for.
    #[serde(
        rename = "targetCPUUtilizationPercentage",
        default = "default_target_cpu"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

/// Redis connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisSpec {
    /// Secret key holding the Redis URL (`redis://` or `rediss://`); key `url` by default.
    pub url_secret: SecretKeyRef,
}

/// Database connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseSpec {
    /// Secret key holding the PostgreSQL URL (`postgres://...`); key `url` by default.
    pub url_secret: SecretKeyRef,
}

/// Placement settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementSpec {
    /// Bounded-load factor: no collector carries more than this times the average load.
    /// Lower balances better, higher moves fewer devices on membership changes.
    #[serde(default)]
    pub max_load_factor: LoadFactor,
}

/// A bounded-load factor, greater than 1.
///
/// Written as a decimal string (`"1.25"`) in the CRD: Kubernetes structural schemas cannot
/// say "number or string", and API conventions keep floats out of specs. Reading also
/// accepts a plain number, for hand-written files.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadFactor(pub f64);

impl Default for LoadFactor {
    fn default() -> Self {
        Self(DEFAULT_MAX_LOAD_FACTOR)
    }
}

impl fmt::Display for LoadFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Pattern of a load factor written as a string.
pub const LOAD_FACTOR_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?$";

impl LoadFactor {
    /// Parses the decimal form `1.25` (no exponent, sign, `inf` or `NaN`).
    pub fn parse(s: &str) -> Option<Self> {
        let (int, frac) = match s.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (s, None),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || !frac.is_none_or(digits) {
            return None;
        }
        s.parse().ok().map(Self)
    }
}

impl Serialize for LoadFactor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LoadFactor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(f64),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(n) if n.is_finite() => Ok(Self(n)),
            Repr::Number(n) => Err(serde::de::Error::custom(format!(
                "invalid load factor {n}, expected a decimal such as \"1.25\""
            ))),
            Repr::Text(s) => Self::parse(&s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid load factor {s:?}, expected a decimal such as \"1.25\""
                ))
            }),
        }
    }
}

impl JsonSchema for LoadFactor {
    fn schema_name() -> Cow<'static, str> {
        "LoadFactor".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Decimal greater than 1 and at most 10, as a string: \"1.25\".",
            "pattern": LOAD_FACTOR_PATTERN,
            "maxLength": 16,
            "x-kubernetes-validations": [{
                "rule": "double(self) > 1.0 && double(self) <= 10.0",
                "message": "must be greater than 1 and at most 10"
            }]
        })
    }
}

/// How long samples are kept at each resolution, as durations such as `7d` or `720h`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionSpec {
    /// Raw samples.
    #[serde(default = "default_raw_retention")]
    #[schemars(length(min = 1, max = MAX_DURATION_LEN), regex(pattern = DURATION_PATTERN))]
    pub raw: String,

    /// One-minute rollups; at least as long as `raw`.
    #[serde(default = "default_minute_retention")]
    #[schemars(length(min = 1, max = MAX_DURATION_LEN), regex(pattern = DURATION_PATTERN))]
    pub one_minute: String,

    /// One-hour rollups; at least as long as `oneMinute`.
    #[serde(default = "default_hour_retention")]
    #[schemars(length(min = 1, max = MAX_DURATION_LEN), regex(pattern = DURATION_PATTERN))]
    pub one_hour: String,
}

impl Default for RetentionSpec {
    fn default() -> Self {
        Self {
            raw: default_raw_retention(),
            one_minute: default_minute_retention(),
            one_hour: default_hour_retention(),
        }
    }
}

/// Observed state of a CollectorPool, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectorPoolStatus {
    /// Collector pods that exist (the scale subresource's status replicas).
    #[serde(default)]
    pub replicas: i32,

    /// Collector pods that are ready.
    #[serde(default)]
    pub ready_collectors: i32,

    /// Devices placed on the pool.
    #[serde(default)]
    pub devices: i32,

    /// Devices per collector pod, by pod name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub devices_per_collector: BTreeMap<String, i32>,

    /// Label selector of the collector pods, for autoscalers using the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Summary of the pool's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PoolPhase>,

    /// Detailed conditions (`Ready`, `Progressing`, `Degraded`), each with observedGeneration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Lifecycle phase of a CollectorPool.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PoolPhase {
    /// Children not created yet.
    Pending,
    /// Scaling or rolling out.
    Progressing,
    /// Every desired collector is ready.
    Ready,
    /// Some collectors are missing or not ready.
    Degraded,
}

fn default_min_replicas() -> i32 {
    1
}

fn default_max_replicas() -> i32 {
    10
}

fn default_devices_per_replica() -> i32 {
    500
}

fn default_web_min_replicas() -> i32 {
    1
}

fn default_target_cpu() -> i32 {
    75
}

fn default_raw_retention() -> String {
    "7d".to_owned()
}

fn default_minute_retention() -> String {
    "30d".to_owned()
}

fn default_hour_retention() -> String {
    "365d".to_owned()
}
