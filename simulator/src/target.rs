//! The gNMI target of one virtual device: Capabilities, Get, Set and Subscribe.
//!
//! Each Subscribe RPC is served by one task that owns its timers; all subscriptions of a
//! list that fall due together are answered with one set of notifications. Values are
//! computed when sent, from the time since the fleet started.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::gnmi::{
    self, Encoding, SubscribeRequest, SubscribeResponse, SubscriptionMode, g_nmi_server::GNmi,
    get_request::DataType, subscribe_request::Request as Inbound,
    subscribe_response::Response as Outbound, subscription_list::Mode,
};
use proto::gnmi_ext::{self, extension::Ext};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use crate::device::{Device, Leaf, Raw, Selection, wire_elem};
use crate::misbehaviour::Misbehaviour;

/// gNMI version reported by Capabilities: the version of the `.proto` files served.
pub(crate) const GNMI_VERSION: &str = "0.10.0";
/// Sample interval used when a subscription asks for 0 ("target's choice").
pub(crate) const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest sample or heartbeat interval served; shorter requests are raised to it.
pub(crate) const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Responses buffered per Subscribe stream before the task waits for the client.
const CHANNEL_CAPACITY: usize = 64;
/// Encodings the simulator produces, as advertised by Capabilities.
const ENCODINGS: [Encoding; 3] = [Encoding::Json, Encoding::JsonIetf, Encoding::Proto];
/// Encodings of a device that misbehaves with `json-ietf-only`.
const JSON_IETF_ONLY: [Encoding; 1] = [Encoding::JsonIetf];
/// Schema models advertised by Capabilities: (name, organization, version).
const MODELS: [(&str, &str, &str); 6] = [
    ("openconfig-interfaces", "OpenConfig working group", "3.7.1"),
    ("openconfig-lldp", "OpenConfig working group", "0.2.1"),
    ("openconfig-platform", "OpenConfig working group", "0.24.0"),
    ("openconfig-system", "OpenConfig working group", "2.1.0"),
    ("openconfig-types", "OpenConfig working group", "1.0.0"),
    ("openconfig-yang-types", "OpenConfig working group", "1.0.0"),
];
/// Metadata key of the username, as gNMI clients send it.
pub const USERNAME_KEY: &str = "username";
/// Metadata key of the password.
pub const PASSWORD_KEY: &str = "password";

type Outgoing = Result<SubscribeResponse, Status>;

/// How a device treats its clients: credentials it demands and how it misbehaves.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    pub misbehaviour: Misbehaviour,
    /// Username and password every RPC must carry as metadata, when set.
    pub credentials: Option<(String, String)>,
    /// Whether the one oversize notification was sent already.
    oversize_sent: AtomicBool,
    /// Sample notifications dropped by `drop-when-behind` (shared by the fleet).
    pub(crate) dropped: Arc<AtomicU64>,
}

impl Policy {
    pub(crate) fn new(
        misbehaviour: Misbehaviour,
        credentials: Option<(String, String)>,
        dropped: Arc<AtomicU64>,
    ) -> Self {
        Self {
            misbehaviour,
            credentials,
            oversize_sent: AtomicBool::new(false),
            dropped,
        }
    }

    /// UNAUTHENTICATED unless `metadata` carries the expected credentials.
    fn authenticate(&self, metadata: &MetadataMap, device: &str) -> Result<(), Status> {
        let Some((username, password)) = &self.credentials else {
            return Ok(());
        };
        let get = |key| metadata.get(key).and_then(|v| v.to_str().ok());
        match (get(USERNAME_KEY), get(PASSWORD_KEY)) {
            (Some(u), Some(p)) if u == username && p == password => Ok(()),
            (None, _) | (_, None) => Err(Status::unauthenticated(format!(
                "{device} requires credentials: send `{USERNAME_KEY}` and `{PASSWORD_KEY}` metadata"
            ))),
            _ => Err(Status::unauthenticated(format!(
                "{device} rejected the username or password"
            ))),
        }
    }

