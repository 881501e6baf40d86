//! End to end, production shape: simulator, collector and web as separate processes
//! that talk only through a real PostgreSQL and a real Redis. The web process serves
//! live data it never collected itself.

mod common;

use common::{Netpulse, TempDatabase, eventually, get_json, read_sse};

#[tokio::test]
async fn collector_and_web_processes_share_only_postgres_and_redis() {
    let db = TempDatabase::create("dist").await;
    let redis = std::env::var("NETPULSE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("nptest-e2e-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let devices = dir.path().join("devices.yaml");

    let mut sim = Netpulse::start(&[
        "simulate",
        "--devices",
        "3",
        "--base-address",
        "127.0.60.1",
        "--port",
        "0",
        "--sample-interval",
        "1s",
        "--write-devices",
        devices.to_str().unwrap(),
    ]);
    sim.wait_for_line("simulated devices running").await;

    let mut web = Netpulse::start(&[
        "web",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &db.url,
        "--redis-url",
        &redis,
        "--bus-prefix",
        &prefix,
    ]);
    let base = web.wait_for_url().await;

    let mut collector = Netpulse::start(&[
        "collector",
        "--devices",
        devices.to_str().unwrap(),
        "--database-url",
        &db.url,
        "--redis-url",
        &redis,
        "--bus-prefix",
        &prefix,
        "--listen",
        "127.0.0.1:0",
    ]);
    let collector_base = collector.wait_for_url().await;

    eventually("three synced devices with samples, seen by web", || async {
        let json = get_json(&format!("{base}/api/v1/devices")).await?;
        let list = json["devices"].as_array()?;
        (list.len() == 3
            && list
                .iter()
                .all(|d| d["state"] == "synced" && d["series"].as_i64() > Some(0)))
        .then_some(())
    })
    .await;

    // Live samples reach the browser through Redis: the web process has no collector.
    let text = read_sse(&format!("{base}/devices/sim-0002/live"), "samples", 2).await;
    assert!(text.contains("\"live\":true"), "{text}");
    assert!(text.contains("in-octets"), "{text}");
    let web_metrics = common::get_text(&format!("{base}/metrics")).await;
    assert!(
        web_metrics.contains("netpulse_bus_connected 1"),
        "{web_metrics}"
    );
    assert!(
        !web_metrics.contains("netpulse_collector_samples_written"),
        "the web process must not be collecting"
    );

    let collector_metrics = common::get_text(&format!("{collector_base}/metrics")).await;
    for name in [
        "netpulse_collector_samples_written_total",
        "netpulse_collector_samples_expected_total",
        "netpulse_collector_samples_missing_total",
        "netpulse_collector_bytes_received_total",
        "netpulse_collector_reconnects_total",
        "netpulse_collector_notification_lag_seconds_count",
    ] {
        assert!(
            collector_metrics.contains(name),
            "{name}: {collector_metrics}"
        );
    }
    // The collector's per-device view is on its ops listener.
    let health = get_json(&format!("{collector_base}/api/v1/collector/devices"))
        .await
        .expect("collector devices JSON");
    let devices = health.as_array().expect("a list");
    assert!(
        !devices.is_empty() && devices.iter().all(|d| d["state"].is_string()),
        "{health}"
    );

    // The same health reaches the web process through PostgreSQL (the collector writes it
    // every 10 s): per-device completeness, encoding and subscriptions, in the API and on
    // the device page.
    let health = eventually("sim-0001 health with completeness, seen by web", || async {
        let json = get_json(&format!("{base}/api/v1/devices/sim-0001")).await?;
        let health = json["device"]["health"].clone();
        let c = &health["completeness"];
        (c["expected"].as_u64() > Some(0) && c["received"].as_u64() > Some(0)).then_some(health)
    })
    .await;
    assert_eq!(health["encoding"], "proto", "{health}");
    assert!(health["reportedAt"].is_string(), "{health}");
    assert!(
        health["completeness"]["ratio"].as_f64() > Some(0.0),
        "{health}"
    );
    let subscriptions = health["subscriptions"].as_array().expect("subscriptions");
    assert!(
        subscriptions
            .iter()
            .any(|s| s["expected"].as_u64() > Some(0) && s["intervalMs"].as_u64() > Some(0)),
        "{health}"
    );
    let page = common::get_text(&format!("{base}/devices/sim-0001")).await;
    assert!(page.contains("encoding proto"), "{page}");
    assert!(page.contains("% complete</span>"), "{page}");

    assert!(collector.terminate().await.success());
    assert!(web.terminate().await.success());
    sim.terminate().await;
    db.drop_now().await;
}
