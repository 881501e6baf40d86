//! One gNMI Subscribe session per device, supervised: connect, ask for Capabilities,
//! subscribe, read, and on any failure report it and reconnect with jittered exponential
//! backoff.
//!
//! A device that refuses part of the request (UNIMPLEMENTED, INVALID_ARGUMENT before it
//! sent anything) is asked again without what it refused: on-change becomes SAMPLE, a
//! refused encoding is dropped. Each such quirk is recorded in plain words. A device that
//! rejects the credentials, or refuses every variant, is retried only after
//! `refused_backoff`: retrying sooner cannot succeed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bus::{Bus, BusMessage};
use crds::SubscribeMode;
use crds::devices_file::DeviceEntry;
use futures::StreamExt as _;
use model::{DeviceEvent, DeviceKey, DeviceState, Sample};
use proto::{PathCache, gnmi};
use store::Store;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tracing::Instrument;

use crate::health::{Completeness, HealthBook, WindowHealth};
use crate::membership::{OwnershipTable, Role};
use crate::plan::{self, Fallback, Plan};
use crate::status::{StateReport, StateSink};
use crate::{CollectorConfig, CollectorMetrics};
use crate::{grpc, transport};
use proto::wire::Response;

/// How often a session copies its completeness counters into the health book.
const HEALTH_PUBLISH: Duration = Duration::from_secs(1);
/// A synced device missing more than this share of its expected samples over a
/// completeness window is reported Degraded.
const MISSING_DEGRADED: f64 = 0.1;

/// The last state reported for a device, with its error.
type Reported = (DeviceState, Option<String>);

/// Reports device state changes to the metrics and the health book at once, and to the
/// store then the bus through one writer task ([`Reporter::new`]), once per change.
///
/// One writer, not one write per session: when thousands of sessions change state
/// together (a collector starting, a reconnect storm), direct writes would all wait for
/// a database connection at once and time out (seen with 10,000 devices on
/// PostgreSQL). The writer's queue is bounded; a session waits when it is full.
#[derive(Clone, Debug)]
///
/// Only owned devices reach the store and the bus: an incoming owner's states (it
/// connects while the owner still collects) go to the [`StateSink`] alone, which tells
/// the operator when it is synced.
pub struct Reporter {
    events: mpsc::Sender<DeviceEvent>,
    pub(crate) metrics: Arc<CollectorMetrics>,
    health: HealthBook,
    current: Arc<Mutex<HashMap<DeviceKey, Reported>>>,
    table: OwnershipTable,
    sink: Option<Arc<dyn StateSink>>,
}

/// State changes waiting for the writer before sessions wait.
const EVENT_QUEUE: usize = 4096;

/// State changes the writer has in flight at once (a fraction of the store's pool).
const STATE_WRITES_IN_FLIGHT: usize = 4;

