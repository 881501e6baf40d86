//! A collector on Kubernetes: which Devices it collects (a watch of the Devices labelled
//! with its pod name), where their credentials come from (Secrets, read through the API),
//! and how their state gets back to `kubectl get devices` (Device status, written
//! rate-limited by [`StatusWriter`]). ADR-0015.
//!
//! Two watches, one per label ([`OWNER_LABEL`] and [`NEXT_LABEL`] equal to the pod name):
//! label selectors cannot say "either label". Nothing is published before both initial
//! lists are complete, so a restarting collector never stops a device it owns because
//! the second list was not in yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::Device;
use crds::devices_file::DeviceEntry;
use crds::ownership::{NEXT_LABEL, NEXT_SYNCED_ANNOTATION, OWNER_LABEL, Ownership, synced_value};
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt as _, watcher as watch_objects};
use kube::{Resource as _, ResourceExt as _};
use model::{DeviceKey, DeviceState};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::membership::{Assignment, Desired, Role};
use crate::status::{SshHostKeyStatus, StateReport, StateSink};
use crate::transport::SecretSource;

/// Field manager of everything a collector writes to Devices.
pub const FIELD_MANAGER: &str = "netpulse-collector";

/// What this pod is to `device`, if anything: owner when the owner label names it,
/// incoming owner when the next-collector label does. Errors are plain words (a name
/// that is not a device key, a spec the collector refuses).
pub fn assignment_of(pod: &str, device: &Device) -> Option<Result<Assignment, String>> {
    let ownership = Ownership::of(device);
    let role = if ownership.owner.as_deref() == Some(pod) {
        Role::Owner
    } else if ownership.next.as_deref() == Some(pod) {
        Role::Incoming
    } else {
        return None;
    };
    let name = device.name_any();
    let entry = DeviceKey::new(name.clone())
        .map_err(|e| format!("Device {name}: the name is not usable as a device key: {e}"))
        .and_then(|key| {
            device
                .spec
                .validate()
                .map_err(|problems| {
                    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                    format!("Device {name}: spec refused: {}", list.join("; "))
                })
                .map(|()| DeviceEntry {
                    name: key,
                    spec: device.spec.clone(),
                })
        });
    Some(entry.map(|entry| Assignment {
        entry,
        epoch: ownership.epoch,
        role,
        generation: device.meta().generation,
    }))
}

/// The assignments of `pod` among `devices`, and the Devices refused (name, reason).
/// A Device both owned and incoming (not written by the operator) counts as owned.
pub fn desired_of<'a>(
    pod: &str,
    devices: impl IntoIterator<Item = &'a Device>,
) -> (Desired, Vec<(String, String)>) {
    let mut desired = Desired::new();
    let mut refused = Vec::new();
    for device in devices {
        match assignment_of(pod, device) {
            None => {}
            Some(Ok(a)) => {
                let keep = desired
                    .get(&a.entry.name)
                    .is_none_or(|have| have.role == Role::Incoming);
                if keep {
                    desired.insert(a.entry.name.clone(), a);
                }
            }
            Some(Err(reason)) => refused.push((device.name_any(), reason)),
        }
    }
    (desired, refused)
}

/// The objects one watch has listed, replaced whole at each (re)list.
#[derive(Debug, Default)]
pub struct Listed {
    /// Whether an initial list has completed.
    pub ready: bool,
    objects: BTreeMap<String, Device>,
    relisting: Option<BTreeMap<String, Device>>,
}

impl Listed {
    /// Applies one watch event; true when the listed objects changed.
    pub fn apply(&mut self, event: Event<Device>) -> bool {
        match event {
            Event::Apply(d) => {
                self.objects.insert(d.name_any(), d);
                true
            }
            Event::Delete(d) => self.objects.remove(&d.name_any()).is_some(),
            Event::Init => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            Event::InitApply(d) => {
                self.relisting
                    .get_or_insert_with(BTreeMap::new)
                    .insert(d.name_any(), d);
                false
            }
            Event::InitDone => {
                self.objects = self.relisting.take().unwrap_or_default();
                self.ready = true;
                true
            }
        }
    }

    /// The listed objects.
    pub fn objects(&self) -> impl Iterator<Item = &Device> {
        self.objects.values()
    }
}

