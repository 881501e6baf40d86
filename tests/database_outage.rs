//! The database goes away mid-ingest and comes back: a real `netpulse collector` process
//! writes to a real PostgreSQL through a TCP proxy the test cuts (every open connection
//! reset, new ones refused: what a collector sees of a PostgreSQL restart or a network
//! partition) and then restores. Counting proves that every sample the collector
//! received is stored once the database is back.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Netpulse, TempDatabase, eventually, get_text};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A loopback TCP proxy that can be cut (all connections reset, new ones refused).
struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    cut: bool,
    links: Vec<AbortHandle>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if shared.lock().expect("lock").cut {
                    drop(client);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                shared.lock().expect("lock").links.push(link.abort_handle());
            }
        });
        Self { addr, state }
    }

    fn cut(&self) {
        let mut state = self.state.lock().expect("lock");
        state.cut = true;
        for link in state.links.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.state.lock().expect("lock").cut = false;
    }
}

/// The value of counter `name` in a Prometheus text exposition.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from metrics"))
}

#[tokio::test]
async fn every_sample_received_during_a_database_outage_is_stored_afterwards() {
    let db = TempDatabase::create("outage").await;
    // Migrate directly, so the schema exists before the proxy is ever cut.
    store::migrate(&db.url).await.expect("migrate");
    let (prefix, rest) = db.url.split_once("@").expect("url with a user");
    let (hostport, name) = rest.split_once('/').expect("url with a database");
    let upstream: SocketAddr = hostport.parse().expect("a loopback address and port");
    let proxy = Proxy::start(upstream).await;
    let via_proxy = format!("{prefix}@{}/{name}", proxy.addr);

    let dir = tempfile::tempdir().expect("tempdir");
    let devices = dir.path().join("devices.yaml");
    let mut sim = Netpulse::start(&[
        "simulate",
        "--devices",
        "3",
        "--base-address",
        "127.0.61.1",
        "--port",
        "0",
        "--sample-interval",
        "1s",
        "--write-devices",
        devices.to_str().expect("utf-8 path"),
    ]);
    sim.wait_for_line("simulated devices running").await;
    let mut collector = Netpulse::start(&[
        "collector",
        "--devices",
        devices.to_str().expect("utf-8 path"),
        "--database-url",
        &via_proxy,
        "--listen",
        "127.0.0.1:0",
    ]);
    let base = collector.wait_for_url().await;
    let metrics = || {
        let url = format!("{base}/metrics");
        async move { get_text(&url).await }
    };

    eventually("samples written before the outage", || async {
        (counter(&metrics().await, "netpulse_collector_samples_written_total") > 0).then_some(())
    })
    .await;
    proxy.cut();
    let before = counter(
        &metrics().await,
        "netpulse_collector_samples_received_total",
    );
    // The collector keeps receiving while every write fails.
    let during = eventually("failed writes and more samples received", || async {
        let m = metrics().await;
        (counter(&m, "netpulse_collector_batch_errors_total") >= 2
            && counter(&m, "netpulse_collector_samples_received_total") > before)
            .then_some(m)
    })
    .await;
    assert!(during.contains("netpulse_collector_queue_full_total"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();

    // Stop the devices, then let the collector drain what it holds.
    sim.terminate().await;
    let (received, written) = eventually("the backlog written", || async {
        let m = metrics().await;
        let received = counter(&m, "netpulse_collector_samples_received_total");
        let written = counter(&m, "netpulse_collector_samples_written_total");
        let duplicate = counter(&m, "netpulse_collector_samples_duplicate_total");
        (received > before && written + duplicate == received).then_some((received, written))
    })
    .await;
    assert_eq!(
        counter(&metrics().await, "netpulse_collector_samples_dropped_total"),
        0
    );
    collector.terminate().await;

    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM samples")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    assert_eq!(
        u64::try_from(stored).expect("a count"),
        written,
        "{received} received"
    );
    db.drop_now().await;
}
