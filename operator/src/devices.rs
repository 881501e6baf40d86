//! Reading placement's inputs from Device objects and writing its plan back.
//!
//! Ownership lives on the Device's metadata, written by the operator in one server-side
//! apply per change (field manager [`FIELD_MANAGER`]):
//!
//! - label [`OWNER_LABEL`] `netpulse.io/collector=<pod>`: the owner; a collector watches
//!   the Devices carrying its own pod name;
//! - label [`NEXT_LABEL`] `netpulse.io/next-collector=<pod>`: the incoming owner of a
//!   handoff in flight, which connects while the owner keeps collecting;
//! - annotation [`EPOCH_ANNOTATION`] `netpulse.io/epoch`: the ownership epoch, in the
//!   same write as the owner label, so a collector never sees a new owner with an old
//!   epoch (the store fences on it).
//!
//! The incoming collector says it is synced with annotation [`NEXT_SYNCED_ANNOTATION`]
//! holding `<pod>@<epoch>` (its own field manager; [`crds::ownership`]). Status (`collector`, `epoch`, phase,
//! conditions) mirrors this for `kubectl get devices` and is written by whoever reports
//! the device's state; one write per change of owner keeps the initial placement of N
//! devices at N writes.
//!
//! Server-side apply sends every field this manager owns: a label left out of an apply is
//! removed, which is how the incoming-owner label goes away when a handoff completes.

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::placement::{self, Action, Plan};

pub use crds::ownership::{EPOCH_ANNOTATION, NEXT_LABEL, NEXT_SYNCED_ANNOTATION, OWNER_LABEL};
/// Field manager of the operator's writes.
pub const FIELD_MANAGER: &str = "netpulse-operator";

/// Placement's view of a Device (key `namespace/name`). The epoch is the larger of the
/// annotation and the status, so an edited or lost annotation never takes it back.
pub fn read(device: &crds::Device) -> placement::Device {
    let ownership = crds::ownership::Ownership::of(device);
    let next_synced = ownership.next_is_synced(ownership.epoch);
    let (owner, epoch, next) = (ownership.owner, ownership.epoch, ownership.next);
    placement::Device {
        key: format!(
            "{}/{}",
            device.namespace().unwrap_or_default(),
            device.name_any()
        ),
        weight: device.spec.weight.unwrap_or(1),
        owner,
        epoch,
        next,
        next_synced,
    }
}

/// The server-side apply body giving Device `name` these owner, incoming owner and epoch.
pub fn apply_body(name: &str, owner: &str, next: Option<&str>, epoch: u64) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    labels.insert(OWNER_LABEL.to_owned(), json!(owner));
    if let Some(next) = next {
        labels.insert(NEXT_LABEL.to_owned(), json!(next));
    }
    json!({
        "apiVersion": "netpulse.io/v1alpha1",
        "kind": "Device",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": { EPOCH_ANNOTATION: epoch.to_string() },
        },
    })
}

/// What one change writes: device key, owner, incoming owner, epoch.
pub(crate) fn write_of<'a>(
    d: &'a placement::Device,
    action: &'a Action,
) -> Option<(&'a str, Option<&'a str>, u64)> {
    match action {
        Action::Assign { collector, epoch } => Some((collector, None, *epoch)),
        Action::CompleteHandoff { to, epoch } => Some((to, None, *epoch)),
        Action::BeginHandoff { to } => Some((d.owner.as_deref()?, Some(to), d.epoch)),
        Action::CancelHandoff => Some((d.owner.as_deref()?, None, d.epoch)),
    }
}

/// Outcome of [`write()`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Devices patched.
    pub patched: usize,
    /// Devices that were gone (404): deleted since they were read; nothing to do.
    pub gone: usize,
}

/// Patches in flight at once: a failover re-places a pod's devices (hundreds) in a few
/// round trips rather than one after the other. (kube's client shares one connection
/// pool; the API server's priority and fairness queues what it cannot take.)
pub const WRITE_CONCURRENCY: usize = 32;

