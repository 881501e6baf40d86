//! The live hub of one web node: one bus subscription per device that at least one
//! browser watches, shared by all of them, plus what the node knows of each watched
//! device's freshness.
//!
//! Each watched device has a channel: a task reads the device's bus topic and fans every
//! message out through a `broadcast` ring to the browsers' tasks. The ring never waits:
//! a browser task that falls more than [`RING`] messages behind is told how many it
//! missed ([`Received::Skipped`]) and goes on from the newest, so a slow browser never
//! slows the hub or another browser. The channel lives as long as a [`Watch`] of it does
//! (reference counted): when the last browser of a device leaves, its bus subscription
//! is dropped (Redis unsubscribes the channel).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bus::{Bus, BusMessage, CollectorHealth, Topic};
use futures::StreamExt as _;
use model::DeviceKey;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::broadcast;

/// Messages a browser task may fall behind by before it skips ahead.
pub const RING: usize = 16;

/// The hub; cheap to share.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bus: Arc<dyn Bus>,
    channels: Mutex<HashMap<DeviceKey, Weak<Channel>>>,
    /// Devices with a bus subscription now.
    subscriptions: Gauge,
    /// The latest health summary of each collector heard on the fleet channel.
    collectors: Mutex<HashMap<String, CollectorHealth>>,
}

/// A collector summary older than this is forgotten (the collector is gone).
pub const COLLECTOR_FORGOTTEN_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// One watched device.
#[derive(Debug)]
struct Channel {
    tx: broadcast::Sender<Arc<BusMessage>>,
    /// Newest sample timestamp seen on the bus (0: none yet), kept by the forwarder.
    newest: Arc<AtomicI64>,
    task: tokio::task::AbortHandle,
    subscriptions: Gauge,
    /// The hub and the key this channel is listed under, to leave the list when dropped.
    hub: Weak<Inner>,
    device: DeviceKey,
}

impl Drop for Channel {
    fn drop(&mut self) {
        // Dropping the task drops the bus subscription.
        self.task.abort();
        self.subscriptions.dec();
        // Leave the hub's list, unless a new channel of the device took the place.
        if let Some(hub) = self.hub.upgrade() {
            let mut channels = hub
                .channels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if channels
                .get(&self.device)
                .is_some_and(|c| c.strong_count() == 0)
            {
                channels.remove(&self.device);
            }
        }
    }
}

/// One browser's view of a device's channel. Dropping it leaves the channel.
#[derive(Debug)]
pub struct Watch {
    channel: Arc<Channel>,
    rx: broadcast::Receiver<Arc<BusMessage>>,
}

/// What [`Watch::recv`] gives.
#[derive(Debug)]
pub enum Received {
    /// The next message.
    Message(Arc<BusMessage>),
    /// This browser fell behind: this many messages were skipped; the next is the
    /// oldest still held.
    Skipped(u64),
    /// The bus subscription ended (the hub is shutting down, or the bus closed it).
    Closed,
}

impl Hub {
    /// A hub over `bus`, counting its subscriptions in `subscriptions`.
    /// Must be called inside a tokio runtime: a task follows the fleet channel's
    /// collector summaries for as long as the hub lives.
    pub fn new(bus: Arc<dyn Bus>, subscriptions: Gauge) -> Self {
        let inner = Arc::new(Inner {
            bus,
            channels: Mutex::default(),
            subscriptions,
            collectors: Mutex::default(),
        });
        let mut fleet = inner.bus.subscribe(Topic::Fleet);
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(message) = fleet.next().await {
                let Some(inner) = weak.upgrade() else { return };
                if let BusMessage::CollectorHealth(h) = message {
                    let mut collectors = inner
                        .collectors
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    collectors.insert(h.collector.clone(), h);
                }
            }
        });
        Self { inner }
    }

    /// The latest summary of every collector heard from in the last
    /// [`COLLECTOR_FORGOTTEN_AFTER`] (as of `now`, ns), by name.
    pub fn collectors(&self, now: i64) -> Vec<CollectorHealth> {
        let horizon = now - COLLECTOR_FORGOTTEN_AFTER.as_nanos() as i64;
        let mut collectors = self
            .inner
            .collectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        collectors.retain(|_, h| h.ts >= horizon);
        let mut list: Vec<CollectorHealth> = collectors.values().cloned().collect();
        list.sort_by(|a, b| a.collector.cmp(&b.collector));
        list
    }

    /// Watches `device`: joins its channel, subscribing to the bus when nobody watched it.
    /// Messages published after this returns are received (the subscription is in place,
    /// or requested, before it returns).
    pub fn watch(&self, device: &DeviceKey) -> Watch {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(channel) = channels.get(device).and_then(Weak::upgrade) {
            let rx = channel.tx.subscribe();
            return Watch { channel, rx };
        }
        let (tx, rx) = broadcast::channel(RING);
        let mut sub = self.inner.bus.subscribe(Topic::Device(device.clone()));
        let forward = tx.clone();
        let newest = Arc::new(AtomicI64::new(0));
        let seen = newest.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = sub.next().await {
                if let BusMessage::Samples { samples, .. } = &message
                    && let Some(ts) = samples.iter().map(|s| s.ts).max()
                {
                    seen.fetch_max(ts, Ordering::Relaxed);
                }
                // No receiver left: the channel is being dropped.
                let _ = forward.send(Arc::new(message));
            }
        });
        self.inner.subscriptions.inc();
        let channel = Arc::new(Channel {
            tx,
            newest,
            task: task.abort_handle(),
            subscriptions: self.inner.subscriptions.clone(),
            hub: Arc::downgrade(&self.inner),
            device: device.clone(),
        });
        channels.insert(device.clone(), Arc::downgrade(&channel));
        Watch { channel, rx }
    }

    /// Devices with a live bus subscription now.
    pub fn watched(&self) -> usize {
        let channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        channels.len()
    }

    /// Whether live delivery works (the bus is connected).
    pub fn is_live(&self) -> bool {
        self.inner.bus.is_connected()
    }
}

