//! Assignments that change while collectors run, against the netpulse simulator: devices
//! started and stopped at run time, and a make-before-break handoff between two
//! collectors sharing one store, fenced by epochs.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use collector::membership::{Assignment, Desired, Role};
use collector::status::{StateReport, StateSink};
use collector::{CollectorMetrics, HealthBook, Identity, Services};
use common::*;
use futures::StreamExt as _;
use model::{DeviceKey, DeviceState};
use simulator::{Fleet, FleetConfig};
use store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A counter leaf every simulated device serves.
const SIM_LEAF: &str = "/interfaces/interface[name=Ethernet1]/state/counters/in-octets";

async fn fleet(base: &str, devices: usize) -> Fleet {
    Fleet::start(FleetConfig {
        devices,
        base_address: base.parse().expect("an IPv4 address"),
        port: 0,
        interfaces: 1,
        ..FleetConfig::default()
    })
    .await
    .expect("the simulator starts")
}

/// Records what a collector reports, as the Kubernetes status writer would receive it.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<StateReport>>);

impl StateSink for Recorder {
    fn report(&self, report: StateReport) {
        self.0.lock().unwrap().push(report);
    }
    fn forget(&self, _: &DeviceKey) {}
}

impl Recorder {
    fn saw(&self, check: impl Fn(&StateReport) -> bool) -> bool {
        self.0.lock().unwrap().iter().any(check)
    }
}

/// One collector following the assignments sent on `tx`.
struct Member {
    tx: watch::Sender<Arc<Desired>>,
    bus: Arc<dyn bus::Bus>,
    metrics: Arc<CollectorMetrics>,
    health: HealthBook,
    reports: Arc<Recorder>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<collector::Result<()>>,
}

fn member(name: &str, store: &Arc<dyn Store>) -> Member {
    let (tx, rx) = watch::channel(Arc::new(Desired::new()));
    let metrics = Arc::new(CollectorMetrics::default());
    let health = HealthBook::default();
    let reports = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let sink: Arc<dyn StateSink> = reports.clone();
    let bus = bus::open(None, "test").unwrap();
    let task = tokio::spawn(collector::run_assigned(
        rx,
        Identity {
            name: name.into(),
            pool: "core".into(),
            sink: Some(sink),
        },
        Services {
            store: store.clone(),
            bus: bus.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
        },
        collector::CollectorConfig {
            health_interval: Duration::from_millis(200),
            ..config()
        },
        shutdown.clone(),
    ));
    Member {
        tx,
        bus,
        metrics,
        health,
        reports,
        shutdown,
        task,
    }
}

