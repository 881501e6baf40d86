//! The collector against the netpulse simulator: TLS with the fleet's CA, mutual TLS,
//! credentials, and the simulator's misbehaviours.

mod common;

use std::time::Duration;

use common::*;
use crds::{SecretRef, SubscriptionMode, TlsSpec};
use simulator::{Fleet, FleetConfig, Misbehaviour};

/// A fleet of one device on `base`, port chosen by the system.
async fn fleet(base: &str, config: FleetConfig) -> Fleet {
    Fleet::start(FleetConfig {
        devices: 1,
        base_address: base.parse().expect("an IPv4 address"),
        port: 0,
        interfaces: 2,
        ..config
    })
    .await
    .expect("the simulator starts")
}

fn write(dir: &std::path::Path, secret: &str, files: &[(&str, &str)]) {
    let d = dir.join(secret);
    std::fs::create_dir_all(&d).expect("secret directory");
    for (name, text) in files {
        std::fs::write(d.join(name), text).expect("secret file");
    }
}

#[tokio::test]
async fn mutual_tls_credentials_and_json_ietf_only_against_the_simulator() {
    let fleet = fleet(
        "127.0.40.1",
        FleetConfig {
            tls: true,
            require_client_cert: true,
            credentials: Some(("netpulse".into(), "s3cret".into())),
            misbehaviour: Misbehaviour {
                json_ietf_only: true,
                refuse_on_change: true,
                ..Misbehaviour::default()
            },
            ..FleetConfig::default()
        },
    )
    .await;
    let (_keep, secrets) = secrets_dir();
    write(
        &secrets,
        "fleet-ca",
        &[("ca.crt", &fleet.ca_pem().unwrap())],
    );
    let (cert, key) = fleet.client_identity_pem().unwrap();
    write(&secrets, "client", &[("tls.crt", &cert), ("tls.key", &key)]);
    write(
        &secrets,
        "creds",
        &[("username", "netpulse\n"), ("password", "s3cret\n")],
    );
    let sim = &fleet.devices()[0];
    let mut d = device("leaf1", sim.addr);
    d.spec.gnmi.insecure = false;
    d.spec.gnmi.tls = Some(TlsSpec {
        ca_secret: Some("fleet-ca".into()),
        client_cert_secret: Some("client".into()),
        server_name: None,
    });
    d.spec.credentials = Some(SecretRef {
        name: "creds".into(),
        username_key: None,
        password_key: None,
    });
    d.spec.gnmi.subscriptions.push(crds::Subscription {
        path: "/interfaces/interface[name=*]/state/oper-status".into(),
        mode: SubscriptionMode::OnChange,
        sample_interval: None,
        heartbeat_interval: Some("1s".into()),
        suppress_redundant: false,
    });
    let config = collector::CollectorConfig {
        secrets_dir: Some(secrets),
        ..config()
    };
    let c = collect(vec![d], config).await;
    let h = c
        .wait_for("leaf1", "degraded by the on_change refusal", |h| {
            h.state == "degraded"
        })
        .await;
    assert_eq!(h.encoding.as_deref(), Some("json_ietf"));
    assert!(h.quirks.iter().any(|q| q.contains("on_change")), "{h:?}");
    c.wait_for("leaf1", "samples", |_| c.metrics.samples_written.get() >= 4)
        .await;
    c.stop().await;
    fleet.shutdown().await;
}

#[tokio::test]
async fn streams_the_simulator_drops_are_reopened_and_malformed_paths_counted() {
    let fleet = fleet(
        "127.0.40.11",
        FleetConfig {
            misbehaviour: Misbehaviour {
                drop_every: Some(Duration::from_millis(300)),
                malformed_path_every: Some(2),
                ..Misbehaviour::default()
            },
            ..FleetConfig::default()
        },
    )
    .await;
    let c = collect(vec![device("leaf1", fleet.devices()[0].addr)], config()).await;
    c.wait_for("leaf1", "two reconnects", |h| h.reconnects >= 2)
        .await;
    c.wait_for("leaf1", "invalid and valid samples", |_| {
        c.metrics.samples_invalid.get() >= 1 && c.metrics.samples_written.get() >= 1
    })
    .await;
    c.stop().await;
    fleet.shutdown().await;
}