    fn encodings(&self) -> &'static [Encoding] {
        if self.misbehaviour.json_ietf_only {
            &JSON_IETF_ONLY
        } else {
            &ENCODINGS
        }
    }

    /// The requested encoding if the device produces it.
    fn encoding(&self, value: i32) -> Result<Encoding, Status> {
        encoding(value, self.encodings())
    }

    /// The oversize notification's size, the first time it is asked for.
    fn take_oversize(&self) -> Option<usize> {
        let size = self.misbehaviour.oversize?;
        (!self.oversize_sent.swap(true, Ordering::Relaxed)).then_some(size)
    }
}

/// The gNMI service of one device.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    device: Arc<Device>,
    policy: Arc<Policy>,
    /// When the fleet started: time zero of every counter.
    epoch: Instant,
    /// Becomes `true` (or is dropped) when the fleet stops; ends every open stream.
    shutdown: watch::Receiver<bool>,
}

impl Target {
    pub(crate) fn new(
        device: Arc<Device>,
        policy: Arc<Policy>,
        epoch: Instant,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            device,
            policy,
            epoch,
            shutdown,
        }
    }

    fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.policy
            .authenticate(request.metadata(), &self.device.name)
    }
}

#[tonic::async_trait]
impl GNmi for Target {
    async fn capabilities(
        &self,
        request: Request<gnmi::CapabilityRequest>,
    ) -> Result<Response<gnmi::CapabilityResponse>, Status> {
        self.authenticate(&request)?;
        Ok(Response::new(gnmi::CapabilityResponse {
            supported_models: MODELS
                .iter()
                .map(|(name, organization, version)| gnmi::ModelData {
                    name: (*name).to_owned(),
                    organization: (*organization).to_owned(),
                    version: (*version).to_owned(),
                })
                .collect(),
            supported_encodings: self.policy.encodings().iter().map(|e| *e as i32).collect(),
            g_nmi_version: GNMI_VERSION.to_owned(),
            extension: Vec::new(),
        }))
    }

    async fn get(
        &self,
        request: Request<gnmi::GetRequest>,
    ) -> Result<Response<gnmi::GetResponse>, Status> {
        self.authenticate(&request)?;
        let request = request.into_inner();
        reject_history(&request.extension)?;
        let encoding = self.policy.encoding(request.encoding)?;
        let data_type = DataType::try_from(request.r#type).map_err(|_| {
            Status::invalid_argument(format!("unknown data type {}", request.r#type))
        })?;
        let mut selection = Selection::none(self.device.groups());
        // Everything the simulator serves is state; a CONFIG Get finds nothing.
        if data_type != DataType::Config {
            let paths: Vec<Option<&gnmi::Path>> = if request.path.is_empty() {
                vec![None]
            } else {
                request.path.iter().map(Some).collect()
            };
            for path in paths {
                let pattern = proto::full_path(request.prefix.as_ref(), path)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                let selected = self.device.select(&pattern);
                if selected.is_empty() {
                    return Err(Status::not_found(format!(
                        "{pattern} matches no data on {}",
                        self.device.name
                    )));
                }
                selection.add(&selected);
            }
        }
        let mut notification = Vec::new();
        self.device.notifications(
            &selection,
            self.elapsed(),
            now_ns(),
            encoding,
            &mut notification,
        );
        Ok(Response::new(gnmi::GetResponse {
            notification,
            ..Default::default()
        }))
    }

    async fn set(
        &self,
        request: Request<gnmi::SetRequest>,
    ) -> Result<Response<gnmi::SetResponse>, Status> {
        self.authenticate(&request)?;
        Err(Status::unimplemented(
            "Set is not supported: simulated devices serve state data only",
        ))
    }

    type SubscribeStream = ReceiverStream<Outgoing>;

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.authenticate(&request)?;
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| {
            Status::invalid_argument("the stream ended before a subscription list")
        })?;
        reject_history(&first.extension)?;
        let list = match first.request {
            Some(Inbound::Subscribe(list)) => list,
            Some(Inbound::Poll(_)) => {
                return Err(Status::invalid_argument(
                    "the first message must be a subscription list, not a poll",
                ));
            }
            None => return Err(Status::invalid_argument("empty subscribe request")),
        };
        let plan = Plan::new(&self.device, &self.policy, &list)?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let session = Session {
            target: self.clone(),
            shutdown: self.shutdown.clone(),
            plan,
            tx,
            scratch: Vec::new(),
            notifications: 0,
        };
        tokio::spawn(session.run(inbound));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The gNMI service of a fleet whose devices share one listener: each RPC goes to the
/// device whose address the client dialled.
#[derive(Debug)]
pub(crate) struct Dispatch {
    targets: HashMap<IpAddr, Target>,
}

impl Dispatch {
    pub(crate) fn new(targets: HashMap<IpAddr, Target>) -> Self {
        Self { targets }
    }

