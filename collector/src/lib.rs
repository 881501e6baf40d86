//! The collector role: device sessions, and the pipeline that takes what they receive to
//! the store and the bus.
//!
//! `device session --> bounded channel --> batcher --> store, then bus`. Sessions are one
//! task per device, capped by a connect semaphore; the channel is bounded, so a slow store
//! slows the sessions (backpressure) instead of growing memory. Imports `model`, `proto`,
//! `crds`, `store` and `bus`; must not import the web or operator crates.
//!
//! `transport` reaches a device (TLS, mTLS, credentials from a secrets directory),
//! `plan` decides what to ask it for and how to fall back when it refuses, `session`
//! supervises the stream, `health` keeps per-device quirks and sample completeness
//! ([`HealthBook`]), `pipeline` batches into the store and the bus.

mod cli;
pub mod grpc;
mod health;
pub mod k8s;
pub mod membership;
mod metrics;
mod pipeline;
mod plan;
mod session;
pub mod source;
pub mod status;
pub mod transport;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bus::Bus;
use crds::devices_file::DeviceEntry;
use model::DeviceKey;
use store::{DeviceInfo, Store};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use health::{DeviceHealth, HealthBook, SubscriptionHealth, WindowHealth};
pub use metrics::{CliResultLabel, CollectorMetrics};

/// Collector errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The devices could not be registered in the store at start-up.
    #[error("cannot register devices in the store: {0}")]
    Register(#[source] store::Error),
    /// The devices file could not be read or is invalid.
    #[error(transparent)]
    DevicesFile(#[from] crds::devices_file::DevicesFileError),
    /// The TextFSM templates for CLI output could not be loaded.
    #[error("cannot load the CLI templates: {0}")]
    Templates(#[source] sshcli::parse::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tunables of a collector.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Most samples written in one batch.
    pub batch_size: usize,
    /// Longest time a sample waits in a partial batch.
    pub batch_wait: Duration,
    /// Notifications queued between the sessions and the batcher.
    pub queue: usize,
    /// Batches written to the store at once (2 doubled PostgreSQL ingest on 2 cores,
    /// docs/PERFORMANCE.md; SQLite serializes writers anyway).
    pub writers: usize,
    /// Time allowed for a TCP + HTTP/2 connect.
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles (with jitter) up to `backoff_max`.
    pub backoff_min: Duration,
    /// Cap of the reconnect delay.
    pub backoff_max: Duration,
    /// Connection attempts in flight at once, so a restart does not storm the network.
    pub max_concurrent_connects: usize,
    /// Delay before retrying a device that rejected the credentials or refused every
    /// variant of the subscription: retrying sooner cannot succeed and floods its logs.
    pub refused_backoff: Duration,
    /// Largest gNMI message accepted (a big device's notification can be several MB).
    pub max_message_bytes: usize,
    /// Interval of HTTP/2 keepalive pings; a peer that stops answering them is dropped.
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may stay unanswered.
    pub keepalive_timeout: Duration,
    /// HTTP/2 receive window of a Subscribe stream, in bytes: at most this much a device
    /// may send ahead of a session that is blocked on a full queue, so what is buffered
    /// per session under overload is bounded (the tonic/hyper defaults are larger).
    pub stream_window: u32,
    /// HTTP/2 receive window of a device's connection, in bytes (one stream each).
    pub connection_window: u32,
    /// A stream silent for this many of its longest sample (or heartbeat) interval is
    /// torn down and reopened.
    pub idle_intervals: u32,
    /// Lower bound of the idle timeout, for devices with very short intervals.
    pub min_idle: Duration,
    /// Directory holding the Secrets a Device names, one directory per Secret:
    /// `<dir>/<secret>/{ca.crt,tls.crt,tls.key,username,password}` (file-driven and
    /// single-node deployments; a Kubernetes Secret mounted as a volume has this layout).
    pub secrets_dir: Option<PathBuf>,
    /// Where Secrets are read instead of `secrets_dir` (the Kubernetes API).
    pub secret_source: Option<Arc<dyn transport::SecretSource>>,
    /// Window over which a synced device's missing samples are judged: more than a tenth
    /// missing in one window reports the device Degraded.
    pub completeness_window: Duration,
    /// How often the health of devices that changed is written to the store (one batch),
    /// where web nodes read it; it is written once more at shutdown.
    pub health_interval: Duration,
    /// A directory of TextFSM templates (laid out like ntc-templates' `templates/`, with
    /// an `index`) tried before the project's own.
    pub cli_templates_dir: Option<PathBuf>,
    /// SSH caps: one session per device for the session's life; logins in progress
    /// (connect, authenticate, shell) per AAA group and per collector, released once the
    /// session is up, so every device is polled however many there are (default 1, 16,
    /// 64).
    pub ssh_limits: sshcli::session::limit::Limits,
}

impl CollectorConfig {
    /// What a device connection needs of this configuration.
    pub fn grpc_settings(&self) -> grpc::Settings {
        grpc::Settings {
            connect_timeout: self.connect_timeout,
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
            stream_window: self.stream_window,
            connection_window: self.connection_window,
            max_message_bytes: self.max_message_bytes,
        }
    }
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            batch_wait: Duration::from_millis(250),
            queue: 4_096,
            writers: 2,
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_concurrent_connects: 64,
            refused_backoff: Duration::from_secs(300),
            max_message_bytes: 16 * 1024 * 1024,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            stream_window: 1024 * 1024,
            connection_window: 1024 * 1024,
            idle_intervals: 3,
            min_idle: Duration::from_secs(15),
            secrets_dir: None,
            secret_source: None,
            completeness_window: Duration::from_secs(60),
            health_interval: Duration::from_secs(10),
            cli_templates_dir: None,
            ssh_limits: sshcli::session::limit::Limits::default(),
        }
    }
}

