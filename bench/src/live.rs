//! The live path (issue 6): the bus codec, Redis throughput against `redis-benchmark`'s
//! ceiling, and one web process fanning out to thousands of SSE clients.
//!
//! Both runs start a redis-server of their own on a free loopback port (so its CPU can
//! be read from `/proc`) and stop it at the end. Nothing is asserted; results are printed
//! as `key=value` lines for docs/PERFORMANCE.md.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bus::{Bus, BusMessage, RedisBus, Topic};
use futures::StreamExt as _;
use model::{DeviceKey, Path, Sample, Value};

use crate::cpu_seconds;

/// `bus`: codec and Redis throughput.
#[derive(Debug, clap::Args)]
pub struct BusBench {
    /// Seconds measured per rate.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Samples per bus message (one device's share of a collector batch).
    #[arg(long, default_value_t = 16)]
    samples_per_message: usize,
    /// Devices (channels) the messages are spread over; the subscriber watches all.
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// Fleet sample rates to measure, samples/s.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,100000,200000,400000"
    )]
    rates: Vec<u64>,
}

/// `fanout`: one web process, many SSE clients.
#[derive(Debug, clap::Args)]
pub struct Fanout {
    /// The netpulse binary to run as the web process.
    #[arg(long, default_value = "target/release/netpulse")]
    netpulse: PathBuf,
    /// Concurrent SSE clients, client `i` watching device `i % devices`.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Devices, each updated once a second.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Seconds measured once every client is connected.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Clients also take the server-rendered charts (a browser's page), re-rendered
    /// after new samples at most once a second per client.
    #[arg(long)]
    charts: bool,
}

/// A redis-server of the benchmark's own; killed when dropped.
pub(crate) struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server (Debian package redis-server)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, port })
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cpu(&self) -> anyhow::Result<f64> {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn paths(n: usize) -> Vec<Arc<Path>> {
    let leaves = ["in-octets", "out-octets", "in-pkts", "out-pkts"];
    (0..n)
        .map(|i| {
            let text = format!(
                "/interfaces/interface[name=Ethernet{}]/state/counters/{}",
                i / leaves.len() + 1,
                leaves[i % leaves.len()]
            );
            Arc::new(text.parse::<Path>().expect("a valid path"))
        })
        .collect()
}

fn message(device: &DeviceKey, paths: &[Arc<Path>], ts: i64, base: u64) -> BusMessage {
    BusMessage::Samples {
        device: device.clone(),
        samples: paths
            .iter()
            .enumerate()
            .map(|(i, p)| Sample {
                device: device.clone(),
                path: p.clone(),
                ts,
                value: Value::Uint(base + i as u64 * 1_000_003),
            })
            .collect(),
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn codec(samples_per_message: usize) {
    let device = DeviceKey::new("leaf-0001").expect("a device key");
    let m = message(
        &device,
        &paths(samples_per_message),
        1_800_000_000_000_000_000,
        123_456_789_012,
    );
    for (name, encode) in [
        ("binary", bus::encode as fn(&BusMessage) -> Vec<u8>),
        ("json", bus::encode_json),
    ] {
        let bytes = encode(&m);
        let rounds = 100_000;
        let t = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(encode(std::hint::black_box(&m)));
        }
        let enc = t.elapsed().as_secs_f64() / f64::from(rounds) * 1e9;
        let t = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(bus::decode(std::hint::black_box(&bytes)).ok());
        }
        let dec = t.elapsed().as_secs_f64() / f64::from(rounds) * 1e9;
        println!(
            "codec={name} samples_per_message={samples_per_message} bytes={} bytes_per_sample={:.1} encode_ns={enc:.0} decode_ns={dec:.0}",
            bytes.len(),
            bytes.len() as f64 / samples_per_message as f64,
        );
    }
}

/// `redis-benchmark`'s pipelined PUBLISH rate of 64-byte messages with one subscriber.
fn ceiling(redis: &Redis) -> anyhow::Result<()> {
    let mut subscriber = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "subscribe", "bench:ceiling"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("redis-cli")?;
    std::thread::sleep(Duration::from_millis(300));
    let payload = "x".repeat(64);
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &redis.port.to_string(),
            "-n",
            "2000000",
            "-P",
            "64",
            "-q",
        ])
        .args(["PUBLISH", "bench:ceiling", &payload])
        .output()
        .context("redis-benchmark")?;
    let _ = subscriber.kill();
    let _ = subscriber.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .rsplit('\r')
        .find_map(|part| {
            let (_, after) = part.split_once(": ")?;
            after.split_whitespace().next()?.parse::<f64>().ok()
        })
        .with_context(|| format!("redis-benchmark said: {text}"))?;
    println!(
        "ceiling=redis-benchmark publishes_per_second={rate:.0} payload_bytes=64 pipeline=64 subscribers=1"
    );
    Ok(())
}

