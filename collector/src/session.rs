//! One gNMI Subscribe session per device, supervised: connect, subscribe, read, and on
//! any failure report it and reconnect with jittered exponential backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, BusMessage};
use crds::devices_file::DeviceEntry;
use crds::{DeviceSpec, Encoding, SubscriptionMode};
use model::{DeviceEvent, DeviceKey, DeviceState, Sample};
use proto::gnmi;
use proto::gnmi::g_nmi_client::GNmiClient;
use store::Store;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::Instrument;

use crate::{CollectorConfig, CollectorMetrics};

/// Largest gNMI message accepted (notifications of big devices can be several MB).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// A stream silent for this many sample intervals is considered dead.
const IDLE_INTERVALS: u32 = 3;
/// Lower bound of the idle timeout, for devices with very short intervals.
const MIN_IDLE: Duration = Duration::from_secs(15);
/// Idle timeout when no subscription has a sample interval (on_change only).
const DEFAULT_IDLE: Duration = Duration::from_secs(120);

/// The last state reported for a device, with its error.
type Reported = (DeviceState, Option<String>);

/// Reports device state changes to the store, the bus and the metrics, once per change.
#[derive(Clone, Debug)]
pub struct Reporter {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    metrics: Arc<CollectorMetrics>,
    current: Arc<Mutex<HashMap<DeviceKey, Reported>>>,
}

