//! Metrics of the web role, plus the bus counters it exposes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bus::Bus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// Web metrics, registered once.
#[derive(Debug, Default)]
pub struct WebMetrics {
    /// Browsers currently streaming live updates.
    pub sse_clients: Gauge,
    /// Chart sets rendered (pages and live updates).
    pub chart_renders: Counter,
    /// Live chart updates that took another browser's fresh render.
    pub chart_renders_shared: Counter,
    /// Devices with a live bus subscription (watched by at least one browser).
    pub live_subscriptions: Gauge,
    /// Messages slow browsers skipped (they got the latest state instead).
    pub sse_skipped: Counter,
    /// Stored samples replayed to reconnecting browsers.
    pub sse_replayed: Counter,
    /// Live streams held without hyper (the others went through the router).
    pub sse_held: Counter,
}

impl WebMetrics {
    /// Registers the web metrics and a collector reading the bus counters.
    pub fn register(registry: &mut Registry, bus: Arc<dyn Bus>) -> Self {
        let m = Self::default();
        registry.register(
            "netpulse_web_sse_clients",
            "Browsers streaming live updates",
            m.sse_clients.clone(),
        );
        registry.register(
            "netpulse_web_chart_renders",
            "Chart sets rendered for pages and live updates",
            m.chart_renders.clone(),
        );
        registry.register(
            "netpulse_web_chart_renders_shared",
            "Live chart updates that took another browser's fresh render of the same device",
            m.chart_renders_shared.clone(),
        );
        registry.register(
            "netpulse_web_live_subscriptions",
            "Devices with a live bus subscription, watched by at least one browser",
            m.live_subscriptions.clone(),
        );
        registry.register(
            "netpulse_web_sse_skipped",
            "Live messages slow browsers skipped (they were sent the latest state instead)",
            m.sse_skipped.clone(),
        );
        registry.register(
            "netpulse_web_sse_replayed",
            "Stored samples replayed to reconnecting browsers (Last-Event-ID)",
            m.sse_replayed.clone(),
        );
        registry.register(
            "netpulse_web_sse_held",
            "Live streams held without hyper's connection buffers",
            m.sse_held.clone(),
        );
        registry.register_collector(Box::new(BusCollector(bus)));
        m
    }
}

#[derive(Debug)]
struct BusCollector(Arc<dyn Bus>);

impl Collector for BusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        for (name, help, value) in [
            (
                "netpulse_bus_published",
                "Messages handed to the bus",
                &stats.published,
            ),
            (
                "netpulse_bus_dropped",
                "Messages dropped because the bus was slow or down",
                &stats.dropped,
            ),
            (
                "netpulse_bus_received",
                "Messages received from the bus",
                &stats.received,
            ),
            (
                "netpulse_bus_undecodable",
                "Bus messages that could not be decoded",
                &stats.undecodable,
            ),
        ] {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            counter.encode(metric)?;
        }
        let up = ConstGauge::new(i64::from(self.0.is_connected()));
        let metric = encoder.encode_descriptor(
            "netpulse_bus_connected",
            "1 when live delivery works (Redis reachable)",
            None,
            MetricType::Gauge,
        )?;
        up.encode(metric)
    }
}
