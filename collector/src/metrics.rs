//! Collector metrics, registered once per process. Labels stay bounded: the session
//! state, never a device name or a path.

use model::DeviceState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of the sessions-by-state gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// Session state name.
    pub state: &'static str,
}

/// Label of the CLI polls counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CliResultLabel {
    /// `ok`, `failed` (timeout, oversize output) or `closed` (the session ended).
    pub result: &'static str,
}

/// Everything the collector counts.
#[derive(Debug)]
pub struct CollectorMetrics {
    /// Sessions by state.
    pub sessions: Family<StateLabel, Gauge>,
    /// gNMI notifications received.
    pub notifications: Counter,
    /// Samples received from devices.
    pub samples_received: Counter,
    /// Updates that could not be turned into samples (bad path, unsupported value).
    pub samples_invalid: Counter,
    /// Samples newly written to the store.
    pub samples_written: Counter,
    /// Samples the store already had (re-sent or overlapping collectors).
    pub samples_duplicate: Counter,
    /// Samples given up on (store failing through shutdown).
    pub samples_dropped: Counter,
    /// Batches written.
    pub batches: Counter,
    /// Failed batch writes (each retried).
    pub batch_errors: Counter,
    /// Seconds per successful batch write.
    pub batch_seconds: Histogram,
    /// Samples the store refused one by one (implausible timestamps); not retried.
    pub samples_rejected: Counter,
    /// Notifications waiting for the batcher.
    pub queue_depth: Gauge,
    /// Session (re)connect attempts.
    pub connects: Counter,
    /// Sessions reopened after the first (after a failure or a server close).
    pub reconnects: Counter,
    /// Encoded bytes of the Subscribe responses received.
    pub bytes_received: Counter,
    /// Samples the SAMPLE subscriptions' intervals imply.
    pub samples_expected: Counter,
    /// Expected samples that never came.
    pub samples_missing: Counter,
    /// Subscriptions asked again without what the device refused (mode or encoding).
    pub fallbacks: Counter,
    /// Times a session found the queue to the batcher full and had to wait
    /// (backpressure: the device's data waits in the session, nothing is dropped).
    pub queue_full: Counter,
    /// How old notifications are when a session takes them off the wire: receive time
    /// minus the device's timestamp. Growing lag is a collector falling behind (data
    /// waiting in HTTP/2 windows and queues) even when nothing is missing yet; a
    /// constant offset is device clock skew. Sampled: the first notification of each
    /// device in each second.
    pub notification_lag_seconds: Histogram,
    /// Samples the store refused because another collector holds a newer epoch for
    /// their device (this one was deposed; the new owner writes them).
    pub samples_fenced: Counter,
    /// Devices this collector collects, as owner or incoming owner of a handoff.
    pub assigned_devices: Family<RoleLabel, Gauge>,
    /// Ownership claims written to the store (one per new owner epoch).
    pub claims: Counter,
    /// Claims the store refused: another collector already holds a newer epoch.
    pub claims_refused: Counter,
    /// CLI commands run over SSH, by result.
    pub cli_polls: Family<CliResultLabel, Counter>,
    /// Seconds per CLI command run: buckets from 0.5 ms, doubling, to 65.5 s (18), as a
    /// nearby or simulated device answers in a millisecond or two and a slow one (a long
    /// running config over a slow link) in tens of seconds.
    pub cli_poll_seconds: Histogram,
    /// CLI runs skipped because the previous one overran its interval.
    pub cli_overruns: Counter,
    /// CLI outputs that differed from the previous one (a change with a diff was recorded).
    pub cli_changes: Counter,
    /// CLI outputs a template could not parse (the raw output is still kept).
    pub cli_parse_errors: Counter,
    /// Parsed CLI tables that differed from the command's previous snapshot (a new
    /// snapshot was stored).
    pub cli_snapshot_changes: Counter,
    /// Open SSH sessions.
    pub cli_sessions: Gauge,
    /// Devices waiting for an SSH session or login slot (a cap is reached: a login storm,
    /// or caps too low for the fleet).
    pub cli_waiting: Gauge,
    /// SSH connect attempts.
    pub cli_connects: Counter,
    /// SSH sessions opened again after a failure.
    pub cli_reconnects: Counter,
}

