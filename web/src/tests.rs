//! Router tests: real SQLite store in a temp dir, in-process bus, no socket.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use bus::{Bus, BusMessage, MemoryBus};
use futures::StreamExt;
use model::{DeviceKey, Sample, Value};
use prometheus_client::registry::Registry;
use store::DeviceInfo;
use tower::ServiceExt;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    bus: Arc<MemoryBus>,
}

fn counter(ifname: &str, leaf: &str) -> model::Path {
    format!("/interfaces/interface[name={ifname}]/state/counters/{leaf}")
        .parse()
        .unwrap()
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("t.db").display());
    let store = store::open(&url, true).await.unwrap();
    let bus = Arc::new(MemoryBus::new());
    let device = DeviceKey::new("leaf1").unwrap();
    store
        .upsert_devices(&[DeviceInfo {
            name: device.clone(),
            address: "127.0.1.1:57400".into(),
        }])
        .await
        .unwrap();
    // Ten samples, 2 s apart, ending now: 1 MB/s in, 0.5 MB/s out.
    let now = now_ns();
    let mut samples = Vec::new();
    for i in 0..10i64 {
        let ts = now - (9 - i) * 2_000_000_000;
        for (leaf, per_step) in [("in-octets", 2_000_000u64), ("out-octets", 1_000_000)] {
            samples.push(Sample {
                device: device.clone(),
                path: counter("Ethernet1", leaf).into(),
                ts,
                value: Value::Uint(i as u64 * per_step),
            });
        }
    }
    store.write_samples(&samples).await.unwrap();
    let bus_dyn: Arc<dyn Bus> = bus.clone();
    let state = AppState::new(store, bus_dyn, Registry::default());
    Fixture {
        _dir: dir,
        state,
        bus,
    }
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, String) {
    let res = router(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = to_bytes(res.into_body(), 10 << 20).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn api_lists_devices_with_their_series() {
    let f = fixture().await;
    let (status, body) = get(&f.state, "/api/v1/devices").await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let d = &json["devices"][0];
    assert_eq!(d["name"], "leaf1");
    assert_eq!(d["series"], 2);
    assert!(d["lastSample"].as_str().unwrap().ends_with('Z'));

    let (status, body) = get(&f.state, "/api/v1/devices/leaf1").await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["series"].as_array().unwrap().len(), 2);
    assert_eq!(json["series"][0]["lastValue"]["uint"], 18_000_000);
}

#[tokio::test]
async fn series_endpoint_returns_points_and_refuses_bad_input() {
    let f = fixture().await;
    let path = "/interfaces/interface%5Bname%3DEthernet1%5D/state/counters/in-octets";
    let (status, body) = get(
        &f.state,
        &format!("/api/v1/devices/leaf1/series?path={path}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), 10);

    // In steps: ten samples 2 s apart, ending now, in 10 s steps over the last minute.
    let (status, body) = get(
        &f.state,
        &format!(
            "/api/v1/devices/leaf1/series?path={path}&from={}&step=10s",
            now_ns() - 59_000_000_000
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let buckets = json["buckets"].as_array().unwrap();
    // Buckets start on whole 10 s: six or seven of them cover the last 59 s.
    assert!((6..=7).contains(&buckets.len()), "{body}");
    assert!(
        buckets
            .iter()
            .all(|b| b["start"].as_str().is_some_and(|s| s.ends_with("0Z"))),
        "{body}"
    );
    let counted: u64 = buckets
        .iter()
        .filter_map(|b| b["stats"]["count"].as_u64())
        .sum();
    assert_eq!(counted, 10, "{body}");
    assert!(
        buckets[0]["stats"].is_null(),
        "the first 30 s hold no samples: {body}"
    );
    for bad in ["0s", "soon"] {
        let (status, body) = get(
            &f.state,
            &format!("/api/v1/devices/leaf1/series?path={path}&step={bad}"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains("step"), "{body}");
    }
    let (status, body) = get(
        &f.state,
        &format!("/api/v1/devices/leaf1/series?path={path}&from=0&step=1ms"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("use a longer step"), "{body}");

    let (status, body) = get(&f.state, "/api/v1/devices/leaf1/series").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("`path` parameter is required"), "{body}");
    let (status, body) = get(&f.state, "/api/v1/devices/leaf1/series?path=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("must start with '/'"), "{body}");
    let (status, body) = get(
        &f.state,
        &format!("/api/v1/devices/leaf1/series?path={path}&from=soon"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("from=\\\"soon\\\""), "{body}");
    let (status, _) = get(
        &f.state,
        &format!("/api/v1/devices/nope/series?path={path}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&f.state, "/api/v1/devices/Not%20A%20Name").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pages_render_tables_and_svg_charts() {
    let f = fixture().await;
    let (status, body) = get(&f.state, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#"<a href="/devices/leaf1">leaf1</a>"#),
        "{body}"
    );
    let (status, body) = get(&f.state, "/devices/leaf1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"<svg id="chart-Ethernet1""#), "{body}");
    // 2 MB per 2 s in = 8 Mb/s; the line has points and the axis is in Mb/s.
    assert!(body.contains("Mb/s"), "{body}");
    assert!(!body.contains("no data in this window"));
    let (status, _) = get(&f.state, "/devices/ghost").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, js) = get(&f.state, "/assets/live.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("EventSource"));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let f = fixture().await;
    assert_eq!(get(&f.state, "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(&f.state, "/readyz").await.0, StatusCode::OK);
    let (status, body) = get(&f.state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("netpulse_bus_connected 1"), "{body}");
    assert!(body.contains("netpulse_web_sse_clients"), "{body}");
}

#[tokio::test]
async fn live_stream_forwards_samples_and_rerendered_charts() {
    let f = fixture().await;
    let res = router(f.state.clone())
        .oneshot(
            Request::get("/devices/leaf1/live")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body().into_data_stream();
    let device = DeviceKey::new("leaf1").unwrap();
    let sample = Sample {
        device: device.clone(),
        path: counter("Ethernet1", "in-octets").into(),
        ts: now_ns(),
        value: Value::Uint(99_000_000),
    };
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(seen.contains("event: samples") && seen.contains("event: chart")) {
        f.bus.publish(BusMessage::Samples {
            device: device.clone(),
            samples: vec![sample.clone()],
        });
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("live stream went quiet")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains(&format!("id: {}", sample.ts)), "{seen}");
    assert!(seen.contains("chart-Ethernet1"), "{seen}");
    let (_, metrics) = get(&f.state, "/metrics").await;
    assert!(metrics.contains("netpulse_web_sse_clients 1"), "{metrics}");
}

#[tokio::test]
async fn browsers_of_one_device_share_its_chart_renders() {
    let f = fixture().await;
    let device = DeviceKey::new("leaf1").unwrap();
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(open_live(&f, "/devices/leaf1/live", &[]).await);
    }
    let sample = Sample {
        device: device.clone(),
        path: counter("Ethernet1", "in-octets").into(),
        ts: now_ns(),
        value: Value::Uint(99_000_000),
    };
    // As a collector does: the store first, then the bus.
    f.state
        .store
        .write_samples(std::slice::from_ref(&sample))
        .await
        .unwrap();
    f.bus.publish(BusMessage::Samples {
        device: device.clone(),
        samples: vec![sample],
    });
    let mut charts = Vec::new();
    for body in &mut bodies {
        let seen = read_until(body, |s| s.contains("event: chart")).await;
        let chart = seen
            .split("\n\n")
            .find(|e| e.contains("event: chart"))
            .unwrap()
            .to_owned();
        charts.push(chart);
    }
    // One render for the four browsers due together (the others took it).
    assert!(charts.iter().all(|c| c == &charts[0]), "{charts:?}");
    let (_, metrics) = get(&f.state, "/metrics").await;
    let value = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}_total ")))
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (rendered, shared) = (
        value("netpulse_web_chart_renders"),
        value("netpulse_web_chart_renders_shared"),
    );
    assert!(
        rendered >= 1 && shared >= 1,
        "rendered {rendered}, shared {shared}"
    );
    assert!(
        rendered + shared >= 4,
        "rendered {rendered}, shared {shared}"
    );
}

/// What a collector records for leaf1 (the collector's `DeviceHealth` JSON).
async fn record_health(f: &Fixture) {
    record_health_at(f, now_ns()).await;
}

async fn record_health_at(f: &Fixture, at: i64) {
    let health = serde_json::json!({
        "device": "leaf1",
        "state": "degraded",
        "lastError": "device refused ON_CHANGE; sampling every 10s instead",
        "encoding": "json_ietf",
        "quirks": ["device refused ON_CHANGE; sampling every 10s instead", "<b>"],
        "reconnects": 3,
        "bytesReceived": 4096,
        "subscriptions": [
            {"path": "/interfaces", "intervalMs": 1000, "expected": 90, "received": 88, "missing": 2, "gaps": 1},
            {"path": "/system", "intervalMs": 10000, "expected": 10, "received": 10, "missing": 0, "gaps": 0},
        ],
        "lastWindow": {"seconds": 60, "expected": 80, "missing": 2},
    });
    f.state
        .store
        .record_health(&DeviceKey::new("leaf1").unwrap(), &health, at)
        .await
        .unwrap();
}

#[tokio::test]
async fn api_shows_the_health_a_collector_recorded() {
    let f = fixture().await;
    let (_, body) = get(&f.state, "/api/v1/devices").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json["devices"][0]["health"],
        serde_json::Value::Null,
        "{json}"
    );

    record_health(&f).await;
    for uri in ["/api/v1/devices", "/api/v1/devices/leaf1"] {
        let (status, body) = get(&f.state, uri).await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let d = if uri.ends_with("leaf1") {
            &json["device"]
        } else {
            &json["devices"][0]
        };
        let h = &d["health"];
        assert!(h["reportedAt"].as_str().unwrap().ends_with('Z'), "{h}");
        assert_eq!(h["state"], "degraded");
        assert_eq!(
            h["lastError"],
            "device refused ON_CHANGE; sampling every 10s instead"
        );
        assert_eq!(h["encoding"], "json_ietf");
        assert_eq!(h["quirks"].as_array().unwrap().len(), 2);
        assert_eq!(h["reconnects"], 3);
        assert_eq!(h["bytesReceived"], 4096);
        assert_eq!(
            h["completeness"],
            serde_json::json!({"expected": 100, "received": 98, "missing": 2, "gaps": 1, "ratio": 0.98}),
            "{h}"
        );
        assert_eq!(
            h["window"],
            serde_json::json!({"seconds": 60, "expected": 80, "missing": 2, "ratio": 0.975}),
            "{h}"
        );
        assert_eq!(h["subscriptions"][0]["intervalMs"], 1000);
        assert_eq!(h["subscriptions"][1]["path"], "/system");
    }
}

#[tokio::test]
async fn pages_show_completeness_and_health() {
    let f = fixture().await;
    let (_, body) = get(&f.state, "/").await;
    assert!(body.contains("<th>Complete</th>"), "{body}");
    assert!(body.contains(r#"<td class="complete">–</td>"#), "{body}");
    let (_, body) = get(&f.state, "/devices/leaf1").await;
    assert!(
        body.contains(r#"<p class="meta health" id="health"></p>"#),
        "{body}"
    );

    record_health(&f).await;
    let (_, body) = get(&f.state, "/").await;
    assert!(
        body.contains(r#"<td class="complete" title="2 of 80 expected samples missing in the last 60s">97.5%</td>"#),
        "{body}"
    );
    assert!(
        body.contains("0 of 1 synced · 97.5% of expected samples received</p>"),
        "{body}"
    );
    let (_, fragment) = get(&f.state, "/fragments/devices").await;
    assert!(fragment.contains(">97.5%</td>"), "{fragment}");
    let (_, body) = get(&f.state, "/devices/leaf1").await;
    assert!(
        body.contains(
            r#"encoding json_ietf · <span class="complete">97.5% complete</span> over the last 60s (2 of 80 samples missing) · quirks: device refused ON_CHANGE; sampling every 10s instead; &lt;b&gt; · 3 reconnects</p>"#
        ),
        "{body}"
    );
}

#[tokio::test]
async fn live_freshness_carries_the_health_line() {
    let f = fixture().await;
    record_health(&f).await;
    let res = router(f.state.clone())
        .oneshot(
            Request::get("/devices/leaf1/live")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = res.into_body().into_data_stream();
    let device = DeviceKey::new("leaf1").unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: freshness") {
        f.bus.publish(BusMessage::Samples {
            device: device.clone(),
            samples: vec![Sample {
                device: device.clone(),
                path: counter("Ethernet1", "in-octets").into(),
                ts: now_ns(),
                value: Value::Uint(1),
            }],
        });
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("live stream went quiet")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("97.5% complete"), "{seen}");
    let (_, js) = get(&f.state, "/assets/live.js").await;
    assert!(js.contains("healthEl.innerHTML = d.health"), "{js}");
}

#[tokio::test]
async fn an_old_health_report_shows_its_age() {
    let f = fixture().await;
    record_health_at(&f, now_ns() - 300 * 1_000_000_000).await;
    let (_, body) = get(&f.state, "/devices/leaf1").await;
    assert!(
        body.contains(" · 3 reconnects · reported 5m ago</p>"),
        "{body}"
    );
}

#[tokio::test]
async fn top_endpoint_ranks_series_and_refuses_bad_input() {
    let f = fixture().await;
    // leaf2 grows 3 MB/s on Ethernet1, faster than leaf1's 1 MB/s in and 0.5 MB/s out.
    let leaf2 = DeviceKey::new("leaf2").unwrap();
    let now = now_ns();
    let samples: Vec<Sample> = (0..3i64)
        .map(|i| Sample {
            device: leaf2.clone(),
            path: counter("Ethernet1", "in-octets").into(),
            ts: now - (2 - i) * 10_000_000_000,
            value: Value::Uint(i as u64 * 30_000_000),
        })
        .collect();
    f.state.store.write_samples(&samples).await.unwrap();
    let ranked = |json: &serde_json::Value| -> Vec<(String, String, f64)> {
        json["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let path = s["path"].as_str().unwrap();
                let leaf = path.rsplit('/').next().unwrap().to_owned();
                let device = s["device"].as_str().unwrap().to_owned();
                (device, leaf, s["perSecond"].as_f64().unwrap())
            })
            .collect()
    };

    let (status, body) = get(&f.state, "/api/v1/top").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["window"], "300s", "5 minutes by default: {body}");
    assert_eq!(json["leaf"], serde_json::Value::Null);
    assert_eq!(
        ranked(&json),
        [
            ("leaf2".into(), "in-octets".into(), 3_000_000.0),
            ("leaf1".into(), "in-octets".into(), 1_000_000.0),
            ("leaf1".into(), "out-octets".into(), 500_000.0),
        ]
    );

    let (status, body) = get(&f.state, "/api/v1/top?leaf=in-octets&limit=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ranked(&json),
        [("leaf2".into(), "in-octets".into(), 3_000_000.0)]
    );

    let (status, body) = get(
        &f.state,
        "/api/v1/top?leaf=in-octets&window=1m&device=leaf1",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["window"], "60s");
    assert_eq!(json["device"], "leaf1");
    assert_eq!(
        json["series"],
        serde_json::json!([{
            "device": "leaf1",
            "path": "/interfaces/interface[name=Ethernet1]/state/counters/in-octets",
            "perSecond": 1_000_000.0,
            "increase": 18_000_000.0,
            "samples": 10,
        }])
    );

    // Samples are 2 s apart or more: no 1 s window holds two of one series.
    let (status, body) = get(&f.state, "/api/v1/top?window=1s").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["series"], serde_json::json!([]), "{body}");

    for (query, message) in [
        ("window=0s", "the window must be positive"),
        ("window=soon", "window: "),
        ("window=2d", "at most 24h"),
        ("limit=0", "the limit must be at least 1"),
        ("limit=1001", "limit 1001 is too large; at most 1000"),
        ("limit=ten", r#"limit=\"ten\" is not a whole number"#),
        ("leaf=counters/in-octets", "is not a path element name"),
        ("leaf=", "is not a path element name"),
    ] {
        let (status, body) = get(&f.state, &format!("/api/v1/top?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body.contains(message), "{query}: {body}");
    }
    for device in ["nope", "Not%20A%20Name"] {
        let (status, body) = get(&f.state, &format!("/api/v1/top?device={device}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{device}: {body}");
    }
}

/// Opens `uri` (a live stream) on a fresh router, with `headers`.
async fn open_live(
    f: &Fixture,
    uri: &str,
    headers: &[(&str, String)],
) -> impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin + use<> {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let res = router(f.state.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.into_body().into_data_stream()
}

/// Reads SSE text from `body` until `done` holds for what was read (10 s at most).
async fn read_until(
    body: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    done: impl Fn(&str) -> bool,
) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(&seen) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("live stream went quiet; got: {seen}"))
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

/// Sample timestamps in the `samples` events of `text`, in order.
fn sample_stamps(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| e.contains("event: samples"))
        .flat_map(|e| {
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let d: serde_json::Value = serde_json::from_str(data).unwrap();
            d["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["ts"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn a_reconnecting_browser_gets_what_it_missed_then_live_data_without_repeats() {
    let f = fixture().await;
    let device = DeviceKey::new("leaf1").unwrap();
    let path: Arc<model::Path> = counter("Ethernet1", "in-octets").into();
    let stored = f
        .state
        .store
        .range(&device, &path, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(stored.len(), 10);
    // The browser saw events up to the 7th point, then lost its connection (or its web
    // pod): it comes back with that id.
    let last_seen = stored[6].ts;
    let mut body = open_live(
        &f,
        "/devices/leaf1/live",
        &[("Last-Event-ID", last_seen.to_string())],
    )
    .await;
    let replayed = read_until(&mut body, |s| s.contains("event: samples")).await;
    // The 3 later points of both counters, oldest first, and nothing older.
    let stamps = sample_stamps(&replayed);
    assert_eq!(stamps.len(), 6, "{replayed}");
    assert_eq!(stamps[0], api::rfc3339(stored[7].ts));
    assert_eq!(stamps[5], api::rfc3339(stored[9].ts));
    assert!(
        replayed.contains(&format!("id: {}", stored[9].ts)),
        "{replayed}"
    );
    // Live now: the newest stored point comes again from the bus (a collector's batch
    // published after the replay read the store) with one new point; only the new one
    // is sent.
    let fresh = Sample {
        device: device.clone(),
        path: path.clone(),
        ts: stored[9].ts + 2_000_000_000,
        value: Value::Uint(20_000_000),
    };
    let again = Sample {
        device: device.clone(),
        path: path.clone(),
        ts: stored[9].ts,
        value: stored[9].value.clone(),
    };
    let mut live = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !live.contains(&format!("id: {}", fresh.ts)) {
        f.bus.publish(BusMessage::Samples {
            device: device.clone(),
            samples: vec![again.clone(), fresh.clone()],
        });
        if let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_millis(200), body.next()).await
        {
            live.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        assert!(tokio::time::Instant::now() < deadline, "{live}");
    }
    let stamps = sample_stamps(&live);
    assert!(
        !stamps.contains(&api::rfc3339(again.ts)),
        "repeated: {live}"
    );
    assert_eq!(stamps[0], api::rfc3339(fresh.ts));
    let (_, metrics) = get(&f.state, "/metrics").await;
    assert!(
        metrics.contains("netpulse_web_sse_replayed_total 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("netpulse_web_live_subscriptions 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_device_without_new_samples_is_shown_stale_with_its_newest_point() {
    let f = fixture().await;
    let old = DeviceKey::new("old1").unwrap();
    let an_hour_ago = now_ns() - 3_600_000_000_000;
    f.state
        .store
        .write_samples(&[Sample {
            device: old.clone(),
            path: counter("Ethernet1", "in-octets").into(),
            ts: an_hour_ago,
            value: Value::Uint(1),
        }])
        .await
        .unwrap();
    let mut body = open_live(&f, "/devices/old1/live", &[]).await;
    let text = read_until(&mut body, |s| s.contains("event: status")).await;
    assert!(text.contains("\"mode\":\"stale\""), "{text}");
    assert!(
        text.contains(&format!("\"newest\":\"{}\"", api::rfc3339(an_hour_ago))),
        "{text}"
    );
    // leaf1 has fresh samples: live.
    let mut body = open_live(&f, "/devices/leaf1/live", &[]).await;
    let text = read_until(&mut body, |s| s.contains("event: status")).await;
    assert!(text.contains("\"mode\":\"live\""), "{text}");
}

#[tokio::test]
async fn collector_summaries_heard_on_the_bus_are_served() {
    let f = fixture().await;
    let now = now_ns();
    let summary = |name: &str, ts: i64| {
        BusMessage::CollectorHealth(bus::CollectorHealth {
            collector: name.into(),
            pool: "core".into(),
            devices: 500,
            synced: 498,
            degraded: 1,
            unreachable: 1,
            samples_written: 123_456,
            ts,
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let json = loop {
        f.bus.publish(summary("core-collector-0", now));
        // Gone for ten minutes: not shown.
        f.bus
            .publish(summary("core-collector-9", now - 600_000_000_000));
        let (status, body) = get(&f.state, "/api/v1/collectors").await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        if !json["collectors"].as_array().unwrap().is_empty() {
            break json;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let list = json["collectors"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{json}");
    assert_eq!(list[0]["collector"], "core-collector-0");
    assert_eq!(list[0]["unreachable"], 1);
    assert_eq!(list[0]["reportedAt"], api::rfc3339(now));
    // The fleet page draws them, and its fragment refreshes them.
    for uri in ["/", "/fragments/collectors"] {
        let (status, html) = get(&f.state, uri).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains(r#"<tr data-collector="core-collector-0"><td>core-collector-0</td><td>core</td><td>500</td><td>498</td><td>1</td><td class="error">1</td><td>123456</td>"#),
            "{uri}: {html}"
        );
        assert!(!html.contains("core-collector-9"), "{uri}: {html}");
    }
}

#[tokio::test]
async fn the_fleet_page_says_when_no_collector_is_heard() {
    let f = fixture().await;
    let (_, html) = get(&f.state, "/").await;
    assert!(
        html.contains("No collector heard in the last 5 minutes"),
        "{html}"
    );
}

/// A web node on a loopback port, as `netpulse web` serves it (live streams held
/// without hyper); dropping the sender shuts it down.
async fn serve_on_socket(
    f: &Fixture,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with_live(
        listener,
        router(f.state.clone()),
        f.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop, server)
}

/// Sends `head` on `socket` and reads until `done` holds for what came back (10 s at
/// most).
async fn exchange(
    socket: &mut tokio::net::TcpStream,
    head: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(&String::from_utf8_lossy(&seen)) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, socket.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("quiet; got: {}", String::from_utf8_lossy(&seen)))
            .unwrap();
        assert!(n > 0, "closed; got: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(seen).unwrap()
}

/// [`exchange`] on a fresh connection to `addr`.
async fn exchange_fresh(
    addr: std::net::SocketAddr,
    head: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    exchange(&mut socket, head, done).await
}

/// The body of a chunked response read so far (whole chunks only), and its head.
fn dechunk(response: &str) -> (String, String) {
    let (head, mut rest) = response.split_once("\r\n\r\n").unwrap();
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).unwrap();
        if after.len() < size + 2 {
            break;
        }
        body.push_str(&after[..size]);
        assert_eq!(&after[size..size + 2], "\r\n");
        rest = &after[size + 2..];
    }
    (head.to_owned(), body)
}

/// The `samples` events of an SSE body.
fn samples_events(body: &str) -> Vec<&str> {
    body.split("\n\n")
        .filter(|e| e.contains("event: samples"))
        .collect()
}

#[tokio::test]
async fn a_held_stream_sends_what_the_route_sends_and_ends_when_the_browser_goes() {
    let f = fixture().await;
    let (addr, stop, server) = serve_on_socket(&f).await;
    let device = DeviceKey::new("leaf1").unwrap();
    let path: Arc<model::Path> = counter("Ethernet1", "in-octets").into();
    let stored = f
        .state
        .store
        .range(&device, &path, 0, i64::MAX)
        .await
        .unwrap();
    let since = stored[6].ts.to_string();

    // Through the router (what a connection that asked something first gets).
    let mut body = open_live(
        &f,
        "/devices/leaf1/live",
        &[("Last-Event-ID", since.clone())],
    )
    .await;
    let routed = read_until(&mut body, |s| s.contains("event: samples")).await;
    drop(body);

    // Held: a fresh connection, the name percent-encoded as a browser may send it.
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /devices/leaf%31/live HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\
         Last-Event-ID: {since}\r\n\r\n"
    );
    let response = exchange(&mut socket, &request, |s| {
        s.contains("event: samples") && s.contains(&format!("id: {}\n\n\r\n", stored[9].ts))
    })
    .await;
    let (head, held) = dechunk(&response);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for header in [
        "content-type: text/event-stream",
        "cache-control: no-cache",
        "transfer-encoding: chunked",
    ] {
        assert!(head.contains(header), "{header}: {head}");
    }
    assert!(held.starts_with("event: status\n"), "{held}");
    assert_eq!(
        samples_events(&held),
        samples_events(&routed),
        "{held}\n---\n{routed}"
    );
    assert!(!samples_events(&held).is_empty());

    // Live samples after the replay reach the held stream.
    let fresh = Sample {
        device: device.clone(),
        path,
        ts: stored[9].ts + 2_000_000_000,
        value: Value::Uint(99),
    };
    let mut live = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !live.contains(&format!("id: {}", fresh.ts)) {
        f.bus.publish(BusMessage::Samples {
            device: device.clone(),
            samples: vec![fresh.clone()],
        });
        let mut buf = [0u8; 4096];
        if let Ok(read) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::io::AsyncReadExt::read(&mut socket, &mut buf),
        )
        .await
        {
            live.push_str(&String::from_utf8_lossy(&buf[..read.unwrap()]));
        }
        assert!(tokio::time::Instant::now() < deadline, "{live}");
    }
    let (_, metrics) = get(&f.state, "/metrics").await;
    assert!(metrics.contains("netpulse_web_sse_clients 1"), "{metrics}");
    assert!(
        metrics.contains("netpulse_web_sse_held_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("netpulse_web_sse_held_total 1"),
        "{metrics}"
    );

    // The browser goes: its stream ends (the client count falls) without any event
    // having to fail first.
    drop(socket);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = get(&f.state, "/metrics").await;
        if metrics.contains("netpulse_web_sse_clients 0") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stop);
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn everything_but_a_live_request_is_answered_by_the_router_on_the_same_port() {
    let f = fixture().await;
    let (addr, stop, server) = serve_on_socket(&f).await;

    // An unknown device: the route's 404.
    let response = exchange_fresh(
        addr,
        "GET /devices/nope/live HTTP/1.1\r\nHost: x\r\n\r\n",
        |s| s.contains("nope"),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");

    // Pages first (two of them pipelined in one write), then the live stream on the same
    // connection (keep-alive, as a browser or an ingress reuses connections): hyper
    // answers the pages one at a time, and the stream is still held.
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let response = exchange(
        &mut socket,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        |s| s.matches("ok\n").count() == 2,
    )
    .await;
    assert_eq!(response.matches("HTTP/1.1 200").count(), 2, "{response}");
    assert!(!response.contains("connection: close"), "{response}");
    let response = exchange(
        &mut socket,
        "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
        |s| s.ends_with("ready\n"),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let response = exchange(
        &mut socket,
        "GET /devices/leaf1/live HTTP/1.1\r\nHost: x\r\n\r\n",
        |s| s.contains("event: status"),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("content-type: text/event-stream"),
        "{response}"
    );
    let (_, metrics) = get(&f.state, "/metrics").await;
    assert!(
        metrics.contains("netpulse_web_sse_held_total 1"),
        "{metrics}"
    );

    // A bad query or garbage: the route's and hyper's own answers.
    let response = exchange_fresh(
        addr,
        "GET /devices/leaf1/live?minutes=many HTTP/1.1\r\nHost: x\r\n\r\n",
        |s| s.contains("\r\n\r\n"),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let response = exchange_fresh(addr, "GARBAGE\r\n\r\n", |s| s.contains("\r\n\r\n")).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");

    // Shutdown ends held streams rather than waiting for them.
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    exchange(
        &mut held,
        "GET /devices/leaf1/live HTTP/1.1\r\nHost: x\r\n\r\n",
        |s| s.contains("event: status"),
    )
    .await;
    drop(stop);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("shutdown waited for a held stream")
        .unwrap()
        .unwrap();
}