    fn target<T>(&self, request: &Request<T>) -> Result<&Target, Status> {
        let ip = request
            .local_addr()
            .map(|a| a.ip())
            .ok_or_else(|| Status::internal("the connection has no local address"))?;
        self.targets
            .get(&ip)
            .ok_or_else(|| Status::unavailable(format!("no simulated device at {ip}")))
    }
}

#[tonic::async_trait]
impl GNmi for Dispatch {
    async fn capabilities(
        &self,
        request: Request<gnmi::CapabilityRequest>,
    ) -> Result<Response<gnmi::CapabilityResponse>, Status> {
        self.target(&request)?.capabilities(request).await
    }

    async fn get(
        &self,
        request: Request<gnmi::GetRequest>,
    ) -> Result<Response<gnmi::GetResponse>, Status> {
        self.target(&request)?.get(request).await
    }

    async fn set(
        &self,
        request: Request<gnmi::SetRequest>,
    ) -> Result<Response<gnmi::SetResponse>, Status> {
        self.target(&request)?.set(request).await
    }

    type SubscribeStream = ReceiverStream<Outgoing>;

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.target(&request)?.subscribe(request).await
    }
}

/// When the values of one subscription are sent in STREAM mode.
#[derive(Debug, Clone, Copy)]
enum Cadence {
    /// Every `interval`; with `suppress_redundant`, only changed leaves, except that
    /// everything is re-sent every `heartbeat`.
    Sample {
        interval: Duration,
        suppress_redundant: bool,
        heartbeat: Option<Duration>,
    },
    /// When an oper-status changes, and everything every `heartbeat`. Counters are not
    /// on-change leaves in the simulator: they are sent at sync and on heartbeats only.
    OnChange { heartbeat: Option<Duration> },
}

/// One subscription of a list: what it selects and when it is sent.
#[derive(Debug)]
struct Entry {
    selection: Selection,
    cadence: Cadence,
}

/// A validated subscription list.
#[derive(Debug)]
struct Plan {
    mode: Mode,
    encoding: Encoding,
    updates_only: bool,
    entries: Vec<Entry>,
    /// Union of every entry's selection.
    all: Selection,
}

impl Plan {
    fn new(
        device: &Device,
        policy: &Policy,
        list: &gnmi::SubscriptionList,
    ) -> Result<Self, Status> {
        let mode = Mode::try_from(list.mode).map_err(|_| {
            Status::invalid_argument(format!("unknown subscription list mode {}", list.mode))
        })?;
        let encoding = policy.encoding(list.encoding)?;
        if list.subscription.is_empty() {
            return Err(Status::invalid_argument(
                "the subscription list has no subscriptions",
            ));
        }
        let mut all = Selection::none(device.groups());
        let mut entries = Vec::with_capacity(list.subscription.len());
        for sub in &list.subscription {
            let pattern = proto::full_path(list.prefix.as_ref(), sub.path.as_ref())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            if let Some(refused) = &policy.misbehaviour.refuse_path
                && pattern.to_string().starts_with(refused.as_str())
            {
                return Err(Status::invalid_argument(format!(
                    "{}: unsupported path {pattern}",
                    device.name
                )));
            }
            let selection = device.select(&pattern);
            all.add(&selection);
            let heartbeat = (sub.heartbeat_interval > 0)
                .then(|| Duration::from_nanos(sub.heartbeat_interval).max(MIN_SAMPLE_INTERVAL));
            let cadence = match SubscriptionMode::try_from(sub.mode) {
                Ok(SubscriptionMode::Sample | SubscriptionMode::TargetDefined) => Cadence::Sample {
                    interval: sample_interval(sub.sample_interval),
                    suppress_redundant: sub.suppress_redundant,
                    heartbeat,
                },
                Ok(SubscriptionMode::OnChange)
                    if policy.misbehaviour.refuse_on_change && mode == Mode::Stream =>
                {
                    return Err(Status::unimplemented(format!(
                        "{}: ON_CHANGE subscriptions are not supported ({pattern}); use SAMPLE",
                        device.name
                    )));
                }
                Ok(SubscriptionMode::OnChange) => Cadence::OnChange { heartbeat },
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown subscription mode {} for {pattern}",
                        sub.mode
                    )));
                }
            };
            entries.push(Entry { selection, cadence });
        }
        Ok(Self {
            mode,
            encoding,
            updates_only: list.updates_only,
            entries,
            all,
        })
    }
}

