//! What the collector knows about each device's sessions beyond its state: quirks it had
//! to work around, the encoding in use, and completeness of SAMPLE subscriptions
//! (samples expected from the interval versus samples received, and the gaps).
//!
//! Completeness is counted per leaf: a leaf of a SAMPLE subscription with interval `i`
//! whose consecutive samples are `dt` apart was expected `round(dt / i)` times and
//! received once, so `round(dt / i) - 1` samples are missing. Time spent disconnected
//! counts as missing, which is what an operator wants to see. Subscriptions with
//! `suppressRedundant` are not counted: their silences are by design.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crds::{DeviceSpec, SubscriptionMode};
use model::{DeviceKey, DeviceState, Path, TimestampNs};
use proto::LeafId;
use serde::Serialize;

/// Counters of one SAMPLE subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionHealth {
    /// The subscribed path.
    pub path: String,
    /// Sample interval asked for, in milliseconds.
    pub interval_ms: u64,
    /// Samples the interval implies since each leaf was first seen.
    pub expected: u64,
    /// Samples received.
    pub received: u64,
    /// Samples that never came.
    pub missing: u64,
    /// Runs of one or more consecutive missing samples.
    pub gaps: u64,
}

/// Completeness of all of a device's SAMPLE subscriptions over the last completed window
/// (`CollectorConfig::completeness_window`, 60 s by default): what the Degraded judgement
/// is made on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowHealth {
    /// Length of the window, in seconds.
    pub seconds: u64,
    /// Samples expected in it.
    pub expected: u64,
    /// Samples missing in it.
    pub missing: u64,
}

/// Everything the collector reports about one device.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceHealth {
    /// Device name.
    pub device: String,
    /// Session state (`connecting`, `synced`, `degraded`, `unreachable`).
    pub state: String,
    /// The last error or quirk, in plain words.
    pub last_error: Option<String>,
    /// Encoding in use on the current session (`proto`, `json`, `json_ietf`).
    pub encoding: Option<String>,
    /// Refusals the session works around, in plain words.
    pub quirks: Vec<String>,
    /// Sessions opened after the first.
    pub reconnects: u64,
    /// Encoded bytes of the Subscribe responses received.
    pub bytes_received: u64,
    /// Completeness of each SAMPLE subscription, counted since the collector started.
    pub subscriptions: Vec<SubscriptionHealth>,
    /// Completeness over the last completed window, once one with expected samples closed.
    pub last_window: Option<WindowHealth>,
}

/// The health of every device of this collector; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct HealthBook {
    devices: Arc<Mutex<HashMap<DeviceKey, DeviceHealth>>>,
}

impl HealthBook {
    /// Every device's health, ordered by name.
    pub fn snapshot(&self) -> Vec<DeviceHealth> {
        let devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<DeviceHealth> = devices.values().cloned().collect();
        all.sort_by(|a, b| a.device.cmp(&b.device));
        all
    }

    /// Every device's health with its key, in no particular order.
    pub(crate) fn entries(&self) -> Vec<(DeviceKey, DeviceHealth)> {
        let devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        devices
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect()
    }

    /// One device's health.
    pub fn device(&self, device: &DeviceKey) -> Option<DeviceHealth> {
        let devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        devices.get(device).cloned()
    }

    /// Changes one device's entry, creating it when new.
    pub(crate) fn update(&self, device: &DeviceKey, change: impl FnOnce(&mut DeviceHealth)) {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let entry = devices
            .entry(device.clone())
            .or_insert_with(|| DeviceHealth {
                device: device.to_string(),
                ..DeviceHealth::default()
            });
        change(entry);
    }

    /// Drops one device's entry (it is no longer collected here).
    pub(crate) fn remove(&self, device: &DeviceKey) {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        devices.remove(device);
    }

    pub(crate) fn set_state(&self, device: &DeviceKey, state: DeviceState, error: Option<&str>) {
        self.update(device, |h| {
            h.state = state.as_str().to_owned();
            h.last_error = error.map(str::to_owned);
        });
    }
}

/// Copies the health of devices to the store: the reports that changed since the last
/// successful write, in one batch per call, so web nodes in other processes can show them.
#[derive(Debug)]
pub(crate) struct HealthWriter {
    book: HealthBook,
    written: HashMap<DeviceKey, DeviceHealth>,
}

impl HealthWriter {
    pub(crate) fn new(book: HealthBook) -> Self {
        Self {
            book,
            written: HashMap::new(),
        }
    }

