//! One pass of the Device placement controller for a pool, pure: what the cluster holds
//! in, the plan and when to come back out. The running controller feeds it from its
//! watch caches (Devices of the pool, collector pods) and writes the plan with
//! [`crate::devices::write`]; the simulation harness ([`crate::simulation`]) feeds it a
//! cluster in memory.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;

use crate::placement::{self, Plan, Settings};

/// Result of [`reconcile`].
#[derive(Debug, Clone, PartialEq)]
pub struct Reconcile {
    /// Placement's inputs, read from the Devices (what [`crate::devices::write`] needs).
    pub devices: Vec<placement::Device>,
    /// The changes to write.
    pub plan: Plan,
    /// When to run again even if no watch event comes: the end of a NotReady grace, or
    /// soon when handoffs wait for the in-flight limit.
    pub requeue_at: Option<DateTime<Utc>>,
}

/// How soon to look again while planned moves wait for the handoff limit (their
/// progress arrives as Device events too; this is the backstop).
pub const DEFERRED_RETRY: Duration = Duration::from_secs(5);

/// Places the pool's `devices` on its collector `pods` at `now`.
pub fn reconcile(
    devices: &[crds::Device],
    pods: &[Pod],
    now: DateTime<Utc>,
    grace: Duration,
    settings: &Settings,
) -> Reconcile {
    let inputs: Vec<placement::Device> = devices.iter().map(crate::devices::read).collect();
    let collectors = crate::pods::collectors(pods, now, grace);
    let plan = placement::plan(&inputs, &collectors, settings);
    let retry = (plan.deferred > 0)
        .then(|| {
            chrono::Duration::from_std(DEFERRED_RETRY)
                .ok()
                .map(|d| now + d)
        })
        .flatten();
    let requeue_at = [crate::pods::next_deadline(pods, now, grace), retry]
        .into_iter()
        .flatten()
        .min();
    Reconcile {
        devices: inputs,
        plan,
        requeue_at,
    }
}