/// Watches the Devices labelled with `pod` in `api`'s namespace and publishes this pod's
/// assignments on `tx` until `shutdown`. `ready` turns true once both initial lists are
/// in (the collector's readiness). Watch errors are logged and retried with backoff; the
/// last published assignments stay in force meanwhile.
pub async fn watch_assignments(
    api: Api<Device>,
    pod: String,
    tx: watch::Sender<Arc<Desired>>,
    sink: Option<Arc<dyn StateSink>>,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let stream = |label: &str| {
        let config = watcher::Config::default().labels(&format!("{label}={pod}"));
        watch_objects(api.clone(), config).default_backoff().boxed()
    };
    let owned = stream(OWNER_LABEL).map(|e| (Role::Owner, e));
    let incoming = stream(NEXT_LABEL).map(|e| (Role::Incoming, e));
    let mut events = futures::stream::select(owned, incoming);
    let mut lists = [Listed::default(), Listed::default()];
    let mut logged: HashSet<(String, String)> = HashSet::new();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = events.next() => next,
        };
        let Some((role, event)) = next else { return };
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, ?role, "Device watch failed; retrying with backoff");
                continue;
            }
        };
        let list = &mut lists[usize::from(role == Role::Incoming)];
        if !list.apply(event) || !lists.iter().all(|l| l.ready) {
            continue;
        }
        let (desired, refused) = desired_of(&pod, lists.iter().flat_map(Listed::objects));
        for (name, reason) in refused {
            if logged.insert((name.clone(), reason.clone())) {
                tracing::warn!(device = %name, %reason, "Device not collected");
                if let (Some(sink), Ok(device)) = (&sink, DeviceKey::new(name)) {
                    sink.report(StateReport {
                        device,
                        role: Role::Owner,
                        epoch: 0,
                        generation: None,
                        state: DeviceState::Unreachable,
                        error: Some(reason),
                        at: crate::session::now_ns(),
                    });
                }
            }
        }
        if logged.len() > 10_000 {
            logged.clear();
        }
        tx.send_if_modified(|have| {
            if **have == desired {
                false
            } else {
                *have = Arc::new(desired);
                true
            }
        });
        if !ready.swap(true, Ordering::Relaxed) {
            tracing::info!(devices = tx.borrow().len(), "Device watch synced");
        }
    }
}

/// Secrets read through the Kubernetes API (RBAC: `get secrets` in the namespace),
/// cached for `ttl` so a thousand devices sharing one Secret cost one read, and a rotated
/// password is picked up within `ttl`.
#[derive(Debug)]
pub struct ApiSecrets {
    api: Api<Secret>,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

type Cached = (Instant, Result<Arc<BTreeMap<String, ByteString>>, String>);

impl ApiSecrets {
    /// Secrets of `api`'s namespace, each cached for `ttl`.
    pub fn new(api: Api<Secret>, ttl: Duration) -> Self {
        Self {
            api,
            ttl,
            cache: Mutex::default(),
        }
    }

    async fn data(&self, secret: &str) -> Result<Arc<BTreeMap<String, ByteString>>, String> {
        let now = Instant::now();
        if let Some((at, data)) = self.lock().get(secret)
            && now.duration_since(*at) < self.ttl
        {
            return data.clone();
        }
        let read = match self.api.get(secret).await {
            Ok(s) => Ok(Arc::new(s.data.unwrap_or_default())),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                Err(format!("Secret {secret} does not exist"))
            }
            Err(kube::Error::Api(status)) if status.code == 403 => Err(format!(
                "the collector may not read Secret {secret} (its Role needs get on secrets)"
            )),
            // Transient: not cached, the next connection attempt asks again.
            Err(error) => return Err(format!("cannot read Secret {secret}: {error}")),
        };
        self.lock().insert(secret.to_owned(), (now, read.clone()));
        read
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl SecretSource for ApiSecrets {
    async fn read(&self, secret: &str, key: &str) -> Result<Vec<u8>, String> {
        let data = self.data(secret).await?;
        data.get(key)
            .map(|v| v.0.clone())
            .ok_or_else(|| format!("Secret {secret} has no key {key}"))
    }
}

/// Limits of the Device status writes of one collector.
#[derive(Debug, Clone, Copy)]
pub struct StatusLimits {
    /// Writes per second, on average, for all devices together.
    pub per_second: f64,
    /// Writes allowed in one burst.
    pub burst: u32,
    /// Shortest time between two writes of one device: a flapping device's changes in
    /// between are folded into one write of its latest state.
    pub per_device: Duration,
    /// Delay before a failed write is tried again.
    pub retry: Duration,
}

impl Default for StatusLimits {
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 50,
            per_device: Duration::from_secs(5),
            retry: Duration::from_secs(2),
        }
    }
}

/// The latest unsent report of each device, released by a token bucket and a per-device
/// interval; and each device's SSH host key, written with every report of the device
/// (a server-side apply that left it out would remove it). Pure: time comes in as
/// arguments.
#[derive(Debug)]
pub struct Coalescer {
    limits: StatusLimits,
    tokens: f64,
    refilled: Option<Instant>,
    pending: HashMap<DeviceKey, (Instant, StateReport)>,
    sent: HashMap<DeviceKey, Instant>,
    /// The latest report of each device, sent or not: written again when its host key
    /// changes.
    latest: HashMap<DeviceKey, StateReport>,
    host_keys: HashMap<DeviceKey, SshHostKeyStatus>,
}

impl Coalescer {
    /// An empty coalescer with a full bucket.
    pub fn new(limits: StatusLimits) -> Self {
        Self {
            limits,
            tokens: f64::from(limits.burst.max(1)),
            refilled: None,
            pending: HashMap::new(),
            sent: HashMap::new(),
            latest: HashMap::new(),
            host_keys: HashMap::new(),
        }
    }

    /// Queues `report`, replacing the device's unsent one (keeping its place).
    pub fn offer(&mut self, report: StateReport, now: Instant) {
        let due = self
            .sent
            .get(&report.device)
            .map_or(now, |at| (*at + self.limits.per_device).max(now));
        let due = self.pending.get(&report.device).map_or(due, |(d, _)| *d);
        self.latest.insert(report.device.clone(), report.clone());
        self.pending.insert(report.device.clone(), (due, report));
    }

