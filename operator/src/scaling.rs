//! How many collector pods a pool runs: the autoscaling policy, pure.
//!
//! [`decide`] turns the pool's scaling spec, the weight of its devices and what it
//! recommended lately into a replica count and a reason in plain words (for the pool's
//! status and an Event). The controller keeps the recommendations (in status) and passes
//! the time: no clock here.
//!
//! - `spec.collectors.replicas` set (by hand, `kubectl scale`, or an HPA through the
//!   scale subresource): that, clamped to `minReplicas..=maxReplicas`.
//! - Otherwise `ceil(total weight / devicesPerReplica)`, clamped. Scaling up happens at
//!   once (devices waiting for a collector are not collected); scaling down only to the
//!   highest count recommended within the stabilisation window (5 minutes by default), so
//!   a pool whose devices come and go does not churn pods, as the HPA does.

use std::time::Duration;

use crds::CollectorScaling;

/// Default scale-down stabilisation window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// One past recommendation: the replica count wanted at `at` (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    /// When it was made, seconds since the epoch.
    pub at: i64,
    /// Replicas it asked for.
    pub replicas: i32,
}

/// What to run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Collector pods to run.
    pub replicas: i32,
    /// Why, in plain words.
    pub reason: String,
    /// The recommendations to keep for the next decision (within the window, newest
    /// last, this one included).
    pub history: Vec<Recommendation>,
}

/// The replica count for a pool with devices of `total_weight` running `current` pods
/// at `now` (seconds since the epoch), given its recent `history`.
pub fn decide(
    spec: &CollectorScaling,
    total_weight: u64,
    current: i32,
    now: i64,
    history: &[Recommendation],
    window: Duration,
) -> Decision {
    let (min, max) = (spec.min_replicas.max(0), spec.max_replicas.max(1));
    let clamp =
        |n: i64| -> i32 { i32::try_from(n.clamp(i64::from(min), i64::from(max))).unwrap_or(max) };
    if let Some(fixed) = spec.replicas {
        let replicas = clamp(i64::from(fixed));
        return Decision {
            replicas,
            reason: format!("collectors.replicas asks for {fixed}"),
            history: Vec::new(),
        };
    }
    let per = u64::try_from(spec.devices_per_replica.max(1)).unwrap_or(1);
    let wanted = i64::try_from(total_weight.div_ceil(per)).unwrap_or(i64::MAX);
    let recommended = clamp(wanted);
    let why = format!(
        "devices of total weight {total_weight} at {per} per collector need {wanted}{}",
        if i64::from(recommended) == wanted {
            String::new()
        } else {
            format!(", limited to {min}..={max}")
        }
    );
    let since = now.saturating_sub(i64::try_from(window.as_secs()).unwrap_or(i64::MAX));
    let mut kept: Vec<Recommendation> = history.iter().copied().filter(|r| r.at > since).collect();
    kept.push(Recommendation {
        at: now,
        replicas: recommended,
    });
    let highest = kept.iter().map(|r| r.replicas).max().unwrap_or(recommended);
    let (replicas, reason) = if recommended >= current {
        (recommended, why)
    } else if highest >= current {
        (
            current,
            format!(
                "{why}; keeping {current}: the last {} s recommended up to {highest}",
                window.as_secs()
            ),
        )
    } else {
        (
            highest,
            format!(
                "{why}; scaling down to {highest}, the most recommended in the last {} s",
                window.as_secs()
            ),
        )
    };
    Decision {
        replicas,
        reason,
        history: kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: i32, max: i32, per: i32) -> CollectorScaling {
        CollectorScaling {
            min_replicas: min,
            max_replicas: max,
            devices_per_replica: per,
            replicas: None,
        }
    }

    #[test]
    fn replicas_follow_the_devices_within_the_bounds() {
        let s = spec(2, 10, 500);
        let d = decide(&s, 2_001, 2, 1_000, &[], DEFAULT_WINDOW);
        assert_eq!(d.replicas, 5);
        assert_eq!(
            d.reason,
            "devices of total weight 2001 at 500 per collector need 5"
        );
        assert_eq!(decide(&s, 0, 2, 1_000, &[], DEFAULT_WINDOW).replicas, 2);
        let capped = decide(&s, 1_000_000, 2, 1_000, &[], DEFAULT_WINDOW);
        assert_eq!(capped.replicas, 10);
        assert!(
            capped.reason.ends_with("need 2000, limited to 2..=10"),
            "{}",
            capped.reason
        );
    }

    #[test]
    fn up_at_once_down_after_the_window() {
        let s = spec(1, 20, 100);
        // Up from 3 to 8 at once.
        let up = decide(&s, 800, 3, 1_000, &[], DEFAULT_WINDOW);
        assert_eq!(up.replicas, 8);
        // Devices leave a minute later: 8 stay while the window remembers 8.
        let hold = decide(&s, 300, 8, 1_060, &up.history, DEFAULT_WINDOW);
        assert_eq!(hold.replicas, 8);
        assert!(hold.reason.contains("keeping 8"), "{}", hold.reason);
        // Some come back, then leave again: still 8 until 1_300 s after the 8.
        let mid = decide(&s, 500, 8, 1_200, &hold.history, DEFAULT_WINDOW);
        assert_eq!(mid.replicas, 8);
        // At 1_301 the 8 has left the window; the highest since is 5.
        let down = decide(&s, 300, 8, 1_301, &mid.history, DEFAULT_WINDOW);
        assert_eq!(down.replicas, 5);
        assert!(down.reason.contains("scaling down to 5"), "{}", down.reason);
        assert!(down.history.iter().all(|r| r.at > 1_001));
        // And later to 3.
        assert_eq!(
            decide(&s, 300, 5, 1_600, &down.history, DEFAULT_WINDOW).replicas,
            3
        );
    }

    #[test]
    fn fixed_replicas_win_within_the_bounds() {
        let mut s = spec(2, 10, 100);
        s.replicas = Some(7);
        let d = decide(&s, 5_000, 3, 0, &[], DEFAULT_WINDOW);
        assert_eq!(
            (d.replicas, d.reason.as_str()),
            (7, "collectors.replicas asks for 7")
        );
        s.replicas = Some(50);
        assert_eq!(decide(&s, 0, 3, 0, &[], DEFAULT_WINDOW).replicas, 10);
    }
}
