//! Collector sessions against real gNMI servers on loopback that misbehave on purpose.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use crds::{Encoding, SubscriptionMode, TlsSpec};
use model::DeviceKey;
use proto::gnmi;
use tokio::sync::Notify;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

#[tokio::test]
async fn a_device_counts_as_synced_only_after_sync_response() {
    let gate = Arc::new(Notify::new());
    let t = target(
        Behaviour {
            initial: 3,
            sync_gate: Some(gate.clone()),
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let c = collect(vec![device("leaf1", t.addr)], config()).await;
    // The initial data arrives (and is written) before the device is called synced.
    c.wait_for("leaf1", "initial samples", |_| {
        c.metrics.samples_written.get() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let h = c.health.device(&DeviceKey::new("leaf1").unwrap()).unwrap();
    assert_eq!(h.state, "connecting", "{h:?}");
    gate.notify_one();
    let h = c.wait_for("leaf1", "synced", |h| h.state == "synced").await;
    assert_eq!(h.last_error, None);
    assert_eq!(h.encoding.as_deref(), Some("proto"));
    c.stop().await;
}

#[tokio::test]
async fn refused_on_change_falls_back_to_sample_and_records_the_quirk() {
    let t = target(
        Behaviour {
            refuse_on_change: true,
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let mut d = device("leaf1", t.addr);
    d.spec.gnmi.subscriptions[0].mode = SubscriptionMode::OnChange;
    d.spec.gnmi.subscriptions[0].sample_interval = None;
    d.spec.gnmi.subscriptions[0].heartbeat_interval = Some("200ms".into());
    let c = collect(vec![d], config()).await;
    let h = c
        .wait_for("leaf1", "degraded with a quirk", |h| h.state == "degraded")
        .await;
    assert!(
        h.quirks.iter().any(|q| q.contains("on_change")),
        "quirk recorded: {h:?}"
    );
    let error = h.last_error.unwrap_or_default();
    assert!(error.contains("refuses on_change"), "{error}");
    let subscribes = t.seen.subscribes();
    assert_eq!(
        subscribes.len(),
        2,
        "one refusal, one retry: {subscribes:?}"
    );
    assert_eq!(
        subscribes[1].subscription[0].mode,
        gnmi::SubscriptionMode::Sample as i32
    );
    assert_eq!(subscribes[1].subscription[0].sample_interval, 200_000_000);
    assert_eq!(c.metrics.fallbacks.get(), 1);
    // The event the store keeps says so too.
    let summary = c
        .store
        .device(&DeviceKey::new("leaf1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        format!("{summary:?}").contains("refuses on_change"),
        "{summary:?}"
    );
    c.wait_for("leaf1", "samples", |_| c.metrics.samples_written.get() > 0)
        .await;
    c.stop().await;
}

#[tokio::test]
async fn a_json_ietf_only_device_gets_json_ietf_from_its_capabilities() {
    let t = target(
        Behaviour {
            encodings: vec![gnmi::Encoding::JsonIetf],
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let c = collect(vec![device("leaf1", t.addr)], config()).await;
    let h = c.wait_for("leaf1", "synced", |h| h.state == "synced").await;
    assert_eq!(h.encoding.as_deref(), Some("json_ietf"));
    let subscribes = t.seen.subscribes();
    assert_eq!(
        subscribes.len(),
        1,
        "chosen before subscribing: {subscribes:?}"
    );
    assert_eq!(subscribes[0].encoding, gnmi::Encoding::JsonIetf as i32);
    assert!(t.seen.capabilities.load(Ordering::SeqCst) >= 1);
    c.stop().await;
}

#[tokio::test]
async fn a_preferred_encoding_the_device_lacks_is_replaced_and_noted() {
    let t = target(
        Behaviour {
            encodings: vec![gnmi::Encoding::Json],
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let mut d = device("leaf1", t.addr);
    d.spec.gnmi.encoding = Some(Encoding::JsonIetf);
    let c = collect(vec![d], config()).await;
    let h = c.wait_for("leaf1", "synced", |h| h.state == "synced").await;
    assert_eq!(h.encoding.as_deref(), Some("json"));
    let note = h.last_error.unwrap_or_default();
    assert!(
        note.contains("does not support encoding json_ietf"),
        "{note}"
    );
    c.stop().await;
}

#[tokio::test]
async fn rejected_credentials_say_so_and_are_not_retried_soon() {
    let t = target(
        Behaviour {
            credentials: Some(("admin".into(), "right".into())),
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let (_keep, secrets) = secrets_dir();
    std::fs::create_dir(secrets.join("creds")).unwrap();
    std::fs::write(secrets.join("creds/username"), "admin\n").unwrap();
    std::fs::write(secrets.join("creds/password"), "wrong\n").unwrap();
    let mut d = device("leaf1", t.addr);
    d.spec.credentials = Some(crds::SecretRef {
        name: "creds".into(),
        username_key: None,
        password_key: None,
    });
    let config = collector::CollectorConfig {
        secrets_dir: Some(secrets.clone()),
        ..config()
    };
    let c = collect(vec![d.clone()], config.clone()).await;
    let h = c
        .wait_for("leaf1", "unreachable", |h| h.state == "unreachable")
        .await;
    let error = h.last_error.unwrap_or_default();
    assert!(error.starts_with("credentials rejected"), "{error}");
    // Several normal backoffs (50..200 ms) later, still only the one attempt.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(t.seen.rejected_logins.load(Ordering::SeqCst), 1);
    assert_eq!(c.metrics.reconnects.get(), 0);
    c.stop().await;

    // The right password is sent as metadata and accepted.
    std::fs::write(secrets.join("creds/password"), "right").unwrap();
    let c = collect(vec![d], config).await;
    c.wait_for("leaf1", "synced", |h| h.state == "synced").await;
    c.stop().await;
}

#[tokio::test]
async fn a_silent_stream_is_torn_down_after_the_idle_timeout() {
    let t = target(
        Behaviour {
            after_sync: 2,
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let c = collect(vec![device("leaf1", t.addr)], config()).await;
    // 3 intervals of 100 ms, at least min_idle (400 ms): torn down, then reconnected.
    eventually("a second subscription", || t.seen.subscribes().len() >= 2).await;
    assert!(c.metrics.reconnects.get() >= 1);
    c.stop().await;
}

#[tokio::test]
async fn the_idle_timeout_is_reported_in_plain_words() {
    let t = target(
        Behaviour {
            after_sync: 0,
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let config = collector::CollectorConfig {
        backoff_min: Duration::from_secs(3600),
        backoff_max: Duration::from_secs(3600),
        ..config()
    };
    let c = collect(vec![device("leaf1", t.addr)], config).await;
    let h = c
        .wait_for("leaf1", "unreachable", |h| h.state == "unreachable")
        .await;
    let error = h.last_error.unwrap_or_default();
    assert!(error.contains("no data for 0.4s"), "{error}");
    c.stop().await;
}

#[tokio::test]
async fn a_stream_closed_by_the_device_is_reopened_at_once() {
    let t = target(
        Behaviour {
            after_sync: 2,
            close: true,
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let config = collector::CollectorConfig {
        // A failure would wait an hour: only the clean close reconnects at once.
        backoff_min: Duration::from_secs(3600),
        backoff_max: Duration::from_secs(3600),
        ..config()
    };
    let c = collect(vec![device("leaf1", t.addr)], config).await;
    eventually("three subscriptions", || t.seen.subscribes().len() >= 3).await;
    assert!(c.metrics.reconnects.get() >= 2);
    c.stop().await;
}

#[tokio::test]
async fn a_stream_closed_unanswered_is_a_failure_with_backoff() {
    let t = target(
        Behaviour {
            close_at_once: true,
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let config = collector::CollectorConfig {
        backoff_min: Duration::from_secs(3600),
        backoff_max: Duration::from_secs(3600),
        ..config()
    };
    let c = collect(vec![device("leaf1", t.addr)], config).await;
    let h = c
        .wait_for("leaf1", "unreachable", |h| h.state == "unreachable")
        .await;
    let error = h.last_error.unwrap_or_default();
    assert!(error.contains("without sending anything"), "{error}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.seen.subscribes().len(), 1, "no tight reconnect loop");
    c.stop().await;
}

#[tokio::test]
async fn malformed_paths_are_counted_and_the_rest_is_written() {
    let t = target(
        Behaviour {
            initial: 5,
            after_sync: 0,
            malformed_path: true,
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let c = collect(vec![device("leaf1", t.addr)], config()).await;
    c.wait_for("leaf1", "synced", |h| h.state == "synced").await;
    c.wait_for("leaf1", "five written", |_| {
        c.metrics.samples_written.get() == 5
    })
    .await;
    assert_eq!(c.metrics.samples_invalid.get(), 5);
    let (store, _, _db) = c.stop().await;
    assert_eq!(stored(&*store, "leaf1").await, 5);
}

#[tokio::test]
async fn missing_samples_are_counted_and_degrade_the_device() {
    let t = target(
        Behaviour {
            // Timestamps two intervals apart: every other sample is missing.
            stride: 2,
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let c = collect(vec![device("leaf1", t.addr)], config()).await;
    let h = c
        .wait_for("leaf1", "degraded", |h| h.state == "degraded")
        .await;
    assert!(
        h.last_error
            .unwrap_or_default()
            .contains("expected samples missing"),
        "plain words"
    );
    let sub = c
        .wait_for("leaf1", "counters", |h| {
            h.subscriptions.first().is_some_and(|s| s.missing >= 5)
        })
        .await
        .subscriptions[0]
        .clone();
    assert_eq!(sub.interval_ms, 100);
    assert!(sub.expected >= sub.received + sub.missing - 1, "{sub:?}");
    assert!(c.metrics.samples_missing.get() >= 5);
    assert!(c.metrics.samples_expected.get() >= 10);
    assert!(c.metrics.bytes_received.get() > 0);
    c.stop().await;
}

fn server_tls(pki: &Pki, client_ca: bool) -> ServerTlsConfig {
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(
        pki.read("server.crt"),
        pki.read("server.key"),
    ));
    if client_ca {
        tls.client_ca_root(Certificate::from_pem(pki.read("ca.crt")))
    } else {
        tls
    }
}

fn tls_device(
    addr: std::net::SocketAddr,
    ca: &str,
    client: Option<&str>,
) -> crds::devices_file::DeviceEntry {
    let mut d = device("leaf1", addr);
    d.spec.gnmi.insecure = false;
    d.spec.gnmi.tls = Some(TlsSpec {
        ca_secret: Some(ca.into()),
        client_cert_secret: client.map(str::to_owned),
        server_name: Some("device.test".into()),
    });
    d
}

#[tokio::test]
async fn tls_with_the_right_ca_syncs_and_a_wrong_ca_fails_clearly() {
    let pki = Pki::new();
    let t = target(Behaviour::default(), Some(server_tls(&pki, false))).await;
    let (_keep, secrets) = secrets_dir();
    pki.secret(&secrets, "fabric-ca", &[("ca.crt", "ca.crt")]);
    pki.secret(&secrets, "other-ca", &[("ca.crt", "other-ca.crt")]);
    let config = collector::CollectorConfig {
        secrets_dir: Some(secrets),
        ..config()
    };

    let c = collect(vec![tls_device(t.addr, "fabric-ca", None)], config.clone()).await;
    c.wait_for("leaf1", "synced over TLS", |h| h.state == "synced")
        .await;
    c.stop().await;

    let c = collect(vec![tls_device(t.addr, "other-ca", None)], config).await;
    let h = c
        .wait_for("leaf1", "unreachable", |h| h.state == "unreachable")
        .await;
    let error = h.last_error.unwrap_or_default().to_lowercase();
    assert!(
        error.contains("invalid peer certificate")
            && error.contains("not signed by the ca of gnmi.tls.casecret"),
        "names the certificate problem: {error}"
    );
    c.stop().await;
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let pki = Pki::new();
    let t = target(Behaviour::default(), Some(server_tls(&pki, true))).await;
    let (_keep, secrets) = secrets_dir();
    pki.secret(&secrets, "fabric-ca", &[("ca.crt", "ca.crt")]);
    pki.secret(
        &secrets,
        "collector-cert",
        &[("tls.crt", "client.crt"), ("tls.key", "client.key")],
    );
    let config = collector::CollectorConfig {
        secrets_dir: Some(secrets),
        ..config()
    };
    let c = collect(
        vec![tls_device(t.addr, "fabric-ca", Some("collector-cert"))],
        config.clone(),
    )
    .await;
    c.wait_for("leaf1", "synced over mTLS", |h| h.state == "synced")
        .await;
    c.stop().await;

    // Without the client certificate the device refuses the session.
    let c = collect(vec![tls_device(t.addr, "fabric-ca", None)], config).await;
    c.wait_for("leaf1", "unreachable", |h| h.state == "unreachable")
        .await;
    c.stop().await;
}

#[tokio::test]
async fn a_poll_device_is_polled_every_interval() {
    let t = target(Behaviour::default(), None).await;
    let mut d = device("leaf1", t.addr);
    d.spec.gnmi.mode = crds::SubscribeMode::Poll;
    d.spec.gnmi.poll_interval = Some("100ms".into());
    let c = collect(vec![d], config()).await;
    c.wait_for("leaf1", "synced", |h| h.state == "synced").await;
    eventually("three polls", || t.seen.polls.load(Ordering::SeqCst) >= 3).await;
    let subscribes = t.seen.subscribes();
    assert_eq!(subscribes.len(), 1, "one stream, polled");
    assert_eq!(
        subscribes[0].mode,
        gnmi::subscription_list::Mode::Poll as i32
    );
    c.wait_for("leaf1", "polled samples", |_| {
        c.metrics.samples_written.get() >= 3
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn a_once_device_is_asked_again_every_interval_without_reconnect_noise() {
    let t = target(Behaviour::default(), None).await;
    let mut d = device("leaf1", t.addr);
    d.spec.gnmi.mode = crds::SubscribeMode::Once;
    d.spec.gnmi.poll_interval = Some("100ms".into());
    let c = collect(vec![d], config()).await;
    eventually("three rounds", || t.seen.subscribes().len() >= 3).await;
    let h = c.wait_for("leaf1", "synced", |h| h.state == "synced").await;
    assert_eq!(h.reconnects, 0, "rounds are not reconnects");
    assert_eq!(
        t.seen.subscribes()[0].mode,
        gnmi::subscription_list::Mode::Once as i32
    );
    c.wait_for("leaf1", "samples", |_| c.metrics.samples_written.get() >= 3)
        .await;
    c.stop().await;
}

#[tokio::test]
async fn shutdown_writes_every_sample_received_even_with_a_slow_store() {
    let t = target(
        Behaviour {
            period: Duration::from_millis(1),
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let config = collector::CollectorConfig {
        batch_size: 5,
        queue: 2,
        ..config()
    };
    let c = collect_with(vec![device("leaf1", t.addr)], config, |s| {
        Arc::new(SlowStore(s, Duration::from_millis(30)))
    })
    .await;
    // Let the queue fill up behind the slow store, then stop mid-stream.
    c.wait_for("leaf1", "a full queue", |_| {
        c.metrics.queue_full.get() >= 3 && c.metrics.samples_received.get() >= 20
    })
    .await;
    let (store, metrics, _db) = c.stop().await;
    let received = metrics.samples_received.get();
    assert!(received >= 20, "{received}");
    assert_eq!(metrics.samples_dropped.get(), 0);
    assert_eq!(
        metrics.samples_written.get() + metrics.samples_duplicate.get(),
        received
    );
    assert_eq!(stored(&*store, "leaf1").await as u64, received);
}

#[tokio::test]
async fn samples_from_a_device_whose_clock_was_never_set_are_refused_and_counted() {
    let t = target(
        Behaviour {
            clock_start: 0,
            period: Duration::from_millis(20),
            ..Behaviour::default()
        },
        None,
    )
    .await;
    let c = collect(vec![device("leaf1", t.addr)], config()).await;
    c.wait_for("leaf1", "refused samples", |_| {
        c.metrics.samples_rejected.get() >= 5
    })
    .await;
    // Refused, not retried: the batcher keeps going and nothing is written or lost.
    assert_eq!(c.metrics.samples_written.get(), 0);
    assert_eq!(c.metrics.batch_errors.get(), 0);
    let (store, metrics, _db) = c.stop().await;
    assert_eq!(
        metrics.samples_rejected.get(),
        metrics.samples_received.get(),
        "every sample received was refused"
    );
    assert_eq!(stored(&*store, "leaf1").await, 0);
}
