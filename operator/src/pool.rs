//! One reconcile of a `CollectorPool`: read its Devices and collector pods, decide the
//! collector count, apply its objects, place its Devices, and report status.
//!
//! The decisions are the pure functions of [`crate::scaling`], [`crate::resources`] and
//! [`crate::controller`]; this module reads and writes, always with server-side apply and
//! one field manager ([`crate::devices::FIELD_MANAGER`]), so a reconcile repeated with
//! nothing changed sends the same bodies and changes nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::devices::FIELD_MANAGER;
use crate::placement::Settings;
use crate::scaling::{self, Decision, Recommendation};

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    /// The pool's objects could not be built.
    #[error("{0}")]
    Build(#[from] crate::resources::BuildError),
}

/// What one reconcile did, and when to come back.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The scaling decision (its history is kept for the next reconcile).
    pub scaling: Decision,
    /// Device writes sent.
    pub device_writes: usize,
    /// Planned moves waiting for the handoff limit.
    pub deferred: usize,
    /// When to run again without a watch event.
    pub requeue_at: Option<DateTime<Utc>>,
}

/// The pool's status from what was observed and decided.
pub fn status(
    pool: &crds::CollectorPool,
    pods: &[Pod],
    devices: usize,
    plan: &crate::placement::Plan,
    replicas: i32,
    reason: &str,
    now: DateTime<Utc>,
) -> serde_json::Value {
    let name = pool.name_any();
    let ready = pods
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    let ready = i32::try_from(ready).unwrap_or(i32::MAX);
    let existing = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    let (phase, ready_status, ready_reason, message) = if existing == 0 && replicas > 0 {
        (
            "Pending",
            "False",
            "NoCollectors",
            format!("no collector pod yet; {reason}"),
        )
    } else if ready >= replicas && plan.unplaced == 0 {
        (
            "Ready",
            "True",
            "CollectorsReady",
            format!("{ready} of {replicas} collectors ready; {reason}"),
        )
    } else {
        (
            "Degraded",
            "False",
            "CollectorsNotReady",
            format!("{ready} of {replicas} collectors ready; {reason}"),
        )
    };
    let progressing = existing != replicas || plan.deferred > 0 || !plan.actions.is_empty();
    let per_collector: serde_json::Map<String, serde_json::Value> = plan
        .loads
        .iter()
        .map(|(pod, load)| (pod.clone(), json!(load)))
        .collect();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": pool.meta().generation,
            "lastTransitionTime": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    };
    json!({
        "apiVersion": "netpulse.io/v1alpha1",
        "kind": "CollectorPool",
        "metadata": { "name": name },
        "status": {
            "replicas": existing,
            "readyCollectors": ready,
            "devices": devices,
            "devicesPerCollector": per_collector,
            "selector": selector_string(&name),
            "phase": if progressing && phase == "Ready" { "Progressing" } else { phase },
            "observedGeneration": pool.meta().generation,
            "conditions": [
                condition("Ready", ready_status, ready_reason, &message),
                condition(
                    "Progressing",
                    if progressing { "True" } else { "False" },
                    if progressing { "Placing" } else { "Settled" },
                    &format!("{} device changes, {} waiting", plan.actions.len(), plan.deferred),
                ),
                condition(
                    "Degraded",
                    if phase == "Degraded" || plan.unplaced > 0 { "True" } else { "False" },
                    if plan.unplaced > 0 {
                        "DevicesUnplaced"
                    } else if phase == "Degraded" {
                        "CollectorsNotReady"
                    } else {
                        "AsDesired"
                    },
                    &if plan.unplaced > 0 {
                        format!("{} devices have no ready collector", plan.unplaced)
                    } else {
                        message.clone()
                    },
                ),
            ],
        },
    })
}

/// The collector pods' label selector as a string (for the scale subresource).
pub fn selector_string(pool: &str) -> String {
    crate::resources::selector(pool, "collector")
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Server-side applies one object.
async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&object.name_any(), &params, &Patch::Apply(object))
        .await
        .map(|_| ())
}