/// What a collector writes to and reports through.
#[derive(Debug, Clone)]
pub struct Services {
    /// Where samples, states and health go.
    pub store: Arc<dyn Store>,
    /// Where samples and states are published live.
    pub bus: Arc<dyn Bus>,
    /// This collector's metrics.
    pub metrics: Arc<CollectorMetrics>,
    /// Per-device health (state, quirks, completeness).
    pub health: HealthBook,
}

/// Who a collector is, for ownership: the name its claims carry (the pod name) and
/// where device state reports go besides the store (Kubernetes Device status).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Owner name written with each claim.
    pub name: String,
    /// The CollectorPool this collector belongs to (empty outside Kubernetes): placement
    /// messages go to its bus channel.
    pub pool: String,
    /// Receives every owner and incoming-owner state change.
    pub sink: Option<Arc<dyn status::StateSink>>,
}

/// Collects from `devices` until `shutdown` is cancelled, then stops the sessions, flushes
/// every buffered sample to the store and returns. Per-device health (state, quirks,
/// completeness) is kept in `health`, and written to the store every
/// `config.health_interval` (devices whose health changed, in one batch) and once at the end.
pub async fn run(
    devices: Vec<DeviceEntry>,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    metrics: Arc<CollectorMetrics>,
    health: HealthBook,
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let services = Services {
        store,
        bus,
        metrics,
        health,
    };
    run_assigned(
        membership::fixed(devices),
        Identity::default(),
        services,
        config,
        shutdown,
    )
    .await
}

