//! The Redis pub/sub bus: collectors publish, web nodes subscribe.
//!
//! One publisher task per process pipelines PUBLISH commands from a bounded queue; one
//! subscriber task holds a single pub/sub connection and dispatches messages to local
//! subscribers by channel. Both reconnect with capped exponential backoff, and the
//! subscriber re-subscribes every channel that still has local subscribers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{Bus, BusMessage, BusStats, Error, Result, Subscription, Topic, codec, topics_of};

/// Messages queued for publishing before new ones are dropped.
const PUBLISH_QUEUE: usize = 16 * 1024;
/// Most PUBLISH commands sent in one pipeline.
const PIPELINE_MAX: usize = 512;
/// Messages a local subscriber may fall behind by before new ones are dropped for it.
const SUBSCRIBER_BUFFER: usize = 1024;
/// Backoff bounds for reconnecting.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often closed local subscriptions are swept and unsubscribed.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// A bus over Redis pub/sub.
#[derive(Debug)]
pub struct RedisBus {
    prefix: String,
    publish_tx: mpsc::Sender<(String, Vec<u8>)>,
    subscribe_tx: mpsc::UnboundedSender<(String, mpsc::Sender<BusMessage>)>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    stats: BusStats,
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
}

impl RedisBus {
    /// Starts the publisher and subscriber tasks for `url`. Must be called inside a tokio
    /// runtime. Returns at once: connecting happens in the background, so a Redis that is
    /// down at start-up delays live updates, not the caller.
    pub fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::connect_with(url, prefix, None)
    }

    /// [`RedisBus::connect`], trusting the PEM certificates `ca_pem` (instead of the
    /// system's roots) for a `rediss://` URL: a Redis with a private CA. User name and
    /// password come from the URL (`rediss://user:password@host:port`, Redis 6 ACL users;
    /// `redis://:password@host` for `requirepass`).
    pub fn connect_with(url: &str, prefix: &str, ca_pem: Option<Vec<u8>>) -> Result<Self> {
        if url.starts_with("rediss://") {
            // rustls needs a process-wide provider; the workspace builds ring only. Already
            // installed (by another TLS user) is fine.
            let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        }
        let client = match ca_pem {
            None => redis::Client::open(url).map_err(Error::Url)?,
            Some(root_cert) => {
                if !url.starts_with("rediss://") {
                    return Err(Error::Config(
                        "a Redis CA certificate needs a rediss:// URL".into(),
                    ));
                }
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
                .map_err(Error::Url)?
            }
        };
        let shared = Arc::new(Shared::default());
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (subscribe_tx, subscribe_rx) = mpsc::unbounded_channel();
        tokio::spawn(publisher(client.clone(), publish_rx, shared.clone()));
        tokio::spawn(subscriber(client, subscribe_rx, shared.clone()));
        Ok(Self {
            prefix: prefix.to_owned(),
            publish_tx,
            subscribe_tx,
            shared,
        })
    }
}

impl Bus for RedisBus {
    fn publish(&self, message: BusMessage) {
        let stats = &self.shared.stats;
        BusStats::add(&stats.published, 1);
        let payload = codec::encode(&message);
        for topic in topics_of(&message) {
            let item = (topic.channel(&self.prefix), payload.clone());
            if self.publish_tx.try_send(item).is_err() {
                BusStats::add(&stats.dropped, 1);
            }
        }
    }

    fn subscribe(&self, topic: Topic) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        // If the subscriber task is gone the stream simply ends.
        let _ = self.subscribe_tx.send((topic.channel(&self.prefix), tx));
        Subscription::new(ReceiverStream::new(rx))
    }

    fn is_connected(&self) -> bool {
        self.shared.publisher_up.load(Ordering::Relaxed)
            && self.shared.subscriber_up.load(Ordering::Relaxed)
    }

    fn stats(&self) -> &BusStats {
        &self.shared.stats
    }
}

fn next_backoff(current: Duration) -> Duration {
    let doubled = (current * 2).min(BACKOFF_MAX);
    // Up to 25 % jitter so many nodes do not reconnect in lock step.
    doubled + doubled.mul_f64(fastrand::f64() * 0.25)
}

