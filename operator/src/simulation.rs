//! A cluster in memory that drives the real controller logic ([`crate::controller`]) in
//! virtual time: collector pods turn NotReady, watch events arrive late, writes take API
//! round trips, and the operator requeues itself at the end of a grace. Used by the tests
//! and by `netpulse-bench failover`.
//!
//! What is real: reading Devices and Pods (`devices::read`, `pods::collectors`), the plan,
//! the requeue deadline, and the metadata each write sets (`devices::apply_body`, applied
//! to the object as server-side apply would). What is modelled: time. A watch event is
//! seen `watch_latency` after the change; a plan's writes run [`WRITE_CONCURRENCY`] at a
//! time, each taking `api_latency`; computing the plan takes the time it really took.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::json;

use crate::devices::{EPOCH_ANNOTATION, NEXT_LABEL, OWNER_LABEL, WRITE_CONCURRENCY, write_of};
use crate::placement::Settings;

/// The cluster and its timings.
#[derive(Debug, Clone)]
pub struct Failover {
    /// Devices in the pool.
    pub devices: usize,
    /// Collector pods.
    pub collectors: usize,
    /// Delay between a change in the cluster and the operator's watch seeing it.
    pub watch_latency: Duration,
    /// One API write's round trip.
    pub api_latency: Duration,
    /// How long a pod may be NotReady before its devices move.
    pub grace: Duration,
}

/// What happened after one pod turned NotReady.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverReport {
    /// Devices the pod owned.
    pub devices_lost: usize,
    /// From NotReady to every one of them owned by another pod (written).
    pub reowned_after: Duration,
    /// Writes the operator sent after the pod turned NotReady.
    pub writes: usize,
    /// Reconciles the operator ran after it.
    pub reconciles: usize,
    /// Time spent computing plans (real time).
    pub planning: Duration,
}

fn pod(name: &str, ready: bool, since: DateTime<Utc>) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "netpulse" },
        "status": {
            "phase": "Running",
            "conditions": [{
                "type": "Ready", "status": if ready { "True" } else { "False" },
                "lastTransitionTime": since.to_rfc3339(),
            }],
            "containerStatuses": [{
                "name": "collector", "image": "netpulse", "imageID": "", "ready": ready,
                "restartCount": 0, "started": true,
            }],
        },
    }))
    .expect("a pod")
}

fn device(i: usize) -> crds::Device {
    serde_json::from_value(json!({
        "apiVersion": "netpulse.io/v1alpha1",
        "kind": "Device",
        "metadata": { "name": format!("leaf-{i:05}"), "namespace": "network" },
        "spec": { "address": "192.0.2.1", "pool": "default" },
    }))
    .expect("a device")
}

/// Sets the metadata one write of `owner`, `next`, `epoch` leaves on the object.
fn apply(d: &mut crds::Device, owner: &str, next: Option<&str>, epoch: u64) {
    let labels = d.labels_mut();
    labels.insert(OWNER_LABEL.to_owned(), owner.to_owned());
    match next {
        Some(n) => {
            labels.insert(NEXT_LABEL.to_owned(), n.to_owned());
        }
        None => {
            labels.remove(NEXT_LABEL);
        }
    }
    d.annotations_mut()
        .insert(EPOCH_ANNOTATION.to_owned(), epoch.to_string());
}

/// Runs one reconcile at `now`: returns the writes (device index, owner, next, epoch),
/// the requeue time and the time the plan took.
#[allow(clippy::type_complexity)]
fn reconcile(
    devices: &[crds::Device],
    pods: &[Pod],
    now: DateTime<Utc>,
    grace: Duration,
) -> (
    Vec<(usize, String, Option<String>, u64)>,
    Option<DateTime<Utc>>,
    Duration,
) {
    let started = Instant::now();
    let r = crate::controller::reconcile(devices, pods, now, grace, &Settings::default());
    let took = started.elapsed();
    let index: std::collections::HashMap<&str, usize> = r
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.key.as_str(), i))
        .collect();
    let writes = r
        .plan
        .actions
        .iter()
        .filter_map(|(key, action)| {
            let i = *index.get(key.as_str())?;
            let (owner, next, epoch) = write_of(&r.devices[i], action)?;
            Some((i, owner.to_owned(), next.map(str::to_owned), epoch))
        })
        .collect();
    (writes, r.requeue_at, took)
}