#[tokio::test]
async fn an_oversize_message_fails_the_session_clearly_and_it_recovers() {
    let fleet = fleet(
        "127.0.40.21",
        FleetConfig {
            misbehaviour: Misbehaviour {
                oversize: Some(256 * 1024),
                ..Misbehaviour::default()
            },
            ..FleetConfig::default()
        },
    )
    .await;
    let config = collector::CollectorConfig {
        max_message_bytes: 64 * 1024,
        // Long enough to read the failure before the session is reopened.
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(1),
        ..config()
    };
    let mut d = device("leaf1", fleet.devices()[0].addr);
    d.spec.gnmi.subscriptions.push(crds::Subscription::sample(
        "/system/state/motd-banner",
        INTERVAL,
    ));
    let c = collect(vec![d], config).await;
    let h = c
        .wait_for("leaf1", "the oversize failure", |h| {
            h.state == "unreachable"
        })
        .await;
    let error = h.last_error.unwrap_or_default();
    assert!(error.contains("too large"), "says why: {error}");
    c.wait_for("leaf1", "synced again", |h| h.state == "synced")
        .await;
    c.stop().await;
    fleet.shutdown().await;
}

#[tokio::test]
async fn samples_a_device_drops_for_a_slow_collector_are_counted_missing() {
    // 64 interfaces at 100 ms: ~3,800 counter updates/s, far more than the slow store
    // below lets the collector take, so the device's send queue overflows.
    let fleet = Fleet::start(FleetConfig {
        devices: 1,
        base_address: "127.0.40.31".parse().expect("an IPv4 address"),
        port: 0,
        interfaces: 64,
        misbehaviour: Misbehaviour {
            drop_when_behind: true,
            ..Misbehaviour::default()
        },
        ..FleetConfig::default()
    })
    .await
    .expect("the simulator starts");
    let config = collector::CollectorConfig {
        batch_size: 50,
        queue: 1,
        // Small HTTP/2 windows: the device notices the slow reader within a second.
        stream_window: 65_535,
        connection_window: 65_535,
        completeness_window: Duration::from_secs(2),
        ..config()
    };
    let c = collect_with(
        vec![device("leaf1", fleet.devices()[0].addr)],
        config,
        |s| std::sync::Arc::new(SlowStore(s, Duration::from_millis(200))),
    )
    .await;
    let h = c
        .wait_for("leaf1", "missing samples", |h| {
            h.subscriptions.first().is_some_and(|s| s.missing > 0)
        })
        .await;
    assert!(fleet.dropped_notifications() > 0, "the device dropped");
    assert!(c.metrics.samples_missing.get() > 0);
    let sub = &h.subscriptions[0];
    assert!(sub.gaps > 0, "{sub:?}");
    let h = c
        .wait_for("leaf1", "degraded", |h| h.state == "degraded")
        .await;
    assert!(
        h.last_error
            .unwrap_or_default()
            .contains("expected samples missing"),
        "says why"
    );
    c.stop().await;
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_large_notification_within_the_limit_is_received_whole() {
    // Far larger than the codec's initial 2 KiB buffers, well within the default limit.
    let size = 1024 * 1024;
    let fleet = fleet(
        "127.0.40.41",
        FleetConfig {
            misbehaviour: Misbehaviour {
                oversize: Some(size),
                ..Misbehaviour::default()
            },
            ..FleetConfig::default()
        },
    )
    .await;
    let mut d = device("leaf1", fleet.devices()[0].addr);
    d.spec.gnmi.subscriptions.push(crds::Subscription::sample(
        "/system/state/motd-banner",
        INTERVAL,
    ));
    let c = collect(vec![d], config()).await;
    c.wait_for("leaf1", "synced", |h| h.state == "synced").await;
    c.wait_for("leaf1", "samples", |_| c.metrics.samples_written.get() >= 1)
        .await;
    let (store, metrics, _db) = c.stop().await;
    assert!(metrics.bytes_received.get() > size as u64);
    let device = model::DeviceKey::new("leaf1").expect("valid");
    let banner = store
        .series(&device)
        .await
        .expect("series")
        .into_iter()
        .find(|s| s.path.to_string() == "/system/state/motd-banner")
        .expect("the banner series is stored");
    match banner.last_value {
        model::Value::String(text) => assert!(text.len() > size, "{}", text.len()),
        other => panic!("unexpected banner value {other:?}"),
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_refused_subscription_is_dropped_and_the_others_collected() {
    let fleet = fleet(
        "127.0.40.51",
        FleetConfig {
            misbehaviour: Misbehaviour {
                refuse_path: Some("/system".into()),
                ..Misbehaviour::default()
            },
            ..FleetConfig::default()
        },
    )
    .await;
    let mut d = device("leaf1", fleet.devices()[0].addr);
    d.spec
        .gnmi
        .subscriptions
        .push(crds::Subscription::sample("/system/state", INTERVAL));
    let c = collect(vec![d], config()).await;
    let h = c
        .wait_for("leaf1", "degraded, one subscription tracked", |h| {
            h.state == "degraded" && h.subscriptions.len() == 1
        })
        .await;
    assert!(
        h.quirks
            .iter()
            .any(|q| q.contains("refuses subscription /system/state")),
        "{h:?}"
    );
    let message = h.last_error.unwrap_or_default();
    assert!(message.contains("/system/state"), "says which: {message}");
    // Only the counters subscription is tracked and collected.
    assert_eq!(
        h.subscriptions[0].path,
        "/interfaces/interface[name=*]/state/counters"
    );
    c.wait_for("leaf1", "samples", |_| c.metrics.samples_written.get() >= 4)
        .await;
    assert_eq!(c.metrics.fallbacks.get(), 1);
    let (store, _, _db) = c.stop().await;
    // The state writer drained at shutdown: the store has the degraded state and why.
    let key = model::DeviceKey::new("leaf1").expect("valid");
    let stored = store.device(&key).await.expect("read").expect("known");
    assert_eq!(stored.state, model::DeviceState::Degraded);
    assert!(
        stored
            .last_error
            .is_some_and(|e| e.contains("refuses subscription /system/state")),
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_simulator_stream_that_goes_silent_is_torn_down_and_rebuilt() {
    let fleet = fleet(
        "127.0.40.61",
        FleetConfig {
            misbehaviour: Misbehaviour {
                silent_after: Some(Duration::from_millis(300)),
                ..Misbehaviour::default()
            },
            ..FleetConfig::default()
        },
    )
    .await;
    let c = collect(vec![device("leaf1", fleet.devices()[0].addr)], config()).await;
    let h = c
        .wait_for("leaf1", "a stream torn down for silence", |h| {
            h.last_error
                .as_deref()
                .is_some_and(|e| e.contains("no data for"))
        })
        .await;
    assert!(h.reconnects >= 1 || h.state == "unreachable", "{h:?}");
    c.wait_for("leaf1", "synced again", |h| h.state == "synced")
        .await;
    c.stop().await;
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_slow_simulator_is_collected_without_reconnects() {
    let fleet = fleet(
        "127.0.40.71",
        FleetConfig {
            misbehaviour: Misbehaviour {
                // Each response waits; well within the idle timeout.
                send_delay: Some(Duration::from_millis(30)),
                ..Misbehaviour::default()
            },
            ..FleetConfig::default()
        },
    )
    .await;
    let c = collect(vec![device("leaf1", fleet.devices()[0].addr)], config()).await;
    c.wait_for("leaf1", "synced", |h| h.state == "synced").await;
    c.wait_for("leaf1", "samples", |_| {
        c.metrics.samples_written.get() >= 20
    })
    .await;
    let h = c.wait_for("leaf1", "still synced", |_| true).await;
    assert_eq!(h.reconnects, 0, "{h:?}");
    c.stop().await;
    fleet.shutdown().await;
}