    /// Records the host key of `device`; a changed key writes the device's latest
    /// report again (within the limits), so the status shows it without waiting for a
    /// state change.
    pub fn host_key(&mut self, device: &DeviceKey, key: SshHostKeyStatus, now: Instant) {
        if self.host_keys.get(device) == Some(&key) {
            return;
        }
        self.host_keys.insert(device.clone(), key);
        if let Some(report) = self.latest.get(device).cloned() {
            self.offer(report, now);
        }
    }

    /// The host key last recorded for `device`.
    pub fn host_key_of(&self, device: &DeviceKey) -> Option<&SshHostKeyStatus> {
        self.host_keys.get(device)
    }

    /// Drops what is queued for `device`, its write history and its host key.
    pub fn forget(&mut self, device: &DeviceKey) {
        self.pending.remove(device);
        self.sent.remove(device);
        self.latest.remove(device);
        self.host_keys.remove(device);
    }

    /// Requeues a report whose write failed, unless a newer one is already queued.
    pub fn retry(&mut self, report: StateReport, now: Instant) {
        if !self.pending.contains_key(&report.device) {
            let due = now + self.limits.retry;
            self.pending.insert(report.device.clone(), (due, report));
        }
    }

    /// Reports due now, as many as the bucket allows, oldest due first.
    pub fn take(&mut self, now: Instant) -> Vec<StateReport> {
        self.refill(now);
        let mut due: Vec<(Instant, DeviceKey)> = self
            .pending
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(k, (at, _))| (*at, k.clone()))
            .collect();
        due.sort();
        let mut out = Vec::new();
        for (_, device) in due {
            if self.tokens < 1.0 {
                break;
            }
            self.tokens -= 1.0;
            if let Some((_, report)) = self.pending.remove(&device) {
                self.sent.insert(device, now);
                out.push(report);
            }
        }
        out
    }

    /// When [`Coalescer::take`] can next return something, if anything is queued.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let earliest = self.pending.values().map(|(at, _)| *at).min()?;
        let token_at = if self.tokens >= 1.0 {
            now
        } else {
            let wait = (1.0 - self.tokens) / self.limits.per_second.max(0.001);
            now + Duration::from_secs_f64(wait)
        };
        Some(earliest.max(token_at))
    }

    /// Reports queued.
    pub fn queued(&self) -> usize {
        self.pending.len()
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.refilled {
            let add = now.duration_since(last).as_secs_f64() * self.limits.per_second;
            self.tokens = (self.tokens + add).min(f64::from(self.limits.burst.max(1)));
        }
        self.refilled = Some(now);
    }
}

/// Conditions last written for one device, for their transition times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    connected: (bool, i64),
    synced: (bool, i64),
}

/// What one report writes: the owner's status, or the incoming owner's synced
/// annotation. `None` when an incoming owner's report has nothing to say.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Server-side apply of the status subresource.
    Status(serde_json::Value),
    /// Server-side apply of the Device's metadata.
    Synced(serde_json::Value),
}

/// The write for `report` by `pod`, with the device's SSH host key if it has one;
/// `previous` holds the conditions last written, for their transition times, and is
/// updated.
fn write_of(
    pod: &str,
    report: &StateReport,
    host_key: Option<&SshHostKeyStatus>,
    previous: &mut HashMap<DeviceKey, Written>,
) -> Option<Write> {
    let name = report.device.as_str();
    let connected = matches!(report.state, DeviceState::Synced | DeviceState::Degraded);
    let synced = report.state == DeviceState::Synced;
    if report.role == Role::Incoming {
        return connected.then(|| {
            Write::Synced(json!({
                "apiVersion": "netpulse.io/v1alpha1",
                "kind": "Device",
                "metadata": {
                    "name": name,
                    "annotations": { NEXT_SYNCED_ANNOTATION: synced_value(pod, report.epoch) },
                },
            }))
        });
    }
    let phase = match report.state {
        DeviceState::Pending | DeviceState::Connecting => "Assigned",
        DeviceState::Synced => "Connected",
        DeviceState::Degraded => "Degraded",
        DeviceState::Unreachable => "Unreachable",
    };
    let before = previous.get(&report.device).copied();
    let since = |now: bool, before: Option<(bool, i64)>| match before {
        Some((was, at)) if was == now => at,
        _ => report.at,
    };
    let written = Written {
        connected: (connected, since(connected, before.map(|w| w.connected))),
        synced: (synced, since(synced, before.map(|w| w.synced))),
    };
    previous.insert(report.device.clone(), written);
    let time = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let message = report.error.clone().unwrap_or_default();
    let condition = |kind: &str, (ok, at): (bool, i64), reason: &str| {
        let mut c = json!({
            "type": kind,
            "status": if ok { "True" } else { "False" },
            "reason": reason,
            "message": message,
            "lastTransitionTime": time(at),
        });
        if let Some(generation) = report.generation {
            c["observedGeneration"] = json!(generation);
        }
        c
    };
    let state_reason = match report.state {
        DeviceState::Pending => "Pending",
        DeviceState::Connecting => "Connecting",
        DeviceState::Synced => "Synced",
        DeviceState::Degraded => "Degraded",
        DeviceState::Unreachable => "Unreachable",
    };
    let mut status = json!({
        "collector": pod,
        "epoch": report.epoch,
        "phase": phase,
        "conditions": [
            condition("Connected", written.connected, state_reason),
            condition("Synced", written.synced, state_reason),
        ],
    });
    if let Some(error) = &report.error {
        status["lastError"] = json!(error);
    }
    if let Some(generation) = report.generation {
        status["observedGeneration"] = json!(generation);
    }
    if let Some(key) = host_key {
        status["sshHostKey"] = json!(key);
    }
    Some(Write::Status(json!({
        "apiVersion": "netpulse.io/v1alpha1",
        "kind": "Device",
        "metadata": { "name": name },
        "status": status,
    })))
}

