//! Collector pods as placement sees them: ready, draining or lost. Pure: the time is
//! passed in.
//!
//! - A pod being deleted (`deletionTimestamp` set: rolling update, drain, scale-in) that
//!   is still ready is **draining**: it keeps collecting while its devices are handed over
//!   (its preStop hook and termination grace period give it the time).
//! - A ready pod is **ready**.
//! - A pod not ready for less than the grace is still **ready** (a readiness probe that
//!   fails once, a short stall): moving its devices would cost more than waiting.
//! - Anything else is **lost**: not ready past the grace, deleted while not ready,
//!   failed, or never ready. Its devices are re-placed at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::placement::{Collector, CollectorState};

/// Default grace before a NotReady pod counts as lost.
pub const DEFAULT_NOT_READY_GRACE: Duration = Duration::from_secs(2);

/// Whether the pod's Ready condition is true, and since when it has had its value.
fn ready(pod: &Pod) -> (bool, Option<DateTime<Utc>>) {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map_or((false, None), |c| {
            (
                c.status == "True",
                c.last_transition_time.as_ref().and_then(|t| {
                    i64::try_from(t.0.as_nanosecond())
                        .ok()
                        .map(DateTime::<Utc>::from_timestamp_nanos)
                }),
            )
        })
}

/// The state of every pod at `now`.
pub fn collectors(pods: &[Pod], now: DateTime<Utc>, grace: Duration) -> Vec<Collector> {
    pods.iter()
        .map(|pod| {
            let (is_ready, since) = ready(pod);
            let deleting = pod.metadata.deletion_timestamp.is_some();
            let failed = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Failed" || p == "Succeeded");
            let within_grace = since.is_some_and(|t| {
                now.signed_duration_since(t)
                    .to_std()
                    .map_or(true, |waited| waited < grace)
            });
            let state = match (failed, deleting, is_ready) {
                (true, _, _) => CollectorState::Lost,
                (false, true, true) => CollectorState::Draining,
                (false, false, true) => CollectorState::Ready,
                (false, false, false) if within_grace && was_ready(pod) => CollectorState::Ready,
                _ => CollectorState::Lost,
            };
            Collector {
                name: pod.name_any(),
                state,
            }
        })
        .collect()
}

/// Whether the pod was ever ready (a started container, so a NotReady pod is one that
/// stopped answering rather than one still starting).
fn was_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.started == Some(true)))
}

/// When the state of some pod changes by the clock alone: the earliest end of a NotReady
/// grace after `now`. The controller requeues itself for it; no watch event comes then.
pub fn next_deadline(pods: &[Pod], now: DateTime<Utc>, grace: Duration) -> Option<DateTime<Utc>> {
    let grace = chrono::Duration::from_std(grace).ok()?;
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && was_ready(p))
        .filter_map(|p| match ready(p) {
            (false, Some(since)) => Some(since + grace),
            _ => None,
        })
        .filter(|t| *t > now)
        .min()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, ready: &str, since: i64, started: bool, extra: serde_json::Value) -> Pod {
        let mut v = json!({
            "metadata": { "name": name },
            "status": {
                "phase": "Running",
                "conditions": [{
                    "type": "Ready", "status": ready,
                    "lastTransitionTime": DateTime::<Utc>::from_timestamp(since, 0)
                        .expect("time").to_rfc3339(),
                }],
                "containerStatuses": [{
                    "name": "collector", "image": "netpulse", "imageID": "", "ready": ready == "True",
                    "restartCount": 0, "started": started,
                }],
            },
        });
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in extra {
                if k == "metadata" {
                    for (mk, mv) in x.as_object().expect("metadata") {
                        v["metadata"][mk] = mv.clone();
                    }
                } else {
                    v[k] = x.clone();
                }
            }
        }
        serde_json::from_value(v).expect("a pod")
    }

    #[test]
    fn pods_are_ready_draining_or_lost() {
        let now = DateTime::<Utc>::from_timestamp(1_000, 0).expect("time");
        let deleting = json!({ "metadata": { "deletionTimestamp": now.to_rfc3339() } });
        let pods = [
            pod("ready", "True", 0, true, json!({})),
            pod("blip", "False", 999, true, json!({})),
            pod("stalled", "False", 997, true, json!({})),
            pod("starting", "False", 999, false, json!({})),
            pod("draining", "True", 0, true, deleting.clone()),
            pod("deleted-dead", "False", 999, true, deleting),
            pod(
                "failed",
                "True",
                0,
                true,
                json!({ "status": { "phase": "Failed" } }),
            ),
        ];
        let states: Vec<(String, CollectorState)> = collectors(&pods, now, DEFAULT_NOT_READY_GRACE)
            .into_iter()
            .map(|c| (c.name, c.state))
            .collect();
        use CollectorState::{Draining, Lost, Ready};
        let expected = [
            ("ready", Ready),
            ("blip", Ready),
            ("stalled", Lost),
            ("starting", Lost),
            ("draining", Draining),
            ("deleted-dead", Lost),
            ("failed", Lost),
        ];
        assert_eq!(states, expected.map(|(n, s)| (n.to_owned(), s)).to_vec());
        // The blip's grace ends at 1_001: the controller comes back then.
        assert_eq!(
            next_deadline(&pods, now, DEFAULT_NOT_READY_GRACE),
            DateTime::<Utc>::from_timestamp(1_001, 0)
        );
    }
}