/// Runs `bus`.
pub async fn bus_bench(cfg: &BusBench) -> anyhow::Result<()> {
    codec(cfg.samples_per_message);
    let redis = Redis::start()?;
    ceiling(&redis)?;
    let url = redis.url();
    let devices: Vec<DeviceKey> = (0..cfg.devices)
        .map(|i| DeviceKey::new(format!("leaf-{i:05}")).expect("a device key"))
        .collect();
    let paths = paths(cfg.samples_per_message);
    for &rate in &cfg.rates {
        let publisher = RedisBus::connect(&url, "bench")?;
        let subscriber = RedisBus::connect(&url, "bench")?;
        let received = Arc::new(AtomicU64::new(0));
        let lags: Arc<Mutex<Vec<f64>>> = Arc::default();
        let mut readers = Vec::new();
        for d in &devices {
            let mut sub = subscriber.subscribe(Topic::Device(d.clone()));
            let (received, lags) = (received.clone(), lags.clone());
            readers.push(tokio::spawn(async move {
                let mut n = 0u64;
                while let Some(m) = sub.next().await {
                    if let BusMessage::Samples { samples, .. } = m {
                        received.fetch_add(samples.len() as u64, Ordering::Relaxed);
                        n += 1;
                        // One latency per 16 messages keeps the vector small.
                        if n.is_multiple_of(16)
                            && let Some(s) = samples.first()
                        {
                            let lag = (now_ns() - s.ts) as f64 / 1e6;
                            lags.lock().unwrap_or_else(|p| p.into_inner()).push(lag);
                        }
                    }
                }
            }));
        }
        // Until a probe comes through, the subscriptions are not in place yet.
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.load(Ordering::Relaxed) == 0 {
            if Instant::now() > deadline {
                bail!("the subscriber never received anything");
            }
            for d in &devices {
                publisher.publish(message(d, &paths[..1], now_ns(), 0));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        received.store(0, Ordering::Relaxed);
        lags.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let dropped0 = publisher.stats().dropped.load(Ordering::Relaxed);

        let messages_per_second = rate as f64 / cfg.samples_per_message as f64;
        let tick = Duration::from_millis(10);
        let per_tick = messages_per_second * tick.as_secs_f64();
        let (redis0, self0) = (redis.cpu()?, cpu_seconds("/proc/self/stat")?);
        let started = Instant::now();
        let mut ticker = tokio::time::interval(tick);
        let (mut owed, mut sent, mut next) = (0.0f64, 0u64, 0usize);
        while started.elapsed() < Duration::from_secs(cfg.seconds) {
            ticker.tick().await;
            owed += per_tick;
            let ts = now_ns();
            while owed >= 1.0 {
                owed -= 1.0;
                let d = &devices[next % devices.len()];
                next += 1;
                publisher.publish(message(d, &paths, ts, sent));
                sent += 1;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        // Let what is in flight arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (redis_cpu, self_cpu) = (
            redis.cpu()? - redis0,
            cpu_seconds("/proc/self/stat")? - self0,
        );
        let got = received.load(Ordering::Relaxed);
        let expected = sent * cfg.samples_per_message as u64;
        let dropped = publisher.stats().dropped.load(Ordering::Relaxed) - dropped0;
        let mut lag = lags.lock().unwrap_or_else(|p| p.into_inner()).clone();
        lag.sort_by(f64::total_cmp);
        let achieved = got as f64 / elapsed;
        println!(
            "bus target_samples_per_second={rate} samples_per_message={} messages_per_second={:.0} delivered_samples_per_second={achieved:.0} delivered={:.4} publisher_dropped_messages={dropped} redis_cpu_cores={:.3} redis_cpu_per_100k_samples_per_second={:.3} bench_cpu_cores={:.3} latency_ms_p50={:.2} latency_ms_p99={:.2}",
            cfg.samples_per_message,
            messages_per_second,
            got as f64 / expected.max(1) as f64,
            redis_cpu / elapsed,
            redis_cpu / elapsed / (achieved / 100_000.0).max(1e-9),
            self_cpu / elapsed,
            percentile(&lag, 0.5),
            percentile(&lag, 0.99),
        );
        for r in readers {
            r.abort();
        }
    }
    Ok(())
}

fn rss_kib_of(pid: u32) -> anyhow::Result<u64> {
    crate::rss_kib_at(&format!("/proc/{pid}/status"))
}

/// Runs `fanout`.
pub async fn fanout(cfg: &Fanout) -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let dir = tempfile_dir()?;
    let db = dir.join("fanout.db");
    let url = format!("sqlite:{}", db.display());
    let devices: Vec<DeviceKey> = (0..cfg.devices)
        .map(|i| DeviceKey::new(format!("leaf-{i:05}")).expect("a device key"))
        .collect();
    let paths = paths(1);
    {
        let store = store::open(&url, true).await?;
        let infos: Vec<store::DeviceInfo> = devices
            .iter()
            .map(|d| store::DeviceInfo {
                name: d.clone(),
                address: "192.0.2.1:57400".into(),
            })
            .collect();
        store.upsert_devices(&infos).await?;
        let now = now_ns();
        let samples: Vec<Sample> = devices
            .iter()
            .map(|d| Sample {
                device: d.clone(),
                path: paths[0].clone(),
                ts: now,
                value: Value::Uint(0),
            })
            .collect();
        store.write_samples(&samples).await?;
    }
    let mut web = tokio::process::Command::new(&cfg.netpulse)
        .args(["web", "--listen", "127.0.0.1:0", "--database-url", &url])
        .args(["--redis-url", &redis.url(), "--bus-prefix", "bench"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("{} web", cfg.netpulse.display()))?;
    let pid = web.id().context("web pid")?;
    let stdout = web.stdout.take().context("stdout")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let base = loop {
        let line = lines.next_line().await?.context("web exited")?;
        if let Some(at) = line.find("http://") {
            break line[at..].trim_end_matches('/').to_owned();
        }
    };
    // Keep draining its stdout.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // Every device updates once a second, spread over the second. With charts, the
    // samples are written to the store first, as a collector does (store, then bus): the
    // charts are rendered from the store.
    let publisher = Arc::new(RedisBus::connect(&redis.url(), "bench")?);
    let writer = if cfg.charts {
        Some(store::open(&url, false).await?)
    } else {
        None
    };
    let publishing = {
        let (publisher, devices, paths) = (publisher.clone(), devices.clone(), paths.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(10));
            let per_tick = devices.len().div_ceil(100);
            let mut next = 0usize;
            let mut n = 0u64;
            loop {
                ticker.tick().await;
                let ts = now_ns();
                let mut messages = Vec::with_capacity(per_tick);
                for _ in 0..per_tick {
                    let d = &devices[next % devices.len()];
                    next += 1;
                    n += 1;
                    messages.push(message(d, &paths, ts, n));
                }
                if let Some(store) = &writer {
                    let samples: Vec<Sample> = messages
                        .iter()
                        .flat_map(|m| match m {
                            BusMessage::Samples { samples, .. } => samples.clone(),
                            _ => Vec::new(),
                        })
                        .collect();
                    if let Err(error) = store.write_samples(&samples).await {
                        eprintln!("fanout: store write failed: {error}");
                    }
                }
                for m in messages {
                    publisher.publish(m);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = rss_kib_of(pid)?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let events = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let lags: Arc<Mutex<Vec<f64>>> = Arc::default();
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(cfg.clients);
    let t_connect = Instant::now();
    for i in 0..cfg.clients {
        let device = devices[i % devices.len()].clone();
        let (client, base, charts) = (client.clone(), base.clone(), cfg.charts);
        let (events, connected, lags, measuring) = (
            events.clone(),
            connected.clone(),
            lags.clone(),
            measuring.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let url = format!("{base}/devices/{device}/live?charts={charts}");
            let Ok(res) = client.get(url).send().await else {
                return;
            };
            connected.fetch_add(1, Ordering::Relaxed);
            let mut body = res.bytes_stream();
            let mut pending = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    if !event.contains("event: samples") {
                        continue;
                    }
                    if measuring.load(Ordering::Relaxed) {
                        events.fetch_add(1, Ordering::Relaxed);
                        if let Some(id) = event.lines().find_map(|l| l.strip_prefix("id: "))
                            && let Ok(ts) = id.trim().parse::<i64>()
                        {
                            let lag = (now_ns() - ts) as f64 / 1e6;
                            lags.lock().unwrap_or_else(|p| p.into_inner()).push(lag);
                        }
                    }
                }
            }
        }));
        // A few hundred at a time: the listener's backlog is finite.
        if i % 250 == 249 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while (connected.load(Ordering::Relaxed) as usize) < cfg.clients {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} clients connected",
                connected.load(Ordering::Relaxed),
                cfg.clients
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_seconds = t_connect.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (web0, bench0) = (
        cpu_seconds(&format!("/proc/{pid}/stat"))?,
        cpu_seconds("/proc/self/stat")?,
    );
    let (redis0, started) = (redis.cpu()?, Instant::now());
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(cfg.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let web_cpu = cpu_seconds(&format!("/proc/{pid}/stat"))? - web0;
    let bench_cpu = cpu_seconds("/proc/self/stat")? - bench0;
    let redis_cpu = redis.cpu()? - redis0;
    let rss = rss_kib_of(pid)?;
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let metric = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or("?")
            .to_owned()
    };
    let skipped = metric("netpulse_web_sse_skipped_total");
    let (renders, shared) = (
        metric("netpulse_web_chart_renders_total"),
        metric("netpulse_web_chart_renders_shared_total"),
    );
    let mut lag = lags.lock().unwrap_or_else(|p| p.into_inner()).clone();
    lag.sort_by(f64::total_cmp);
    let got = events.load(Ordering::Relaxed) as f64;
    let expected = cfg.clients as f64 * elapsed;
    println!(
        "fanout clients={} devices={} charts={} seconds={elapsed:.1} connect_seconds={connect_seconds:.1} events_per_second={:.0} delivered={:.4} web_cpu_cores={:.3} web_rss_mib={:.1} web_rss_idle_mib={:.1} kib_per_client={:.1} latency_ms_p50={:.1} latency_ms_p99={:.1} skipped={skipped} chart_renders={renders} chart_renders_shared={shared} redis_cpu_cores={:.3} bench_cpu_cores={:.3}",
        cfg.clients,
        cfg.devices,
        cfg.charts,
        got / elapsed,
        got / expected,
        web_cpu / elapsed,
        rss as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        (rss.saturating_sub(rss_idle)) as f64 / cfg.clients as f64,
        percentile(&lag, 0.5),
        percentile(&lag, 0.99),
        redis_cpu / elapsed,
        bench_cpu / elapsed,
    );
    publishing.abort();
    for t in tasks {
        t.abort();
    }
    let _ = web.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("netpulse-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