impl Member {
    fn assign(&self, devices: &[(&DeviceEntryRef, u64, Role)]) {
        let desired: Desired = devices
            .iter()
            .map(|(entry, epoch, role)| {
                (
                    entry.name.clone(),
                    Assignment {
                        entry: (*entry).clone(),
                        epoch: *epoch,
                        role: *role,
                        generation: Some(1),
                    },
                )
            })
            .collect();
        self.tx.send_replace(Arc::new(desired));
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

type DeviceEntryRef = crds::devices_file::DeviceEntry;

/// Timestamps stored for `device`'s [`SIM_LEAF`], in order.
async fn stamps(store: &dyn Store, device: &str) -> Vec<i64> {
    let key = DeviceKey::new(device).unwrap();
    let path: model::Path = SIM_LEAF.parse().unwrap();
    let points = store.range(&key, &path, 0, i64::MAX).await.unwrap();
    points.iter().map(|p| p.ts).collect()
}

async fn until(what: &str, check: impl AsyncFn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", db.path().join("t.db").display());
    (store::open(&url, true).await.unwrap(), db)
}

#[tokio::test]
async fn devices_added_at_run_time_start_and_removed_ones_stop() {
    let fleet = fleet("127.0.42.1", 2).await;
    let (store, _db) = sqlite().await;
    let leaf1 = device("leaf1", fleet.devices()[0].addr);
    let leaf2 = device("leaf2", fleet.devices()[1].addr);
    let m = member("c-0", &store);
    m.assign(&[(&leaf1, 0, Role::Owner)]);
    until("leaf1 samples", async || {
        !stamps(&*store, "leaf1").await.is_empty()
    })
    .await;
    assert!(stamps(&*store, "leaf2").await.is_empty());

    m.assign(&[(&leaf1, 0, Role::Owner), (&leaf2, 0, Role::Owner)]);
    until("leaf2 samples", async || {
        !stamps(&*store, "leaf2").await.is_empty()
    })
    .await;

    // leaf1 taken away: its session stops, it leaves the health book, nothing more of it
    // is written.
    m.assign(&[(&leaf2, 0, Role::Owner)]);
    let key1 = DeviceKey::new("leaf1").unwrap();
    until("leaf1 forgotten", async || m.health.device(&key1).is_none()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = stamps(&*store, "leaf1").await.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stamps(&*store, "leaf1").await.len(),
        settled,
        "leaf1 still collected"
    );
    assert!(m.health.device(&DeviceKey::new("leaf2").unwrap()).is_some());

    // A changed spec restarts the session: a wrong port makes it unreachable.
    let mut moved = leaf2.clone();
    moved.spec.gnmi.port = 1;
    m.assign(&[(&moved, 0, Role::Owner)]);
    let key2 = DeviceKey::new("leaf2").unwrap();
    until("leaf2 unreachable", async || {
        m.health
            .device(&key2)
            .is_some_and(|h| h.state == DeviceState::Unreachable.as_str())
    })
    .await;
    m.stop().await;
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_handoff_is_make_before_break_and_the_old_owner_is_fenced() {
    let fleet = fleet("127.0.42.11", 1).await;
    let (store, _db) = sqlite().await;
    let leaf = device("leaf1", fleet.devices()[0].addr);
    let key = leaf.name.clone();
    let a = member("c-a", &store);
    let b = member("c-b", &store);
    let mut placements = b.bus.subscribe(bus::Topic::Pool("core".into()));
    let mut fleet_channel = b.bus.subscribe(bus::Topic::Fleet);

    // c-a owns the device at epoch 1 and reports it to the status sink as owner.
    a.assign(&[(&leaf, 1, Role::Owner)]);
    until("c-a synced", async || {
        a.reports
            .saw(|r| r.role == Role::Owner && r.state == DeviceState::Synced && r.epoch == 1)
    })
    .await;
    until("samples", async || {
        stamps(&*store, "leaf1").await.len() >= 3
    })
    .await;

    // The handoff starts: c-b connects as incoming owner at the same epoch, while c-a
    // keeps collecting; c-b's synced report is what the operator waits for.
    b.assign(&[(&leaf, 1, Role::Incoming)]);
    until("c-b synced as incoming", async || {
        b.reports
            .saw(|r| r.role == Role::Incoming && r.state == DeviceState::Synced && r.epoch == 1)
    })
    .await;
    assert!(
        !b.reports.saw(|r| r.role == Role::Owner),
        "an incoming owner reports as owner"
    );
    assert_eq!(a.metrics.samples_fenced.get(), 0);

    // Ownership flips (epoch 2) on c-b first; c-a hears of it later (watch latency) and
    // keeps collecting meanwhile: the store refuses its samples once c-b has claimed.
    b.assign(&[(&leaf, 2, Role::Owner)]);
    until("c-b owner", async || {
        b.reports
            .saw(|r| r.role == Role::Owner && r.epoch == 2 && r.state == DeviceState::Synced)
    })
    .await;
    until("c-a fenced", async || a.metrics.samples_fenced.get() > 0).await;
    // The claim is announced on the pool's channel.
    let placement = tokio::time::timeout(Duration::from_secs(5), placements.next())
        .await
        .expect("a placement message")
        .unwrap();
    assert_eq!(
        placement,
        bus::BusMessage::Placement(bus::Placement {
            pool: "core".into(),
            device: key.clone(),
            collector: "c-b".into(),
            epoch: 2,
            ts: match &placement {
                bus::BusMessage::Placement(p) => p.ts,
                _ => 0,
            },
        })
    );
    // Its health summary goes to the fleet channel: one device, synced.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = tokio::time::timeout_at(deadline, fleet_channel.next())
            .await
            .expect("a c-b health summary on the fleet channel");
        if let Some(bus::BusMessage::CollectorHealth(h)) = got
            && h.collector == "c-b"
            && h.devices == 1
            && h.synced == 1
        {
            assert_eq!(h.pool, "core");
            break;
        }
    }
    let claim = store.claim(&key, "c-a", 1).await.unwrap();
    assert!(!claim.granted);
    assert_eq!((claim.epoch, claim.owner.as_deref()), (2, Some("c-b")));
    let written_by_b = b.metrics.samples_written.get();
    a.assign(&[]);
    until("c-a let go", async || a.health.device(&key).is_none()).await;
    until("c-b writes on", async || {
        b.metrics.samples_written.get() > written_by_b + 3
    })
    .await;

    // No hole anywhere: the series is continuous through the handoff (samples every
    // 100 ms; both collectors wrote during the overlap, duplicates stored once).
    let ts = stamps(&*store, "leaf1").await;
    let widest = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        widest <= 350_000_000,
        "a {} ms hole in {} samples",
        widest / 1_000_000,
        ts.len()
    );
    a.stop().await;
    b.stop().await;
    fleet.shutdown().await;
}
