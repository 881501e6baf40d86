//! The web role: HTML dashboards with server-rendered SVG, live updates over SSE, the JSON
//! API, and the health and metrics endpoints.
//!
//! Reads from the `store` and subscribes to the `bus`; never talks to devices and must
//! not import the collector or operator crates. Every asset is compiled into the binary
//! (clusters are often air-gapped).

mod api;
pub mod chart;
mod error;
pub mod health;
mod held;
pub mod hub;
mod live;
mod metrics;
pub mod renders;
pub mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use bus::Bus;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use store::Store;

pub use error::{Error, Result};
pub use metrics::WebMetrics;

/// Default chart window of a device page.
pub const DEFAULT_WINDOW_MINUTES: i64 = 10;

/// Everything a handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Where history comes from.
    pub store: Arc<dyn Store>,
    /// Where live updates come from.
    pub bus: Arc<dyn Bus>,
    /// Metrics of this component.
    pub metrics: Arc<WebMetrics>,
    /// Live fan-out to browsers: one bus subscription per watched device.
    pub hub: hub::Hub,
    /// Chart renders shared by the browsers of a device.
    pub renders: renders::Renders,
    /// A device without a new sample for this long is shown stale.
    pub stale_after: std::time::Duration,
    /// The process-wide registry served on `/metrics`.
    pub registry: Arc<Registry>,
    /// Cancelled when the server shuts down: live streams end (they have no end of
    /// their own for a graceful drain to wait for).
    pub streams: tokio_util::sync::CancellationToken,
}

impl AppState {
    /// Builds the state, registering the web and bus metrics in `registry` first.
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, mut registry: Registry) -> Self {
        let metrics = Arc::new(WebMetrics::register(&mut registry, bus.clone()));
        let hub = hub::Hub::new(bus.clone(), metrics.live_subscriptions.clone());
        Self {
            store,
            bus,
            hub,
            renders: renders::Renders::default(),
            stale_after: live::STALE_AFTER,
            metrics,
            registry: Arc::new(registry),
            streams: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// This state, showing devices stale after `after` without a new sample.
    pub fn with_stale_after(mut self, after: std::time::Duration) -> Self {
        self.stale_after = after;
        self
    }
}

/// Wall-clock time in ns since the epoch.
pub fn now_ns() -> model::TimestampNs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Clamps a requested chart window to 1 minute .. 1 day.
fn window_minutes(requested: i64) -> i64 {
    requested.clamp(1, 24 * 60)
}

/// The whole HTTP surface as a value: tests drive it without a socket.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/fragments/devices", get(device_fragment))
        .route("/fragments/collectors", get(collector_fragment))
        .route("/devices/{name}", get(device_page))
        .route("/devices/{name}/live", get(live::device_live))
        .route("/api/v1/devices", get(api::devices))
        .route("/api/v1/collectors", get(api::collectors))
        .route("/api/v1/devices/{name}", get(api::device))
        .route("/api/v1/devices/{name}/series", get(api::series))
        .route("/api/v1/top", get(api::top))
        .route("/assets/app.css", get(css))
        .route("/assets/live.js", get(js))
        .route("/assets/favicon.svg", get(favicon))
        .with_state(state.clone())
        .merge(ops_router(state.store, state.registry))
}

/// State of the operational endpoints.
#[derive(Clone)]
struct OpsState {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    gate: Option<ReadinessGate>,
}

impl std::fmt::Debug for OpsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsState")
            .field("store", &self.store)
            .field("gated", &self.gate.is_some())
            .finish_non_exhaustive()
    }
}

/// A readiness condition of its own a role adds to `/readyz`: `None` when ready, else why
/// not, in plain words (a collector on Kubernetes: its device watch has not listed yet).
pub type ReadinessGate = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// `/healthz`, `/readyz` (the store answers) and `/metrics`: what every role serves,
/// including roles without dashboards (the collector).
pub fn ops_router(store: Arc<dyn Store>, registry: Arc<Registry>) -> Router {
    ops_router_gated(store, registry, None)
}