    /// Writes every report that differs from the one last written, stamped `at`. Returns
    /// how many were written; on failure they are tried again on the next call.
    pub(crate) async fn write(
        &mut self,
        store: &dyn store::Store,
        at: TimestampNs,
    ) -> store::Result<usize> {
        let changed: Vec<(DeviceKey, DeviceHealth)> = self
            .book
            .entries()
            .into_iter()
            .filter(|(key, health)| self.written.get(key) != Some(health))
            .collect();
        if changed.is_empty() {
            return Ok(0);
        }
        let reports: Vec<store::HealthReport> = changed
            .iter()
            .filter_map(|(device, health)| store::HealthReport::of(device.clone(), health).ok())
            .collect();
        store.record_health_batch(&reports, at).await?;
        let n = changed.len();
        self.written.extend(changed);
        Ok(n)
    }
}

/// What one observed sample changed in the completeness counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// Samples expected, including this one.
    pub expected: u64,
    /// Samples found missing before this one.
    pub missing: u64,
}

#[derive(Debug)]
struct Tracked {
    path: Path,
    interval_ns: i64,
    health: SubscriptionHealth,
}

/// What completeness remembers of one leaf: the subscription covering it (found once,
/// when the leaf is first seen) and its last timestamp.
#[derive(Debug, Clone, Copy)]
struct Leaf {
    id: LeafId,
    tracked: Option<u32>,
    last: TimestampNs,
}

/// Most leaves remembered per device; past it, counting starts over (each leaf's next
/// sample counts as its first), so a device whose paths never repeat cannot grow this.
const MAX_LEAVES: usize = 65_536;

/// Completeness of a device's SAMPLE subscriptions.
#[derive(Debug, Default)]
pub struct Completeness {
    tracked: Vec<Tracked>,
    /// Leaves in the order they were first seen.
    leaves: Vec<Leaf>,
    /// Where each leaf is in `leaves` (ids are already hashes: a fast hasher is enough).
    index: HashMap<LeafId, u32, foldhash::fast::RandomState>,
    /// The slot after the last leaf observed. A device sends its leaves in the same
    /// order every interval, so the next sample is almost always the next slot: checked
    /// first, it spares the hash lookup and its cache misses (10 % of the collector's
    /// CPU at 1,000 devices, docs/PERFORMANCE.md).
    cursor: usize,
}

impl Completeness {
    /// Tracks the SAMPLE subscriptions of `spec` that have an interval; `sampled_instead`
    /// adds the on-change subscriptions the session had to turn into SAMPLE ones, with
    /// the interval it asked for.
    /// Poll and once devices are not tracked: their samples come when asked for.
    pub fn new(spec: &DeviceSpec, sampled_instead: Option<std::time::Duration>) -> Self {
        let mut tracked = Vec::new();
        if !spec.gnmi.mode.is_stream() {
            return Self::default();
        }
        for s in &spec.gnmi.subscriptions {
            if s.suppress_redundant {
                continue;
            }
            let interval = match (s.mode, sampled_instead) {
                (SubscriptionMode::Sample, _) => s
                    .sample_interval
                    .as_deref()
                    .and_then(|d| crds::parse_duration(d).ok()),
                (_, Some(interval)) => Some(interval),
                _ => None,
            };
            let (Some(interval), Ok(path)) = (interval, s.path.parse::<Path>()) else {
                continue;
            };
            if interval.is_zero() {
                continue;
            }
            tracked.push(Tracked {
                health: SubscriptionHealth {
                    path: s.path.clone(),
                    interval_ms: interval.as_millis() as u64,
                    ..SubscriptionHealth::default()
                },
                path,
                interval_ns: interval.as_nanos() as i64,
            });
        }
        Self {
            tracked,
            ..Self::default()
        }
    }

    /// The slot of leaf `id`, if it was seen before.
    fn slot(&self, id: LeafId) -> Option<usize> {
        match self.leaves.get(self.cursor) {
            Some(leaf) if leaf.id == id => Some(self.cursor),
            _ => self.index.get(&id).map(|&i| i as usize),
        }
    }