/// Writes `plan` (made from `devices`): one server-side apply of each changed Device's
/// metadata, [`WRITE_CONCURRENCY`] at a time. A Device deleted meanwhile (404) is counted
/// and skipped; the first other error is returned after the writes in flight end, and
/// the next reconcile retries from a fresh read.
pub async fn write(
    client: &Client,
    devices: &[placement::Device],
    plan: &Plan,
) -> Result<Written, kube::Error> {
    use futures::StreamExt as _;
    let by_key: std::collections::HashMap<&str, &placement::Device> =
        devices.iter().map(|d| (d.key.as_str(), d)).collect();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let writes: Vec<(Api<crds::Device>, String, serde_json::Value)> = plan
        .actions
        .iter()
        .filter_map(|(key, action)| {
            // A cancelled handoff of a device without an owner has nothing to keep.
            let (owner, next, epoch) = write_of(by_key.get(key.as_str())?, action)?;
            let (namespace, name) = key.split_once('/').unwrap_or(("default", key));
            Some((
                Api::namespaced(client.clone(), namespace),
                name.to_owned(),
                apply_body(name, owner, next, epoch),
            ))
        })
        .collect();
    let params = &params;
    let results = futures::stream::iter(writes)
        .map(|(api, name, body)| async move {
            api.patch(&name, params, &Patch::Apply(body))
                .await
                .map(|_| ())
        })
        .buffer_unordered(WRITE_CONCURRENCY);
    tally(results).await
}

