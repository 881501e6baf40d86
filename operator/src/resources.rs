//! The objects a `CollectorPool` owns, built pure from its spec: the collector
//! Deployment, ServiceAccount, Role and RoleBinding, and PodDisruptionBudget; the web
//! Deployment and Service, and an HPA when the pool asks for one.
//!
//! Every object carries the pool's labels and a controller owner reference to it, so
//! deleting the pool deletes them. The controller applies them with server-side apply;
//! `netpulse operator render` prints them (and a test validates every one against the
//! Kubernetes schemas with `kubernetes-validate`).
//!
//! Pods run the one netpulse image with `NODE_ROLE` naming the role; database and Redis
//! URLs come from the Secrets the pool names; collectors know their pod name from the
//! downward API (the owner label they watch for). A collector is ready once it has synced
//! its devices (`/readyz`), and on termination its preStop hook keeps it collecting for
//! [`DRAIN_SECONDS`] while the operator hands its devices over make-before-break.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crds::CollectorPool;

/// Port of a collector's health and metrics endpoints.
pub const COLLECTOR_PORT: u16 = 9090;
/// Port the web pods serve on.
pub const WEB_PORT: u16 = 8080;
/// Seconds a terminating collector keeps collecting while its devices are handed over.
pub const DRAIN_SECONDS: i64 = 30;

/// Why the objects cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The pool has no name, namespace or uid yet (not read from the API server).
    #[error("the CollectorPool has no {0} (build from an object read from the cluster)")]
    Incomplete(&'static str),
    /// A built object does not match its Kubernetes type (a bug here).
    #[error("built {kind} does not match its type: {source}")]
    Shape {
        /// Kind of the object.
        kind: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Everything a pool owns.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// The collector pods' identity.
    pub collector_account: ServiceAccount,
    /// What collectors may do: read and patch Devices in the pool's namespace, read
    /// Secrets (device credentials), create Events.
    pub collector_role: Role,
    /// Grants the role to the account.
    pub collector_binding: RoleBinding,
    /// Collector pods.
    pub collectors: Deployment,
    /// At most one collector down at a time by voluntary disruption.
    pub collector_budget: PodDisruptionBudget,
    /// Web pods.
    pub web: Deployment,
    /// The web pods' Service.
    pub web_service: Service,
    /// Web autoscaler, when the pool asks for one.
    pub web_autoscaler: Option<HorizontalPodAutoscaler>,
}

impl Children {
    /// The objects as JSON, in the order to apply them.
    pub fn to_values(&self) -> Vec<Value> {
        let mut out = vec![
            json!(self.collector_account),
            json!(self.collector_role),
            json!(self.collector_binding),
            json!(self.collectors),
            json!(self.collector_budget),
            json!(self.web),
            json!(self.web_service),
        ];
        if let Some(hpa) = &self.web_autoscaler {
            out.push(json!(hpa));
        }
        out
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    value: Value,
) -> Result<T, BuildError> {
    serde_json::from_value(value).map_err(|source| BuildError::Shape { kind, source })
}

/// The labels of `pool`'s `component` (collector, web).
pub fn labels(pool: &str, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "netpulse",
        "app.kubernetes.io/instance": pool,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "netpulse-operator",
    })
}

/// What selects `pool`'s `component` pods (a subset of [`labels`]: selectors are
/// immutable, so they hold only what never changes).
pub fn selector(pool: &str, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "netpulse",
        "app.kubernetes.io/instance": pool,
        "app.kubernetes.io/component": component,
    })
}