    /// Counts one sample of `path` (whose [`LeafId`] is `id`) taken at `ts` against the
    /// first subscription covering it.
    pub fn observe(&mut self, id: LeafId, path: &Path, ts: TimestampNs) -> Observed {
        if self.tracked.is_empty() {
            return Observed::default();
        }
        let slot = self.slot(id);
        if let Some(s) = slot {
            self.cursor = s + 1;
        }
        let (t, observed) = match slot.map(|s| &mut self.leaves[s]) {
            None => {
                if self.leaves.len() >= MAX_LEAVES {
                    self.leaves.clear();
                    self.index.clear();
                }
                let tracked = self
                    .tracked
                    .iter()
                    .position(|t| covers(&t.path, path))
                    .map(|i| i as u32);
                self.index.insert(id, self.leaves.len() as u32);
                self.leaves.push(Leaf {
                    id,
                    tracked,
                    last: ts,
                });
                self.cursor = self.leaves.len();
                let first = Observed {
                    expected: 1,
                    missing: 0,
                };
                (tracked, first)
            }
            Some(Leaf { tracked: None, .. }) => return Observed::default(),
            // A repeat or an older sample: received, but no new interval has passed.
            Some(leaf) if ts <= leaf.last => (leaf.tracked, Observed::default()),
            Some(leaf) => {
                let dt = ts - leaf.last;
                leaf.last = ts;
                let Some(i) = leaf.tracked else {
                    return Observed::default();
                };
                let interval_ns = self.tracked[i as usize].interval_ns;
                let intervals = ((dt + interval_ns / 2) / interval_ns).max(1) as u64;
                let seen = Observed {
                    expected: intervals,
                    missing: intervals - 1,
                };
                (Some(i), seen)
            }
        };
        let Some(i) = t else {
            return Observed::default();
        };
        let health = &mut self.tracked[i as usize].health;
        health.received += 1;
        health.expected += observed.expected;
        health.missing += observed.missing;
        if observed.missing > 0 {
            health.gaps += 1;
        }
        observed
    }

    /// The counters of every tracked subscription.
    pub fn report(&self) -> Vec<SubscriptionHealth> {
        self.tracked.iter().map(|t| t.health.clone()).collect()
    }
}