/// Writes owned Devices' state to their status and incoming owners' synced reports to
/// their metadata, under [`FIELD_MANAGER`], within [`StatusLimits`]. A [`StateSink`]:
/// sessions hand it reports without waiting; [`StatusWriter::run`] writes them.
#[derive(Debug)]
pub struct StatusWriter {
    queue: Mutex<Coalescer>,
    wake: Notify,
}

/// Writes in flight at once.
const STATUS_WRITES_IN_FLIGHT: usize = 8;

impl StatusWriter {
    /// A writer with these limits.
    pub fn new(limits: StatusLimits) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(Coalescer::new(limits)),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Coalescer> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes queued reports to `api` as pod `pod` until `shutdown`.
    pub async fn run(self: Arc<Self>, api: Api<Device>, pod: String, shutdown: CancellationToken) {
        let mut previous: HashMap<DeviceKey, Written> = HashMap::new();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        loop {
            let now = Instant::now();
            let (batch, wake_at) = {
                let mut queue = self.lock();
                let batch: Vec<(StateReport, Option<SshHostKeyStatus>)> = queue
                    .take(now)
                    .into_iter()
                    .map(|r| {
                        let key = queue.host_key_of(&r.device).cloned();
                        (r, key)
                    })
                    .collect();
                (batch, queue.next_wake(now))
            };
            let writes: Vec<(StateReport, Write)> = batch
                .into_iter()
                .filter_map(|(r, key)| {
                    write_of(&pod, &r, key.as_ref(), &mut previous).map(|w| (r, w))
                })
                .collect();
            let results: Vec<(StateReport, Result<(), kube::Error>)> =
                futures::stream::iter(writes)
                    .map(|(report, write)| {
                        let (api, params) = (api.clone(), params.clone());
                        async move {
                            let name = report.device.as_str();
                            let result = match write {
                                Write::Status(body) => {
                                    api.patch_status(name, &params, &Patch::Apply(body)).await
                                }
                                Write::Synced(body) => {
                                    api.patch(name, &params, &Patch::Apply(body)).await
                                }
                            };
                            (report, result.map(drop))
                        }
                    })
                    .buffer_unordered(STATUS_WRITES_IN_FLIGHT)
                    .collect()
                    .await;
            for (report, result) in results {
                match result {
                    Ok(()) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        previous.remove(&report.device);
                    }
                    Err(error) => {
                        tracing::warn!(device = %report.device, %error, "Could not write Device status; retrying");
                        previous.remove(&report.device);
                        self.lock().retry(report, Instant::now());
                    }
                }
            }
            let sleep = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = sleep => {}
            }
        }
    }
}

impl StateSink for StatusWriter {
    fn report(&self, report: StateReport) {
        self.lock().offer(report, Instant::now());
        self.wake.notify_one();
    }

    fn forget(&self, device: &DeviceKey) {
        self.lock().forget(device);
    }

    fn host_key(&self, device: &DeviceKey, key: SshHostKeyStatus) {
        self.lock().host_key(device, key, Instant::now());
        self.wake.notify_one();
    }
}

/// A running Kubernetes device source: what [`crate::run_assigned`] and the ops
/// endpoints need.
#[derive(Debug)]
pub struct Source {
    /// This pod's assignments, as the watch sees them.
    pub assignments: crate::membership::Assignments,
    /// The Device status writer (the collector's state sink).
    pub status: Arc<StatusWriter>,
    /// Secrets read through the API.
    pub secrets: Arc<ApiSecrets>,
    /// Whether both initial lists are in.
    pub ready: Arc<AtomicBool>,
    /// The namespace watched.
    pub namespace: String,
}

/// How long a Secret read through the API is reused.
pub const SECRET_TTL: Duration = Duration::from_secs(30);

