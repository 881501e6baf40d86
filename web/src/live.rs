//! Live updates of a device page over server-sent events.
//!
//! Each browser gets a task that watches the device through the node's [`Hub`] (one bus
//! subscription per watched device, shared). New samples are forwarded as `samples`
//! events whose id is the newest sample's timestamp; charts are re-rendered on the
//! server at most once a second and sent as `chart` events (one render per device and
//! window serves every browser due at the same time: [`crate::renders`]).
//!
//! - **Reconnects lose nothing and repeat nothing.** A browser that comes back with
//!   `Last-Event-ID` (EventSource does so by itself; after a move to another web pod too,
//!   ids are timestamps, not per-node counters) first gets the samples stored after that
//!   id (at most [`REPLAY_WINDOW`] back), then live ones; live samples already replayed
//!   are dropped. The hub is joined before the store is read, so nothing falls between.
//! - **A slow browser skips ahead.** When it falls [`crate::hub::RING`] messages behind,
//!   it gets a `skipped` event with the count and fresh charts (latest state wins); the
//!   hub and other browsers never wait for it.
//! - **The page says what its data is**: `status` events with `mode` `live`, `paused`
//!   (the bus is down: charts are re-rendered from the store every few seconds) or
//!   `stale` (no sample for [`STALE_AFTER`]: collector down or device unreachable), with
//!   the newest point's time and age.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use bus::BusMessage;
use futures::Stream;
use futures::StreamExt as _;
use model::{DeviceKey, Sample};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{Error, Result};
use crate::hub::{Received, Watch};
use crate::renders::{Rendered, Source};
use crate::view;
use crate::{AppState, DEFAULT_WINDOW_MINUTES, api, now_ns, window_minutes};

/// Events queued per browser; a browser that does not keep up stalls only its own task.
const CLIENT_BUFFER: usize = 64;
/// Charts are re-rendered at most this often (and one render serves every browser of
/// the device that is due within it).
const RENDER_EVERY: Duration = crate::renders::FRESH_FOR;
/// Poll interval of the store while the bus is down, and of the page's mode.
const POLL_EVERY: Duration = Duration::from_secs(5);
/// Most samples forwarded in one `samples` event.
const MAX_SAMPLES_PER_EVENT: usize = 500;
/// A device without a new sample for this long is shown stale (default of
/// `--stale-after`).
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// How far back a reconnecting browser is replayed from the store.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most series read for one replay.
const REPLAY_SERIES: usize = 512;

/// Query of the live endpoint.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct LiveQuery {
    pub minutes: Option<i64>,
    /// Replay from after this event id (what `Last-Event-ID` says, for clients that
    /// cannot set headers).
    pub since: Option<i64>,
    /// `false`: samples, states and status only, no re-rendered charts (programs that
    /// follow a device without drawing it).
    pub charts: Option<bool>,
}

/// `GET /devices/{name}/live` through axum (what hyper serves: a connection it keeps,
/// such as HTTP/1.0 or one that sent a body; `netpulse web` holds the others itself,
/// [`crate::held`], with the same events).
pub(crate) async fn device_live(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<LiveQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let since = last_event_id(headers.get("last-event-id").map(|v| v.as_bytes()));
    let rx = open(state, &name, q, since).await?;
    let events = ReceiverStream::new(rx).map(|event| Ok(event.into_axum()));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The value of a `Last-Event-ID` header, if it is an event id of ours.
pub(crate) fn last_event_id(value: Option<&[u8]>) -> Option<i64> {
    std::str::from_utf8(value?).ok()?.trim().parse::<i64>().ok()
}

/// Starts the stream of device `name`: a task that watches it and sends its events to
/// the receiver returned, until the receiver is dropped. `since` (from
/// `Last-Event-ID`) wins over the query's `since`.
pub(crate) async fn open(
    state: AppState,
    name: &str,
    q: LiveQuery,
    since: Option<i64>,
) -> Result<mpsc::Receiver<LiveEvent>> {
    let key = api::device_key(name)?;
    let Some(summary) = state.store.device(&key).await? else {
        return Err(Error::UnknownDevice(name.to_owned()));
    };
    let minutes = window_minutes(q.minutes.unwrap_or(DEFAULT_WINDOW_MINUTES));
    let since = since.or(q.since);
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    let client = Client {
        watch: state.hub.watch(&key),
        state,
        device: key,
        minutes,
        newest: summary.last_sample.unwrap_or(0),
        charts: q.charts.unwrap_or(true),
        tx,
    };
    tokio::spawn(client.run(since));
    Ok(rx)
}

/// One server-sent event, kept as text until it is written (by axum's `Sse`, or by
/// [`crate::held`] straight to the socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveEvent {
    pub kind: &'static str,
    /// The newest sample's timestamp (`samples` events only).
    pub id: Option<i64>,
    /// One line (JSON); newlines, if any, become several `data:` lines.
    pub data: String,
}

impl LiveEvent {
    fn new(kind: &'static str, data: String) -> Self {
        Self {
            kind,
            id: None,
            data,
        }
    }