impl Watch {
    /// The next message of the device, or how many were skipped.
    pub async fn recv(&mut self) -> Received {
        match self.rx.recv().await {
            Ok(message) => Received::Message(message),
            Err(broadcast::error::RecvError::Lagged(n)) => Received::Skipped(n),
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }

    /// Newest sample timestamp of the device seen on the bus since it is watched (0: none).
    pub fn newest(&self) -> i64 {
        self.channel.newest.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use model::{Sample, Value};

    use super::*;

    fn samples(device: &DeviceKey, ts: i64) -> BusMessage {
        BusMessage::Samples {
            device: device.clone(),
            samples: vec![Sample {
                device: device.clone(),
                path: "/a".parse::<model::Path>().unwrap().into(),
                ts,
                value: Value::Uint(1),
            }],
        }
    }

    async fn next(w: &mut Watch) -> Received {
        tokio::time::timeout(Duration::from_secs(5), w.recv())
            .await
            .expect("a message")
    }

    #[tokio::test]
    async fn one_subscription_per_watched_device_for_as_long_as_it_is_watched() {
        let bus: Arc<dyn Bus> = Arc::new(bus::MemoryBus::new());
        let gauge = Gauge::default();
        let hub = Hub::new(bus.clone(), gauge.clone());
        let leaf1 = DeviceKey::new("leaf1").unwrap();
        let leaf2 = DeviceKey::new("leaf2").unwrap();
        let mut a = hub.watch(&leaf1);
        let mut b = hub.watch(&leaf1);
        let c = hub.watch(&leaf2);
        assert_eq!((hub.watched(), gauge.get()), (2, 2));
        bus.publish(samples(&leaf1, 7));
        for w in [&mut a, &mut b] {
            assert!(matches!(next(w).await, Received::Message(_)));
            assert_eq!(w.newest(), 7);
        }
        drop(c);
        assert_eq!((hub.watched(), gauge.get()), (1, 1));
        drop(a);
        assert_eq!(hub.watched(), 1, "still watched by b");
        drop(b);
        assert_eq!((hub.watched(), gauge.get()), (0, 0));
    }

    #[tokio::test]
    async fn a_slow_watcher_skips_ahead_and_never_holds_the_others_back() {
        let bus: Arc<dyn Bus> = Arc::new(bus::MemoryBus::new());
        let hub = Hub::new(bus.clone(), Gauge::default());
        let leaf1 = DeviceKey::new("leaf1").unwrap();
        let mut slow = hub.watch(&leaf1);
        let mut fast = hub.watch(&leaf1);
        let total = RING as i64 * 3;
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while got < total {
                match next(&mut fast).await {
                    Received::Message(_) => got += 1,
                    other => panic!("the fast watcher got {other:?}"),
                }
            }
            got
        });
        for ts in 0..total {
            bus.publish(samples(&leaf1, ts));
            if ts % 4 == 0 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(reader.await.unwrap(), total);
        // The slow one never read: it is told what it missed, then gets the newest.
        let Received::Skipped(missed) = next(&mut slow).await else {
            panic!("no skip reported");
        };
        assert!(missed >= total as u64 - RING as u64, "{missed}");
        let Received::Message(m) = next(&mut slow).await else {
            panic!("nothing after the skip");
        };
        let BusMessage::Samples { samples, .. } = &*m else {
            panic!("{m:?}");
        };
        assert!(samples[0].ts >= total - RING as i64);
    }
}