/// Collects the devices `assignments` names, following its changes, until `shutdown` is
/// cancelled; then flushes as [`run`] does. A device added starts a session, a device
/// removed stops its session (its state is now its new owner's to report), a changed
/// spec restarts it, a new epoch or role fences the writes anew without reconnecting.
/// An owned device with an epoch is claimed in the store under `identity.name`, which
/// fences off its previous owner's writes.
///
/// The first set is registered in the store before anything starts: when that fails the
/// collector does not start ([`Error::Register`]). Devices added later are registered as
/// they come; a failure then is logged (writes create unknown devices anyway).
pub async fn run_assigned(
    mut assignments: membership::Assignments,
    identity: Identity,
    services: Services,
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let Services {
        store,
        bus,
        metrics,
        health,
    } = services;
    let table = membership::OwnershipTable::default();
    let (tx, rx) = mpsc::channel(config.queue);
    let batcher = tokio::spawn(pipeline::batcher(
        rx,
        store.clone(),
        bus.clone(),
        metrics.clone(),
        table.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    let health_stop = CancellationToken::new();
    let health_writer = tokio::spawn(write_health(
        store.clone(),
        health.clone(),
        config.health_interval,
        health_stop.clone(),
        Some(Summaries {
            bus: bus.clone(),
            metrics: metrics.clone(),
            collector: identity_label(&identity),
            pool: identity.pool.clone(),
        }),
    ));
    let (claims, claim_rx) = mpsc::unbounded_channel();
    let claimer = tokio::spawn(claim(
        claim_rx,
        store.clone(),
        bus.clone(),
        identity.clone(),
        metrics.clone(),
    ));
    let (reporter, state_writer) = session::Reporter::new(
        store.clone(),
        bus,
        metrics.clone(),
        health,
        table.clone(),
        identity.sink.clone(),
    );
    let mut templates = sshcli::parse::TemplateSet::embedded().map_err(Error::Templates)?;
    if let Some(dir) = &config.cli_templates_dir {
        templates = templates.with_dir(dir).map_err(Error::Templates)?;
    }
    let cli = cli::Shared {
        templates: Arc::new(templates),
        limiter: Arc::new(sshcli::session::limit::Limiter::new(config.ssh_limits)),
        store: store.clone(),
        sink: identity.sink.clone(),
    };
    let mut supervisor = Supervisor {
        cli,
        running: HashMap::new(),
        stops: HashMap::new(),
        sessions: JoinSet::new(),
        tx,
        reporter,
        table,
        claims,
        connects: Arc::new(Semaphore::new(config.max_concurrent_connects.max(1))),
        paths: session::shared_paths(),
        metrics,
        config,
        shutdown: shutdown.clone(),
    };
    let mut first = true;
    let mut open = true;
    loop {
        let desired = assignments.borrow_and_update().clone();
        let changes = membership::changes(&supervisor.running, &desired);
        if !changes.is_empty() || first {
            let registered = supervisor.register(&*store, &desired, &changes).await;
            match registered {
                Err(error) if first => return Err(Error::Register(error)),
                Err(error) => tracing::warn!(%error, "Could not register new devices in the store"),
                Ok(()) => {}
            }
            if first {
                tracing::info!(devices = desired.len(), "Collector starting");
            } else {
                tracing::info!(
                    changes = changes.len(),
                    devices = desired.len(),
                    "Assignments changed"
                );
            }
            first = false;
            supervisor.apply(&desired, changes).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = assignments.changed(), if open => open = changed.is_ok(),
            Some(_) = supervisor.sessions.join_next(), if !supervisor.sessions.is_empty() => {}
        }
    }
    let Supervisor {
        mut sessions,
        tx,
        reporter,
        claims,
        ..
    } = supervisor;
    drop(tx);
    drop(reporter);
    drop(claims);
    while sessions.join_next().await.is_some() {}
    // Every session (and so every reporter) is gone: the writer records what is queued
    // and ends.
    if let Err(error) = state_writer.await {
        tracing::error!(%error, "State writer task failed");
    }
    claimer.abort();
    // The sessions are done: the last health report of every device goes to the store.
    health_stop.cancel();
    if let Err(error) = health_writer.await {
        tracing::error!(%error, "Health writer task failed");
    }
    // Every sender is gone now: the batcher drains the queue, flushes and ends.
    if let Err(error) = batcher.await {
        tracing::error!(%error, "Batcher task failed");
    }
    tracing::info!("Collector stopped; buffered samples flushed");
    Ok(())
}

/// The running sessions and what starting and stopping one needs.
struct Supervisor {
    /// What the devices' SSH tasks share.
    cli: cli::Shared,
    running: HashMap<DeviceKey, membership::Assignment>,
    stops: HashMap<DeviceKey, (CancellationToken, Arc<AtomicBool>)>,
    sessions: JoinSet<()>,
    tx: mpsc::Sender<Vec<model::Sample>>,
    reporter: session::Reporter,
    table: membership::OwnershipTable,
    claims: mpsc::UnboundedSender<(DeviceKey, u64)>,
    connects: Arc<Semaphore>,
    paths: session::SharedPaths,
    metrics: Arc<CollectorMetrics>,
    config: CollectorConfig,
    shutdown: CancellationToken,
}

impl Supervisor {
    /// Registers (address included) the devices `changes` starts or restarts.
    async fn register(
        &self,
        store: &dyn Store,
        desired: &membership::Desired,
        changes: &[membership::Change],
    ) -> Result<(), store::Error> {
        use membership::Change;
        let infos: Vec<DeviceInfo> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Start(k) | Change::Restart(k) => desired.get(k),
                Change::Stop(_) | Change::Reassign(_) => None,
            })
            .map(|a| DeviceInfo {
                name: a.entry.name.clone(),
                address: format!("{}:{}", a.entry.spec.address, a.entry.spec.gnmi.port),
            })
            .collect();
        if infos.is_empty() {
            return Ok(());
        }
        store.upsert_devices(&infos).await
    }

    async fn apply(&mut self, desired: &membership::Desired, changes: Vec<membership::Change>) {
        use membership::Change;
        for change in changes {
            match change {
                Change::Stop(key) => self.stop(&key, true),
                Change::Restart(key) => {
                    self.stop(&key, false);
                    self.start(&desired[&key]);
                }
                Change::Start(key) => self.start(&desired[&key]),
                Change::Reassign(key) => {
                    let want = &desired[&key];
                    let had = self.running.insert(key.clone(), want.clone());
                    self.count(had.as_ref(), Some(want));
                    self.table.set(want);
                    if had.is_none_or(|h| h.epoch != want.epoch || h.role != want.role) {
                        self.claim(want);
                        self.reporter.reassigned(&key).await;
                    }
                }
            }
        }
    }

    fn start(&mut self, assignment: &membership::Assignment) {
        let key = assignment.entry.name.clone();
        self.table.set(assignment);
        self.claim(assignment);
        self.count(None, Some(assignment));
        self.running.insert(key.clone(), assignment.clone());
        let stop = self.shutdown.child_token();
        let removed = Arc::new(AtomicBool::new(false));
        self.stops
            .insert(key.clone(), (stop.clone(), removed.clone()));
        if assignment.entry.spec.ssh.is_some() {
            self.sessions.spawn(cli::run(
                assignment.entry.clone(),
                self.tx.clone(),
                self.reporter.clone(),
                self.cli.clone(),
                self.config.clone(),
                stop.clone(),
            ));
        }
        if assignment.entry.spec.gnmi.enabled {
            let session = session::run(
                assignment.entry.clone(),
                self.tx.clone(),
                self.reporter.clone(),
                self.connects.clone(),
                self.paths.clone(),
                self.config.clone(),
                stop,
            );
            let reporter = self.reporter.clone();
            self.sessions.spawn(async move {
                session.await;
                // Forgotten once the session has ended, so its last health update does
                // not bring the device back.
                if removed.load(Ordering::Relaxed) {
                    reporter.forget(&key);
                }
            });
        }
    }

    /// Stops the device's session. `removed`: the device is taken away (not restarted),
    /// so the session forgets it once it has ended.
    fn stop(&mut self, key: &DeviceKey, removed: bool) {
        if let Some((stop, gone)) = self.stops.remove(key) {
            gone.store(removed, Ordering::Relaxed);
            stop.cancel();
        }
        let had = self.running.remove(key);
        self.count(had.as_ref(), None);
        if removed {
            self.table.retire(key);
        }
    }

    /// Claims an owned, fenced device at its epoch.
    fn claim(&self, assignment: &membership::Assignment) {
        if assignment.role == membership::Role::Owner && assignment.epoch > 0 {
            // The claimer outlives the supervisor's sends; a closed channel only happens
            // at shutdown.
            let _ = self
                .claims
                .send((assignment.entry.name.clone(), assignment.epoch));
        }
    }

    fn count(&self, from: Option<&membership::Assignment>, to: Option<&membership::Assignment>) {
        let label = |role| metrics::RoleLabel {
            role: match role {
                membership::Role::Owner => "owner",
                membership::Role::Incoming => "incoming",
            },
        };
        if let Some(from) = from {
            self.metrics
                .assigned_devices
                .get_or_create(&label(from.role))
                .dec();
        }
        if let Some(to) = to {
            self.metrics
                .assigned_devices
                .get_or_create(&label(to.role))
                .inc();
        }
    }
}