/// Label of the assigned-devices gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    /// `owner` or `incoming`.
    pub role: &'static str,
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        Self {
            sessions: Family::default(),
            notifications: Counter::default(),
            samples_received: Counter::default(),
            samples_invalid: Counter::default(),
            samples_written: Counter::default(),
            samples_duplicate: Counter::default(),
            samples_dropped: Counter::default(),
            batches: Counter::default(),
            samples_rejected: Counter::default(),
            batch_errors: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            queue_depth: Gauge::default(),
            connects: Counter::default(),
            reconnects: Counter::default(),
            bytes_received: Counter::default(),
            samples_expected: Counter::default(),
            samples_missing: Counter::default(),
            fallbacks: Counter::default(),
            queue_full: Counter::default(),
            notification_lag_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            samples_fenced: Counter::default(),
            assigned_devices: Family::default(),
            claims: Counter::default(),
            claims_refused: Counter::default(),
            cli_polls: Family::default(),
            cli_poll_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 18)),
            cli_overruns: Counter::default(),
            cli_changes: Counter::default(),
            cli_parse_errors: Counter::default(),
            cli_snapshot_changes: Counter::default(),
            cli_sessions: Gauge::default(),
            cli_waiting: Gauge::default(),
            cli_connects: Counter::default(),
            cli_reconnects: Counter::default(),
        }
    }
}