impl Reporter {
    /// A reporter writing to `store` and `bus`.
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, metrics: Arc<CollectorMetrics>) -> Self {
        Self {
            store,
            bus,
            metrics,
            current: Arc::default(),
        }
    }

    /// Records `state` for `device` unless it is already the current state with the same
    /// error (a device that stays unreachable is not re-recorded on every retry).
    pub async fn set(&self, device: &DeviceKey, state: DeviceState, error: Option<String>) {
        let previous = {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            let entry = (state, error.clone());
            match current.insert(device.clone(), entry.clone()) {
                Some(prev) if prev == entry => return,
                prev => prev.map(|p| p.0),
            }
        };
        self.metrics.transition(previous, state);
        match &error {
            Some(error) => tracing::warn!(%device, %state, %error, "Device state changed"),
            None => tracing::info!(%device, %state, "Device state changed"),
        }
        let event = DeviceEvent {
            device: device.clone(),
            state,
            error,
            ts: now_ns(),
        };
        if let Err(error) = self.store.record_event(&event).await {
            tracing::warn!(%device, %error, "Could not record device state");
        }
        self.bus.publish(BusMessage::State(event));
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Supervises one device's session until `shutdown`.
pub async fn run(
    device: DeviceEntry,
    tx: mpsc::Sender<Vec<Sample>>,
    reporter: Reporter,
    connects: Arc<Semaphore>,
    config: CollectorConfig,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("session", device = %device.name);
    async move {
        let mut backoff = config.backoff_min;
        while !shutdown.is_cancelled() {
            reporter
                .set(&device.name, DeviceState::Connecting, None)
                .await;
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => break,
                outcome = attempt(&device, &tx, &reporter, &connects, &config) => outcome,
            };
            let delay = match outcome {
                Outcome::Closed => {
                    tracing::info!("Device closed the stream; reconnecting");
                    backoff = config.backoff_min;
                    Duration::ZERO
                }
                Outcome::PipelineGone => break,
                Outcome::Failed { error, was_synced } => {
                    reporter
                        .set(&device.name, DeviceState::Unreachable, Some(error))
                        .await;
                    if was_synced {
                        backoff = config.backoff_min;
                    }
                    let delay = jitter(backoff);
                    backoff = (backoff * 2).min(config.backoff_max);
                    delay
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        tracing::debug!("Session stopped");
    }
    .instrument(span)
    .await;
}

/// Full jitter over the upper half: spreads a fleet's reconnects apart.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64() * 0.5)
}

enum Outcome {
    /// The device ended the stream cleanly.
    Closed,
    /// The batcher is gone (shutdown).
    PipelineGone,
    /// Connect, subscribe or stream failure, in plain words.
    Failed { error: String, was_synced: bool },
}

/// Joins an error and its sources: "transport error: tcp connect error: Connection refused".
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

fn describe_status(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

async fn attempt(
    device: &DeviceEntry,
    tx: &mpsc::Sender<Vec<Sample>>,
    reporter: &Reporter,
    connects: &Semaphore,
    config: &CollectorConfig,
) -> Outcome {
    let fail = |error: String| Outcome::Failed {
        error,
        was_synced: false,
    };
    let spec = &device.spec;
    if !spec.gnmi.insecure {
        return fail(
            "gNMI over TLS is not supported by this release yet; set gnmi.insecure: true for plain-text targets".into(),
        );
    }
    let request = match subscribe_request(spec) {
        Ok(r) => r,
        Err(error) => return fail(error),
    };
    let authority = if spec.address.contains(':') {
        format!("[{}]:{}", spec.address, spec.gnmi.port)
    } else {
        format!("{}:{}", spec.address, spec.gnmi.port)
    };
    let endpoint = match Endpoint::from_shared(format!("http://{authority}")) {
        Ok(e) => e
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10)),
        Err(error) => return fail(format!("invalid address {authority}: {error}")),
    };
    let channel = {
        let Ok(_permit) = connects.acquire().await else {
            return Outcome::PipelineGone;
        };
        reporter.metrics.connects.inc();
        match endpoint.connect().await {
            Ok(c) => c,
            Err(error) => {
                return fail(format!(
                    "cannot connect to {authority}: {}",
                    describe(&error)
                ));
            }
        }
    };
    let mut client = GNmiClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    // The request stream stays open for the life of the subscription: closing it would
    // tell the target we are done.
    let (req_tx, req_rx) = mpsc::channel(1);
    if req_tx.send(request).await.is_err() {
        return Outcome::PipelineGone;
    }
    let mut stream = match client.subscribe(ReceiverStream::new(req_rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return fail(format!("subscribe refused: {}", describe_status(&status))),
    };
    let idle = idle_timeout(spec);
    let mut synced = false;
    let metrics = &reporter.metrics;
    loop {
        let message = match tokio::time::timeout(idle, stream.message()).await {
            Err(_) => {
                return Outcome::Failed {
                    error: format!("no data for {}s; stream torn down", idle.as_secs()),
                    was_synced: synced,
                };
            }
            Ok(Err(status)) => {
                return Outcome::Failed {
                    error: format!("stream failed: {}", describe_status(&status)),
                    was_synced: synced,
                };
            }
            Ok(Ok(None)) => return Outcome::Closed,
            Ok(Ok(Some(m))) => m,
        };
        use gnmi::subscribe_response::Response;
        match message.response {
            Some(Response::Update(notification)) => {
                metrics.notifications.inc();
                let samples = samples_from(&device.name, &notification, metrics);
                if samples.is_empty() {
                    continue;
                }
                metrics.samples_received.inc_by(samples.len() as u64);
                if tx.send(samples).await.is_err() {
                    return Outcome::PipelineGone;
                }
            }
            Some(Response::SyncResponse(true)) if !synced => {
                synced = true;
                reporter.set(&device.name, DeviceState::Synced, None).await;
            }
            #[allow(deprecated)]
            Some(Response::Error(e)) => {
                return Outcome::Failed {
                    error: format!("device reported error {}: {}", e.code, e.message),
                    was_synced: synced,
                };
            }
            _ => {}
        }
    }
}

/// Turns one notification into samples; updates that cannot be read are counted.
fn samples_from(
    device: &DeviceKey,
    notification: &gnmi::Notification,
    metrics: &CollectorMetrics,
) -> Vec<Sample> {
    let mut out = Vec::with_capacity(notification.update.len());
    for update in &notification.update {
        let path = proto::full_path(notification.prefix.as_ref(), update.path.as_ref());
        let value = update.val.as_ref().and_then(proto::to_value);
        match (path, value) {
            (Ok(path), Some(value)) => out.push(Sample {
                device: device.clone(),
                path,
                ts: notification.timestamp,
                value,
            }),
            (Err(error), _) => {
                metrics.samples_invalid.inc();
                tracing::debug!(%error, "Update with an unreadable path skipped");
            }
            (Ok(path), None) => {
                metrics.samples_invalid.inc();
                tracing::debug!(%path, "Update with an unsupported value skipped");
            }
        }
    }
    out
}

fn idle_timeout(spec: &DeviceSpec) -> Duration {
    spec.gnmi
        .subscriptions
        .iter()
        .filter_map(|s| s.sample_interval.as_deref())
        .filter_map(|s| crds::parse_duration(s).ok())
        .max()
        .map(|d| (d * IDLE_INTERVALS).max(MIN_IDLE))
        .unwrap_or(DEFAULT_IDLE)
}

/// The Subscribe request for a device's spec: one STREAM list of its subscriptions.
fn subscribe_request(spec: &DeviceSpec) -> Result<gnmi::SubscribeRequest, String> {
    let mut subscriptions = Vec::with_capacity(spec.gnmi.subscriptions.len());
    for s in &spec.gnmi.subscriptions {
        let path: model::Path = s
            .path
            .parse()
            .map_err(|e| format!("subscription path: {e}"))?;
        let interval_ns = |v: &Option<String>| -> Result<u64, String> {
            v.as_deref()
                .map(|d| {
                    crds::parse_duration(d)
                        .map(|d| d.as_nanos() as u64)
                        .map_err(|e| e.to_string())
                })
                .transpose()
                .map(|d| d.unwrap_or(0))
        };
        let mode = match s.mode {
            SubscriptionMode::Sample => gnmi::SubscriptionMode::Sample,
            SubscriptionMode::OnChange => gnmi::SubscriptionMode::OnChange,
            SubscriptionMode::TargetDefined => gnmi::SubscriptionMode::TargetDefined,
        };
        subscriptions.push(gnmi::Subscription {
            path: Some(gnmi::Path::from(&path)),
            mode: mode as i32,
            sample_interval: interval_ns(&s.sample_interval)?,
            suppress_redundant: s.suppress_redundant,
            heartbeat_interval: interval_ns(&s.heartbeat_interval)?,
        });
    }
    let encoding = match spec.gnmi.encoding {
        None | Some(Encoding::Proto) => gnmi::Encoding::Proto,
        Some(Encoding::Json) => gnmi::Encoding::Json,
        Some(Encoding::JsonIetf) => gnmi::Encoding::JsonIetf,
    };
    Ok(gnmi::SubscribeRequest {
        request: Some(gnmi::subscribe_request::Request::Subscribe(
            gnmi::SubscriptionList {
                subscription: subscriptions,
                mode: gnmi::subscription_list::Mode::Stream as i32,
                encoding: encoding as i32,
                ..Default::default()
            },
        )),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_every_subscription_with_intervals_in_ns() {
        let spec = DeviceSpec::new("127.0.0.1");
        let req = subscribe_request(&spec).unwrap();
        let Some(gnmi::subscribe_request::Request::Subscribe(list)) = req.request else {
            panic!("not a subscribe request")
        };
        assert_eq!(list.subscription.len(), spec.gnmi.subscriptions.len());
        assert_eq!(list.mode, gnmi::subscription_list::Mode::Stream as i32);
        let first = &list.subscription[0];
        assert_eq!(first.sample_interval, 10_000_000_000);
        let path = proto::full_path(None, first.path.as_ref()).unwrap();
        assert_eq!(path.to_string(), spec.gnmi.subscriptions[0].path);
    }

    #[test]
    fn idle_timeout_follows_the_longest_interval() {
        let mut spec = DeviceSpec::new("127.0.0.1");
        spec.gnmi.subscriptions = vec![
            crds::Subscription::sample("/a", "1s"),
            crds::Subscription::sample("/b", "20s"),
        ];
        assert_eq!(idle_timeout(&spec), Duration::from_secs(60));
        spec.gnmi.subscriptions = vec![crds::Subscription::sample("/a", "1s")];
        assert_eq!(idle_timeout(&spec), MIN_IDLE);
    }

    #[test]
    fn errors_are_described_with_their_causes() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = std::io::Error::other(inner);
        assert!(describe(&outer).contains("connection refused"));
    }
}