impl Reporter {
    /// A reporter, and its writer task: it records each event in `store`, then publishes
    /// it on `bus`, in order, and ends once every clone of the reporter is dropped and
    /// the queue is drained (await it to know every state change is stored).
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        metrics: Arc<CollectorMetrics>,
        health: HealthBook,
        table: OwnershipTable,
        sink: Option<Arc<dyn StateSink>>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (events, rx) = mpsc::channel::<DeviceEvent>(EVENT_QUEUE);
        let writer = tokio::spawn(async move {
            let queued = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|event| (event, rx))
            });
            // A few writes in flight, not one per session. Order between them does not
            // matter: the store keeps the newest state by timestamp and appends late
            // events to the history only.
            queued
                .for_each_concurrent(STATE_WRITES_IN_FLIGHT, |event| {
                    let (store, bus) = (store.clone(), bus.clone());
                    async move {
                        if let Err(error) = store.record_event(&event).await {
                            tracing::warn!(device = %event.device, %error, "Could not record device state");
                        }
                        bus.publish(BusMessage::State(event));
                    }
                })
                .await;
        });
        let reporter = Self {
            events,
            metrics,
            health,
            current: Arc::default(),
            table,
            sink,
        };
        (reporter, writer)
    }

    /// Sends `state` of `device` to the sink, and to the store and the bus when this
    /// collector owns the device.
    async fn publish(&self, device: &DeviceKey, state: DeviceState, error: Option<String>) {
        let held = self.table.get(device);
        let role = held.and_then(|h| h.role);
        let ts = now_ns();
        if let (Some(sink), Some(role), Some(held)) = (&self.sink, role, held) {
            sink.report(StateReport {
                device: device.clone(),
                role,
                epoch: held.epoch,
                generation: held.generation,
                state,
                error: error.clone(),
                at: ts,
            });
        }
        if role == Some(Role::Incoming) {
            return;
        }
        let event = DeviceEvent {
            device: device.clone(),
            state,
            error,
            ts,
        };
        if self.events.send(event).await.is_err() {
            tracing::error!(%device, "State writer gone; state change not recorded");
        }
    }

    /// Reports the current state of `device` again, after its role or epoch changed (an
    /// incoming owner promoted to owner records its state in the store from now on).
    pub async fn reassigned(&self, device: &DeviceKey) {
        let current = {
            let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            current.get(device).cloned()
        };
        if let Some((state, error)) = current {
            self.publish(device, state, error).await;
        }
    }

    /// Forgets `device`, which is no longer collected here: out of the sessions gauge,
    /// the health book and the sink's queue. Nothing is recorded in the store: the
    /// device's state is now its new owner's to report.
    pub fn forget(&self, device: &DeviceKey) {
        let previous = {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            current.remove(device)
        };
        if let Some((state, _)) = previous {
            self.metrics.ended(state);
        }
        self.health.remove(device);
        if let Some(sink) = &self.sink {
            sink.forget(device);
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
        self.health.set_state(device, state, error.as_deref());
        match &error {
            Some(error) => tracing::warn!(%device, %state, %error, "Device state changed"),
            None => tracing::info!(%device, %state, "Device state changed"),
        }
        self.publish(device, state, error).await;
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Full jitter over the upper half: spreads a fleet's reconnects apart.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// How one attempt ended.
#[derive(Debug)]
enum Outcome {
    /// The device ended the stream cleanly.
    Closed,
    /// A `once` round is complete; the next one starts after the poll interval.
    Done,
    /// Shutdown was requested, or the pipeline is gone.
    Stopped,
    /// The device refused part of the request; ask again without it.
    Fallback(Fallback),
    /// Credentials rejected, or every variant of the request refused: retrying soon
    /// cannot help.
    Refused(String),
    /// Connect, subscribe or stream failure, in plain words.
    Failed { error: String, was_synced: bool },
}

fn describe_status(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

fn is_auth(code: Code) -> bool {
    matches!(code, Code::Unauthenticated | Code::PermissionDenied)
}

/// One device's supervisor and what it learned, kept across reconnects.
struct Session {
    device: DeviceEntry,
    tx: mpsc::Sender<Vec<Sample>>,
    reporter: Reporter,
    connects: Arc<Semaphore>,
    config: CollectorConfig,
    shutdown: CancellationToken,
    plan: Plan,
    /// Refusals worked around, in plain words.
    quirks: Vec<String>,
    /// A note on the encoding, when it is not the one the Device prefers.
    encoding_note: Option<String>,
    completeness: Completeness,
    paths: SharedPaths,
    bytes: u64,
    tally: Tally,
}

/// A session's counts since they were last added to the shared metrics, which happens
/// every [`HEALTH_PUBLISH`] and when a stream ends: thousands of sessions incrementing
/// the same atomics for every message cost more than the counting itself.
#[derive(Debug, Default)]
struct Tally {
    notifications: u64,
    bytes: u64,
    received: u64,
    expected: u64,
    missing: u64,
    /// Lag of the first notification since the last flush, in seconds: the lag histogram
    /// holds one sample per device per second.
    lag: Option<f64>,
}

impl Tally {
    fn flush(&mut self, metrics: &CollectorMetrics) {
        let t = std::mem::take(self);
        metrics.notifications.inc_by(t.notifications);
        metrics.bytes_received.inc_by(t.bytes);
        metrics.samples_received.inc_by(t.received);
        metrics.samples_expected.inc_by(t.expected);
        metrics.samples_missing.inc_by(t.missing);
        if let Some(lag) = t.lag {
            metrics.notification_lag_seconds.observe(lag);
        }
    }
}

/// Supervises one device's session until `shutdown`.
pub async fn run(
    device: DeviceEntry,
    tx: mpsc::Sender<Vec<Sample>>,
    reporter: Reporter,
    connects: Arc<Semaphore>,
    paths: SharedPaths,
    config: CollectorConfig,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("session", device = %device.name);
    let completeness = Completeness::new(&device.spec, None);
    let session = Session {
        device,
        tx,
        reporter,
        connects,
        config,
        // A token of its own: every session polling one shared token would contend on
        // its lock for each message.
        shutdown: shutdown.child_token(),
        plan: Plan::default(),
        quirks: Vec::new(),
        encoding_note: None,
        completeness,
        paths,
        bytes: 0,
        tally: Tally::default(),
    };
    session.supervise().instrument(span).await;
}

impl Session {
    fn name(&self) -> &DeviceKey {
        &self.device.name
    }

    fn metrics(&self) -> &CollectorMetrics {
        &self.reporter.metrics
    }

    async fn supervise(mut self) {
        let mut backoff = self.config.backoff_min;
        let mut attempts: u64 = 0;
        // After a completed `once` round the next round is routine, not a reconnect.
        let mut routine = false;
        // A device that failed stays Unreachable while it is retried: flipping it to
        // Connecting on every attempt would record two events per retry.
        let mut unreachable = false;
        while !self.shutdown.is_cancelled() {
            if attempts > 0 && !routine {
                self.metrics().reconnects.inc();
                self.reporter
                    .health
                    .update(self.name(), |h| h.reconnects += 1);
            }
            attempts += 1;
            if !routine && !unreachable {
                let note = self.quirks.last().cloned();
                self.reporter
                    .set(self.name(), DeviceState::Connecting, note)
                    .await;
            }
            let outcome = self.attempt().await;
            routine = matches!(outcome, Outcome::Done);
            unreachable = matches!(
                outcome,
                Outcome::Refused(_)
                    | Outcome::Failed {
                        was_synced: false,
                        ..
                    }
            );
            self.publish_health();
            let delay = match outcome {
                Outcome::Stopped => break,
                Outcome::Closed => {
                    tracing::info!("Device closed the stream; reconnecting");
                    backoff = self.config.backoff_min;
                    Duration::ZERO
                }
                Outcome::Done => {
                    backoff = self.config.backoff_min;
                    plan::poll_interval(&self.device.spec)
                }
                Outcome::Fallback(fallback) => {
                    let quirk = self.plan.apply(&fallback, &self.device.spec);
                    tracing::warn!(%quirk, "Device refused part of the subscription; asking again without it");
                    self.metrics().fallbacks.inc();
                    let effective = self.plan.effective(&self.device.spec);
                    let sampled_instead = self
                        .plan
                        .sample_instead_of_on_change
                        .then(|| plan::sample_instead_interval(&effective));
                    self.completeness = Completeness::new(&effective, sampled_instead);
                    self.quirks.push(quirk);
                    let quirks = self.quirks.clone();
                    self.reporter
                        .health
                        .update(self.name(), |h| h.quirks = quirks);
                    // Bounded: each fallback gives up something, and there are few.
                    Duration::ZERO
                }
                Outcome::Refused(error) => {
                    self.reporter
                        .set(self.name(), DeviceState::Unreachable, Some(error))
                        .await;
                    // Start afresh next time: the device may have been upgraded or
                    // reconfigured by then.
                    if self.plan != Plan::default() {
                        self.completeness = Completeness::new(&self.device.spec, None);
                    }
                    self.plan = Plan::default();
                    self.quirks.clear();
                    self.reporter
                        .health
                        .update(self.name(), |h| h.quirks.clear());
                    jitter(self.config.refused_backoff)
                }
                Outcome::Failed { error, was_synced } => {
                    self.reporter
                        .set(self.name(), DeviceState::Unreachable, Some(error))
                        .await;
                    if was_synced {
                        backoff = self.config.backoff_min;
                    }
                    let delay = jitter(backoff);
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    delay
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        tracing::debug!("Session stopped");
    }

    /// The state and message of a synced device: Degraded while a refusal changes what
    /// it sends (on-change sampled instead, subscriptions refused) or samples go missing.
    fn synced_state(&self, missing: Option<String>) -> Reported {
        let mut notes: Vec<String> = self.quirks.clone();
        notes.extend(self.encoding_note.clone());
        notes.extend(missing.clone());
        let message = (!notes.is_empty()).then(|| notes.join("; "));
        if self.plan.sample_instead_of_on_change
            || !self.plan.refused_paths.is_empty()
            || missing.is_some()
        {
            (DeviceState::Degraded, message)
        } else {
            (DeviceState::Synced, message)
        }
    }

    /// Copies the counts of the session to the health book and the metrics.
    fn publish_health(&mut self) {
        self.tally.flush(&self.reporter.metrics);
        let report = self.completeness.report();
        let bytes = self.bytes;
        self.reporter.health.update(self.name(), |h| {
            h.subscriptions = report;
            h.bytes_received = bytes;
        });
    }

    async fn attempt(&mut self) -> Outcome {
        let fail = |error: String| Outcome::Failed {
            error,
            was_synced: false,
        };
        let spec = self.plan.effective(&self.device.spec);
        let target = match transport::target(&spec, &self.config).await {
            Ok(t) => t,
            Err(error) => return fail(error),
        };
        let mut connection = {
            let permit = tokio::select! {
                _ = self.shutdown.cancelled() => return Outcome::Stopped,
                p = self.connects.acquire() => p,
            };
            let Ok(_permit) = permit else {
                return Outcome::Stopped;
            };
            self.metrics().connects.inc();
            let settings = self.config.grpc_settings();
            let connected = tokio::select! {
                _ = self.shutdown.cancelled() => return Outcome::Stopped,
                c = grpc::connect(&target, &settings) => c,
            };
            match connected {
                Ok(c) => c,
                Err(text) => {
                    let hint = if text.contains("UnknownIssuer") {
                        " (the device certificate is not signed by the CA of gnmi.tls.caSecret)"
                    } else if text.contains("NotValidForName") {
                        " (set gnmi.tls.serverName to a name the device certificate holds)"
                    } else {
                        ""
                    };
                    return fail(format!(
                        "cannot connect to {}: {text}{hint}",
                        target.authority
                    ));
                }
            }
        };

        // Capabilities first: the encoding comes from its answer.
        let answer = tokio::select! {
            _ = self.shutdown.cancelled() => return Outcome::Stopped,
            a = tokio::time::timeout(self.config.connect_timeout, connection.capabilities()) => {
                a.unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {}s",
                    self.config.connect_timeout.as_secs_f64()
                ))))
            }
        };
        let supported = match answer {
            Ok(response) => Some(response.supported_encodings),
            Err(status) if is_auth(status.code()) => {
                return Outcome::Refused(format!(
                    "credentials rejected: {}",
                    describe_status(&status)
                ));
            }
            // Capabilities is optional in practice; subscribe with the preference.
            Err(status) if status.code() == Code::Unimplemented => None,
            Err(status) => {
                return fail(format!("Capabilities failed: {}", describe_status(&status)));
            }
        };
        let (encoding, note) =
            match plan::choose_encoding(spec.gnmi.encoding, supported.as_deref(), &self.plan) {
                Ok(chosen) => chosen,
                Err(error) => return Outcome::Refused(error),
            };
        self.encoding_note = note;
        self.reporter.health.update(self.name(), |h| {
            h.encoding = Some(plan::encoding_name(encoding).to_owned());
        });
        let request = match plan::subscribe_request(&spec, &self.plan, encoding) {
            Ok(r) => r,
            Err(error) => return Outcome::Refused(error),
        };

        let subscribed = tokio::select! {
            _ = self.shutdown.cancelled() => return Outcome::Stopped,
            s = connection.subscribe(&request) => s,
        };
        let mut stream = match subscribed {
            Ok(stream) => stream,
            Err(status) => return self.refusal(&spec, encoding, &status, false, false),
        };

        let idle = plan::idle_timeout(
            &spec,
            &self.plan,
            self.config.idle_intervals,
            self.config.min_idle,
        );
        let mut synced = false;
        let mut received_any = false;
        let mut last_health = Instant::now();
        let mut window = Window::new(self.config.completeness_window);
        let mut missing_note: Option<String> = None;
        let mode = spec.gnmi.mode;
        let mut polls = tokio::time::interval(plan::poll_interval(&spec));
        polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the first poll goes one interval after sync.
        polls.tick().await;
        let mut last_data = Instant::now();
        // One idle timer and one shutdown wait for the life of the stream, not one of
        // each per message: the timer fires at the deadline of an older message, and is
        // pushed back when data came since.
        let idle_timer = tokio::time::sleep_until(last_data + idle.unwrap_or_default());
        tokio::pin!(idle_timer);
        let shutdown = self.shutdown.clone();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            // Shutdown is only honoured here, between messages: what was received is
            // always handed to the pipeline. `Subscription::message` is cancel-safe.
            let message = tokio::select! {
                biased;
                _ = &mut cancelled => return Outcome::Stopped,
                m = stream.message() => m,
                _ = polls.tick(), if mode == SubscribeMode::Poll && synced => {
                    let poll = gnmi::SubscribeRequest {
                        request: Some(gnmi::subscribe_request::Request::Poll(gnmi::Poll {})),
                        ..Default::default()
                    };
                    if let Err(status) = stream.send(&poll) {
                        return fail(format!("cannot send a poll: {}", describe_status(&status)));
                    }
                    continue;
                }
                _ = &mut idle_timer, if idle.is_some() => {
                    let idle = idle.unwrap_or_default();
                    let deadline = last_data + idle;
                    if Instant::now() < deadline {
                        idle_timer.as_mut().reset(deadline);
                        continue;
                    }
                    return Outcome::Failed {
                        error: format!("no data for {}s; stream torn down", idle.as_secs_f64()),
                        was_synced: synced,
                    };
                }
            };
            let now = Instant::now();
            last_data = now;
            let message = match message {
                Err(status) => {
                    return self.refusal(&spec, encoding, &status, received_any, synced);
                }
                Ok(None) if mode == SubscribeMode::Once && synced => return Outcome::Done,
                // Reconnecting at once to a device that closes every stream unanswered
                // would be a tight loop: that is a failure, with backoff.
                Ok(None) if !received_any => {
                    return fail("device closed the stream without sending anything".into());
                }
                Ok(None) => return Outcome::Closed,
                Ok(Some(m)) => m,
            };
            received_any = true;
            let size = (message.len() + grpc::PREFIX) as u64;
            self.bytes += size;
            self.tally.bytes += size;
            let response = proto::wire::decode_response_shared(&message, self.name(), &self.paths);
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    let status = grpc::undecodable(&e);
                    return self.refusal(&spec, encoding, &status, received_any, synced);
                }
            };
            match response {
                Response::Update { timestamp, decoded } => {
                    self.tally.notifications += 1;
                    if self.tally.lag.is_none() {
                        let lag_ns = now_ns().saturating_sub(timestamp).max(0);
                        self.tally.lag = Some(lag_ns as f64 / 1e9);
                    }
                    count_errors(&decoded, self.metrics());
                    let (mut expected, mut missing) = (0, 0);
                    for (s, id) in decoded.samples.iter().zip(decoded.ids) {
                        let o = self.completeness.observe(id, &s.path, s.ts);
                        expected += o.expected;
                        missing += o.missing;
                    }
                    let samples = decoded.samples;
                    self.tally.expected += expected;
                    self.tally.missing += missing;
                    window.add(expected, missing);
                    if !samples.is_empty() {
                        self.tally.received += samples.len() as u64;
                        if !self.send(samples).await {
                            return Outcome::Stopped;
                        }
                    }
                }
                Response::Sync(true) if !synced => {
                    synced = true;
                    let (state, message) = self.synced_state(None);
                    self.reporter.set(self.name(), state, message).await;
                    if mode == SubscribeMode::Once {
                        // One round complete; some targets never close a ONCE stream.
                        return Outcome::Done;
                    }
                }
                Response::Error { code, message } => {
                    return Outcome::Failed {
                        error: format!("device reported error {code}: {message}"),
                        was_synced: synced,
                    };
                }
                _ => {}
            }
            let counted = WindowHealth {
                seconds: window.length.as_secs(),
                expected: window.expected,
                missing: window.missing,
            };
            if let Some(note) = window.close(now) {
                if counted.expected > 0 {
                    self.reporter
                        .health
                        .update(self.name(), |h| h.last_window = Some(counted));
                }
                if synced && note != missing_note {
                    missing_note = note;
                    let (state, message) = self.synced_state(missing_note.clone());
                    self.reporter.set(self.name(), state, message).await;
                }
            }
            if now.duration_since(last_health) >= HEALTH_PUBLISH {
                last_health = now;
                self.publish_health();
            }
        }
    }

    /// Hands samples to the batcher, counting the waits a full queue imposes. Returns
    /// `false` when the batcher is gone.
    async fn send(&self, samples: Vec<Sample>) -> bool {
        match self.tx.try_send(samples) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(samples)) => {
                self.metrics().queue_full.inc();
                self.tx.send(samples).await.is_ok()
            }
        }
    }

    /// Classifies a failed Subscribe: credentials, a refusal to fall back from, or a
    /// plain stream failure.
    fn refusal(
        &self,
        spec: &crds::DeviceSpec,
        encoding: gnmi::Encoding,
        status: &tonic::Status,
        received_any: bool,
        synced: bool,
    ) -> Outcome {
        if is_auth(status.code()) {
            return Outcome::Refused(format!("credentials rejected: {}", describe_status(status)));
        }
        let refused = matches!(
            status.code(),
            Code::Unimplemented | Code::InvalidArgument | Code::NotFound
        );
        if refused && !received_any {
            return match self.plan.fallback(spec, encoding, status.message()) {
                Some(fallback) => Outcome::Fallback(fallback),
                None => Outcome::Refused(format!(
                    "device refused the subscription: {}",
                    describe_status(status)
                )),
            };
        }
        Outcome::Failed {
            error: format!("stream failed: {}", describe_status(status)),
            was_synced: synced,
        }
    }
}