/// Connects to the API server (in-cluster service account, or the kubeconfig), then
/// starts the Device watch of pod `pod` and the status writer in `namespace` (default:
/// the client's), until `shutdown`.
pub async fn start(
    pod: String,
    namespace: Option<String>,
    limits: StatusLimits,
    shutdown: CancellationToken,
) -> Result<Source, kube::Error> {
    let client = kube::Client::try_default().await?;
    let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
    let devices: Api<Device> = Api::namespaced(client.clone(), &namespace);
    let (tx, assignments) = watch::channel(Arc::new(Desired::new()));
    let status = StatusWriter::new(limits);
    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(
        status
            .clone()
            .run(devices.clone(), pod.clone(), shutdown.clone()),
    );
    let sink: Arc<dyn StateSink> = status.clone();
    tokio::spawn(watch_assignments(
        devices,
        pod,
        tx,
        Some(sink),
        ready.clone(),
        shutdown,
    ));
    let secrets = Arc::new(ApiSecrets::new(
        Api::namespaced(client, &namespace),
        SECRET_TTL,
    ));
    Ok(Source {
        assignments,
        status,
        secrets,
        ready,
        namespace,
    })
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::Client;
    use kube::client::Body;

    use super::*;

    const POD: &str = "pool-collector-0";

    fn device(name: &str, labels: &[(&str, &str)], epoch: Option<&str>) -> Device {
        let mut spec = crds::DeviceSpec::new("192.0.2.10");
        spec.gnmi.insecure = true;
        let mut d = Device::new(name, spec);
        d.metadata.namespace = Some("network".into());
        d.metadata.generation = Some(3);
        for (k, v) in labels {
            d.labels_mut().insert((*k).into(), (*v).into());
        }
        if let Some(e) = epoch {
            d.annotations_mut()
                .insert(crds::ownership::EPOCH_ANNOTATION.into(), e.into());
        }
        d
    }

    fn key(name: &str) -> DeviceKey {
        DeviceKey::new(name).unwrap()
    }

    #[test]
    fn assignments_follow_the_labels_and_refuse_bad_specs_by_name() {
        let mut bad = device("bad", &[(OWNER_LABEL, POD)], Some("1"));
        bad.spec.gnmi.port = 0;
        let devices = [
            device("owned", &[(OWNER_LABEL, POD)], Some("4")),
            device(
                "incoming",
                &[(OWNER_LABEL, "other"), (NEXT_LABEL, POD)],
                Some("2"),
            ),
            device("elsewhere", &[(OWNER_LABEL, "other")], Some("9")),
            bad,
        ];
        let (desired, refused) = desired_of(POD, &devices);
        assert_eq!(desired.len(), 2);
        let owned = &desired[&key("owned")];
        assert_eq!(
            (owned.role, owned.epoch, owned.generation),
            (Role::Owner, 4, Some(3))
        );
        let incoming = &desired[&key("incoming")];
        assert_eq!((incoming.role, incoming.epoch), (Role::Incoming, 2));
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "bad");
        assert!(
            refused[0].1.contains("spec refused") && refused[0].1.contains("port"),
            "{}",
            refused[0].1
        );
        // Listed by both watches (owner wins), whichever comes first.
        let both = device("both", &[(OWNER_LABEL, POD), (NEXT_LABEL, POD)], Some("5"));
        let (desired, _) = desired_of(POD, [&both, &both]);
        assert_eq!(desired[&key("both")].role, Role::Owner);
    }

    #[test]
    fn a_relist_replaces_what_was_listed() {
        let mut list = Listed::default();
        assert!(!list.apply(Event::Init));
        assert!(!list.apply(Event::InitApply(device("a", &[], None))));
        assert!(!list.ready);
        assert!(list.apply(Event::InitDone));
        assert!(list.ready);
        assert!(list.apply(Event::Apply(device("b", &[], None))));
        assert!(list.apply(Event::Delete(device("a", &[], None))));
        assert!(!list.apply(Event::Delete(device("a", &[], None))));
        // The watch restarted: "b" was deleted meanwhile, "c" created.
        list.apply(Event::Init);
        list.apply(Event::InitApply(device("c", &[], None)));
        let names: Vec<String> = list.objects().map(|d| d.name_any()).collect();
        assert_eq!(names, ["b"], "kept until the relist completes");
        list.apply(Event::InitDone);
        let names: Vec<String> = list.objects().map(|d| d.name_any()).collect();
        assert_eq!(names, ["c"]);
    }

    fn report(device: &str, state: DeviceState, role: Role, at: i64) -> StateReport {
        StateReport {
            device: key(device),
            role,
            epoch: 4,
            generation: Some(3),
            state,
            error: None,
            at,
        }
    }

    #[test]
    fn the_coalescer_folds_a_flapping_device_and_caps_the_rate() {
        let limits = StatusLimits {
            per_second: 2.0,
            burst: 3,
            per_device: Duration::from_secs(5),
            retry: Duration::from_secs(1),
        };
        let mut c = Coalescer::new(limits);
        let t0 = Instant::now();
        // A device's first report goes at once.
        c.offer(report("a", DeviceState::Connecting, Role::Owner, 0), t0);
        assert_eq!(c.take(t0).len(), 1);
        // It flaps: three changes within its interval become one write of the latest,
        // five seconds after the first.
        for state in [
            DeviceState::Synced,
            DeviceState::Unreachable,
            DeviceState::Synced,
        ] {
            c.offer(
                report("a", state, Role::Owner, 1),
                t0 + Duration::from_secs(1),
            );
        }
        assert!(c.take(t0 + Duration::from_secs(2)).is_empty());
        assert_eq!(
            c.next_wake(t0 + Duration::from_secs(2)),
            Some(t0 + Duration::from_secs(5))
        );
        let sent = c.take(t0 + Duration::from_secs(5));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].state, DeviceState::Synced);
        // A fleet changing at once: the bucket (3, refilled at 2/s) lets a burst through,
        // then two a second.
        let t1 = t0 + Duration::from_secs(10);
        for i in 0..10 {
            c.offer(
                report(&format!("d{i}"), DeviceState::Synced, Role::Owner, 2),
                t1,
            );
        }
        assert_eq!(c.take(t1).len(), 3);
        assert_eq!(c.take(t1 + Duration::from_secs(1)).len(), 2);
        assert_eq!(c.queued(), 5);
        assert!(c.next_wake(t1 + Duration::from_secs(1)).unwrap() > t1 + Duration::from_secs(1));
        // Forgotten devices are not written; a failed write comes back after `retry`
        // unless a newer report took its place.
        c.forget(&key("d9"));
        assert_eq!(c.queued(), 4);
        let failed = report("x", DeviceState::Synced, Role::Owner, 3);
        c.retry(failed.clone(), t1);
        assert!(
            !c.take(t1 + Duration::from_millis(500))
                .iter()
                .any(|r| r.device == failed.device)
        );
        // Due after the four devices still queued since t1: the second refill takes it.
        let later: Vec<StateReport> = [10, 20]
            .iter()
            .flat_map(|s| c.take(t1 + Duration::from_secs(*s)))
            .collect();
        assert!(later.iter().any(|r| r.device == failed.device));
    }

    #[test]
    fn owners_write_status_and_incoming_owners_say_when_they_are_synced() {
        let mut previous = HashMap::new();
        let s = |r: &StateReport, p: &mut HashMap<DeviceKey, Written>| match write_of(
            POD, r, None, p,
        ) {
            Some(Write::Status(body)) => body,
            other => panic!("{other:?}"),
        };
        let connecting = s(
            &report(
                "a",
                DeviceState::Connecting,
                Role::Owner,
                1_000_000_000_000_000_000,
            ),
            &mut previous,
        );
        assert_eq!(connecting["status"]["phase"], "Assigned");
        assert_eq!(connecting["status"]["collector"], POD);
        assert_eq!(connecting["status"]["epoch"], 4);
        assert_eq!(connecting["status"]["observedGeneration"], 3);
        assert_eq!(connecting["status"]["conditions"][0]["type"], "Connected");
        assert_eq!(connecting["status"]["conditions"][0]["status"], "False");
        assert_eq!(
            connecting["status"]["conditions"][0]["lastTransitionTime"],
            "2001-09-09T01:46:40Z"
        );
        let synced = s(
            &report(
                "a",
                DeviceState::Synced,
                Role::Owner,
                1_000_000_060_000_000_000,
            ),
            &mut previous,
        );
        assert_eq!(synced["status"]["phase"], "Connected");
        assert_eq!(synced["status"]["conditions"][1]["status"], "True");
        assert_eq!(
            synced["status"]["conditions"][1]["lastTransitionTime"],
            "2001-09-09T01:47:40Z"
        );
        assert!(synced["status"].get("lastError").is_none());
        // The body is a Device status the CRD's types read back (conditions with every
        // field metav1.Condition requires).
        let status: crds::DeviceStatus = serde_json::from_value(synced["status"].clone()).unwrap();
        assert_eq!(status.phase, Some(crds::DevicePhase::Connected));
        assert_eq!(status.collector.as_deref(), Some(POD));
        assert_eq!(status.conditions.len(), 2);
        // Degraded: still connected since the same time; Synced turns False now.
        let mut degraded = report(
            "a",
            DeviceState::Degraded,
            Role::Owner,
            1_000_000_120_000_000_000,
        );
        degraded.error = Some("12% of samples missing".into());
        let degraded = s(&degraded, &mut previous);
        assert_eq!(degraded["status"]["phase"], "Degraded");
        assert_eq!(degraded["status"]["lastError"], "12% of samples missing");
        assert_eq!(
            degraded["status"]["conditions"][0]["lastTransitionTime"],
            "2001-09-09T01:47:40Z"
        );
        assert_eq!(
            degraded["status"]["conditions"][1]["lastTransitionTime"],
            "2001-09-09T01:48:40Z"
        );
        // The incoming owner writes nothing until it is synced, then its annotation.
        assert_eq!(
            write_of(
                POD,
                &report("b", DeviceState::Connecting, Role::Incoming, 1),
                None,
                &mut previous
            ),
            None
        );
        let Some(Write::Synced(body)) = write_of(
            POD,
            &report("b", DeviceState::Synced, Role::Incoming, 2),
            None,
            &mut previous,
        ) else {
            panic!("no synced annotation");
        };
        assert_eq!(
            body["metadata"]["annotations"][NEXT_SYNCED_ANNOTATION],
            format!("{POD}@4")
        );
        assert!(body.get("status").is_none() && body.get("spec").is_none());
    }

    /// Answers `n` requests with `answer(method, uri, body)`, returning what was asked.
    async fn serve(
        mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
        n: usize,
        answer: impl Fn(&str, &str, &serde_json::Value) -> (u16, serde_json::Value),
    ) -> Vec<(String, String, String, serde_json::Value)> {
        let mut seen = Vec::new();
        for _ in 0..n {
            let (request, send) = handle.next_request().await.expect("request");
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let content_type = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let bytes = request.into_body().collect_bytes().await.expect("body");
            let body: serde_json::Value = if bytes.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("json body")
            };
            let (status, reply) = answer(&method, &uri, &body);
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
            seen.push((method, uri, content_type, body));
        }
        seen
    }

    fn not_found(what: &str) -> (u16, serde_json::Value) {
        (
            404,
            json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": format!("{what} not found"),
            }),
        )
    }

    #[tokio::test]
    async fn status_and_synced_reports_are_server_side_applies_by_the_collector() {
        let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock, "network");
        let api: Api<Device> = Api::namespaced(client, "network");
        let writer = StatusWriter::new(StatusLimits::default());
        let stop = CancellationToken::new();
        writer.report(report("leaf1", DeviceState::Synced, Role::Owner, 1));
        writer.report(report("leaf2", DeviceState::Synced, Role::Incoming, 1));
        writer.report(report("gone", DeviceState::Unreachable, Role::Owner, 1));
        let task = tokio::spawn(writer.clone().run(api, POD.into(), stop.clone()));
        let mut seen = serve(handle, 3, |_, uri, body| {
            if uri.contains("/gone/") {
                not_found("devices \"gone\"")
            } else {
                let mut d = body.clone();
                d["spec"] = json!({ "address": "192.0.2.1" });
                (200, d)
            }
        })
        .await;
        stop.cancel();
        task.await.unwrap();
        seen.sort_by(|a, b| a.1.cmp(&b.1));
        let base = "/apis/netpulse.io/v1alpha1/namespaces/network/devices";
        let query = "?&force=true&fieldManager=netpulse-collector";
        assert_eq!(seen[0].1, format!("{base}/gone/status{query}"));
        assert_eq!(seen[1].1, format!("{base}/leaf1/status{query}"));
        assert_eq!(seen[2].1, format!("{base}/leaf2{query}"));
        for (method, _, content_type, _) in &seen {
            assert_eq!(
                (method.as_str(), content_type.as_str()),
                ("PATCH", "application/apply-patch+yaml")
            );
        }
        assert_eq!(seen[1].3["status"]["phase"], "Connected");
        assert_eq!(
            seen[2].3["metadata"]["annotations"][NEXT_SYNCED_ANNOTATION],
            format!("{POD}@4")
        );
        // A 404 (the Device was deleted) is not retried.
        assert_eq!(writer.lock().queued(), 0);
    }

    fn host_key(fingerprint: &str) -> SshHostKeyStatus {
        SshHostKeyStatus {
            algorithm: "ssh-ed25519".into(),
            fingerprint: fingerprint.into(),
            learned_at: "2026-11-28T17:00:00Z".into(),
        }
    }

    #[test]
    fn a_new_host_key_writes_the_latest_report_again_and_forget_drops_it() {
        let mut c = Coalescer::new(StatusLimits::default());
        let t0 = Instant::now();
        // Known before any report: kept for the first write, nothing to write yet.
        c.host_key(&key("a"), host_key("SHA256:one"), t0);
        assert_eq!(c.queued(), 0);
        c.offer(report("a", DeviceState::Synced, Role::Owner, 1), t0);
        assert_eq!(c.take(t0).len(), 1);
        assert_eq!(c.host_key_of(&key("a")), Some(&host_key("SHA256:one")));
        // The same key again (every connection reports it): no write.
        c.host_key(&key("a"), host_key("SHA256:one"), t0);
        assert_eq!(c.queued(), 0);
        // Another key: the latest report goes again, after the device's interval.
        c.host_key(&key("a"), host_key("SHA256:two"), t0);
        assert_eq!(c.queued(), 1);
        let later = t0 + StatusLimits::default().per_device;
        let again = c.take(later);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].state, DeviceState::Synced);
        c.forget(&key("a"));
        assert_eq!(c.host_key_of(&key("a")), None);
        c.host_key(&key("a"), host_key("SHA256:three"), later);
        assert_eq!(c.queued(), 0, "a forgotten device has no report to write");
    }

    #[tokio::test]
    async fn the_host_key_is_in_every_status_write_and_a_refused_one_in_last_error() {
        let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock, "network");
        let api: Api<Device> = Api::namespaced(client, "network");
        let writer = StatusWriter::new(StatusLimits {
            per_device: Duration::ZERO,
            ..StatusLimits::default()
        });
        let stop = CancellationToken::new();
        let learned = host_key("SHA256:learned");
        writer.host_key(&key("leaf1"), learned.clone());
        writer.report(report("leaf1", DeviceState::Synced, Role::Owner, 1));
        let task = tokio::spawn(writer.clone().run(api, POD.into(), stop.clone()));
        let serving = tokio::spawn(serve(handle, 2, |_, _, body| {
            let mut d = body.clone();
            d["spec"] = json!({ "address": "192.0.2.1" });
            (200, d)
        }));
        // The first write is out before the refusal is reported.
        while writer.lock().queued() > 0 {
            tokio::task::yield_now().await;
        }
        let mut refused = report("leaf1", DeviceState::Unreachable, Role::Owner, 2);
        refused.error = Some(
            "host key mismatch for leaf1: expected SHA256:learned, device presented SHA256:other"
                .into(),
        );
        writer.report(refused);
        let seen = serving.await.unwrap();
        stop.cancel();
        task.await.unwrap();
        for (_, uri, _, body) in &seen {
            assert!(uri.contains("/leaf1/status"), "{uri}");
            assert_eq!(
                body["status"]["sshHostKey"],
                json!({
                    "algorithm": "ssh-ed25519",
                    "fingerprint": "SHA256:learned",
                    "learnedAt": "2026-11-28T17:00:00Z",
                })
            );
            // The CRD's types read it back.
            let status: crds::DeviceStatus =
                serde_json::from_value(body["status"].clone()).unwrap();
            assert_eq!(status.ssh_host_key, Some(learned.clone()));
        }
        assert_eq!(seen[0].3["status"]["phase"], "Connected");
        assert_eq!(seen[1].3["status"]["phase"], "Unreachable");
        let error = seen[1].3["status"]["lastError"].as_str().unwrap();
        assert!(
            error.contains("SHA256:learned") && error.contains("SHA256:other"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn secrets_are_read_once_per_ttl_and_missing_ones_are_named() {
        let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock, "network");
        let secrets = ApiSecrets::new(Api::namespaced(client, "network"), Duration::from_secs(60));
        let server = tokio::spawn(serve(handle, 2, |_, uri, _| {
            if uri.ends_with("/leaf-creds") {
                (
                    200,
                    json!({
                        "apiVersion": "v1", "kind": "Secret",
                        "metadata": { "name": "leaf-creds", "namespace": "network" },
                        // base64 of "admin" and "s3cret\n"
                        "data": { "username": "YWRtaW4=", "password": "czNjcmV0Cg==" },
                    }),
                )
            } else {
                not_found("secrets \"nope\"")
            }
        }));
        assert_eq!(
            secrets.read("leaf-creds", "username").await.unwrap(),
            b"admin"
        );
        // Cached: no second request for the same Secret.
        assert_eq!(
            secrets.read("leaf-creds", "password").await.unwrap(),
            b"s3cret\n"
        );
        let error = secrets.read("leaf-creds", "token").await.unwrap_err();
        assert_eq!(error, "Secret leaf-creds has no key token");
        let error = secrets.read("nope", "username").await.unwrap_err();
        assert_eq!(error, "Secret nope does not exist");
        let seen = server.await.unwrap();
        assert_eq!(
            seen.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
            [
                "/api/v1/namespaces/network/secrets/leaf-creds",
                "/api/v1/namespaces/network/secrets/nope"
            ]
        );
    }

    #[tokio::test]
    async fn the_watch_selects_this_pods_labels_and_publishes_once_both_lists_are_in() {
        let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock, "network");
        let api: Api<Device> = Api::namespaced(client, "network");
        let (tx, mut rx) = watch::channel(Arc::new(Desired::new()));
        let ready = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch_assignments(
            api,
            POD.into(),
            tx,
            None,
            ready.clone(),
            stop.clone(),
        ));
        let mut lists = Vec::new();
        let mut pending_watches = Vec::new();
        // Two LISTs (one per label); then the watches, left unanswered.
        while lists.len() < 2 {
            let (request, send) = handle.next_request().await.expect("request");
            let uri = request.uri().to_string();
            if !uri.contains("watch=true") {
                let owned = uri.contains(&format!("labelSelector=netpulse.io%2Fcollector%3D{POD}"));
                let items = if owned {
                    vec![device("leaf1", &[(OWNER_LABEL, POD)], Some("2"))]
                } else {
                    vec![device(
                        "leaf2",
                        &[(OWNER_LABEL, "c-9"), (NEXT_LABEL, POD)],
                        Some("6"),
                    )]
                };
                let list = json!({
                    "apiVersion": "netpulse.io/v1alpha1", "kind": "DeviceList",
                    "metadata": { "resourceVersion": "10" }, "items": items,
                });
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(serde_json::to_vec(&list).unwrap()))
                        .unwrap(),
                );
                if lists.is_empty() {
                    // One list in: nothing is published yet.
                    tokio::task::yield_now().await;
                    assert!(!ready.load(Ordering::Relaxed));
                }
                lists.push(uri);
            } else {
                pending_watches.push(send);
            }
        }
        rx.changed().await.unwrap();
        let desired = rx.borrow_and_update().clone();
        assert_eq!(desired.len(), 2);
        assert_eq!(desired[&key("leaf1")].role, Role::Owner);
        assert_eq!(
            (desired[&key("leaf2")].role, desired[&key("leaf2")].epoch),
            (Role::Incoming, 6)
        );
        assert!(ready.load(Ordering::Relaxed));
        lists.sort();
        assert!(
            lists[0].starts_with("/apis/netpulse.io/v1alpha1/namespaces/network/devices?"),
            "{}",
            lists[0]
        );
        assert!(
            lists.iter().any(
                |u| u.contains("labelSelector=netpulse.io%2Fnext-collector%3Dpool-collector-0")
            ),
            "{lists:?}"
        );
        stop.cancel();
        task.await.unwrap();
        drop(pending_watches);
    }
}