/// The objects `pool` owns, with `collector_replicas` collector pods.
pub fn children(pool: &CollectorPool, collector_replicas: i32) -> Result<Children, BuildError> {
    let name = pool
        .metadata
        .name
        .as_deref()
        .ok_or(BuildError::Incomplete("name"))?;
    let namespace = pool
        .namespace()
        .ok_or(BuildError::Incomplete("namespace"))?;
    let owner = pool
        .controller_owner_ref(&())
        .ok_or(BuildError::Incomplete("uid"))?;
    let meta = |object: &str, component: &str| {
        json!({
            "name": object,
            "namespace": namespace,
            "labels": labels(name, component),
            "ownerReferences": [owner],
        })
    };
    let spec = &pool.spec;
    let collector = format!("{name}-collector");
    let web = format!("{name}-web");
    let secret_env = |var: &str, r: &crds::SecretKeyRef| {
        json!({
            "name": var,
            "valueFrom": { "secretKeyRef": {
                "name": r.name, "key": r.key_or(crds::DEFAULT_URL_KEY),
            }},
        })
    };
    let common_env = vec![
        secret_env("NETPULSE_DATABASE_URL", &spec.database.url_secret),
        secret_env("NETPULSE_REDIS_URL", &spec.redis.url_secret),
        json!({ "name": "NETPULSE_POOL", "value": name }),
        json!({ "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }),
        json!({ "name": "POD_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } }),
    ];
    let security = json!({
        "runAsNonRoot": true,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" },
    });
    let probe = |path: &str, port: u16, period: i32| json!({ "httpGet": { "path": path, "port": port }, "periodSeconds": period, "failureThreshold": 3 });

    let mut collector_env = vec![
        json!({ "name": "NODE_ROLE", "value": "collector" }),
        json!({ "name": "NETPULSE_KUBERNETES", "value": "true" }),
        json!({ "name": "NETPULSE_LISTEN", "value": format!("0.0.0.0:{COLLECTOR_PORT}") }),
        json!({ "name": "NETPULSE_RETENTION_RAW", "value": spec.retention.raw }),
        json!({ "name": "NETPULSE_RETENTION_MINUTES", "value": spec.retention.one_minute }),
        json!({ "name": "NETPULSE_RETENTION_HOURS", "value": spec.retention.one_hour }),
    ];
    collector_env.extend(common_env.iter().cloned());
    let collectors = typed::<Deployment>(
        "Deployment",
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(&collector, "collector"),
            "spec": {
                "replicas": collector_replicas,
                "selector": { "matchLabels": selector(name, "collector") },
                // New pods first: a rolling update never lowers the collectors available
                // to take devices over.
                "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } },
                "template": {
                    "metadata": { "labels": labels(name, "collector") },
                    "spec": {
                        "serviceAccountName": collector,
                        "terminationGracePeriodSeconds": DRAIN_SECONDS + 30,
                        "containers": [{
                            "name": "collector",
                            "image": spec.image,
                            "env": collector_env,
                            "ports": [{ "name": "metrics", "containerPort": COLLECTOR_PORT }],
                            "readinessProbe": probe("/readyz", COLLECTOR_PORT, 5),
                            "livenessProbe": probe("/healthz", COLLECTOR_PORT, 10),
                            "lifecycle": { "preStop": { "sleep": { "seconds": DRAIN_SECONDS } } },
                            "resources": { "requests": { "cpu": "250m", "memory": "256Mi" } },
                            "securityContext": security,
                        }],
                    },
                },
            },
        }),
    )?;
    let collector_budget = typed::<PodDisruptionBudget>(
        "PodDisruptionBudget",
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(&collector, "collector"),
            "spec": {
                "maxUnavailable": 1,
                "selector": { "matchLabels": selector(name, "collector") },
            },
        }),
    )?;
    let collector_account = typed::<ServiceAccount>(
        "ServiceAccount",
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(&collector, "collector"),
        }),
    )?;
    let collector_role = typed::<Role>(
        "Role",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(&collector, "collector"),
            "rules": [
                { "apiGroups": ["netpulse.io"], "resources": ["devices"], "verbs": ["get", "list", "watch", "patch"] },
                { "apiGroups": ["netpulse.io"], "resources": ["devices/status"], "verbs": ["get", "patch"] },
                { "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] },
                { "apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"] },
            ],
        }),
    )?;
    let collector_binding = typed::<RoleBinding>(
        "RoleBinding",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(&collector, "collector"),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": collector },
            "subjects": [{ "kind": "ServiceAccount", "name": collector, "namespace": namespace }],
        }),
    )?;

    let mut web_env = vec![
        json!({ "name": "NODE_ROLE", "value": "web" }),
        json!({ "name": "NETPULSE_LISTEN", "value": format!("0.0.0.0:{WEB_PORT}") }),
    ];
    web_env.extend(common_env);
    // With an autoscaler the Deployment leaves `replicas` out: the HPA owns it.
    let web_replicas = match (&spec.web.autoscaling, spec.web.replicas) {
        (Some(_), _) => None,
        (None, replicas) => Some(replicas.unwrap_or(1)),
    };
    let mut web_spec = json!({
        "selector": { "matchLabels": selector(name, "web") },
        "template": {
            "metadata": { "labels": labels(name, "web") },
            "spec": {
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": "web",
                    "image": spec.image,
                    "env": web_env,
                    "ports": [{ "name": "http", "containerPort": WEB_PORT }],
                    "readinessProbe": probe("/readyz", WEB_PORT, 5),
                    "livenessProbe": probe("/healthz", WEB_PORT, 10),
                    "resources": { "requests": { "cpu": "100m", "memory": "128Mi" } },
                    "securityContext": security,
                }],
            },
        },
    });
    if let Some(replicas) = web_replicas {
        web_spec["replicas"] = json!(replicas);
    }
    let web_deployment = typed::<Deployment>(
        "Deployment",
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(&web, "web"),
            "spec": web_spec,
        }),
    )?;
    let web_service = typed::<Service>(
        "Service",
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(&web, "web"),
            "spec": {
                "selector": selector(name, "web"),
                "ports": [{ "name": "http", "port": 80, "targetPort": "http" }],
            },
        }),
    )?;
    let web_autoscaler = spec
        .web
        .autoscaling
        .as_ref()
        .map(|a| {
            typed::<HorizontalPodAutoscaler>(
                "HorizontalPodAutoscaler",
                json!({
                    "apiVersion": "autoscaling/v2",
                    "kind": "HorizontalPodAutoscaler",
                    "metadata": meta(&web, "web"),
                    "spec": {
                        "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": web },
                        "minReplicas": a.min_replicas,
                        "maxReplicas": a.max_replicas,
                        "metrics": [{
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": { "type": "Utilization", "averageUtilization": a.target_cpu_utilization_percentage },
                            },
                        }],
                    },
                }),
            )
        })
        .transpose()?;
    Ok(Children {
        collector_account,
        collector_role,
        collector_binding,
        collectors,
        collector_budget,
        web: web_deployment,
        web_service,
        web_autoscaler,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example pool, as if read from the cluster.
    pub(crate) fn example_pool() -> CollectorPool {
        let text = include_str!("../../examples/collectorpool.yaml");
        let mut pool: CollectorPool = serde_yaml::from_str(text).expect("the example parses");
        pool.metadata.uid = Some("3f1c2d4e-0000-4000-8000-000000000001".into());
        pool
    }

    #[test]
    fn a_pool_owns_its_collectors_and_web_nodes() {
        let children = children(&example_pool(), 4).expect("built");
        let values = children.to_values();
        let kinds: Vec<&str> = values.iter().filter_map(|v| v["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "Deployment",
                "PodDisruptionBudget",
                "Deployment",
                "Service",
                "HorizontalPodAutoscaler"
            ]
        );
        for v in &values {
            let owner = &v["metadata"]["ownerReferences"][0];
            assert_eq!(
                (
                    owner["kind"].as_str(),
                    owner["name"].as_str(),
                    owner["controller"].as_bool()
                ),
                (Some("CollectorPool"), Some("default"), Some(true)),
                "{v}"
            );
            assert_eq!(v["metadata"]["namespace"], "netpulse");
        }
        let collectors = &values[3];
        assert_eq!(collectors["metadata"]["name"], "default-collector");
        assert_eq!(collectors["spec"]["replicas"], 4);
        let container = &collectors["spec"]["template"]["spec"]["containers"][0];
        let env = |name: &str| {
            container["env"]
                .as_array()
                .and_then(|e| e.iter().find(|v| v["name"] == name))
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(env("NODE_ROLE")["value"], "collector");
        assert_eq!(
            env("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
        assert_eq!(
            env("NETPULSE_DATABASE_URL")["valueFrom"]["secretKeyRef"],
            json!({ "name": "netpulse-postgres", "key": "DATABASE_URL" })
        );
        assert_eq!(
            env("NETPULSE_REDIS_URL")["valueFrom"]["secretKeyRef"],
            json!({ "name": "netpulse-redis", "key": "url" })
        );
        assert_eq!(env("NETPULSE_RETENTION_HOURS")["value"], "730d");
        // Collectors follow the Devices placed on their pod, not a devices file.
        assert_eq!(env("NETPULSE_KUBERNETES")["value"], "true");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(
            container["lifecycle"]["preStop"]["sleep"]["seconds"],
            DRAIN_SECONDS
        );
        // The web Deployment leaves replicas to its autoscaler.
        let web = &values[5];
        assert!(web["spec"].get("replicas").is_none(), "{web}");
        assert_eq!(values[7]["spec"]["scaleTargetRef"]["name"], "default-web");
        assert_eq!(values[7]["spec"]["maxReplicas"], 6);
    }

    #[test]
    fn fixed_web_replicas_and_no_autoscaler() {
        let mut pool = example_pool();
        pool.spec.web = crds::WebScaling {
            replicas: Some(3),
            autoscaling: None,
        };
        let children = children(&pool, 2).expect("built");
        assert!(children.web_autoscaler.is_none());
        assert_eq!(children.web.spec.replicas, Some(3));
        pool.spec.web = crds::WebScaling::default();
        let children = super::children(&pool, 2).expect("built");
        assert_eq!(children.web.spec.replicas, Some(1));
    }

    #[test]
    fn a_pool_not_read_from_the_cluster_is_refused() {
        let mut pool = example_pool();
        pool.metadata.uid = None;
        assert_eq!(
            children(&pool, 1).expect_err("no uid").to_string(),
            "the CollectorPool has no uid (build from an object read from the cluster)"
        );
    }
}