    fn into_axum(self) -> Event {
        let event = Event::default().event(self.kind).data(self.data);
        match self.id {
            Some(id) => event.id(id.to_string()),
            None => event,
        }
    }

    /// Appends the event in the `text/event-stream` format (as axum writes it).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let _ = writeln!(out, "event: {}", self.kind);
        for line in self.data.split('\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
            out.push(b'\n');
        }
        if let Some(id) = self.id {
            let _ = writeln!(out, "id: {id}");
        }
        out.push(b'\n');
    }
}

fn json_event(kind: &'static str, data: &serde_json::Value) -> LiveEvent {
    LiveEvent::new(kind, data.to_string())
}

/// What the page's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Paused,
    Stale,
}

/// One browser's stream.
struct Client {
    state: AppState,
    device: DeviceKey,
    minutes: i64,
    watch: Watch,
    /// Newest sample timestamp known to this stream.
    newest: i64,
    /// Whether this client gets re-rendered charts.
    charts: bool,
    tx: mpsc::Sender<LiveEvent>,
}

/// The browser has gone.
struct Gone;

impl Client {
    async fn send(&self, event: LiveEvent) -> Result<(), Gone> {
        self.tx.send(event).await.map_err(|_| Gone)
    }

    fn mode(&self, now: i64) -> Mode {
        if !self.state.hub.is_live() {
            Mode::Paused
        } else if now.saturating_sub(self.newest) > self.state.stale_after.as_nanos() as i64 {
            Mode::Stale
        } else {
            Mode::Live
        }
    }

    fn status_event(&self, mode: Mode, now: i64) -> LiveEvent {
        let newest = (self.newest > 0).then_some(self.newest);
        json_event(
            "status",
            &serde_json::json!({
                "live": mode != Mode::Paused,
                "mode": match mode { Mode::Live => "live", Mode::Paused => "paused", Mode::Stale => "stale" },
                "newest": newest.map(api::rfc3339),
                "age": view::age(newest, now),
            }),
        )
    }

    async fn run(mut self, since: Option<i64>) {
        let metrics = self.state.metrics.clone();
        metrics.sse_clients.inc();
        let _guard = scopeguard(move || {
            metrics.sse_clients.dec();
        });
        let _ = self.stream(since).await;
    }

