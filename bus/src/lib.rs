//! Live fan-out of samples and device state between collectors and web nodes.
//!
//! Owns the `Bus` trait, its Redis pub/sub and in-process implementations, the channel
//! naming and the wire codec. Nothing depends on the bus for durability: publishing never
//! blocks the caller, and what cannot be delivered is dropped and counted. Imports `model`
//! only from netpulse; must not import the store, collector or web crates.

mod codec;
mod memory;
mod redis_bus;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::Stream;
use model::{DeviceEvent, DeviceKey, Sample};

pub use codec::{CODEC_VERSION, JSON_VERSION, decode, encode, encode_json};
pub use memory::MemoryBus;
pub use redis_bus::RedisBus;

/// Default prefix of every channel name, so installations can share one Redis.
pub const DEFAULT_PREFIX: &str = "netpulse";

/// Bus errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Redis URL could not be parsed.
    #[error("invalid Redis URL: {0}")]
    Url(#[source] redis::RedisError),
    /// Redis refused or dropped the connection.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A message on the wire could not be decoded.
    #[error("undecodable bus message: {0}")]
    Decode(String),
    /// The bus settings do not fit together.
    #[error("bus settings: {0}")]
    Config(String),
    /// The bus has shut down.
    #[error("the bus is closed")]
    Closed,
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What travels on the bus.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusMessage {
    /// New samples of one device, oldest first.
    Samples {
        /// The device they belong to.
        device: DeviceKey,
        /// The samples.
        samples: Vec<Sample>,
    },
    /// A device changed state.
    State(DeviceEvent),
    /// A collector took ownership of a device (its claim of `epoch` was granted), on the
    /// pool's channel.
    Placement(Placement),
    /// A collector's summary of its devices, on the fleet channel every health interval.
    CollectorHealth(CollectorHealth),
}

/// A device's new owner, as the collector that claimed it says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    /// The CollectorPool (empty outside Kubernetes).
    pub pool: String,
    /// The device.
    pub device: DeviceKey,
    /// The collector (pod name) that owns it now.
    pub collector: String,
    /// The ownership epoch claimed.
    pub epoch: u64,
    /// When, ns since the Unix epoch.
    pub ts: i64,
}

/// How a collector's devices are doing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CollectorHealth {
    /// The collector (pod name, or host name outside Kubernetes).
    pub collector: String,
    /// The CollectorPool (empty outside Kubernetes).
    pub pool: String,
    /// Devices it collects.
    pub devices: u32,
    /// Of those, synced.
    pub synced: u32,
    /// Of those, degraded.
    pub degraded: u32,
    /// Of those, unreachable.
    pub unreachable: u32,
    /// Samples written to the store since the previous summary.
    pub samples_written: u64,
    /// When, ns since the Unix epoch.
    pub ts: i64,
}

impl BusMessage {
    /// The device this message is about, if it is about one.
    pub fn device(&self) -> Option<&DeviceKey> {
        match self {
            BusMessage::Samples { device, .. } => Some(device),
            BusMessage::State(event) => Some(&event.device),
            BusMessage::Placement(p) => Some(&p.device),
            BusMessage::CollectorHealth(_) => None,
        }
    }
}

/// A channel of the bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Samples and state changes of one device.
    Device(DeviceKey),
    /// State changes of every device, and collector health summaries.
    Fleet,
    /// Placement changes of one CollectorPool.
    Pool(String),
}

impl Topic {
    /// The channel name under `prefix`.
    pub fn channel(&self, prefix: &str) -> String {
        match self {
            Topic::Device(device) => format!("{prefix}:device:{device}"),
            Topic::Fleet => format!("{prefix}:fleet"),
            Topic::Pool(pool) => format!("{prefix}:pool:{pool}"),
        }
    }
}

/// A stream of messages for one topic. Dropping it unsubscribes.
pub struct Subscription {
    inner: Pin<Box<dyn Stream<Item = BusMessage> + Send>>,
}

impl Subscription {
    fn new(stream: impl Stream<Item = BusMessage> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(stream),
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Stream for Subscription {
    type Item = BusMessage;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<BusMessage>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Counters every implementation keeps; read by `/metrics`.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Messages handed to the bus for publishing.
    pub published: AtomicU64,
    /// Messages dropped because the bus was slow or down.
    pub dropped: AtomicU64,
    /// Messages received from the bus and delivered to subscribers.
    pub received: AtomicU64,
    /// Messages received that could not be decoded.
    pub undecodable: AtomicU64,
}

impl BusStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The bus port.
pub trait Bus: Send + Sync + fmt::Debug + 'static {
    /// Queues a message for every subscriber of its topics: samples to their device's,
    /// state changes to their device's and the fleet's, placements to their pool's,
    /// collector health to the fleet's. Never waits for the network: when the bus is slow or down the
    /// message is dropped and counted in [`BusStats::dropped`].
    fn publish(&self, message: BusMessage);

    /// Subscribes to a topic. Messages published after the subscription is established
    /// are delivered; a subscriber that falls behind loses the oldest messages.
    fn subscribe(&self, topic: Topic) -> Subscription;

    /// Whether live delivery currently works (Redis reachable). The in-process bus is
    /// always connected.
    fn is_connected(&self) -> bool;

    /// Counters for `/metrics`.
    fn stats(&self) -> &BusStats;
}

/// Opens the bus for `url`: `None` gives the in-process bus, `redis://`/`rediss://` Redis.
pub fn open(url: Option<&str>, prefix: &str) -> Result<Arc<dyn Bus>> {
    open_with(url, prefix, None)
}

/// [`open`], trusting `ca_pem` for a `rediss://` Redis ([`RedisBus::connect_with`]).
pub fn open_with(url: Option<&str>, prefix: &str, ca_pem: Option<Vec<u8>>) -> Result<Arc<dyn Bus>> {
    match url {
        None if ca_pem.is_some() => Err(Error::Config(
            "a Redis CA certificate was given without a Redis URL".into(),
        )),
        None => Ok(Arc::new(MemoryBus::new())),
        Some(url) => Ok(Arc::new(RedisBus::connect_with(url, prefix, ca_pem)?)),
    }
}

/// Topics a message goes to.
fn topics_of(message: &BusMessage) -> Vec<Topic> {
    match message {
        BusMessage::Samples { device, .. } => vec![Topic::Device(device.clone())],
        BusMessage::State(event) => vec![Topic::Device(event.device.clone()), Topic::Fleet],
        BusMessage::Placement(p) => vec![Topic::Pool(p.pool.clone())],
        BusMessage::CollectorHealth(_) => vec![Topic::Fleet],
    }
}

#[cfg(test)]
mod conformance;
