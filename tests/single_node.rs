//! End to end: the single-node mode as the README runs it (SQLite, in-process bus,
//! in-process simulator), driven over HTTP like a user would.

mod common;

use common::{Netpulse, eventually, get_json, read_sse};

#[tokio::test]
async fn single_node_collects_stores_and_serves_live_data() {
    let dir = tempfile::tempdir().unwrap();
    // A device nobody answers for, next to the simulated ones: it must show as
    // unreachable and must not stop the others.
    let dead_port = common::closed_port();
    let devices = dir.path().join("devices.yaml");
    std::fs::write(
        &devices,
        format!(
            "devices:\n  - name: dead-router\n    spec:\n      address: 127.0.0.1\n      gnmi:\n        port: {dead_port}\n        insecure: true\n"
        ),
    )
    .unwrap();
    let db = format!("sqlite:{}", dir.path().join("data/netpulse.db").display());
    let mut np = Netpulse::start(&[
        "all",
        "--simulate",
        "3",
        "--devices",
        devices.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &db,
        "--base-address",
        "127.0.50.1",
        "--port",
        "0",
        "--sample-interval",
        "1s",
    ]);
    let base = np.wait_for_url().await;

    // Every simulated device is listed with samples; the dead one is unreachable.
    let devices = eventually("all devices with samples", || async {
        let json = get_json(&format!("{base}/api/v1/devices")).await?;
        let list = json["devices"].as_array()?.clone();
        let sims: Vec<_> = list
            .iter()
            .filter(|d| d["name"].as_str().is_some_and(|n| n.starts_with("sim-")))
            .collect();
        let ready = sims.len() == 3
            && sims
                .iter()
                .all(|d| d["series"].as_i64() > Some(0) && d["state"] == "synced")
            && list
                .iter()
                .any(|d| d["name"] == "dead-router" && d["state"] == "unreachable");
        ready.then_some(list)
    })
    .await;
    let dead = devices.iter().find(|d| d["name"] == "dead-router").unwrap();
    let error = dead["lastError"].as_str().unwrap();
    assert!(error.contains("cannot connect"), "{error}");

    // The collector's own view: per-device state, encoding and sample completeness.
    let health = eventually("collector health with completeness", || async {
        let json = get_json(&format!("{base}/api/v1/collector/devices")).await?;
        let sim = json
            .as_array()?
            .iter()
            .find(|d| d["device"] == "sim-0001")?
            .clone();
        (sim["subscriptions"][0]["received"].as_u64() > Some(0)).then_some(sim)
    })
    .await;
    assert_eq!(health["state"], "synced", "{health}");
    assert_eq!(health["encoding"], "proto", "{health}");
    assert!(health["bytesReceived"].as_u64() > Some(0), "{health}");

    // The web API shows it too, from the store (written every 10 s).
    let stored = eventually("sim-0001 health in the web API", || async {
        let json = get_json(&format!("{base}/api/v1/devices/sim-0001")).await?;
        let health = json["device"]["health"].clone();
        (health["completeness"]["expected"].as_u64() > Some(0)).then_some(health)
    })
    .await;
    assert_eq!(stored["encoding"], "proto", "{stored}");

    // The device page renders a chart per interface.
    let page = common::get_text(&format!("{base}/devices/sim-0001")).await;
    assert!(page.contains(r#"<svg id="chart-Ethernet1""#), "{page}");
    let index = common::get_text(&format!("{base}/")).await;
    assert!(index.contains("unreachable"), "{index}");

    // The live stream delivers new samples again and again, with their ids.
    let text = read_sse(&format!("{base}/devices/sim-0001/live"), "samples", 3).await;
    assert!(text.contains("id: "), "{text}");
    assert!(text.contains("in-octets"), "{text}");

    // Series API answers for a counter with points in time order.
    let path = "/interfaces/interface%5Bname%3DEthernet1%5D/state/counters/in-octets";
    let json = get_json(&format!(
        "{base}/api/v1/devices/sim-0001/series?path={path}"
    ))
    .await
    .unwrap();
    let points = json["points"].as_array().unwrap();
    assert!(points.len() >= 2, "{json}");
    let values: Vec<u64> = points
        .iter()
        .map(|p| p["value"]["uint"].as_u64().unwrap())
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "counters must grow: {values:?}"
    );

    // The dead device is retried, not given up on.
    let metrics = common::get_text(&format!("{base}/metrics")).await;
    assert!(metrics.contains("netpulse_collector_sessions"), "{metrics}");
    let connects = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("netpulse_collector_connects_total"))
            .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = connects(&metrics);
    eventually("a reconnect attempt", || async {
        let m = reqwest::get(format!("{base}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (connects(&m) > before).then_some(())
    })
    .await;

    let status = np.terminate().await;
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("n.db").display());
    let mut np = Netpulse::start(&["all", "--listen", "127.0.0.1:0", "--database-url", &db]);
    let base = np.wait_for_url().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let res = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }
}