/// Claims in flight at once.
const CLAIMS_IN_FLIGHT: usize = 8;
/// Attempts per claim before giving up (the next assignment change claims again).
const CLAIM_ATTEMPTS: u32 = 5;

/// Writes ownership claims to the store: the new epoch fences the previous owner's writes.
/// A refused claim (the store holds a newer epoch: this collector is already deposed) is
/// counted and logged; the device's next assignment change decides what happens to it.
async fn claim(
    rx: mpsc::UnboundedReceiver<(DeviceKey, u64)>,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    identity: Identity,
    metrics: Arc<CollectorMetrics>,
) {
    let owner = identity.name;
    let pool = identity.pool;
    use futures::StreamExt as _;
    let queued = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|claim| (claim, rx))
    });
    queued
        .for_each_concurrent(CLAIMS_IN_FLIGHT, |(device, epoch)| {
            let (store, owner, metrics) = (store.clone(), owner.clone(), metrics.clone());
            let (bus, pool) = (bus.clone(), pool.clone());
            async move {
                let mut delay = Duration::from_millis(200);
                for attempt in 1..=CLAIM_ATTEMPTS {
                    match store.claim(&device, &owner, epoch).await {
                        Ok(claim) if claim.granted => {
                            metrics.claims.inc();
                            tracing::debug!(%device, epoch, "Ownership claimed");
                            bus.publish(bus::BusMessage::Placement(bus::Placement {
                                pool,
                                device,
                                collector: owner,
                                epoch,
                                ts: session::now_ns(),
                            }));
                            return;
                        }
                        Ok(claim) => {
                            metrics.claims_refused.inc();
                            tracing::warn!(%device, epoch, held = claim.epoch, holder = ?claim.owner, "Ownership claim refused: the store holds a newer epoch");
                            return;
                        }
                        Err(error) if attempt < CLAIM_ATTEMPTS => {
                            tracing::warn!(%device, epoch, %error, retry_in = ?delay, "Ownership claim failed; retrying");
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                        Err(error) => {
                            tracing::error!(%device, epoch, %error, "Ownership claim failed; giving up until the next assignment");
                        }
                    }
                }
            }
        })
        .await;
}

