//! The gNMI target of one virtual device: Capabilities, Get, Set and Subscribe.
//!
//! Each Subscribe RPC is served by one task that owns its timers; all subscriptions of a
//! list that fall due together are answered with one set of notifications. Values are
//! computed when sent, from the time since the fleet started.

use std::sync::Arc;
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
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use crate::device::{Device, Leaf, Selection};

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
/// Schema models advertised by Capabilities: (name, organization, version).
const MODELS: [(&str, &str, &str); 3] = [
    ("openconfig-interfaces", "OpenConfig working group", "3.7.1"),
    ("openconfig-types", "OpenConfig working group", "1.0.0"),
    ("openconfig-yang-types", "OpenConfig working group", "1.0.0"),
];

type Outgoing = Result<SubscribeResponse, Status>;

/// The gNMI service of one device.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    device: Arc<Device>,
    /// When the fleet started: time zero of every counter.
    epoch: Instant,
    /// Becomes `true` (or is dropped) when the fleet stops; ends every open stream.
    shutdown: watch::Receiver<bool>,
}

impl Target {
    pub(crate) fn new(
        device: Arc<Device>,
        epoch: Instant,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            device,
            epoch,
            shutdown,
        }
    }

    fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }
}

#[tonic::async_trait]
impl GNmi for Target {
    async fn capabilities(
        &self,
        _request: Request<gnmi::CapabilityRequest>,
    ) -> Result<Response<gnmi::CapabilityResponse>, Status> {
        Ok(Response::new(gnmi::CapabilityResponse {
            supported_models: MODELS
                .iter()
                .map(|(name, organization, version)| gnmi::ModelData {
                    name: (*name).to_owned(),
                    organization: (*organization).to_owned(),
                    version: (*version).to_owned(),
                })
                .collect(),
            supported_encodings: ENCODINGS.iter().map(|e| *e as i32).collect(),
            g_nmi_version: GNMI_VERSION.to_owned(),
            extension: Vec::new(),
        }))
    }

