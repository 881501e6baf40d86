//! A cheap load for a simulated fleet: one STREAM subscription per device, counting what
//! arrives, for a bounded time. Loopback only; for measuring the simulator, not a test.
//!
//! `cargo run --release -p simulator --example load -- ADDR_FILE [SECONDS] [INTERVAL_MS]`
//!
//! ADDR_FILE holds the `addr <address> <name>` lines the `serve` example prints (other lines
//! are ignored). Each device gets one subscription to `/interfaces` (SAMPLE every
//! INTERVAL_MS, default 10000) for SECONDS (default 60) after every device is connected.
//! Prints connection failures, updates and notifications per second, and this process's
//! CPU time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use proto::gnmi::{
    Encoding, SubscribeRequest, Subscription, SubscriptionList, SubscriptionMode,
    g_nmi_client::GNmiClient, subscribe_request::Request as Outbound,
    subscribe_response::Response as Inbound, subscription_list::Mode,
};
use tokio::sync::Semaphore;
use tonic::transport::Endpoint;

/// Connections opened at once: keeps the listen backlogs from overflowing.
const CONNECT_CONCURRENCY: usize = 200;
/// How long one device may take to connect and answer the subscription.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Counts {
    connected: AtomicU64,
    failed: AtomicU64,
    notifications: AtomicU64,
    updates: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .context("usage: load ADDR_FILE [SECONDS] [INTERVAL_MS]")?;
    let seconds: u64 = args.next().map_or(Ok(60), |s| s.parse())?;
    let interval_ms: u64 = args.next().map_or(Ok(10_000), |s| s.parse())?;
    let addrs: Vec<String> = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {file}"))?
        .lines()
        .filter_map(|l| l.strip_prefix("addr "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    if addrs.is_empty() {
        bail!("no `addr` lines in {file}");
    }
    for a in &addrs {
        if !a.starts_with("127.") {
            bail!("{a} is not a loopback address");
        }
    }

    let counts = Arc::new(Counts::default());
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(addrs.len());
    for addr in addrs.clone() {
        let counts = Arc::clone(&counts);
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe(&addr, interval_ms))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {SUBSCRIBE_TIMEOUT:?}")));
            match subscribed {
                Ok(mut stream) => {
                    drop(permit);
                    counts.connected.fetch_add(1, Ordering::Relaxed);
                    while let Ok(Some(message)) = stream.message().await {
                        if let Some(Inbound::Update(n)) = message.response {
                            counts.notifications.fetch_add(1, Ordering::Relaxed);
                            counts
                                .updates
                                .fetch_add(n.update.len() as u64, Ordering::Relaxed);
                        }
                    }
                }
                Err(error) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{addr}: {error:#}");
                }
            }
        }));
    }
    let total = addrs.len() as u64;
    while counts.connected.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "connected {} of {total} in {:.1}s ({} failed)",
        counts.connected.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        counts.failed.load(Ordering::Relaxed)
    );
    let (n0, u0, cpu0) = (
        counts.notifications.load(Ordering::Relaxed),
        counts.updates.load(Ordering::Relaxed),
        cpu_seconds(),
    );
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let secs = window.elapsed().as_secs_f64();
    let (n1, u1, cpu1) = (
        counts.notifications.load(Ordering::Relaxed),
        counts.updates.load(Ordering::Relaxed),
        cpu_seconds(),
    );
    println!(
        "over {secs:.1}s: {:.0} notifications/s, {:.0} updates/s; client CPU {:.1}%",
        (n1 - n0) as f64 / secs,
        (u1 - u0) as f64 / secs,
        (cpu1 - cpu0) / secs * 100.0
    );
    for t in tasks {
        t.abort();
    }
    Ok(())
}

async fn subscribe(
    addr: &str,
    interval_ms: u64,
) -> anyhow::Result<tonic::Streaming<proto::gnmi::SubscribeResponse>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await?;
    let list = SubscriptionList {
        mode: Mode::Stream as i32,
        encoding: Encoding::Proto as i32,
        subscription: vec![Subscription {
            path: Some(proto::gnmi::Path::from(
                &"/interfaces".parse::<model::Path>()?,
            )),
            mode: SubscriptionMode::Sample as i32,
            sample_interval: interval_ms * 1_000_000,
            ..Default::default()
        }],
        ..Default::default()
    };
    let request = SubscribeRequest {
        request: Some(Outbound::Subscribe(list)),
        ..Default::default()
    };
    // The request stream stays open (pending) for as long as the subscription lives.
    let outbound = futures_lite_once(request);
    Ok(GNmiClient::new(channel)
        .subscribe(outbound)
        .await?
        .into_inner())
}

/// One message, then a stream that never ends (a half-close would be fine too).
fn futures_lite_once(
    request: SubscribeRequest,
) -> impl tokio_stream::Stream<Item = SubscribeRequest> + Send + 'static {
    use tokio_stream::StreamExt as _;
    tokio_stream::once(request).chain(tokio_stream::pending())
}

/// User plus system CPU time of this process, in seconds (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on every mainstream Linux.
    ticks as f64 / 100.0
}
