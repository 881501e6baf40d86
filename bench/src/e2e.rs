//! `e2e`: end-to-end latency of the live path (issue 6), production shape: a simulator,
//! a collector and a web process (the `netpulse` binary, each its own process) over a
//! PostgreSQL database and a redis-server of the run's own, with SSE clients in this
//! process. Latency is the device's timestamp of a sample to the client reading the
//! `samples` event that carries it: collection, the collector's batch delay, the store
//! write (store first, then bus), Redis, the web hub and SSE.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt as _;
use tokio::io::AsyncBufReadExt as _;

use crate::live::{Redis, now_ns, percentile};

/// `e2e`.
#[derive(Debug, clap::Args)]
pub struct E2e {
    /// The netpulse binary.
    #[arg(long, default_value = "target/release/netpulse")]
    netpulse: PathBuf,
    /// An empty PostgreSQL database (its schema is created).
    #[arg(long)]
    database_url: String,
    /// Simulated devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Interfaces per device.
    #[arg(long, default_value_t = 8)]
    interfaces: usize,
    /// Sample interval of every subscription.
    #[arg(long, default_value = "1s")]
    interval: String,
    /// SSE clients, client `i` watching device `i % devices`.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// First loopback address of the simulated devices.
    #[arg(long, default_value = "127.0.70.1")]
    base_address: String,
}

/// A child `netpulse` process, killed when dropped, whose announced URL was read.
struct Proc {
    child: tokio::process::Child,
    url: Option<String>,
}

async fn spawn(bin: &PathBuf, args: &[&str], want_url: bool) -> anyhow::Result<Proc> {
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("{} {}", bin.display(), args.join(" ")))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut url = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("no output")??
            .context("exited")?;
        if !want_url && line.contains("running") {
            break;
        }
        if let Some(at) = line.find("http://") {
            let rest = &line[at..];
            let text = rest.split_whitespace().next().unwrap_or(rest);
            url = Some(
                text.trim_end_matches("/metrics")
                    .trim_end_matches('/')
                    .to_owned(),
            );
            break;
        }
        if Instant::now() > deadline {
            bail!("{} never said it was running", args[0]);
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Proc { child, url })
}

async fn metric(url: &str, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .with_context(|| format!("{name} not in {url}/metrics"))
}

/// Runs `e2e`.
pub async fn run(cfg: &E2e) -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let dir = std::env::temp_dir().join(format!("netpulse-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let devices_file = dir.join("devices.yaml");
    let (n, ifs) = (cfg.devices.to_string(), cfg.interfaces.to_string());
    let mut sim = spawn(
        &cfg.netpulse,
        &[
            "simulate",
            "--devices",
            &n,
            "--interfaces",
            &ifs,
            "--base-address",
            &cfg.base_address,
            "--port",
            "0",
            "--sample-interval",
            &cfg.interval,
            "--write-devices",
            devices_file.to_str().context("path")?,
        ],
        false,
    )
    .await?;
    let web = spawn(
        &cfg.netpulse,
        &[
            "web",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &cfg.database_url,
            "--redis-url",
            &redis.url(),
            "--bus-prefix",
            "e2e",
        ],
        true,
    )
    .await?;
    let collector = spawn(
        &cfg.netpulse,
        &[
            "collector",
            "--devices",
            devices_file.to_str().context("path")?,
            "--database-url",
            &cfg.database_url,
            "--redis-url",
            &redis.url(),
            "--bus-prefix",
            "e2e",
            "--listen",
            "127.0.0.1:0",
        ],
        true,
    )
    .await?;
    let base = web.url.clone().context("web URL")?;
    let collector_url = collector.url.clone().context("collector URL")?;
    // Every device has samples before clients connect (the live endpoint needs them known).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let json: serde_json::Value = reqwest::get(format!("{base}/api/v1/devices"))
            .await?
            .json()
            .await?;
        let synced = json["devices"]
            .as_array()
            .map_or(0, |l| l.iter().filter(|d| d["state"] == "synced").count());
        if synced == cfg.devices {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {synced} of {} devices synced", cfg.devices);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let names: Vec<String> = (1..=cfg.devices).map(|i| format!("sim-{i:04}")).collect();
    let lags: Arc<Mutex<Vec<f64>>> = Arc::default();
    let measuring = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..cfg.clients {
        let url = format!(
            "{base}/devices/{}/live?charts=false",
            names[i % names.len()]
        );
        let (lags, measuring) = (lags.clone(), measuring.clone());
        clients.push(tokio::spawn(async move {
            let Ok(res) = reqwest::get(url).await else {
                return;
            };
            let mut body = res.bytes_stream();
            let mut pending = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    if !measuring.load(Ordering::Relaxed) || !event.contains("event: samples") {
                        continue;
                    }
                    let now = now_ns();
                    let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let Ok(d) = serde_json::from_str::<serde_json::Value>(data) else {
                        continue;
                    };
                    let mut got = lags.lock().unwrap_or_else(|p| p.into_inner());
                    for s in d["samples"].as_array().into_iter().flatten() {
                        if let Some(ts) = s["ts"].as_str()
                            && let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts)
                            && let Some(ns) = t.timestamp_nanos_opt()
                        {
                            got.push((now - ns) as f64 / 1e6);
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let received0 = metric(&collector_url, "netpulse_collector_samples_received_total").await?;
    let started = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(cfg.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let received =
        metric(&collector_url, "netpulse_collector_samples_received_total").await? - received0;
    let mut lag = lags.lock().unwrap_or_else(|p| p.into_inner()).clone();
    lag.sort_by(f64::total_cmp);
    println!(
        "e2e devices={} interfaces={} interval={} fleet_samples_per_second={:.0} clients={} latencies={} latency_ms_p50={:.1} latency_ms_p99={:.1} latency_ms_max={:.1} batch_wait_ms=250",
        cfg.devices,
        cfg.interfaces,
        cfg.interval,
        received / elapsed,
        cfg.clients,
        lag.len(),
        percentile(&lag, 0.5),
        percentile(&lag, 0.99),
        lag.last().copied().unwrap_or(f64::NAN),
    );
    for c in clients {
        c.abort();
    }
    drop(collector);
    drop(web);
    let _ = sim.child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
