//! Live updates of a device page over server-sent events.
//!
//! Each browser gets a task that subscribes to the device's bus topic for as long as the
//! browser listens. New samples are forwarded as `samples` events (id = newest sample
//! timestamp) and the charts are re-rendered on the server at most once a second and sent
//! as `chart` events. When the bus is down the task says so (`status` event, `live:
//! false`) and falls back to re-rendering from the store every few seconds.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use bus::{BusMessage, Topic};
use futures::{Stream, StreamExt};
use model::DeviceKey;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{Error, Result};
use crate::view;
use crate::{AppState, DEFAULT_WINDOW_MINUTES, api, now_ns, window_minutes};

/// Events queued per browser; a browser that does not keep up stalls only its own task.
const CLIENT_BUFFER: usize = 64;
/// Charts are re-rendered at most this often.
const RENDER_EVERY: Duration = Duration::from_secs(1);
/// Poll interval of the store while the bus is down.
const POLL_EVERY: Duration = Duration::from_secs(5);
/// Most samples forwarded in one `samples` event.
const MAX_SAMPLES_PER_EVENT: usize = 500;

/// Query of the live endpoint.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    minutes: Option<i64>,
}

/// `GET /devices/{name}/live`
pub async fn device_live(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let key = api::device_key(&name)?;
    if state.store.device(&key).await?.is_none() {
        return Err(Error::UnknownDevice(name));
    }
    let minutes = window_minutes(q.minutes.unwrap_or(DEFAULT_WINDOW_MINUTES));
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    tokio::spawn(stream_device(state, key, minutes, tx));
    let events = ReceiverStream::new(rx).map(Ok);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

fn json_event(kind: &str, data: &serde_json::Value) -> Event {
    Event::default().event(kind).data(data.to_string())
}

async fn stream_device(state: AppState, device: DeviceKey, minutes: i64, tx: mpsc::Sender<Event>) {
    let metrics = state.metrics.clone();
    metrics.sse_clients.inc();
    let _guard = scopeguard(move || {
        metrics.sse_clients.dec();
    });
    let mut sub = Some(state.bus.subscribe(Topic::Device(device.clone())));
    let mut render = tokio::time::interval(RENDER_EVERY);
    let mut poll = tokio::time::interval(POLL_EVERY);
    let mut dirty = false;
    let mut live = state.bus.is_connected();
    if tx.send(status_event(live)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            msg = next_message(&mut sub), if sub.is_some() => {
                let Some(msg) = msg else {
                    // The bus ended this subscription: serve from the store and subscribe
                    // again on the next poll tick (never in a tight loop).
                    sub = None;
                    continue;
                };
                let event = match msg {
                    BusMessage::Samples { samples, .. } => {
                        dirty = true;
                        let newest = samples.iter().map(|s| s.ts).max().unwrap_or(0);
                        let shown: Vec<_> = samples.iter().take(MAX_SAMPLES_PER_EVENT).map(|s| {
                            serde_json::json!({"path": s.path, "ts": api::rfc3339(s.ts), "value": s.value})
                        }).collect();
                        json_event("samples", &serde_json::json!({
                            "count": samples.len(),
                            "newest": api::rfc3339(newest),
                            "samples": shown,
                        })).id(newest.to_string())
                    }
                    BusMessage::State(ev) => json_event("state", &serde_json::json!({
                        "state": ev.state.as_str(),
                        "error": ev.error,
                        "ts": api::rfc3339(ev.ts),
                    })),
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            _ = render.tick(), if dirty => {
                dirty = false;
                if !send_charts(&state, &device, minutes, &tx).await {
                    return;
                }
            }
            _ = poll.tick() => {
                if sub.is_none() {
                    sub = Some(state.bus.subscribe(Topic::Device(device.clone())));
                }
                let now_live = state.bus.is_connected();
                if now_live != live {
                    live = now_live;
                    if tx.send(status_event(live)).await.is_err() {
                        return;
                    }
                }
                if tx.is_closed() || (!live && !send_charts(&state, &device, minutes, &tx).await) {
                    return;
                }
            }
        }
    }
}

async fn next_message(sub: &mut Option<bus::Subscription>) -> Option<BusMessage> {
    match sub {
        Some(sub) => sub.next().await,
        None => std::future::pending().await,
    }
}

fn status_event(live: bool) -> Event {
    json_event(
        "status",
        &serde_json::json!({ "live": live, "mode": if live { "live" } else { "paused" } }),
    )
}

/// Re-renders the device's charts and sends them; false when the browser has gone.
async fn send_charts(
    state: &AppState,
    device: &DeviceKey,
    minutes: i64,
    tx: &mpsc::Sender<Event>,
) -> bool {
    let now = now_ns();
    let from = now - minutes * 60_000_000_000;
    let rendered = async {
        let summary = state.store.device(device).await?;
        let series = state.store.series(device).await?;
        let interfaces = view::interfaces(&series);
        let charts = view::charts(&*state.store, device, &interfaces, from, now).await?;
        Ok::<_, store::Error>((summary, series, charts))
    }
    .await;
    let (summary, series, charts) = match rendered {
        Ok(r) => r,
        Err(error) => {
            tracing::warn!(%device, %error, "Live chart render failed");
            return !tx.is_closed();
        }
    };
    state.metrics.chart_renders.inc();
    for (interface, svg) in charts {
        let data = serde_json::json!({ "id": view::chart_id(&interface), "interface": interface, "svg": svg });
        if tx.send(json_event("chart", &data)).await.is_err() {
            return false;
        }
    }
    let rows = serde_json::json!({ "html": view::latest_rows(&series, now) });
    if tx.send(json_event("latest", &rows)).await.is_err() {
        return false;
    }
    if let Some(summary) = summary {
        let data = serde_json::json!({
            "lastSample": summary.last_sample.map(api::rfc3339),
            "age": view::age(summary.last_sample, now),
            "state": summary.state.as_str(),
            "health": view::health_line(&summary, now),
        });
        if tx.send(json_event("freshness", &data)).await.is_err() {
            return false;
        }
    }
    true
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