/// Why a subscription ended early.
#[derive(Debug)]
enum Stop {
    /// The client went away or the fleet is stopping: nothing more to send.
    Closed,
    /// The client broke the protocol: end the stream with this status.
    Failed(Status),
}

/// What woke a STREAM session.
enum Event {
    /// A timer is due.
    Tick,
    /// The misbehaving device drops the stream now.
    Drop,
    /// The misbehaving device goes silent now.
    Silence,
    /// The client sent something (or ended its side, or vanished).
    Message(Result<Option<SubscribeRequest>, Status>),
    /// The client stopped listening or the fleet is stopping.
    Stop,
}

/// Timer state of one STREAM entry.
#[derive(Debug)]
struct Timer {
    next: Option<Instant>,
    last_heartbeat: Instant,
    /// Last values sent per group (suppress_redundant) or last oper-status seen
    /// (on-change), by `Leaf as usize`; empty when the cadence needs neither.
    last: Vec<Raw>,
}

/// One Subscribe RPC being served.
struct Session {
    target: Target,
    shutdown: watch::Receiver<bool>,
    plan: Plan,
    tx: mpsc::Sender<Outgoing>,
    /// Reused notification buffer.
    scratch: Vec<gnmi::Notification>,
    /// Notifications sent so far (for `malformed-path-every`).
    notifications: u64,
}

impl Session {
    async fn run(mut self, inbound: Streaming<SubscribeRequest>) {
        let device = self.target.device.name.clone();
        let mode = self.plan.mode;
        debug!(%device, ?mode, subscriptions = self.plan.entries.len(), "Subscription started");
        let outcome = match mode {
            Mode::Once => self.snapshot().await,
            Mode::Poll => self.poll(inbound).await,
            Mode::Stream => self.stream(inbound).await,
        };
        match outcome {
            Ok(()) | Err(Stop::Closed) => {}
            Err(Stop::Failed(status)) => {
                debug!(%device, %status, "Subscription refused a request");
                let _ = self.tx.send(Err(status)).await;
            }
        }
        debug!(%device, ?mode, "Subscription ended");
    }

    /// All selected values (unless `updates_only`), then `sync_response`.
    async fn snapshot(&mut self) -> Result<(), Stop> {
        if let Some(size) = self.target.policy.take_oversize() {
            let notification = oversize_notification(size, self.plan.encoding);
            self.send(Outbound::Update(notification)).await?;
        }
        if !self.plan.updates_only {
            let all = self.plan.all.clone();
            self.send_values(&all).await?;
        }
        self.send(Outbound::SyncResponse(true)).await
    }

    async fn poll(&mut self, mut inbound: Streaming<SubscribeRequest>) -> Result<(), Stop> {
        self.snapshot().await?;
        loop {
            let message = tokio::select! {
                message = inbound.message() => message,
                _ = self.shutdown.wait_for(|stop| *stop) => return Err(Stop::Closed),
            };
            match message {
                Ok(Some(SubscribeRequest {
                    request: Some(Inbound::Poll(_)),
                    ..
                })) => self.snapshot().await?,
                Ok(Some(_)) => {
                    return Err(Stop::Failed(Status::invalid_argument(
                        "only Poll messages may follow the subscription list in POLL mode",
                    )));
                }
                // The client is done polling.
                Ok(None) => return Ok(()),
                Err(_) => return Err(Stop::Closed),
            }
        }
    }