/// Expected and missing samples over a window of time, to tell a device that currently
/// loses samples from one that lost some long ago.
struct Window {
    length: Duration,
    started: Instant,
    expected: u64,
    missing: u64,
}

impl Window {
    fn new(length: Duration) -> Self {
        Self {
            length,
            started: Instant::now(),
            expected: 0,
            missing: 0,
        }
    }

    fn add(&mut self, expected: u64, missing: u64) {
        self.expected += expected;
        self.missing += missing;
    }

    /// When the window is over: `Some(None)` if it was complete enough, `Some(note)` if
    /// too many samples were missing; then a new window starts.
    fn close(&mut self, now: Instant) -> Option<Option<String>> {
        if now.duration_since(self.started) < self.length {
            return None;
        }
        let note = missing_note(self.expected, self.missing, self.length);
        *self = Self::new(self.length);
        Some(note)
    }
}

fn missing_note(expected: u64, missing: u64, window: Duration) -> Option<String> {
    (expected > 0 && missing as f64 > expected as f64 * MISSING_DEGRADED).then(|| {
        format!(
            "{missing} of {expected} expected samples missing in the last {}s",
            window.as_secs()
        )
    })
}

/// Leaf paths shared by every session of a collector: devices of a fleet send mostly the
/// same paths, so one cache holds each path once for all of them.
pub type SharedPaths = Arc<RwLock<PathCache>>;

/// Most paths the shared cache holds (about 0.5 KiB each): well above the distinct paths
/// of a large fleet; a fleet beyond it still works, with the cache starting over.
pub const SHARED_PATHS_LIMIT: usize = 1 << 18;

/// A new, empty [`SharedPaths`].
pub fn shared_paths() -> SharedPaths {
    Arc::new(RwLock::new(PathCache::new(SHARED_PATHS_LIMIT)))
}

/// Counts and logs what could not be read of a notification.
fn count_errors(decoded: &proto::Decoded, metrics: &CollectorMetrics) {
    if !decoded.errors.is_empty() {
        metrics.samples_invalid.inc_by(decoded.errors.len() as u64);
        for error in &decoded.errors {
            tracing::debug!(%error, "Unreadable part of a notification skipped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_missing_more_than_a_tenth_is_noted() {
        let w = Duration::from_secs(60);
        assert_eq!(missing_note(100, 10, w), None);
        assert_eq!(missing_note(0, 0, w), None);
        let note = missing_note(100, 11, w).unwrap();
        assert!(note.contains("11 of 100"), "{note}");
    }
}
