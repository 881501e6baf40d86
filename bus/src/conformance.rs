//! One behaviour suite for every bus implementation: in-process and real Redis.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use model::{DeviceEvent, DeviceKey, DeviceState, Sample, Value};

use crate::{Bus, BusMessage, MemoryBus, RedisBus, Subscription, Topic};

const WAIT: Duration = Duration::from_secs(10);

fn redis_url() -> String {
    std::env::var("NETPULSE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique_prefix(test: &str) -> String {
    format!("nptest-{}-{test}-{}", std::process::id(), fastrand::u64(..))
}

fn key(name: &str) -> DeviceKey {
    DeviceKey::new(name).unwrap()
}

fn samples(device: &str, n: u64) -> BusMessage {
    let device = key(device);
    BusMessage::Samples {
        device: device.clone(),
        samples: (0..n)
            .map(|i| Sample {
                device: device.clone(),
                path: "/interfaces/interface[name=e1]/state/counters/in-octets"
                    .parse::<model::Path>()
                    .unwrap()
                    .into(),
                ts: 1_000 + i as i64,
                value: Value::Uint(i),
            })
            .collect(),
    }
}

fn state(device: &str) -> BusMessage {
    BusMessage::State(DeviceEvent {
        device: key(device),
        state: DeviceState::Unreachable,
        error: Some("connection refused".into()),
        ts: 5,
    })
}

/// Publishes `message` until `sub` yields something (Redis subscriptions are established
/// in the background), then returns what arrived.
async fn publish_until_received(
    bus: &dyn Bus,
    sub: &mut Subscription,
    message: &BusMessage,
) -> BusMessage {
    tokio::time::timeout(WAIT, async {
        loop {
            bus.publish(message.clone());
            if let Ok(Some(got)) =
                tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            {
                return got;
            }
        }
    })
    .await
    .expect("no message arrived")
}

async fn delivers_device_messages_only_to_their_topic(bus: Arc<dyn Bus>) {
    let mut leaf1 = bus.subscribe(Topic::Device(key("leaf1")));
    let mut leaf2 = bus.subscribe(Topic::Device(key("leaf2")));
    let msg = samples("leaf1", 3);
    assert_eq!(publish_until_received(&*bus, &mut leaf1, &msg).await, msg);
    let other = samples("leaf2", 1);
    assert_eq!(
        publish_until_received(&*bus, &mut leaf2, &other).await,
        other
    );
    // Anything leaf1 got meanwhile must be leaf1's own.
    while let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(300), leaf1.next()).await {
        assert_eq!(got.device(), Some(&key("leaf1")));
    }
}

async fn state_changes_reach_the_fleet_topic(bus: Arc<dyn Bus>) {
    let mut fleet = bus.subscribe(Topic::Fleet);
    let msg = state("leaf9");
    assert_eq!(publish_until_received(&*bus, &mut fleet, &msg).await, msg);
    // Samples are not fleet news.
    let mut device = bus.subscribe(Topic::Device(key("leaf9")));
    let s = samples("leaf9", 1);
    publish_until_received(&*bus, &mut device, &s).await;
    while let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(300), fleet.next()).await {
        assert!(matches!(got, BusMessage::State(_)), "fleet got {got:?}");
    }
}

async fn placements_reach_their_pool_and_health_the_fleet(bus: Arc<dyn Bus>) {
    let mut core = bus.subscribe(Topic::Pool("core".into()));
    let mut edge = bus.subscribe(Topic::Pool("edge".into()));
    let mut fleet = bus.subscribe(Topic::Fleet);
    let placement = BusMessage::Placement(crate::Placement {
        pool: "core".into(),
        device: key("leaf1"),
        collector: "core-collector-0".into(),
        epoch: 3,
        ts: 1,
    });
    publish_until_received(&*bus, &mut core, &placement).await;
    let health = BusMessage::CollectorHealth(crate::CollectorHealth {
        collector: "core-collector-0".into(),
        pool: "core".into(),
        devices: 2,
        synced: 1,
        degraded: 0,
        unreachable: 1,
        samples_written: 10,
        ts: 2,
    });
    publish_until_received(&*bus, &mut fleet, &health).await;
    // The other pool hears nothing; the fleet never hears placements.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), edge.next())
            .await
            .is_err()
    );
    while let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(300), fleet.next()).await {
        assert!(
            matches!(got, BusMessage::CollectorHealth(_)),
            "fleet got {got:?}"
        );
    }
}

async fn keeps_order_within_a_device(bus: Arc<dyn Bus>) {
    let mut sub = bus.subscribe(Topic::Device(key("order")));
    publish_until_received(&*bus, &mut sub, &samples("order", 1)).await;
    // Drain whatever repeats of the probe are still in flight.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {}
    for n in 2..=50 {
        bus.publish(samples("order", n));
    }
    for n in 2..=50u64 {
        let got = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        let BusMessage::Samples { samples, .. } = got else {
            panic!("unexpected {got:?}")
        };
        assert_eq!(samples.len() as u64, n);
    }
    assert!(
        bus.stats()
            .published
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 50
    );
}

macro_rules! suite {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn delivers_device_messages_only_to_their_topic() {
                super::delivers_device_messages_only_to_their_topic($make("topic")).await;
            }

            #[tokio::test]
            async fn state_changes_reach_the_fleet_topic() {
                super::state_changes_reach_the_fleet_topic($make("fleet")).await;
            }

            #[tokio::test]
            async fn placements_reach_their_pool_and_health_the_fleet() {
                super::placements_reach_their_pool_and_health_the_fleet($make("pool")).await;
            }

            #[tokio::test]
            async fn keeps_order_within_a_device() {
                super::keeps_order_within_a_device($make("order")).await;
            }
        }
    };
}

fn memory(_: &str) -> Arc<dyn Bus> {
    Arc::new(MemoryBus::new())
}

fn redis(test: &str) -> Arc<dyn Bus> {
    Arc::new(RedisBus::connect(&redis_url(), &unique_prefix(test)).unwrap())
}

suite!(memory_bus, memory);
suite!(redis_bus, redis);

#[tokio::test]
async fn redis_bus_counts_garbage_and_keeps_going() {
    let prefix = unique_prefix("garbage");
    let bus = RedisBus::connect(&redis_url(), &prefix).unwrap();
    let mut sub = bus.subscribe(Topic::Device(key("leaf1")));
    let msg = samples("leaf1", 1);
    publish_until_received(&bus, &mut sub, &msg).await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let channel = Topic::Device(key("leaf1")).channel(&prefix);
    let _: () = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(b"\x07garbage".as_slice())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(publish_until_received(&bus, &mut sub, &msg).await, msg);
    let undecodable = bus
        .stats()
        .undecodable
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(undecodable >= 1, "garbage was not counted");
}

#[tokio::test]
async fn redis_bus_refuses_a_malformed_url() {
    let err = RedisBus::connect("not a url", "x").unwrap_err().to_string();
    assert!(err.contains("invalid Redis URL"), "{err}");
}

#[tokio::test]
async fn redis_bus_publishing_to_an_absent_redis_never_blocks() {
    // Nothing listens on port 1: publishes must return at once and be counted as dropped.
    let bus = RedisBus::connect("redis://127.0.0.1:1", "x").unwrap();
    for _ in 0..100_000 {
        bus.publish(samples("leaf1", 1));
    }
    assert!(!bus.is_connected());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dropped = bus
        .stats()
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 0, "nothing was counted as dropped");
}