    async fn stream(&mut self, mut inbound: Streaming<SubscribeRequest>) -> Result<(), Stop> {
        self.snapshot().await?;
        let device = Arc::clone(&self.target.device);
        let groups = device.groups();
        let start = Instant::now();
        let t = self.target.elapsed();
        let baseline = || -> Vec<Raw> { (0..groups).map(|g| device.raw_values(g, t)).collect() };
        let mut timers: Vec<Timer> = self
            .plan
            .entries
            .iter()
            .map(|entry| {
                let (next, last) = match entry.cadence {
                    Cadence::Sample {
                        interval,
                        suppress_redundant,
                        ..
                    } => (
                        Some(start + interval),
                        if suppress_redundant {
                            baseline()
                        } else {
                            Vec::new()
                        },
                    ),
                    Cadence::OnChange { heartbeat } => (
                        earliest(
                            device
                                .next_status_change(&entry.selection, t)
                                .map(|d| self.target.epoch + d),
                            heartbeat.map(|h| start + h),
                        ),
                        baseline(),
                    ),
                };
                Timer {
                    next,
                    last_heartbeat: start,
                    last,
                }
            })
            .collect();
        let mut due = Selection::none(groups);
        let mut reading = true;
        let policy = Arc::clone(&self.target.policy);
        let misbehaviour = &policy.misbehaviour;
        let drop_at = misbehaviour.drop_every.map(|d| start + d);
        let mut silent_at = misbehaviour.silent_after.map(|d| start + d);
        let mut silent = false;
        loop {
            let wake = if silent {
                None
            } else {
                timers.iter().filter_map(|timer| timer.next).min()
            };
            let event = tokio::select! {
                () = sleep_until(drop_at) => Event::Drop,
                () = sleep_until(silent_at) => Event::Silence,
                () = sleep_until(wake) => Event::Tick,
                message = inbound.message(), if reading => Event::Message(message),
                _ = self.shutdown.wait_for(|stop| *stop) => Event::Stop,
                () = self.tx.closed() => Event::Stop,
            };
            match event {
                Event::Tick => {
                    let now = Instant::now();
                    let t = self.target.elapsed();
                    due.clear();
                    for (entry, timer) in self.plan.entries.iter().zip(&mut timers) {
                        if timer.next.is_some_and(|next| next <= now) {
                            fire(&device, entry, timer, now, t, &mut due);
                        }
                    }
                    if !due.is_empty() {
                        self.send_values(&due).await?;
                    }
                }
                Event::Drop => {
                    return Err(Stop::Failed(Status::unavailable(format!(
                        "{} drops every subscription after {:?} (simulated misbehaviour)",
                        device.name,
                        misbehaviour.drop_every.unwrap_or_default()
                    ))));
                }
                Event::Silence => {
                    debug!(device = %device.name, "Subscription goes silent");
                    silent = true;
                    silent_at = None;
                }
                Event::Message(Ok(Some(_))) => {
                    return Err(Stop::Failed(Status::invalid_argument(
                        "STREAM subscriptions accept no messages after the subscription list",
                    )));
                }
                // Half-close: the client will send nothing more, but still listens.
                Event::Message(Ok(None)) => reading = false,
                Event::Message(Err(_)) | Event::Stop => return Err(Stop::Closed),
            }
        }
    }

    /// The values of `selection` now, one notification per interface.
    async fn send_values(&mut self, selection: &Selection) -> Result<(), Stop> {
        let mut batch = std::mem::take(&mut self.scratch);
        self.target.device.notifications(
            selection,
            self.target.elapsed(),
            now_ns(),
            self.plan.encoding,
            &mut batch,
        );
        let mut result = Ok(());
        let malformed_every = self.target.policy.misbehaviour.malformed_path_every;
        for mut notification in batch.drain(..) {
            self.notifications += 1;
            if let Some(every) = malformed_every
                && self.notifications.is_multiple_of(u64::from(every))
            {
                malform(&mut notification);
            }
            result = self.send(Outbound::Update(notification)).await;
            if result.is_err() {
                break;
            }
        }
        batch.clear();
        self.scratch = batch;
        result
    }