/// Places the devices, turns the first pod NotReady and runs the operator until every
/// device of that pod has a new owner.
pub fn failover(cfg: &Failover) -> FailoverReport {
    let t0 = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("time");
    let names: Vec<String> = (0..cfg.collectors)
        .map(|i| format!("netpulse-collector-{i:05}"))
        .collect();
    let mut pods: Vec<Pod> = names.iter().map(|n| pod(n, true, t0)).collect();
    let mut devices: Vec<crds::Device> = (0..cfg.devices).map(device).collect();
    // Initial placement, untimed.
    loop {
        let (writes, _, _) = reconcile(&devices, &pods, t0, cfg.grace);
        if writes.is_empty() {
            break;
        }
        for (i, owner, next, epoch) in writes {
            apply(&mut devices[i], &owner, next.as_deref(), epoch);
        }
    }
    let lost = &names[0];
    let owned_by_lost = |devices: &[crds::Device]| {
        devices
            .iter()
            .filter(|d| d.labels().get(OWNER_LABEL) == Some(lost))
            .count()
    };
    let devices_lost = owned_by_lost(&devices);

    // The pod stops answering at `failed`.
    let failed = t0 + chrono::Duration::seconds(60);
    pods[0] = pod(lost, false, failed);
    let to_chrono = |d: Duration| chrono::Duration::from_std(d).expect("short");
    // Pending wake-ups of the operator: watch events and requeues.
    let mut wakeups: Vec<DateTime<Utc>> = vec![failed + to_chrono(cfg.watch_latency)];
    let mut report = FailoverReport {
        devices_lost,
        reowned_after: Duration::ZERO,
        writes: 0,
        reconciles: 0,
        planning: Duration::ZERO,
    };
    let deadline = failed + chrono::Duration::seconds(600);
    while let Some(now) = wakeups.iter().min().copied() {
        wakeups.retain(|t| *t != now);
        if now > deadline {
            break;
        }
        report.reconciles += 1;
        let (writes, requeue, took) = reconcile(&devices, &pods, now, cfg.grace);
        report.planning += took;
        if let Some(at) = requeue {
            wakeups.push(at);
        }
        if writes.is_empty() {
            continue;
        }
        // The writes go out WRITE_CONCURRENCY at a time after the plan is computed; each
        // lands when its round trip ends, and the operator's watch sees them later.
        let mut finished = now + to_chrono(took);
        for (n, (i, owner, next, epoch)) in writes.into_iter().enumerate() {
            let round = u32::try_from(n / WRITE_CONCURRENCY + 1).unwrap_or(u32::MAX);
            let lands = now + to_chrono(took + cfg.api_latency * round);
            apply(&mut devices[i], &owner, next.as_deref(), epoch);
            report.writes += 1;
            finished = finished.max(lands);
        }
        if owned_by_lost(&devices) == 0 && report.reowned_after.is_zero() {
            report.reowned_after = (finished - failed).to_std().unwrap_or_default();
        }
        wakeups.push(finished + to_chrono(cfg.watch_latency));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_pods_devices_are_reowned_after_the_grace_with_one_write_each() {
        let cfg = Failover {
            devices: 2_000,
            collectors: 10,
            watch_latency: Duration::from_millis(300),
            api_latency: Duration::from_millis(20),
            grace: Duration::from_secs(2),
        };
        let r = failover(&cfg);
        assert!(r.devices_lost > 150, "{r:?}");
        assert_eq!(r.writes, r.devices_lost, "one write per device moved");
        // Seen after 0.3 s (within the grace: nothing moves), moved at the grace's end:
        // 2 s, plus the writes' round trips (devices / 32 rounds of 20 ms), plus planning.
        let rounds = r.devices_lost.div_ceil(WRITE_CONCURRENCY) as u32;
        let floor = cfg.grace + cfg.api_latency * rounds;
        assert!(r.reowned_after >= floor, "{r:?}");
        assert!(
            r.reowned_after <= floor + r.planning + Duration::from_millis(1),
            "{r:?}"
        );
    }
}
