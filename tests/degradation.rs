//! Graceful degradation with real processes: simulator, collector and web as separate
//! `netpulse` processes over a real PostgreSQL and a redis-server of this test's own,
//! which is stopped and started again. Each part going away must cost only what it
//! carries: Redis only live updates, web only pages, collectors only new samples.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Netpulse, TempDatabase, closed_port, eventually, get_json, get_text};

/// A redis-server of this test's own on `port`; killed when dropped.
struct Redis(Child);

impl Redis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An SSE stream read in the background into a shared text.
struct Stream {
    text: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream {
    async fn open(url: &str) -> Self {
        use futures::StreamExt as _;
        let res = reqwest::get(url).await.expect("SSE request");
        assert!(res.status().is_success(), "SSE status {}", res.status());
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let task = tokio::spawn(async move {
            let mut body = res.bytes_stream();
            while let Some(Ok(chunk)) = body.next().await {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk));
            }
        });
        Self { text, task }
    }

    /// Length of what was read so far (a mark to search after).
    fn mark(&self) -> usize {
        self.text.lock().unwrap().len()
    }

    /// Waits until what was read after `mark` contains `needle`.
    async fn after(&self, mark: usize, needle: &str) {
        eventually(&format!("{needle:?} on the live stream"), || async {
            self.text.lock().unwrap()[mark..]
                .contains(needle)
                .then_some(())
        })
        .await;
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const LEAF: &str = "/interfaces/interface[name=Ethernet1]/state/counters/in-octets";

/// Stored points of sim-0001's [`LEAF`] between `from` and `to` (ns), as web serves them.
async fn stored(base: &str, from: i64, to: i64) -> Vec<i64> {
    let rfc = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    };
    let url = format!(
        "{base}/api/v1/devices/sim-0001/series?path={}&from={}&to={}",
        urlencode(LEAF),
        urlencode(&rfc(from)),
        urlencode(&rfc(to)),
    );
    let json = get_json(&url).await.expect("series JSON");
    json["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            let ts = p["ts"].as_str().expect("ts");
            chrono::DateTime::parse_from_rfc3339(ts)
                .expect("RFC 3339")
                .timestamp_nanos_opt()
                .expect("in range")
        })
        .collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().expect("in range")
}

/// The widest gap between consecutive points, in seconds.
fn widest_gap(points: &[i64]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e9)
        .fold(0.0, f64::max)
}

async fn metric(url: &str, name: &str) -> f64 {
    let text = get_text(&format!("{url}/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {url}/metrics"))
}

#[tokio::test]
async fn each_part_going_away_costs_only_what_it_carries() {
    let db = TempDatabase::create("degrade").await;
    let port = closed_port();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let mut redis = Some(Redis::start(port));
    let dir = tempfile::tempdir().unwrap();
    let devices = dir.path().join("devices.yaml");
    let mut sim = Netpulse::start(&[
        "simulate",
        "--devices",
        "2",
        "--base-address",
        "127.0.61.1",
        "--port",
        "0",
        "--sample-interval",
        "1s",
        "--write-devices",
        devices.to_str().unwrap(),
    ]);
    sim.wait_for_line("simulated devices running").await;
    let web_args = |redis: &str| {
        vec![
            "web".to_owned(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--database-url".into(),
            db.url.clone(),
            "--redis-url".into(),
            redis.to_owned(),
            "--stale-after".into(),
            "4s".into(),
        ]
    };
    let start_web = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Netpulse::start(&args)
    };
    let mut web = start_web(web_args(&redis_url));
    let base = web.wait_for_url().await;
    let mut collector = Netpulse::start(&[
        "collector",
        "--devices",
        devices.to_str().unwrap(),
        "--database-url",
        &db.url,
        "--redis-url",
        &redis_url,
        "--listen",
        "127.0.0.1:0",
    ]);
    let collector_base = collector.wait_for_url().await;
    eventually("sim-0001 synced with samples", || async {
        let json = get_json(&format!("{base}/api/v1/devices/sim-0001")).await?;
        (json["device"]["state"] == "synced" && json["device"]["series"].as_i64() > Some(0))
            .then_some(())
    })
    .await;
    let live = Stream::open(&format!("{base}/devices/sim-0001/live")).await;
    live.after(0, "\"mode\":\"live\"").await;
    live.after(0, "event: samples").await;

    // 1. Redis stops. Collectors keep writing to PostgreSQL; the page says live updates
    //    are paused and keeps showing fresh data from the database.
    let outage_from = now_ns();
    let mark = live.mark();
    drop(redis.take());
    live.after(mark, "\"mode\":\"paused\"").await;
    let mark = live.mark();
    live.after(mark, "event: freshness").await;
    let written = metric(&collector_base, "netpulse_collector_samples_written_total").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        metric(&collector_base, "netpulse_collector_samples_written_total").await > written,
        "the collector stopped writing without Redis"
    );
    assert_eq!(metric(&base, "netpulse_bus_connected").await, 0.0);
    //    Redis is back on the same address: live resumes, nothing restarted.
    let _redis = Redis::start(port);
    let outage_to = now_ns();
    let mark = live.mark();
    live.after(mark, "\"mode\":\"live\"").await;
    live.after(mark, "event: samples").await;
    // Nothing was lost: the series is whole through the outage (a point a second).
    let points = stored(&base, outage_from - 2_000_000_000, outage_to).await;
    assert!(points.len() >= 3, "{points:?}");
    assert!(
        widest_gap(&points) < 2.5,
        "a hole during the Redis outage: {points:?}"
    );
    assert_eq!(
        metric(&collector_base, "netpulse_collector_samples_dropped_total").await,
        0.0
    );
    drop(live);

    // 2. Every web process stops; collectors keep ingesting; a web process started
    //    later shows everything, the time nobody watched included.
    assert!(web.terminate().await.success());
    let dark_from = now_ns();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut web2 = start_web(web_args(&redis_url));
    let base2 = web2.wait_for_url().await;
    let dark_to = now_ns();
    let points = stored(&base2, dark_from - 2_000_000_000, dark_to).await;
    assert!(points.len() >= 4, "{points:?}");
    assert!(
        widest_gap(&points) < 2.5,
        "a hole while no web process ran: {points:?}"
    );

    // 3. Every collector stops: web serves history and marks the device stale.
    let live = Stream::open(&format!("{base2}/devices/sim-0001/live")).await;
    live.after(0, "\"mode\":\"live\"").await;
    assert!(collector.terminate().await.success());
    live.after(0, "\"mode\":\"stale\"").await;
    let history = stored(&base2, outage_from, now_ns()).await;
    assert!(history.len() >= 10, "{history:?}");
    let page = get_text(&format!("{base2}/devices/sim-0001")).await;
    assert!(page.contains("chart-Ethernet1"), "{page}");

    drop(live);
    assert!(web2.terminate().await.success());
    sim.terminate().await;
    db.drop_now().await;
}