/// Longest wait for one health write.
const HEALTH_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a collector publishes its health summary, and as whom.
struct Summaries {
    bus: Arc<dyn Bus>,
    metrics: Arc<CollectorMetrics>,
    collector: String,
    pool: String,
}

/// The name a collector's summaries carry: its pod name, else the host's name.
fn identity_label(identity: &Identity) -> String {
    if !identity.name.is_empty() {
        return identity.name.clone();
    }
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "collector".to_owned())
}

impl Summaries {
    /// Publishes how this collector's devices are doing on the fleet channel.
    fn publish(&self, book: &HealthBook, written_before: &mut u64) {
        let (mut devices, mut synced, mut degraded, mut unreachable) = (0u32, 0u32, 0u32, 0u32);
        for (_, h) in book.entries() {
            devices += 1;
            match h.state.as_str() {
                "synced" => synced += 1,
                "degraded" => degraded += 1,
                "unreachable" => unreachable += 1,
                _ => {}
            }
        }
        let written = self.metrics.samples_written.get();
        let delta = written.saturating_sub(*written_before);
        *written_before = written;
        self.bus
            .publish(bus::BusMessage::CollectorHealth(bus::CollectorHealth {
                collector: self.collector.clone(),
                pool: self.pool.clone(),
                devices,
                synced,
                degraded,
                unreachable,
                samples_written: delta,
                ts: session::now_ns(),
            }));
    }
}

/// Writes the health of devices that changed to the store every `every`, and once more when
/// `stop` is cancelled; publishes the collector's summary on the bus each tick. Never on
/// the sample path: one batch per tick.
async fn write_health(
    store: Arc<dyn Store>,
    book: HealthBook,
    every: Duration,
    stop: CancellationToken,
    summaries: Option<Summaries>,
) {
    let mut written_before = 0u64;
    let mut writer = health::HealthWriter::new(book.clone());
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, before any session has reported anything.
    tick.tick().await;
    loop {
        let last = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        // Bounded, so that an unreachable database does not hold up shutdown (or the next
        // tick) for the pool's acquire timeout.
        let write = writer.write(&*store, session::now_ns());
        match tokio::time::timeout(HEALTH_WRITE_TIMEOUT, write).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(devices = n, "Device health written"),
            Ok(Err(error)) => tracing::warn!(%error, "Could not write device health"),
            Err(_) => tracing::warn!("Could not write device health: the store did not answer"),
        }
        if let Some(s) = &summaries {
            s.publish(&book, &mut written_before);
        }
        if last {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use model::DeviceKey;

    use super::*;

    async fn reconnects(store: &dyn Store, device: &DeviceKey) -> Option<u64> {
        let summary = store.device(device).await.unwrap()?;
        summary.health?["reconnects"].as_u64()
    }

    #[tokio::test]
    async fn health_is_written_every_tick_and_once_at_the_end() {
        let store = store::open("sqlite::memory:", true).await.unwrap();
        let book = HealthBook::default();
        let device = DeviceKey::new("leaf1").unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(write_health(
            store.clone(),
            book.clone(),
            Duration::from_millis(100),
            stop.clone(),
            None,
        ));
        book.update(&device, |h| h.reconnects = 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while reconnects(&*store, &device).await != Some(1) {
            assert!(tokio::time::Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A change just before shutdown is not lost.
        book.update(&device, |h| h.reconnects = 2);
        stop.cancel();
        task.await.unwrap();
        assert_eq!(reconnects(&*store, &device).await, Some(2));
    }
}