    async fn send(&mut self, response: Outbound) -> Result<(), Stop> {
        let droppable = matches!(response, Outbound::Update(_));
        let message = SubscribeResponse {
            response: Some(response),
            extension: Vec::new(),
        };
        if droppable && self.target.policy.misbehaviour.drop_when_behind {
            return match self.tx.try_send(Ok(message)) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.target.policy.dropped.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(mpsc::error::TrySendError::Closed(_)) => Err(Stop::Closed),
            };
        }
        if let Some(delay) = self.target.policy.misbehaviour.send_delay {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = self.shutdown.wait_for(|stop| *stop) => return Err(Stop::Closed),
            }
        }
        tokio::select! {
            sent = self.tx.send(Ok(message)) => sent.map_err(|_| Stop::Closed),
            _ = self.shutdown.wait_for(|stop| *stop) => Err(Stop::Closed),
        }
    }
}

/// Gives the first update of `notification` a path element with an empty name, which
/// the gNMI path rules forbid.
fn malform(notification: &mut gnmi::Notification) {
    if let Some(path) = notification
        .update
        .first_mut()
        .and_then(|u| u.path.as_mut())
    {
        path.elem.insert(0, wire_elem("", None));
    }
}

/// One notification larger than `size` bytes: a huge `/system/state/motd-banner`.
fn oversize_notification(size: usize, encoding: Encoding) -> gnmi::Notification {
    let banner = model::Value::String("x".repeat(size.saturating_add(1)));
    gnmi::Notification {
        timestamp: now_ns(),
        prefix: Some(gnmi::Path {
            elem: vec![wire_elem("system", None), wire_elem("state", None)],
            ..Default::default()
        }),
        update: vec![gnmi::Update {
            path: Some(gnmi::Path {
                elem: vec![wire_elem("motd-banner", None)],
                ..Default::default()
            }),
            val: Some(proto::to_typed_value(&banner, encoding)),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Handles a due STREAM timer: adds what must be sent to `due` and schedules the next run.
fn fire(
    device: &Device,
    entry: &Entry,
    timer: &mut Timer,
    now: Instant,
    t: Duration,
    due: &mut Selection,
) {
    match entry.cadence {
        Cadence::Sample {
            interval,
            suppress_redundant,
            heartbeat,
        } => {
            let heartbeat_due = heartbeat.is_some_and(|h| now >= timer.last_heartbeat + h);
            if !suppress_redundant || heartbeat_due {
                due.add(&entry.selection);
                timer.last_heartbeat = now;
            }
            if suppress_redundant {
                for (i, mask) in entry.selection.iter() {
                    let values = device.raw_values(i, t);
                    let Some(last) = timer.last.get_mut(i) else {
                        continue;
                    };
                    for leaf in Leaf::ALL {
                        let slot = leaf as usize;
                        if mask & leaf.bit() != 0 && values[slot] != last[slot] {
                            due.insert(i, leaf);
                        }
                    }
                    *last = values;
                }
            }
            // Skip samples missed while the client was slow rather than bursting.
            let next = timer.next.map_or(now, |n| n + interval);
            timer.next = Some(if next <= now { now + interval } else { next });
        }
        Cadence::OnChange { heartbeat } => {
            if heartbeat.is_some_and(|h| now >= timer.last_heartbeat + h) {
                due.add(&entry.selection);
                timer.last_heartbeat = now;
            }
            let status = Leaf::OperStatus as usize;
            for (i, mask) in entry.selection.iter() {
                if mask & Leaf::OperStatus.bit() == 0 {
                    continue;
                }
                let up = u64::from(device.is_up(i, t));
                let Some(last) = timer.last.get_mut(i) else {
                    continue;
                };
                if up != last[status] {
                    due.insert(i, Leaf::OperStatus);
                    last[status] = up;
                }
            }
            let change = device
                .next_status_change(&entry.selection, t)
                .map(|d| now + d.saturating_sub(t));
            timer.next = earliest(change, heartbeat.map(|h| timer.last_heartbeat + h));
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The sample interval to use for a requested one, in nanoseconds.
fn sample_interval(requested_ns: u64) -> Duration {
    if requested_ns == 0 {
        DEFAULT_SAMPLE_INTERVAL
    } else {
        Duration::from_nanos(requested_ns).max(MIN_SAMPLE_INTERVAL)
    }
}

/// The requested encoding if it is one of `served`.
fn encoding(value: i32, served: &[Encoding]) -> Result<Encoding, Status> {
    match Encoding::try_from(value) {
        Ok(e) if served.contains(&e) => Ok(e),
        Ok(e) => Err(Status::unimplemented(format!(
            "encoding {} is not supported; use {}",
            e.as_str_name(),
            served
                .iter()
                .map(|e| e.as_str_name())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown encoding {value}"
        ))),
    }
}

/// The simulator keeps no history; serving live data to a history request would be a lie.
fn reject_history(extensions: &[gnmi_ext::Extension]) -> Result<(), Status> {
    if extensions
        .iter()
        .any(|e| matches!(e.ext, Some(Ext::History(_))))
    {
        return Err(Status::unimplemented(
            "the history extension is not supported: the simulator keeps no history",
        ));
    }
    Ok(())
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(device: &Device, path: &str, cadence: Cadence) -> Entry {
        Entry {
            selection: device.select(&path.parse().unwrap()),
            cadence,
        }
    }

    fn device(interfaces: usize, seed: u64) -> Device {
        let fabric = crate::fabric::Fabric::new(1, 0, interfaces);
        Device::new("sim-0001".into(), 0, interfaces, seed, fabric, false)
    }

    fn timer(device: &Device, next: Option<Instant>, start: Instant) -> Timer {
        Timer {
            next,
            last_heartbeat: start,
            last: (0..device.groups())
                .map(|i| device.raw_values(i, Duration::ZERO))
                .collect(),
        }
    }

    #[test]
    fn on_change_reports_only_oper_status_transitions() {
        let device = device(40, 3);
        let e = entry(
            &device,
            "/interfaces/interface/state/oper-status",
            Cadence::OnChange { heartbeat: None },
        );
        let first = device
            .next_status_change(&e.selection, Duration::ZERO)
            .expect("some of 40 interfaces flap");
        let start = Instant::now();
        let mut timer = timer(&device, Some(start + first), start);
        let mut due = Selection::none(40);

        // Just before the change nothing is reported.
        let before = first - Duration::from_millis(5);
        fire(&device, &e, &mut timer, start + before, before, &mut due);
        assert!(due.is_empty());

        let after = first + Duration::from_millis(5);
        fire(&device, &e, &mut timer, start + after, after, &mut due);
        let changed: Vec<_> = due.iter().collect();
        assert!(!changed.is_empty());
        for (i, mask) in changed {
            assert_eq!(mask, Leaf::OperStatus.bit());
            assert_ne!(device.is_up(i, Duration::ZERO), device.is_up(i, after));
        }
        assert!(
            timer.next.unwrap() > start + after,
            "next change is scheduled"
        );

        // Counters selected under ON_CHANGE are not sampled.
        let counters = entry(
            &device,
            "/interfaces/interface/state/counters",
            Cadence::OnChange { heartbeat: None },
        );
        let mut quiet = self::timer(&device, None, start);
        let mut due = Selection::none(40);
        fire(
            &device,
            &counters,
            &mut quiet,
            start + after,
            after,
            &mut due,
        );
        assert!(due.is_empty());
        assert_eq!(quiet.next, None);
    }

    #[test]
    fn suppress_redundant_sends_changes_and_heartbeats_everything() {
        let device = device(8, 5);
        let t = Duration::from_secs(1);
        let steady = (0..8)
            .find(|&i| device.is_up(i, Duration::ZERO) && device.is_up(i, t))
            .unwrap();
        let path = format!("/interfaces/interface[name=Ethernet{}]/state", steady + 1);
        let sample = |heartbeat| Cadence::Sample {
            interval: Duration::from_secs(1),
            suppress_redundant: true,
            heartbeat,
        };
        let start = Instant::now();

        let e = entry(&device, &path, sample(None));
        let mut tm = timer(&device, Some(start + t), start);
        let mut due = Selection::none(8);
        fire(&device, &e, &mut tm, start + t, t, &mut due);
        let mask = due.iter().map(|(_, m)| m).next().unwrap();
        assert_eq!(mask & Leaf::Name.bit(), 0, "the name did not change");
        assert_eq!(
            mask & Leaf::OperStatus.bit(),
            0,
            "the status did not change"
        );
        assert_ne!(mask & Leaf::InOctets.bit(), 0, "traffic moved");
        assert_eq!(tm.next, Some(start + 2 * t));

        let e = entry(&device, &path, sample(Some(Duration::from_secs(1))));
        let mut tm = timer(&device, Some(start + t), start);
        let mut due = Selection::none(8);
        fire(&device, &e, &mut tm, start + t, t, &mut due);
        assert_eq!(due.iter().collect::<Vec<_>>(), vec![(steady, 0xff)]);
    }

    #[test]
    fn sample_intervals_default_and_clamp() {
        assert_eq!(sample_interval(0), DEFAULT_SAMPLE_INTERVAL);
        assert_eq!(sample_interval(1), MIN_SAMPLE_INTERVAL);
        assert_eq!(sample_interval(2_000_000_000), Duration::from_secs(2));
    }

    #[test]
    fn only_served_encodings_are_accepted() {
        let policy = Policy::default();
        assert_eq!(
            policy.encoding(Encoding::Proto as i32).ok(),
            Some(Encoding::Proto)
        );
        assert_eq!(
            policy.encoding(Encoding::JsonIetf as i32).ok(),
            Some(Encoding::JsonIetf)
        );
        let bytes = policy.encoding(Encoding::Bytes as i32).unwrap_err();
        assert_eq!(bytes.code(), tonic::Code::Unimplemented);
        assert_eq!(
            policy.encoding(42).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let strict = Policy::new(
            Misbehaviour {
                json_ietf_only: true,
                ..Misbehaviour::default()
            },
            None,
            Arc::default(),
        );
        let proto = strict.encoding(Encoding::Proto as i32).unwrap_err();
        assert_eq!(proto.code(), tonic::Code::Unimplemented);
        assert!(proto.message().contains("use JSON_IETF"), "{proto}");
        assert_eq!(
            strict.encoding(Encoding::JsonIetf as i32).ok(),
            Some(Encoding::JsonIetf)
        );
    }

    #[test]
    fn credentials_are_checked_when_configured() {
        let mut metadata = MetadataMap::new();
        assert!(Policy::default().authenticate(&metadata, "d").is_ok());
        let policy = Policy::new(
            Misbehaviour::default(),
            Some(("admin".into(), "pw".into())),
            Arc::default(),
        );
        let missing = policy.authenticate(&metadata, "sim-0001").unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(
            missing.message().contains("requires credentials"),
            "{missing}"
        );
        metadata.insert(USERNAME_KEY, "admin".parse().unwrap());
        metadata.insert(PASSWORD_KEY, "nope".parse().unwrap());
        let wrong = policy.authenticate(&metadata, "sim-0001").unwrap_err();
        assert!(wrong.message().contains("rejected"), "{wrong}");
        metadata.insert(PASSWORD_KEY, "pw".parse().unwrap());
        assert!(policy.authenticate(&metadata, "sim-0001").is_ok());
    }

    #[test]
    fn malformed_paths_have_an_empty_element_and_oversize_is_oversize() {
        let mut n = gnmi::Notification {
            update: vec![gnmi::Update {
                path: Some(gnmi::Path {
                    elem: vec![wire_elem("name", None)],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        malform(&mut n);
        let path = n.update[0].path.as_ref().unwrap();
        assert_eq!(path.elem[0].name, "");
        let big = oversize_notification(1000, Encoding::JsonIetf);
        assert!(prost::Message::encoded_len(&big) > 1000);
        let policy = Policy::new(
            Misbehaviour {
                oversize: Some(10),
                ..Misbehaviour::default()
            },
            None,
            Arc::default(),
        );
        assert_eq!(policy.take_oversize(), Some(10));
        assert_eq!(policy.take_oversize(), None, "only once per device");
    }
}