async fn publisher(
    client: redis::Client,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    shared: Arc<Shared>,
) {
    let stats = &shared.stats;
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut conn = match client.get_multiplexed_async_connection().await {
            Ok(conn) => {
                shared.publisher_up.store(true, Ordering::Relaxed);
                tracing::info!("Bus publisher connected to Redis");
                backoff = BACKOFF_MIN;
                conn
            }
            Err(error) => {
                shared.publisher_up.store(false, Ordering::Relaxed);
                tracing::warn!(%error, retry_in = ?backoff, "Bus publisher cannot reach Redis");
                // Drop what queues up meanwhile: live data that is late is worthless, and
                // the store has it anyway.
                let deadline = tokio::time::sleep(backoff);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = &mut deadline => break,
                        item = rx.recv() => match item {
                            Some(_) => BusStats::add(&stats.dropped, 1),
                            None => return,
                        },
                    }
                }
                backoff = next_backoff(backoff);
                continue;
            }
        };
        let mut batch = Vec::with_capacity(PIPELINE_MAX);
        loop {
            if rx.recv_many(&mut batch, PIPELINE_MAX).await == 0 {
                return;
            }
            let mut pipe = redis::pipe();
            for (channel, payload) in &batch {
                pipe.publish(channel, payload).ignore();
            }
            let sent = batch.len() as u64;
            batch.clear();
            if let Err(error) = pipe.query_async::<()>(&mut conn).await {
                BusStats::add(&stats.dropped, sent);
                shared.publisher_up.store(false, Ordering::Relaxed);
                tracing::warn!(%error, "Bus publish failed; reconnecting");
                break;
            }
        }
    }
}

type LocalSubscribers = HashMap<String, Vec<mpsc::Sender<BusMessage>>>;

async fn subscriber(
    client: redis::Client,
    mut requests: mpsc::UnboundedReceiver<(String, mpsc::Sender<BusMessage>)>,
    shared: Arc<Shared>,
) {
    let stats = &shared.stats;
    let mut locals: LocalSubscribers = HashMap::new();
    let mut backoff = BACKOFF_MIN;
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(error) => {
                shared.subscriber_up.store(false, Ordering::Relaxed);
                tracing::warn!(%error, retry_in = ?backoff, "Bus subscriber cannot reach Redis");
                let deadline = tokio::time::sleep(backoff);
                tokio::pin!(deadline);
                // Keep accepting subscriptions while Redis is away; they are sent on
                // reconnect.
                loop {
                    tokio::select! {
                        _ = &mut deadline => break,
                        req = requests.recv() => match req {
                            Some((channel, tx)) => locals.entry(channel).or_default().push(tx),
                            None => return,
                        },
                    }
                }
                backoff = next_backoff(backoff);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        locals.retain(|_, subs| {
            subs.retain(|s| !s.is_closed());
            !subs.is_empty()
        });
        let channels: Vec<&String> = locals.keys().collect();
        if !channels.is_empty()
            && let Err(error) = sink.subscribe(&channels).await
        {
            tracing::warn!(%error, "Bus re-subscribe failed; reconnecting");
            tokio::time::sleep(backoff).await;
            backoff = next_backoff(backoff);
            continue;
        }
        shared.subscriber_up.store(true, Ordering::Relaxed);
        backoff = BACKOFF_MIN;
        tracing::info!(channels = locals.len(), "Bus subscriber connected to Redis");
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                req = requests.recv() => {
                    let Some((channel, tx)) = req else { return };
                    let subs = locals.entry(channel.clone()).or_default();
                    subs.push(tx);
                    if subs.len() == 1
                        && let Err(error) = sink.subscribe(&channel).await
                    {
                        tracing::warn!(%error, "Bus subscribe failed; reconnecting");
                        break;
                    }
                }
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        tracing::warn!("Bus subscriber lost its Redis connection; reconnecting");
                        break;
                    };
                    let message = match codec::decode(msg.get_payload_bytes()) {
                        Ok(m) => m,
                        Err(error) => {
                            BusStats::add(&stats.undecodable, 1);
                            tracing::debug!(%error, channel = msg.get_channel_name(), "Undecodable bus message");
                            continue;
                        }
                    };
                    if let Some(subs) = locals.get_mut(msg.get_channel_name()) {
                        subs.retain(|s| match s.try_send(message.clone()) {
                            Ok(()) => { BusStats::add(&stats.received, 1); true }
                            Err(mpsc::error::TrySendError::Full(_)) => { BusStats::add(&stats.dropped, 1); true }
                            Err(mpsc::error::TrySendError::Closed(_)) => false,
                        });
                    }
                }
                _ = sweep.tick() => {
                    let mut gone = Vec::new();
                    locals.retain(|channel, subs| {
                        subs.retain(|s| !s.is_closed());
                        if subs.is_empty() { gone.push(channel.clone()); false } else { true }
                    });
                    if !gone.is_empty()
                        && let Err(error) = sink.unsubscribe(&gone).await
                    {
                        tracing::warn!(%error, "Bus unsubscribe failed; reconnecting");
                        break;
                    }
                }
            }
        }
        shared.subscriber_up.store(false, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff);
    }
}
