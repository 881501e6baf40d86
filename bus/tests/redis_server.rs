//! The Redis bus against redis-server processes of its own, started on free loopback
//! ports: a server killed and restarted mid-stream, a password, an ACL user, TLS with a
//! private CA.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bus::{Bus, BusMessage, RedisBus, Topic};
use futures::StreamExt as _;
use model::{DeviceEvent, DeviceKey, DeviceState};

/// A redis-server child process; killed when dropped.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts redis-server with `args` on `port` (plain, or TLS when `tls` names the
/// certificate directory) and waits until it accepts connections.
fn start(port: u16, args: &[&str], tls: Option<&Path>) -> Server {
    start_with(None, port, args, tls)
}

/// [`start`] with a configuration file first (for what the command line cannot say,
/// such as ACL users).
fn start_with(config: Option<&Path>, port: u16, args: &[&str], tls: Option<&Path>) -> Server {
    let mut cmd = Command::new("redis-server");
    if let Some(config) = config {
        cmd.arg(config);
    }
    cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    match tls {
        None => {
            cmd.args(["--port", &port.to_string()]);
        }
        Some(dir) => {
            let file = |f: &str| dir.join(f).display().to_string();
            cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--tls-cert-file", &file("server.crt")])
                .args(["--tls-key-file", &file("server.key")])
                .args(["--tls-ca-cert-file", &file("ca.crt")])
                .args(["--tls-auth-clients", "no"]);
        }
    }
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let child = cmd
        .spawn()
        .expect("redis-server runs (Debian package redis-server)");
    let server = Server { child };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

fn state(n: i64) -> BusMessage {
    BusMessage::State(DeviceEvent {
        device: DeviceKey::new("leaf1").unwrap(),
        state: DeviceState::Synced,
        error: None,
        ts: n,
    })
}

/// Publishes numbered messages on `publisher` until `sub` receives one (10 s at most);
/// returns the number received.
async fn publish_until_received(
    publisher: &dyn Bus,
    sub: &mut bus::Subscription,
    from: i64,
) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut n = from;
    loop {
        publisher.publish(state(n));
        n += 1;
        match tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            Ok(Some(BusMessage::State(e))) => return e.ts,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => assert!(tokio::time::Instant::now() < deadline, "nothing received"),
        }
    }
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn subscribers_resume_after_redis_is_killed_and_restarted() {
    let port = free_port();
    let server = start(port, &[], None);
    let url = format!("redis://127.0.0.1:{port}");
    // Two processes' worth: a collector's bus publishes, a web node's subscribes.
    let collector = RedisBus::connect(&url, "np").unwrap();
    let web = RedisBus::connect(&url, "np").unwrap();
    let mut sub = web.subscribe(Topic::Device(DeviceKey::new("leaf1").unwrap()));
    let mut fleet = web.subscribe(Topic::Fleet);
    until("connected", || {
        collector.is_connected() && web.is_connected()
    })
    .await;
    let first = publish_until_received(&collector, &mut sub, 0).await;
    assert!(fleet.next().await.is_some());

    drop(server);
    until("both see Redis gone", || {
        !collector.is_connected() && !web.is_connected()
    })
    .await;
    // Published while Redis is down: dropped and counted, never blocking.
    let dropped = collector
        .stats()
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..100 {
        collector.publish(state(10_000 + i));
    }
    until("drops counted", || {
        collector
            .stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            > dropped
    })
    .await;

    let _server = start(port, &[], None);
    until("reconnected", || {
        collector.is_connected() && web.is_connected()
    })
    .await;
    // The web node's channels were subscribed again without anyone asking.
    let after = publish_until_received(&collector, &mut sub, 1_000_000).await;
    assert!(after >= 1_000_000 && after > first);
    let mut fleet_again = false;
    for _ in 0..50 {
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), fleet.next()).await {
            fleet_again = true;
            break;
        }
    }
    assert!(fleet_again, "the fleet channel was not resubscribed");
}

#[tokio::test]
async fn a_password_and_an_acl_user_are_sent_and_a_wrong_one_never_connects() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("redis.conf");
    std::fs::write(&config, "user alice on >wonderland ~* &* +@all\n").unwrap();
    let _server = start_with(Some(&config), port, &["--requirepass", "s3cret"], None);
    for url in [
        format!("redis://:s3cret@127.0.0.1:{port}"),
        format!("redis://alice:wonderland@127.0.0.1:{port}"),
    ] {
        let bus = RedisBus::connect(&url, "np").unwrap();
        let mut sub = bus.subscribe(Topic::Device(DeviceKey::new("leaf1").unwrap()));
        until("connected", || bus.is_connected()).await;
        publish_until_received(&bus, &mut sub, 0).await;
    }
    let wrong =
        RedisBus::connect(&format!("redis://alice:cheshire@127.0.0.1:{port}"), "np").unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!wrong.is_connected());
}

fn write_pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

#[tokio::test]
async fn rediss_with_a_private_ca_is_trusted_only_with_that_ca() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let port = free_port();
    let _server = start(port, &["--requirepass", "s3cret"], Some(dir.path()));
    let url = format!("rediss://:s3cret@127.0.0.1:{port}");
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let bus = RedisBus::connect_with(&url, "np", Some(ca.clone())).unwrap();
    let mut sub = bus.subscribe(Topic::Device(DeviceKey::new("leaf1").unwrap()));
    until("connected over TLS", || bus.is_connected()).await;
    publish_until_received(&bus, &mut sub, 0).await;
    // Without the CA the server's certificate is not trusted.
    let untrusted = RedisBus::connect(&url, "np").unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!untrusted.is_connected());
    // A CA with a plain-text URL is a configuration error, said at once.
    let error = RedisBus::connect_with(&format!("redis://127.0.0.1:{port}"), "np", Some(ca))
        .unwrap_err()
        .to_string();
    assert!(error.contains("rediss://"), "{error}");
}