impl CollectorMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("netpulse_collector");
        r.register("sessions", "Device sessions by state", m.sessions.clone());
        r.register(
            "notifications",
            "gNMI notifications received",
            m.notifications.clone(),
        );
        r.register(
            "samples_received",
            "Samples received from devices",
            m.samples_received.clone(),
        );
        r.register(
            "samples_invalid",
            "Updates that could not be turned into samples",
            m.samples_invalid.clone(),
        );
        r.register(
            "samples_written",
            "Samples newly written to the store",
            m.samples_written.clone(),
        );
        r.register(
            "samples_duplicate",
            "Samples the store already had",
            m.samples_duplicate.clone(),
        );
        r.register(
            "samples_dropped",
            "Samples given up on because the store kept failing at shutdown",
            m.samples_dropped.clone(),
        );
        r.register("batches", "Batches written to the store", m.batches.clone());
        r.register(
            "samples_rejected",
            "Samples the store refused one by one (implausible timestamps)",
            m.samples_rejected.clone(),
        );
        r.register(
            "batch_errors",
            "Failed batch writes, each retried",
            m.batch_errors.clone(),
        );
        r.register(
            "batch_seconds",
            "Duration of successful batch writes",
            m.batch_seconds.clone(),
        );
        r.register(
            "queue_depth",
            "Notifications waiting for the batcher",
            m.queue_depth.clone(),
        );
        r.register("connects", "Session connect attempts", m.connects.clone());
        r.register(
            "reconnects",
            "Sessions reopened after a failure or a server close",
            m.reconnects.clone(),
        );
        r.register(
            "bytes_received",
            "Encoded bytes of the gNMI Subscribe responses received",
            m.bytes_received.clone(),
        );
        r.register(
            "samples_expected",
            "Samples the sample intervals of SAMPLE subscriptions imply",
            m.samples_expected.clone(),
        );
        r.register(
            "samples_missing",
            "Expected samples that never came",
            m.samples_missing.clone(),
        );
        r.register(
            "fallbacks",
            "Subscriptions asked again without the mode or encoding a device refused",
            m.fallbacks.clone(),
        );
        r.register(
            "queue_full",
            "Times a session waited because the queue to the batcher was full",
            m.queue_full.clone(),
        );
        r.register(
            "notification_lag_seconds",
            "Receive time minus device timestamp of notifications (lag plus clock skew), one notification per device per second",
            m.notification_lag_seconds.clone(),
        );
        r.register(
            "samples_fenced",
            "Samples refused because another collector owns their device at a newer epoch",
            m.samples_fenced.clone(),
        );
        r.register(
            "assigned_devices",
            "Devices collected here, by role (owner, incoming owner of a handoff)",
            m.assigned_devices.clone(),
        );
        r.register(
            "claims",
            "Ownership claims written to the store",
            m.claims.clone(),
        );
        r.register(
            "claims_refused",
            "Ownership claims refused because the store holds a newer epoch",
            m.claims_refused.clone(),
        );
        r.register(
            "cli_polls",
            "CLI commands run over SSH, by result",
            m.cli_polls.clone(),
        );
        r.register(
            "cli_poll_seconds",
            "Seconds per CLI command run over SSH",
            m.cli_poll_seconds.clone(),
        );
        r.register(
            "cli_overruns",
            "CLI runs skipped because the previous run overran its interval",
            m.cli_overruns.clone(),
        );
        r.register(
            "cli_changes",
            "CLI outputs that changed since the previous run (recorded with a diff)",
            m.cli_changes.clone(),
        );
        r.register(
            "cli_parse_errors",
            "CLI outputs a TextFSM template could not parse (kept raw)",
            m.cli_parse_errors.clone(),
        );
        r.register(
            "cli_snapshot_changes",
            "Parsed CLI tables that differed from the previous snapshot of their command",
            m.cli_snapshot_changes.clone(),
        );
        r.register("cli_sessions", "Open SSH sessions", m.cli_sessions.clone());
        r.register(
            "cli_waiting",
            "Devices waiting for an SSH session or login slot (a session or login cap reached)",
            m.cli_waiting.clone(),
        );
        r.register(
            "cli_connects",
            "SSH connect attempts",
            m.cli_connects.clone(),
        );
        r.register(
            "cli_reconnects",
            "SSH sessions opened again after a failure",
            m.cli_reconnects.clone(),
        );
        m
    }

    /// Moves one session from `from` to `to` in the sessions gauge.
    pub fn transition(&self, from: Option<DeviceState>, to: DeviceState) {
        if let Some(from) = from {
            self.sessions
                .get_or_create(&StateLabel {
                    state: from.as_str(),
                })
                .dec();
        }
        self.sessions
            .get_or_create(&StateLabel { state: to.as_str() })
            .inc();
    }

    /// Takes one session out of the sessions gauge (its device was taken away).
    pub fn ended(&self, state: DeviceState) {
        self.sessions
            .get_or_create(&StateLabel {
                state: state.as_str(),
            })
            .dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `le` bounds and cumulative counts of `name`'s buckets in the text exposition.
    fn buckets(registry: &Registry, name: &str) -> Vec<(String, u64)> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry)
            .unwrap_or_else(|e| panic!("{e}"));
        let prefix = format!("{name}_bucket{{le=\"");
        text.lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (le, count) = rest.split_once("\"} ")?;
                Some((le.to_owned(), count.trim().parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn cli_poll_buckets_tell_a_millisecond_from_a_minute() {
        let mut registry = Registry::default();
        let metrics = CollectorMetrics::register(&mut registry);
        for seconds in [0.0004, 0.0008, 0.0015, 0.003, 50.0] {
            metrics.cli_poll_seconds.observe(seconds);
        }
        let buckets = buckets(&registry, "netpulse_collector_cli_poll_seconds");
        let count = |le: &str| {
            buckets
                .iter()
                .find(|(b, _)| b == le)
                .map(|(_, c)| *c)
                .unwrap_or_else(|| panic!("no bucket le={le} in {buckets:?}"))
        };
        // Sub-millisecond and millisecond polls land in buckets of their own.
        assert_eq!(count("0.0005"), 1);
        assert_eq!(count("0.001"), 2);
        assert_eq!(count("0.002"), 3);
        assert_eq!(count("0.004"), 4);
        // A poll of nearly a minute is still below the last finite bound.
        assert_eq!(count("65.536"), 5);
        assert_eq!(buckets.len(), 19, "18 bounds and +Inf: {buckets:?}");
    }
}
