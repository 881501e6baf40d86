//! A device's health as the collector recorded it in the store, read back for the API
//! and the pages.
//!
//! The collector writes its per-device report (`collector::DeviceHealth` as JSON: state,
//! lastError, encoding, quirks, reconnects, bytesReceived, per-subscription
//! expected/received/missing/gaps, lastWindow) every few seconds; the web role may run in
//! another process, so it reads the JSON leniently: a field it does not know is ignored,
//! one that is missing takes its default.

use model::TimestampNs;
use serde::{Deserialize, Serialize};

/// Counters of one SAMPLE subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionJson {
    /// Subscribed path.
    pub path: String,
    /// Sample interval, ms.
    pub interval_ms: u64,
    /// Samples the interval implies.
    pub expected: u64,
    /// Samples received.
    pub received: u64,
    /// Samples that never came.
    pub missing: u64,
    /// Runs of missing samples.
    pub gaps: u64,
}

/// Completeness over the collector's last completed window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct StoredWindow {
    seconds: u64,
    expected: u64,
    missing: u64,
}

/// The collector's report as stored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Stored {
    state: Option<String>,
    last_error: Option<String>,
    encoding: Option<String>,
    quirks: Vec<String>,
    reconnects: u64,
    bytes_received: u64,
    subscriptions: Vec<SubscriptionJson>,
    last_window: Option<StoredWindow>,
}

/// Expected versus received samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Completeness {
    /// Seconds the counts cover (the window); absent for totals since the collector started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// Samples expected.
    pub expected: u64,
    /// Samples received (totals only; repeats count, so it may exceed `expected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    /// Samples missing.
    pub missing: u64,
    /// Runs of missing samples (totals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gaps: Option<u64>,
    /// Share of expected samples that came, 0..1; `null` when none were expected.
    pub ratio: Option<f64>,
}

impl Completeness {
    fn ratio(expected: u64, missing: u64) -> Option<f64> {
        (expected > 0).then(|| expected.saturating_sub(missing) as f64 / expected as f64)
    }
}

/// A device's health in API answers (`health` of a device).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthJson {
    /// When the collector took the report (RFC 3339).
    pub reported_at: Option<String>,
    /// Session state the collector saw.
    pub state: Option<String>,
    /// Last error or quirk, in plain words.
    pub last_error: Option<String>,
    /// Encoding in use.
    pub encoding: Option<String>,
    /// Refusals worked around, in plain words.
    pub quirks: Vec<String>,
    /// Sessions opened after the first.
    pub reconnects: u64,
    /// Encoded bytes received.
    pub bytes_received: u64,
    /// Totals over every SAMPLE subscription since the collector started.
    pub completeness: Completeness,
    /// Over the collector's last completed window (60 s by default), once one closed.
    pub window: Option<Completeness>,
    /// Per SAMPLE subscription.
    pub subscriptions: Vec<SubscriptionJson>,
}

impl HealthJson {
    /// Reads a stored report; `None` when there is none. A report that is not an object
    /// reads as an empty one.
    pub fn from_stored(
        health: Option<&serde_json::Value>,
        at: Option<TimestampNs>,
    ) -> Option<Self> {
        let stored: Stored = serde_json::from_value(health?.clone()).unwrap_or_default();
        let (mut expected, mut received, mut missing, mut gaps) = (0u64, 0u64, 0u64, 0u64);
        for s in &stored.subscriptions {
            expected = expected.saturating_add(s.expected);
            received = received.saturating_add(s.received);
            missing = missing.saturating_add(s.missing);
            gaps = gaps.saturating_add(s.gaps);
        }
        Some(Self {
            reported_at: at.map(crate::api::rfc3339),
            state: stored.state,
            last_error: stored.last_error,
            encoding: stored.encoding,
            quirks: stored.quirks,
            reconnects: stored.reconnects,
            bytes_received: stored.bytes_received,
            completeness: Completeness {
                seconds: None,
                expected,
                received: Some(received),
                missing,
                gaps: Some(gaps),
                ratio: Completeness::ratio(expected, missing),
            },
            window: stored.last_window.map(|w| Completeness {
                seconds: Some(w.seconds),
                expected: w.expected,
                received: None,
                missing: w.missing,
                gaps: None,
                ratio: Completeness::ratio(w.expected, w.missing),
            }),
            subscriptions: stored.subscriptions,
        })
    }

    /// The completeness pages show: over the last window when one closed, else the totals.
    pub fn shown_completeness(&self) -> &Completeness {
        self.window.as_ref().unwrap_or(&self.completeness)
    }
}

/// A ratio as a percentage with one decimal, never rounded up to 100% while samples are
/// missing: `99.9%`, `100%`, `–` for none.
pub fn percent(ratio: Option<f64>) -> String {
    match ratio {
        None => "–".to_owned(),
        Some(r) if r >= 1.0 => "100%".to_owned(),
        Some(r) => format!("{:.1}%", (r * 1000.0).floor() / 10.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_sum_their_subscriptions() {
        let stored = serde_json::json!({
            "state": "synced",
            "encoding": "proto",
            "quirks": ["q"],
            "reconnects": 2,
            "subscriptions": [
                {"path": "/a", "intervalMs": 1000, "expected": 10, "received": 9, "missing": 1, "gaps": 1},
                {"path": "/b", "intervalMs": 1000, "expected": 30, "received": 30, "missing": 0, "gaps": 0},
            ],
            "lastWindow": {"seconds": 60, "expected": 40, "missing": 4},
            "fromANewerCollector": true,
        });
        let h = HealthJson::from_stored(Some(&stored), Some(0)).unwrap();
        assert_eq!(h.reported_at.as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            (
                h.completeness.expected,
                h.completeness.received,
                h.completeness.missing
            ),
            (40, Some(39), 1)
        );
        assert_eq!(h.completeness.ratio, Some(39.0 / 40.0));
        assert_eq!(h.shown_completeness().ratio, Some(0.9));
        assert_eq!(h.reconnects, 2);
        assert!(HealthJson::from_stored(None, None).is_none());
        let odd = HealthJson::from_stored(Some(&serde_json::json!("x")), None).unwrap();
        assert_eq!(odd.completeness.ratio, None);
    }

    #[test]
    fn percentages_never_round_up_to_complete() {
        assert_eq!(percent(None), "–");
        assert_eq!(percent(Some(1.0)), "100%");
        assert_eq!(percent(Some(0.9999)), "99.9%");
        assert_eq!(percent(Some(0.5)), "50.0%");
    }
}
