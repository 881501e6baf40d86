//! What the operator shows about itself: Prometheus metrics and the health endpoints
//! (`/healthz`, `/readyz`, `/metrics`), served by the binary on `--listen`.
//!
//! Ready means connected to the API server: a replica that follows is ready too (it
//! would take over within a Lease duration), so readiness does not flap on elections.
//! The `netpulse_operator_leader` gauge says which replica writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of the reconcile counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Everything the operator counts, and whether it is connected.
#[derive(Debug, Default)]
pub struct OperatorMetrics {
    /// CollectorPool reconciles by result.
    pub reconciles: Family<ResultLabel, Counter>,
    /// Device ownership writes sent.
    pub device_writes: Counter,
    /// Planned moves waiting for the handoff limit, after the last reconcile.
    pub handoffs_deferred: Gauge,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// Set once the API server answered.
    pub connected: AtomicBool,
}

impl OperatorMetrics {
    /// Metrics registered in `registry` under `netpulse_operator_*`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Arc::new(Self::default());
        let r = registry.sub_registry_with_prefix("netpulse_operator");
        r.register(
            "reconciles",
            "CollectorPool reconciles, by result",
            metrics.reconciles.clone(),
        );
        r.register(
            "device_writes",
            "Device ownership writes sent (one server-side apply each)",
            metrics.device_writes.clone(),
        );
        r.register(
            "handoffs_deferred",
            "Planned device moves waiting for the in-flight handoff limit",
            metrics.handoffs_deferred.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the controller",
            metrics.leader.clone(),
        );
        metrics
    }

    /// Records that the API server answered.
    pub fn set_connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct OpsState {
    metrics: Arc<OperatorMetrics>,
    registry: Arc<Registry>,
}

/// `/healthz` (the process runs), `/readyz` (the API server answered) and `/metrics`.
pub fn router(metrics: Arc<OperatorMetrics>, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(OpsState { metrics, registry })
}

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    if state.metrics.connected.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the Kubernetes API server yet\n",
        )
    }
}

async fn metrics_text(State(state): State<OpsState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    async fn get_text(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn ready_once_connected_and_metrics_say_who_leads() {
        let mut registry = Registry::default();
        let metrics = OperatorMetrics::register(&mut registry);
        let router = router(metrics.clone(), Arc::new(registry));
        assert_eq!(get_text(&router, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_text(&router, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        metrics.set_connected();
        metrics.leader.set(1);
        metrics
            .reconciles
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        assert_eq!(get_text(&router, "/readyz").await.0, StatusCode::OK);
        let (status, text) = get_text(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("netpulse_operator_leader 1"), "{text}");
        assert!(
            text.contains("netpulse_operator_reconciles_total{result=\"ok\"} 1"),
            "{text}"
        );
    }
}