    async fn get(
        &self,
        request: Request<gnmi::GetRequest>,
    ) -> Result<Response<gnmi::GetResponse>, Status> {
        let request = request.into_inner();
        reject_history(&request.extension)?;
        let encoding = encoding(request.encoding)?;
        let data_type = DataType::try_from(request.r#type).map_err(|_| {
            Status::invalid_argument(format!("unknown data type {}", request.r#type))
        })?;
        let mut selection = Selection::none(self.device.interfaces.len());
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
        _request: Request<gnmi::SetRequest>,
    ) -> Result<Response<gnmi::SetResponse>, Status> {
        Err(Status::unimplemented(
            "Set is not supported: simulated devices serve state data only",
        ))
    }

    type SubscribeStream = ReceiverStream<Outgoing>;

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
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
        let plan = Plan::new(&self.device, &list)?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let session = Session {
            target: self.clone(),
            shutdown: self.shutdown.clone(),
            plan,
            tx,
            scratch: Vec::new(),
        };
        tokio::spawn(session.run(inbound));
        Ok(Response::new(ReceiverStream::new(rx)))
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
    fn new(device: &Device, list: &gnmi::SubscriptionList) -> Result<Self, Status> {
        let mode = Mode::try_from(list.mode).map_err(|_| {
            Status::invalid_argument(format!("unknown subscription list mode {}", list.mode))
        })?;
        let encoding = encoding(list.encoding)?;
        if list.subscription.is_empty() {
            return Err(Status::invalid_argument(
                "the subscription list has no subscriptions",
            ));
        }
        let mut all = Selection::none(device.interfaces.len());
        let mut entries = Vec::with_capacity(list.subscription.len());
        for sub in &list.subscription {
            let pattern = proto::full_path(list.prefix.as_ref(), sub.path.as_ref())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
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
    /// Last values sent per interface (suppress_redundant) or last oper-status seen
    /// (on-change), by `Leaf as usize`.
    last: Vec<[u64; 8]>,
}

/// One Subscribe RPC being served.
struct Session {
    target: Target,
    shutdown: watch::Receiver<bool>,
    plan: Plan,
    tx: mpsc::Sender<Outgoing>,
    /// Reused notification buffer.
    scratch: Vec<gnmi::Notification>,
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
        let interfaces = device.interfaces.len();
        let start = Instant::now();
        let t = self.target.elapsed();
        let baseline: Vec<[u64; 8]> = (0..interfaces).map(|i| device.raw_values(i, t)).collect();
        let mut timers: Vec<Timer> = self
            .plan
            .entries
            .iter()
            .map(|entry| {
                let next = match entry.cadence {
                    Cadence::Sample { interval, .. } => Some(start + interval),
                    Cadence::OnChange { heartbeat } => earliest(
                        device
                            .next_status_change(&entry.selection, t)
                            .map(|d| self.target.epoch + d),
                        heartbeat.map(|h| start + h),
                    ),
                };
                Timer {
                    next,
                    last_heartbeat: start,
                    last: baseline.clone(),
                }
            })
            .collect();
        let mut due = Selection::none(interfaces);
        let mut reading = true;
        loop {
            let wake = timers.iter().filter_map(|timer| timer.next).min();
            let event = tokio::select! {
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
        for notification in batch.drain(..) {
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
        let message = SubscribeResponse {
            response: Some(response),
            extension: Vec::new(),
        };
        tokio::select! {
            sent = self.tx.send(Ok(message)) => sent.map_err(|_| Stop::Closed),
            _ = self.shutdown.wait_for(|stop| *stop) => Err(Stop::Closed),
        }
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
                    for leaf in Leaf::ALL {
                        let slot = leaf as usize;
                        if mask & leaf.bit() != 0 && values[slot] != timer.last[i][slot] {
                            due.insert(i, leaf);
                        }
                    }
                    timer.last[i] = values;
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
                if up != timer.last[i][status] {
                    due.insert(i, Leaf::OperStatus);
                    timer.last[i][status] = up;
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

/// The requested encoding if the simulator produces it.
fn encoding(value: i32) -> Result<Encoding, Status> {
    match Encoding::try_from(value) {
        Ok(e) if ENCODINGS.contains(&e) => Ok(e),
        Ok(e) => Err(Status::unimplemented(format!(
            "encoding {} is not supported; use JSON, JSON_IETF or PROTO",
            e.as_str_name()
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

    fn timer(device: &Device, next: Option<Instant>, start: Instant) -> Timer {
        Timer {
            next,
            last_heartbeat: start,
            last: (0..device.interfaces.len())
                .map(|i| device.raw_values(i, Duration::ZERO))
                .collect(),
        }
    }

    #[test]
    fn on_change_reports_only_oper_status_transitions() {
        let device = Device::new("sim-0001".into(), 0, 40, 3);
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
        let device = Device::new("sim-0001".into(), 0, 8, 5);
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
        assert_eq!(due.iter().collect::<Vec<_>>(), vec![(steady, u8::MAX)]);
    }

    #[test]
    fn sample_intervals_default_and_clamp() {
        assert_eq!(sample_interval(0), DEFAULT_SAMPLE_INTERVAL);
        assert_eq!(sample_interval(1), MIN_SAMPLE_INTERVAL);
        assert_eq!(sample_interval(2_000_000_000), Duration::from_secs(2));
    }

    #[test]
    fn only_served_encodings_are_accepted() {
        assert_eq!(encoding(Encoding::Proto as i32).ok(), Some(Encoding::Proto));
        assert_eq!(
            encoding(Encoding::JsonIetf as i32).ok(),
            Some(Encoding::JsonIetf)
        );
        let bytes = encoding(Encoding::Bytes as i32).unwrap_err();
        assert_eq!(bytes.code(), tonic::Code::Unimplemented);
        assert_eq!(
            encoding(42).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