/// Whether subscription path `pattern` covers sample path `path`: same origin (an empty
/// origin matches any), and each pattern element is a prefix element of the path with
/// the same name and key values (`*` matches any value).
pub fn covers(pattern: &Path, path: &Path) -> bool {
    if !pattern.origin.is_empty() && pattern.origin != path.origin {
        return false;
    }
    if pattern.elems.len() > path.elems.len() {
        return false;
    }
    pattern.elems.iter().zip(&path.elems).all(|(p, e)| {
        (p.name == "*" || p.name == e.name)
            && p.keys
                .iter()
                .all(|(k, v)| v == "*" || e.keys.get(k) == Some(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn spec(subs: Vec<crds::Subscription>) -> DeviceSpec {
        let mut spec = DeviceSpec::new("127.0.0.1");
        spec.gnmi.subscriptions = subs;
        spec
    }

    fn p(s: &str) -> Path {
        s.parse().unwrap()
    }

    #[test]
    fn wildcard_subscriptions_cover_their_leaves() {
        let sub = p("/interfaces/interface[name=*]/state/counters");
        assert!(covers(
            &sub,
            &p("/interfaces/interface[name=Ethernet1]/state/counters/in-octets")
        ));
        assert!(!covers(
            &sub,
            &p("/interfaces/interface[name=Ethernet1]/state/oper-status")
        ));
        assert!(!covers(&p("/system[x=1]"), &p("/system[x=2]/state")));
        assert!(!covers(&p("cli:/system"), &p("openconfig:/system")));
    }

    #[test]
    fn gaps_are_counted_in_intervals() {
        let mut c = Completeness::new(
            &spec(vec![crds::Subscription::sample("/a[name=*]", "10s")]),
            None,
        );
        let leaf = p("/a[name=x]/b");
        let id = proto::leaf_id(&leaf);
        assert_eq!(c.observe(id, &leaf, 100 * S).expected, 1);
        // On time, a little jitter, then three intervals silent (two missing).
        assert_eq!(c.observe(id, &leaf, 110 * S).missing, 0);
        assert_eq!(c.observe(id, &leaf, 121 * S).missing, 0);
        let gap = c.observe(id, &leaf, 151 * S);
        assert_eq!((gap.expected, gap.missing), (3, 2));
        // A repeated timestamp is neither expected nor missing.
        assert_eq!(c.observe(id, &leaf, 151 * S), Observed::default());
        let r = &c.report()[0];
        assert_eq!(
            (r.expected, r.received, r.missing, r.gaps),
            (6, 5, 2, 1),
            "{r:?}"
        );
        // Paths outside every subscription are ignored.
        let other = p("/other");
        let other_id = proto::leaf_id(&other);
        assert_eq!(c.observe(other_id, &other, 1), Observed::default());
        assert_eq!(c.observe(other_id, &other, 2 * S), Observed::default());
        assert_eq!(c.report()[0].received, 5);
    }

    #[test]
    fn leaves_in_a_new_order_are_counted_as_in_the_usual_one() {
        let mut c = Completeness::new(
            &spec(vec![crds::Subscription::sample("/a[name=*]", "10s")]),
            None,
        );
        let leaves: Vec<Path> = (0..5).map(|i| p(&format!("/a[name=x{i}]/b"))).collect();
        let orders: [[usize; 5]; 4] = [
            [0, 1, 2, 3, 4],
            [0, 1, 2, 3, 4],
            [4, 2, 0, 3, 1],
            [1, 0, 4, 3, 2],
        ];
        for (round, order) in orders.iter().enumerate() {
            for &i in order {
                let o = c.observe(
                    proto::leaf_id(&leaves[i]),
                    &leaves[i],
                    round as i64 * 10 * S,
                );
                assert_eq!((o.expected, o.missing), (1, 0), "round {round}, leaf {i}");
            }
        }
        // Round 4 skips one interval for leaf 3 only.
        for i in [0, 1, 2, 4] {
            c.observe(proto::leaf_id(&leaves[i]), &leaves[i], 40 * S);
        }
        let late = c.observe(proto::leaf_id(&leaves[3]), &leaves[3], 50 * S);
        assert_eq!((late.expected, late.missing), (2, 1));
        assert_eq!(c.leaves.len(), 5);
    }

    #[test]
    fn leaves_are_bounded_and_counting_starts_over_past_the_bound() {
        let mut c = Completeness::new(
            &spec(vec![crds::Subscription::sample("/a[name=*]", "10s")]),
            None,
        );
        for i in 0..MAX_LEAVES + 10 {
            let leaf = p(&format!("/a[name=x{i}]/b"));
            c.observe(proto::leaf_id(&leaf), &leaf, S);
            assert!(c.leaves.len() <= MAX_LEAVES);
        }
        // The first leaf was forgotten at the overflow: its next sample is a first one.
        let first = p("/a[name=x0]/b");
        let again = c.observe(proto::leaf_id(&first), &first, 100 * S);
        assert_eq!((again.expected, again.missing), (1, 0));
    }

    #[test]
    fn only_sample_subscriptions_are_tracked() {
        let mut on_change = crds::Subscription::sample("/b", "1s");
        on_change.mode = SubscriptionMode::OnChange;
        on_change.sample_interval = None;
        let mut suppressed = crds::Subscription::sample("/c", "1s");
        suppressed.suppress_redundant = true;
        let subs = vec![
            crds::Subscription::sample("/a", "1s"),
            on_change,
            suppressed,
        ];
        assert_eq!(
            Completeness::new(&spec(subs.clone()), None).report().len(),
            1
        );
        let fallback = Completeness::new(&spec(subs), Some(std::time::Duration::from_secs(10)));
        assert_eq!(fallback.report().len(), 2);
        assert_eq!(fallback.report()[1].interval_ms, 10_000);
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    fn key(name: &str) -> DeviceKey {
        DeviceKey::new(name).unwrap()
    }

    #[tokio::test]
    async fn only_changed_health_is_written() {
        let store = store::open("sqlite::memory:", true).await.unwrap();
        let book = HealthBook::default();
        let mut writer = HealthWriter::new(book.clone());
        assert_eq!(writer.write(&*store, 1).await.unwrap(), 0);
        book.set_state(&key("a"), DeviceState::Synced, None);
        book.set_state(&key("b"), DeviceState::Unreachable, Some("refused"));
        assert_eq!(writer.write(&*store, 2).await.unwrap(), 2);
        assert_eq!(writer.write(&*store, 3).await.unwrap(), 0);
        book.update(&key("b"), |h| h.reconnects += 1);
        assert_eq!(writer.write(&*store, 4).await.unwrap(), 1);

        let b = store.device(&key("b")).await.unwrap().unwrap();
        assert_eq!(b.health_at, Some(4));
        let health = b.health.unwrap();
        assert_eq!(health["state"], "unreachable");
        assert_eq!(health["lastError"], "refused");
        assert_eq!(health["reconnects"], 1);
        let a = store.device(&key("a")).await.unwrap().unwrap();
        assert_eq!(a.health_at, Some(2));
    }
}