/// Counts the writes of `results`: 404s as gone; the first other error is returned once
/// every write in flight has ended.
async fn tally(
    mut results: impl futures::Stream<Item = Result<(), kube::Error>> + Unpin,
) -> Result<Written, kube::Error> {
    use futures::StreamExt as _;
    let mut written = Written::default();
    let mut failed = None;
    while let Some(result) = results.next().await {
        match result {
            Ok(()) => written.patched += 1,
            Err(kube::Error::Api(status)) if status.code == 404 => written.gone += 1,
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

/// Devices the plan leaves without an owner (no ready collector) whose status does not
/// say so yet: they get phase `Pending` from the operator, once. Placed devices' status
/// is their owning collector's to write.
pub fn unplaced<'a>(devices: &'a [crds::Device], plan: &Plan) -> Vec<&'a crds::Device> {
    let acted: std::collections::HashSet<&str> =
        plan.actions.iter().map(|(k, _)| k.as_str()).collect();
    devices
        .iter()
        .filter(|d| {
            let view = read(d);
            view.owner.is_none()
                && !acted.contains(view.key.as_str())
                && d.status.as_ref().and_then(|s| s.phase) != Some(crds::DevicePhase::Pending)
        })
        .collect()
}

/// The status apply saying Device `name` waits for a ready collector.
pub fn pending_body(name: &str, now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    json!({
        "apiVersion": "netpulse.io/v1alpha1",
        "kind": "Device",
        "metadata": { "name": name },
        "status": {
            "phase": "Pending",
            "conditions": [{
                "type": "Assigned",
                "status": "False",
                "reason": "NoReadyCollector",
                "message": "no collector of the pool is ready to take the device",
                "lastTransitionTime": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }],
        },
    })
}

/// Writes phase `Pending` to each of `devices` (their status subresource, field manager
/// [`FIELD_MANAGER`]), [`WRITE_CONCURRENCY`] at a time; errors as [`write()`].
pub async fn mark_pending(
    client: &Client,
    devices: &[&crds::Device],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Written, kube::Error> {
    use futures::StreamExt as _;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let writes: Vec<(Api<crds::Device>, String, serde_json::Value)> = devices
        .iter()
        .map(|d| {
            let namespace = d.namespace().unwrap_or_else(|| "default".into());
            let name = d.name_any();
            let body = pending_body(&name, now);
            (Api::namespaced(client.clone(), &namespace), name, body)
        })
        .collect();
    let params = &params;
    let results = futures::stream::iter(writes)
        .map(|(api, name, body)| async move {
            api.patch_status(&name, params, &Patch::Apply(body))
                .await
                .map(|_| ())
        })
        .buffer_unordered(WRITE_CONCURRENCY);
    tally(results).await
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;

    use super::*;

    fn device(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> crds::Device {
        let mut d: crds::Device = serde_json::from_value(json!({
            "apiVersion": "netpulse.io/v1alpha1",
            "kind": "Device",
            "metadata": { "name": name, "namespace": "network" },
            "spec": { "address": "192.0.2.1", "pool": "default", "weight": 2 },
        }))
        .expect("a device");
        for (k, v) in labels {
            d.labels_mut().insert((*k).into(), (*v).into());
        }
        for (k, v) in annotations {
            d.annotations_mut().insert((*k).into(), (*v).into());
        }
        d
    }

    #[test]
    fn devices_read_back_what_the_operator_and_collectors_wrote() {
        let d = device(
            "leaf1",
            &[(OWNER_LABEL, "c-0"), (NEXT_LABEL, "c-1")],
            &[(EPOCH_ANNOTATION, "7"), (NEXT_SYNCED_ANNOTATION, "c-1@7")],
        );
        assert_eq!(
            read(&d),
            placement::Device {
                key: "network/leaf1".into(),
                weight: 2,
                owner: Some("c-0".into()),
                epoch: 7,
                next: Some("c-1".into()),
                next_synced: true,
            }
        );
        // Synced by another pod than the incoming one: not synced. A garbled epoch
        // annotation falls back to the status's. (Stale values: crds::ownership.)
        let mut d = device(
            "leaf2",
            &[(OWNER_LABEL, "c-0"), (NEXT_LABEL, "c-1")],
            &[(EPOCH_ANNOTATION, "x"), (NEXT_SYNCED_ANNOTATION, "c-2@3")],
        );
        d.status = Some(crds::DeviceStatus {
            epoch: 3,
            ..Default::default()
        });
        let read = read(&d);
        assert!(!read.next_synced);
        assert_eq!(read.epoch, 3);
    }

    /// Answers `count` requests with the Device each body describes (404 for a Device
    /// named `gone`), recording the requests, sorted by URI.
    async fn serve(
        mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
        count: usize,
    ) -> Vec<(String, String, String, serde_json::Value)> {
        let mut seen = Vec::new();
        for _ in 0..count {
            let (request, send) = handle.next_request().await.expect("a request");
            let status = if request.uri().path().ends_with("/gone") {
                404
            } else {
                200
            };
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let content_type = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let bytes = request.into_body().collect_bytes().await.expect("body");
            let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json body");
            let answer = if status == 200 {
                let mut d = body.clone();
                d["spec"] = json!({ "address": "192.0.2.1", "pool": "default" });
                serde_json::to_vec(&d).expect("json")
            } else {
                serde_json::to_vec(&json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": status, "message": "devices not found",
                }))
                .expect("json")
            };
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(answer))
                    .expect("response"),
            );
            seen.push((method, uri, content_type, body));
        }
        seen.sort_by(|a, b| a.1.cmp(&b.1));
        seen
    }

    #[tokio::test]
    async fn a_plan_is_written_as_one_server_side_apply_per_changed_device() {
        let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock, "default");
        let devices = vec![
            placement::Device {
                key: "network/leaf1".into(),
                weight: 1,
                owner: None,
                epoch: 0,
                next: None,
                next_synced: false,
            },
            placement::Device {
                key: "network/leaf2".into(),
                weight: 1,
                owner: Some("c-0".into()),
                epoch: 4,
                next: None,
                next_synced: false,
            },
            placement::Device {
                key: "edge/leaf3".into(),
                weight: 1,
                owner: Some("c-0".into()),
                epoch: 9,
                next: Some("c-1".into()),
                next_synced: true,
            },
            placement::Device {
                key: "network/gone".into(),
                weight: 1,
                owner: None,
                epoch: 0,
                next: None,
                next_synced: false,
            },
        ];
        let plan = Plan {
            actions: vec![
                (
                    "network/leaf1".into(),
                    Action::Assign {
                        collector: "c-1".into(),
                        epoch: 1,
                    },
                ),
                (
                    "network/leaf2".into(),
                    Action::BeginHandoff { to: "c-1".into() },
                ),
                (
                    "edge/leaf3".into(),
                    Action::CompleteHandoff {
                        to: "c-1".into(),
                        epoch: 10,
                    },
                ),
                (
                    "network/gone".into(),
                    Action::Assign {
                        collector: "c-0".into(),
                        epoch: 1,
                    },
                ),
            ],
            ..Plan::default()
        };
        let server = tokio::spawn(serve(handle, 4));
        let written = write(&client, &devices, &plan).await.expect("written");
        assert_eq!(
            written,
            Written {
                patched: 3,
                gone: 1
            }
        );
        let seen = server.await.expect("server");
        let expect = |ns: &str, name: &str| {
            format!(
                "/apis/netpulse.io/v1alpha1/namespaces/{ns}/devices/{name}?&force=true&fieldManager=netpulse-operator"
            )
        };
        for (method, _, content_type, _) in &seen {
            assert_eq!(method, "PATCH");
            assert_eq!(content_type, "application/apply-patch+yaml");
        }
        let uris: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
        assert_eq!(
            uris,
            [
                expect("edge", "leaf3"),
                expect("network", "gone"),
                expect("network", "leaf1"),
                expect("network", "leaf2"),
            ]
        );
        assert_eq!(seen[2].3, apply_body("leaf1", "c-1", None, 1));
        // The handoff begins: owner and epoch kept, incoming owner labelled.
        assert_eq!(
            seen[3].3["metadata"],
            json!({
                "name": "leaf2",
                "labels": { OWNER_LABEL: "c-0", NEXT_LABEL: "c-1" },
                "annotations": { EPOCH_ANNOTATION: "4" },
            })
        );
        // It completes: the incoming owner owns, the next label is left out (removed).
        assert_eq!(
            seen[0].3["metadata"],
            json!({
                "name": "leaf3",
                "labels": { OWNER_LABEL: "c-1" },
                "annotations": { EPOCH_ANNOTATION: "10" },
            })
        );
    }

    #[tokio::test]
    async fn devices_no_collector_can_take_are_marked_pending_once() {
        let waiting = device("leaf1", &[], &[]);
        let placed = device("leaf2", &[(OWNER_LABEL, "c-0")], &[(EPOCH_ANNOTATION, "1")]);
        let mut marked = device("leaf3", &[], &[]);
        marked.status = Some(crds::DeviceStatus {
            phase: Some(crds::DevicePhase::Pending),
            ..Default::default()
        });
        let assigned_now = device("leaf4", &[], &[]);
        let plan = Plan {
            actions: vec![(
                "network/leaf4".into(),
                Action::Assign {
                    collector: "c-0".into(),
                    epoch: 1,
                },
            )],
            ..Plan::default()
        };
        let all = [waiting, placed, marked, assigned_now];
        let pending = unplaced(&all, &plan);
        assert_eq!(
            pending.iter().map(|d| d.name_any()).collect::<Vec<_>>(),
            ["leaf1"]
        );

        let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock, "default");
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let server = tokio::spawn(serve(handle, 1));
        let written = mark_pending(&client, &pending, now).await.expect("written");
        assert_eq!(written.patched, 1);
        let seen = server.await.expect("served");
        let (method, uri, content_type, body) = &seen[0];
        assert_eq!(method, "PATCH");
        assert_eq!(
            uri,
            "/apis/netpulse.io/v1alpha1/namespaces/network/devices/leaf1/status?&force=true&fieldManager=netpulse-operator"
        );
        assert_eq!(content_type, "application/apply-patch+yaml");
        assert_eq!(body["status"]["phase"], "Pending");
        assert_eq!(
            body["status"]["conditions"][0]["reason"],
            "NoReadyCollector"
        );
        assert_eq!(
            body["status"]["conditions"][0]["lastTransitionTime"],
            "2027-01-15T08:00:00Z"
        );
    }
}