/// Reconciles `pool` at `now`, given its recent scaling recommendations. A change of the
/// recommended collector count is also published as an Event on the pool through
/// `recorder` (`kubectl describe collectorpool` shows why it scaled); a refused Event is
/// logged, not an error.
pub async fn reconcile(
    client: &Client,
    recorder: &kube::runtime::events::Recorder,
    pool: &crds::CollectorPool,
    now: DateTime<Utc>,
    history: &[Recommendation],
    grace: Duration,
) -> Result<Outcome, ReconcileError> {
    let name = pool.name_any();
    let namespace = pool.namespace().unwrap_or_else(|| "default".into());
    // A Device naming no pool belongs to the namespace's only pool.
    let pools = Api::<crds::CollectorPool>::namespaced(client.clone(), &namespace)
        .list_metadata(&ListParams::default())
        .await?
        .items
        .len();
    let devices: Vec<crds::Device> = Api::<crds::Device>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|d| match &d.spec.pool {
            Some(p) => *p == name,
            None => pools == 1,
        })
        .collect();
    let pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector_string(&name)))
        .await?
        .items;

    let total_weight: u64 = devices
        .iter()
        .map(|d| u64::from(d.spec.weight.unwrap_or(1).max(1)))
        .sum();
    let current = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    let decision = scaling::decide(
        &pool.spec.collectors,
        total_weight,
        current,
        now.timestamp(),
        history,
        scaling::DEFAULT_WINDOW,
    );
    let children = crate::resources::children(pool, decision.replicas)?;
    apply(client, &namespace, &children.collector_account).await?;
    apply(client, &namespace, &children.collector_role).await?;
    apply(client, &namespace, &children.collector_binding).await?;
    apply(client, &namespace, &children.collectors).await?;
    apply(client, &namespace, &children.collector_budget).await?;
    apply(client, &namespace, &children.web).await?;
    apply(client, &namespace, &children.web_service).await?;
    if let Some(hpa) = &children.web_autoscaler {
        apply(client, &namespace, hpa).await?;
    }

    let settings = Settings {
        max_load_factor: pool.spec.placement.max_load_factor.0,
        ..Settings::default()
    };
    let pass = crate::controller::reconcile(&devices, &pods, now, grace, &settings);
    let written = crate::devices::write(client, &pass.devices, &pass.plan).await?;
    let waiting = crate::devices::unplaced(&devices, &pass.plan);
    if !waiting.is_empty() {
        crate::devices::mark_pending(client, &waiting, now).await?;
    }

    let status = status(
        pool,
        &pods,
        devices.len(),
        &pass.plan,
        decision.replicas,
        &decision.reason,
        now,
    );
    Api::<crds::CollectorPool>::namespaced(client.clone(), &namespace)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(status),
        )
        .await?;
    if history.last().map(|r| r.replicas) != Some(decision.replicas) {
        use kube::runtime::events::{Event, EventType};
        let event = Event {
            type_: EventType::Normal,
            reason: "CollectorsScaled".into(),
            note: Some(format!(
                "{} collectors: {}",
                decision.replicas, decision.reason
            )),
            action: "Scale".into(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &pool.object_ref(&())).await {
            tracing::warn!(pool = %name, %error, "Could not publish the scaling Event");
        }
    }
    Ok(Outcome {
        scaling: decision,
        device_writes: written.patched,
        deferred: pass.plan.deferred,
        requeue_at: pass.requeue_at,
    })
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;

    use super::*;

    fn pool() -> crds::CollectorPool {
        let mut pool: crds::CollectorPool =
            serde_yaml::from_str(include_str!("../../examples/collectorpool.yaml")).expect("pool");
        pool.metadata.uid = Some("3f1c2d4e-0000-4000-8000-000000000001".into());
        pool.metadata.generation = Some(3);
        pool
    }

    fn list(kind: &str, items: Vec<serde_json::Value>) -> serde_json::Value {
        json!({ "apiVersion": "v1", "kind": format!("{kind}List"), "metadata": { "resourceVersion": "1" }, "items": items })
    }

    #[tokio::test]
    async fn a_reconcile_reads_the_pool_applies_its_objects_places_devices_and_reports() {
        let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock, "default");
        let now = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("time");
        let ready_pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "default-collector-0", "namespace": "netpulse" },
            "status": {
                "phase": "Running",
                "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z" }],
            },
        });
        let device = |name: &str, pool: Option<&str>| {
            let mut d = json!({
                "apiVersion": "netpulse.io/v1alpha1", "kind": "Device",
                "metadata": { "name": name, "namespace": "netpulse" },
                "spec": { "address": "192.0.2.1" },
            });
            if let Some(pool) = pool {
                d["spec"]["pool"] = json!(pool);
            }
            d
        };
        let server = tokio::spawn(async move {
            let mut seen: Vec<(String, String, serde_json::Value)> = Vec::new();
            // The namespace's pools (one: a Device naming none is this pool's), its Devices
            // (one of another pool's), then the collector pods.
            let answers = [
                json!({
                    "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                    "metadata": { "resourceVersion": "1" },
                    "items": [{ "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                                "metadata": { "name": "default", "namespace": "netpulse" } }],
                }),
                list(
                    "Device",
                    vec![
                        device("leaf1", Some("default")),
                        device("leaf2", None),
                        device("other", Some("lab")),
                    ],
                ),
                list("Pod", vec![ready_pod]),
            ];
            for answer in answers {
                let (request, send) = handle.next_request().await.expect("request");
                seen.push((
                    request.method().to_string(),
                    request.uri().to_string(),
                    json!(null),
                ));
                send.send_response(
                    Response::builder()
                        .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                        .expect("response"),
                );
            }
            // Eight objects, two devices, one status, one Event: echo each body back.
            for _ in 0..12 {
                let (request, send) = handle.next_request().await.expect("request");
                let method = request.method().to_string();
                let uri = request.uri().to_string();
                let body: serde_json::Value = serde_json::from_slice(
                    &request.into_body().collect_bytes().await.expect("body"),
                )
                .expect("json");
                let mut answer = body.clone();
                if answer["kind"] == "Device" {
                    answer["spec"] = json!({ "address": "192.0.2.1", "pool": "default" });
                }
                if answer["kind"] == "CollectorPool" {
                    answer["spec"] = serde_json::to_value(pool().spec).expect("spec");
                }
                send.send_response(
                    Response::builder()
                        .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                        .expect("response"),
                );
                seen.push((method, uri, body));
            }
            seen
        });
        let recorder = kube::runtime::events::Recorder::new(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: "netpulse-operator".into(),
                instance: Some("op-0".into()),
            },
        );
        let outcome = reconcile(
            &client,
            &recorder,
            &pool(),
            now,
            &[],
            crate::pods::DEFAULT_NOT_READY_GRACE,
        )
        .await
        .expect("reconciled");
        let seen = server.await.expect("server");
        assert_eq!(outcome.device_writes, 2);
        // Two devices, 500 per collector, at least 2: two collectors.
        assert_eq!(outcome.scaling.replicas, 2);
        let paths: Vec<String> = seen
            .iter()
            .map(|(m, u, _)| format!("{m} {}", u.split('?').next().unwrap_or_default()))
            .collect();
        let ns = "/namespaces/netpulse";
        assert_eq!(
            paths[..11],
            [
                format!("GET /apis/netpulse.io/v1alpha1{ns}/collectorpools"),
                format!("GET /apis/netpulse.io/v1alpha1{ns}/devices"),
                format!("GET /api/v1{ns}/pods"),
                format!("PATCH /api/v1{ns}/serviceaccounts/default-collector"),
                format!("PATCH /apis/rbac.authorization.k8s.io/v1{ns}/roles/default-collector"),
                format!(
                    "PATCH /apis/rbac.authorization.k8s.io/v1{ns}/rolebindings/default-collector"
                ),
                format!("PATCH /apis/apps/v1{ns}/deployments/default-collector"),
                format!("PATCH /apis/policy/v1{ns}/poddisruptionbudgets/default-collector"),
                format!("PATCH /apis/apps/v1{ns}/deployments/default-web"),
                format!("PATCH /api/v1{ns}/services/default-web"),
                format!("PATCH /apis/autoscaling/v2{ns}/horizontalpodautoscalers/default-web"),
            ]
        );
        // The pods are listed by the collector selector; every write is an apply by the
        // operator's field manager.
        assert!(
            seen[2]
                .1
                .contains("labelSelector=app.kubernetes.io%2Fcomponent%3Dcollector"),
            "{}",
            seen[2].1
        );
        for (method, uri, _) in &seen[3..14] {
            assert_eq!(method, "PATCH");
            assert!(
                uri.contains("fieldManager=netpulse-operator") && uri.contains("force=true"),
                "{uri}"
            );
        }
        // Both devices go to the one ready collector, one write each.
        let mut device_writes: Vec<&serde_json::Value> = seen
            .iter()
            .filter(|(_, u, _)| u.contains("/devices/"))
            .map(|(_, _, b)| b)
            .collect();
        device_writes.sort_by_key(|b| {
            b["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        });
        assert_eq!(device_writes.len(), 2);
        assert_eq!(
            device_writes[0]["metadata"]["labels"][crate::devices::OWNER_LABEL],
            "default-collector-0"
        );
        assert_eq!(device_writes[1]["metadata"]["name"], "leaf2");
        // The collector Deployment asks for the decided replicas; status last.
        assert_eq!(seen[6].2["spec"]["replicas"], 2);
        let (method, uri, status) = &seen[13];
        assert_eq!(method, "PATCH");
        assert!(
            uri.starts_with(&format!(
                "/apis/netpulse.io/v1alpha1{ns}/collectorpools/default/status"
            )),
            "{uri}"
        );
        let status = &status["status"];
        assert_eq!(status["devices"], 2);
        assert_eq!(status["readyCollectors"], 1);
        assert_eq!(status["replicas"], 1);
        assert_eq!(status["phase"], "Degraded");
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["devicesPerCollector"]["default-collector-0"], 2);
        assert_eq!(status["conditions"][0]["type"], "Ready");
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][2]["type"], "Degraded");
        assert_eq!(status["conditions"][2]["status"], "True");
        assert_eq!(status["conditions"][2]["reason"], "CollectorsNotReady");
        // The scaling decision, as an Event on the pool.
        let (method, uri, event) = &seen[14];
        assert_eq!(
            (method.as_str(), uri.split('?').next().unwrap_or_default()),
            ("POST", &*format!("/apis/events.k8s.io/v1{ns}/events"))
        );
        assert_eq!(event["reason"], "CollectorsScaled");
        assert_eq!(event["regarding"]["kind"], "CollectorPool");
        assert!(
            event["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("2 collectors: devices of total weight 2")),
            "{event}"
        );
        assert!(
            status["conditions"][0]["message"].as_str().is_some_and(
                |m| m.starts_with("1 of 2 collectors ready; devices of total weight 2")
            ),
            "{status}"
        );
    }
}