/// [`ops_router`] whose `/readyz` also requires `gate`.
pub fn ops_router_gated(
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    gate: Option<ReadinessGate>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(OpsState {
            store,
            registry,
            gate,
        })
}

/// Serves `router` over HTTP/1.1 on `listener` until `shutdown` resolves, then drains
/// connections (each finishes its response in flight).
///
/// hyper's HTTP/1 connection directly, not `axum::serve`: the latter's HTTP/1-or-2
/// detection and upgrade support cost ~12 KiB more per open connection (34.3 against
/// 22.0 KiB per held SSE stream, `netpulse-bench sse-floor`). Browsers reach it through
/// an ingress, which speaks HTTP/1.1 to its upstreams; nothing here upgrades (SSE only,
/// ADR-0016).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_inner(listener, router, None, shutdown).await
}

/// [`serve`], with the live streams of `state`'s devices held without hyper (`held`:
/// ~14 KiB less per watching browser). `router` must serve the
/// same streams (it does for connections that ask something else first).
pub async fn serve_with_live(
    listener: tokio::net::TcpListener,
    router: Router,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_inner(listener, router, Some(state), shutdown).await
}

async fn serve_inner(
    listener: tokio::net::TcpListener,
    router: Router,
    live: Option<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // A request lent to hyper alone ends its input after the head (`held`): answer it.
    http.half_close(true);
    tokio::pin!(shutdown);
    loop {
        let (socket, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: keep serving the others.
                    tracing::warn!(%error, "Accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let Some(state) = live.clone() else {
            let connection = graceful
                .watch(http.serve_connection(hyper_util::rt::TokioIo::new(socket), service));
            tokio::spawn(async move {
                // A client that goes away mid-request is not a server error.
                let _ = connection.await;
            });
            continue;
        };
        tokio::spawn(held::connection(
            socket,
            state,
            http.clone(),
            service,
            graceful.watcher(),
        ));
    }
    drop(listener);
    if let Some(state) = &live {
        // Live streams end, through hyper or held, so the drain below can finish.
        state.streams.cancel();
    }
    graceful.shutdown().await;
    Ok(())
}

async fn index(State(state): State<AppState>) -> Result<Html<String>> {
    let devices = state.store.devices().await?;
    let now = now_ns();
    let collectors = state.hub.collectors(now);
    Ok(Html(view::index(&devices, &collectors, now)))
}

async fn collector_fragment(State(state): State<AppState>) -> Html<String> {
    let now = now_ns();
    Html(view::collector_table(&state.hub.collectors(now), now))
}

async fn device_fragment(State(state): State<AppState>) -> Result<Html<String>> {
    let devices = state.store.devices().await?;
    Ok(Html(view::device_table(&devices, now_ns())))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    minutes: Option<i64>,
}

async fn device_page(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response> {
    let key = api::device_key(&name)?;
    let Some(device) = state.store.device(&key).await? else {
        let body = format!("No device named {}.", view::escape(&name));
        return Ok((StatusCode::NOT_FOUND, Html(body)).into_response());
    };
    let minutes = window_minutes(q.minutes.unwrap_or(DEFAULT_WINDOW_MINUTES));
    let now = now_ns();
    let series = state.store.series(&key).await?;
    let interfaces = view::interfaces(&series);
    let charts = view::charts(
        &*state.store,
        &key,
        &interfaces,
        now - minutes * 60_000_000_000,
        now,
    )
    .await?;
    state.metrics.chart_renders.inc();
    Ok(Html(view::device_page(&device, &series, &charts, minutes, now)).into_response())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<OpsState>) -> Response {
    if let Some(why) = state.gate.as_ref().and_then(|gate| gate()) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(error) => {
            tracing::warn!(%error, "Not ready: store unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

async fn metrics_text(State(state): State<OpsState>) -> Response {
    let mut body = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        tracing::error!(%error, "Metrics encoding failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/app.css"),
    )
        .into_response()
}

async fn favicon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("../assets/favicon.svg"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/live.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