    async fn stream(&mut self, since: Option<i64>) -> Result<(), Gone> {
        let mut mode = self.mode(now_ns());
        self.send(self.status_event(mode, now_ns())).await?;
        // Replayed samples, to drop when they come again live.
        let mut replayed: HashSet<(Arc<model::Path>, i64)> = HashSet::new();
        let mut replayed_until = i64::MIN;
        let mut dirty = false;
        if let Some(since) = since {
            let samples = self.replay(since).await;
            self.state.metrics.sse_replayed.inc_by(samples.len() as u64);
            replayed_until = samples.last().map_or(i64::MIN, |s| s.ts);
            for chunk in samples.chunks(MAX_SAMPLES_PER_EVENT) {
                self.send(samples_event(chunk)).await?;
            }
            replayed = samples.into_iter().map(|s| (s.path, s.ts)).collect();
            dirty = !replayed.is_empty();
        }
        let mut render = tokio::time::interval(RENDER_EVERY);
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.tick().await;
        let mut closed = false;
        let shutdown = self.state.streams.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Err(Gone),
                received = self.watch.recv(), if !closed => match received {
                    Received::Message(message) => match &*message {
                        BusMessage::Samples { samples, .. } => {
                            let fresh: Vec<Sample> = if replayed.is_empty() {
                                samples.clone()
                            } else {
                                let fresh: Vec<Sample> = samples.iter().filter(|s| !replayed.contains(&(s.path.clone(), s.ts))).cloned().collect();
                                if samples.iter().all(|s| s.ts > replayed_until) {
                                    replayed.clear();
                                }
                                fresh
                            };
                            if fresh.is_empty() {
                                continue;
                            }
                            self.newest = self.newest.max(fresh.iter().map(|s| s.ts).max().unwrap_or(0));
                            dirty = true;
                            self.send(samples_event(&fresh)).await?;
                        }
                        BusMessage::State(ev) => {
                            self.send(json_event("state", &serde_json::json!({
                                "state": ev.state.as_str(),
                                "error": ev.error,
                                "ts": api::rfc3339(ev.ts),
                            }))).await?;
                        }
                        // Not on a device's channel.
                        BusMessage::Placement(_) | BusMessage::CollectorHealth(_) => {}
                    },
                    Received::Skipped(missed) => {
                        self.state.metrics.sse_skipped.inc_by(missed);
                        self.send(json_event("skipped", &serde_json::json!({ "missed": missed }))).await?;
                        // The latest state wins: fresh charts replace what was skipped.
                        dirty = true;
                    }
                    Received::Closed => closed = true,
                },
                _ = render.tick(), if dirty => {
                    dirty = false;
                    self.send_charts().await?;
                }
                _ = poll.tick() => {
                    if closed {
                        // The bus ended this device's subscription: join the hub again.
                        self.watch = self.state.hub.watch(&self.device);
                        closed = false;
                    }
                    let now = now_ns();
                    let paused = mode == Mode::Paused || !self.state.hub.is_live();
                    if paused {
                        // No live data: the store is the source (freshness included).
                        self.send_charts().await?;
                    }
                    let now_mode = self.mode(now);
                    if now_mode != mode {
                        mode = now_mode;
                        self.send(self.status_event(mode, now)).await?;
                    }
                    if self.tx.is_closed() {
                        return Err(Gone);
                    }
                }
            }
        }
    }

    /// Stored samples of the device after `since` (within [`REPLAY_WINDOW`]), oldest first.
    async fn replay(&self, since: i64) -> Vec<Sample> {
        let now = now_ns();
        let from = since
            .saturating_add(1)
            .max(now - REPLAY_WINDOW.as_nanos() as i64);
        let read = async {
            let series = self.state.store.series(&self.device).await?;
            let mut out = Vec::new();
            for s in series
                .into_iter()
                .filter(|s| s.last_ts >= from)
                .take(REPLAY_SERIES)
            {
                let path: Arc<model::Path> = Arc::new(s.path);
                let points = self
                    .state
                    .store
                    .range(&self.device, &path, from, i64::MAX)
                    .await?;
                out.extend(points.into_iter().map(|p| Sample {
                    device: self.device.clone(),
                    path: path.clone(),
                    ts: p.ts,
                    value: p.value,
                }));
            }
            Ok::<_, store::Error>(out)
        };
        match read.await {
            Ok(mut samples) => {
                samples.sort_by_key(|s| s.ts);
                samples
            }
            Err(error) => {
                tracing::warn!(device = %self.device, %error, "Replay from the store failed; live data only");
                Vec::new()
            }
        }
    }

    /// Sends the device's charts, re-rendered from the store or taken from another
    /// browser's fresh render ([`crate::renders`]), unless this client asked for none.
    async fn send_charts(&mut self) -> Result<(), Gone> {
        if !self.charts {
            return Ok(());
        }
        let now = now_ns();
        let (state, device, minutes) = (&self.state, &self.device, self.minutes);
        let got = state
            .renders
            .get(device, minutes, self.newest, now, || {
                render(state, device, minutes, now)
            })
            .await;
        let rendered = match got {
            Ok((rendered, source)) => {
                match source {
                    Source::Rendered => state.metrics.chart_renders.inc(),
                    Source::Shared => state.metrics.chart_renders_shared.inc(),
                };
                rendered
            }
            Err(error) => {
                tracing::warn!(%device, %error, "Live chart render failed");
                return if self.tx.is_closed() {
                    Err(Gone)
                } else {
                    Ok(())
                };
            }
        };
        if let Some(newest) = rendered.newest {
            self.newest = self.newest.max(newest);
        }
        for (kind, data) in &rendered.events {
            self.send(LiveEvent::new(kind, data.clone())).await?;
        }
        Ok(())
    }
}

/// Renders `device`'s charts over the last `minutes` from the store, with the latest
/// values and the freshness line, as the events a live page takes.
async fn render(
    state: &AppState,
    device: &DeviceKey,
    minutes: i64,
    now: i64,
) -> Result<Rendered, store::Error> {
    let from = now - minutes * 60_000_000_000;
    let summary = state.store.device(device).await?;
    let series = state.store.series(device).await?;
    let interfaces = view::interfaces(&series);
    let charts = view::charts(&*state.store, device, &interfaces, from, now).await?;
    let mut events: Vec<(&'static str, String)> = charts
        .into_iter()
        .map(|(interface, svg)| {
            let data = serde_json::json!({ "id": view::chart_id(&interface), "interface": interface, "svg": svg });
            ("chart", data.to_string())
        })
        .collect();
    let rows = serde_json::json!({ "html": view::latest_rows(&series, now) });
    events.push(("latest", rows.to_string()));
    let newest = summary.as_ref().and_then(|s| s.last_sample);
    if let Some(summary) = summary {
        let data = serde_json::json!({
            "lastSample": summary.last_sample.map(api::rfc3339),
            "age": view::age(summary.last_sample, now),
            "state": summary.state.as_str(),
            "health": view::health_line(&summary, now),
        });
        events.push(("freshness", data.to_string()));
    }
    Ok(Rendered {
        at: now,
        newest,
        events,
    })
}

/// A `samples` event; its id is the newest sample's timestamp, what a reconnecting
/// browser sends back as `Last-Event-ID`.
fn samples_event(samples: &[Sample]) -> LiveEvent {
    let newest = samples.iter().map(|s| s.ts).max().unwrap_or(0);
    let shown: Vec<_> = samples
        .iter()
        .take(MAX_SAMPLES_PER_EVENT)
        .map(|s| serde_json::json!({"path": s.path, "ts": api::rfc3339(s.ts), "value": s.value}))
        .collect();
    let mut event = json_event(
        "samples",
        &serde_json::json!({
            "count": samples.len(),
            "newest": api::rfc3339(newest),
            "samples": shown,
        }),
    );
    event.id = Some(newest);
    event
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
