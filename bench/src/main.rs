//! Benchmark harnesses for issue 3 (gNMI collection), run by `bench/collector.sh`.
//!
//! `collect` runs the real collector (`collector::run`) in this process against simulated
//! devices in another one, with the store replaced by [`CountingStore`] (counts samples,
//! returns at once) and the in-process bus: what is measured is the collector's own cost
//! (sessions, HTTP/2, protobuf decode, conversion, batching). It prints one `key=value`
//! result line; with `--storm-timeout` it then waits for every session to drop (the
//! driver restarts the simulator) and prints the time until all are synced again.
//!
//! `decode` fetches real Subscribe responses from one simulated device, encodes them back
//! to bytes once, and times `prost::Message::decode` and `proto::decode_notification_cached` on
//! them in a loop on one thread: the decode ceiling to compare `collect` with.
//!
//! `blocks` encodes 2 h compressed blocks (`store::block`) of simulator-like series and
//! prints bytes per point by kind of series and timestamp regime, and the codec's speed.
//!
//! `query` times step queries (rollups vs raw) with a fleet's worth of rollups in
//! PostgreSQL; `ingest` and `blocks-on-disk` measure the store's writes and bytes on disk.
//!
//! CPU is read from `/proc` (USER_HZ = 100 on Linux), so nothing here is a test and no
//! timing is asserted.

mod blocks;
mod e2e;
mod ingest;
mod live;
mod placement;
mod query;
mod single_node;
mod sse_floor;
mod ssh_poll;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use clap::{Parser, Subcommand};
use model::{DeviceEvent, DeviceKey, Path, Sample, TimestampNs};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use prost::Message;
use proto::gnmi;
use store::{
    CliChange, CliOutput, DeviceInfo, DeviceSummary, Point, SeriesSummary, Store, WriteReport,
};
use tokio_util::sync::CancellationToken;

/// The same allocator as the `netpulse` binary, so the harness measures what ships.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Linux USER_HZ: the unit of utime/stime in `/proc/*/stat`.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Parser)]
#[command(about = "netpulse benchmark harnesses (issue 3)")]
struct Cli {
    /// Tokio worker threads (default: one per core). `--workers 1` measures what one
    /// core does.
    #[arg(long, global = true)]
    workers: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector in process with a counting store and the in-process bus.
    Collect {
        /// Devices file written by `netpulse simulate --write-devices`.
        #[arg(long)]
        devices: PathBuf,
        /// Use only the first N devices of the file.
        #[arg(long)]
        limit: Option<usize>,
        /// Longest wait for every session to be synced first, in seconds.
        #[arg(long, default_value_t = 90)]
        sync_timeout: u64,
        /// Seconds to wait after every session is synced, before measuring.
        #[arg(long, default_value_t = 10)]
        warmup: u64,
        /// Seconds measured.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// After measuring, print `STORM-READY`, wait (at most this many seconds) for the
        /// sessions to drop and come back, and print the time they took.
        #[arg(long)]
        storm_timeout: Option<u64>,
    },
    /// Sustained writes through the real store from concurrent writers (see ingest.rs).
    Ingest {
        /// Database to write to (migrated first).
        #[arg(long)]
        database_url: String,
        /// Simulated devices (112 leaves each).
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Rounds of every leaf, 10 s apart (the first creates the series, untimed).
        #[arg(long, default_value_t = 11)]
        rounds: usize,
        /// Samples per write.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// Concurrent writers.
        #[arg(long, default_value_t = 1)]
        writers: usize,
        /// Also write the timed rows as CSV (series_id,ts,value) for the COPY ceiling.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Size and speed of compressed 2 h blocks of simulator-like series (see blocks.rs).
    Blocks {
        /// Series to encode (devices of 116: 16 interfaces x 7, CPU, memory x 2, temperature).
        #[arg(long, default_value_t = 10_000)]
        series: usize,
        /// Minutes of samples per block.
        #[arg(long, default_value_t = 120)]
        block_minutes: u64,
        /// Seconds between samples.
        #[arg(long, default_value_t = 10)]
        interval: u64,
        /// Seed of the simulated fleet.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Bytes per sample on disk in PostgreSQL, raw and compressed (see blocks.rs).
    BlocksOnDisk {
        /// Database to write to (migrated first; use a throwaway one).
        #[arg(long)]
        database_url: String,
        /// Simulated devices (116 series each).
        #[arg(long, default_value_t = 20)]
        devices: usize,
        /// Hours of 10 s samples.
        #[arg(long, default_value_t = 4)]
        hours: u64,
        /// Seed of the simulated fleet.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// The operator's placement on a fleet: plan time, moves on scale-out, balance.
    Placement(placement::Placement),
    /// The bus codec and Redis throughput against redis-benchmark's ceiling (issue 6).
    Bus(live::BusBench),
    /// One web process fanning live updates out to many SSE clients (issue 6).
    Fanout(live::Fanout),
    /// The memory floor of a held SSE connection: axum + hyper as `netpulse web` serves,
    /// and a bare task per connection.
    SseFloor(sse_floor::SseFloor),
    /// The server side of `sse-floor` (run by it).
    #[command(hide = true)]
    SseFloorServer {
        /// How to serve.
        #[arg(long, value_enum)]
        mode: sse_floor::Mode,
    },
    /// Device timestamp to SSE client through simulator, collector and web processes.
    E2e(e2e::E2e),
    /// Failover in the operator's cluster simulation: NotReady pod to devices re-owned.
    Failover(placement::FailoverArgs),
    /// Step-query latency with a fleet's worth of rollups in PostgreSQL (see `query.rs`).
    Query(query::Query),
    /// A week of a small fleet in the bundled SQLite file: size, maintenance and query
    /// times (see `single_node.rs`).
    SingleNode(single_node::SingleNode),
    /// One collector polling simulated devices over SSH, against a Python (scrapli)
    /// baseline on the same devices (issue 7; see `ssh_poll.rs`).
    SshPoll(ssh_poll::SshPoll),
    /// Time protobuf decoding of real Subscribe responses of one simulated device.
    Decode {
        /// Devices file written by `netpulse simulate --write-devices`.
        #[arg(long)]
        devices: PathBuf,
        /// Seconds of each timed loop.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

/// A store that counts the samples and CLI outputs it is given and keeps nothing
/// (health reports and CLI snapshots go to the trait's defaults, which keep nothing
/// either). Used by `collect` and `ssh-poll`.
#[derive(Debug, Default)]
pub(crate) struct CountingStore {
    samples: AtomicU64,
    batches: AtomicU64,
    outputs: AtomicU64,
}

#[async_trait]
impl Store for CountingStore {
    async fn upsert_devices(&self, _devices: &[DeviceInfo]) -> store::Result<()> {
        Ok(())
    }

    async fn record_event(&self, _event: &DeviceEvent) -> store::Result<()> {
        Ok(())
    }

    async fn write_samples(&self, samples: &[Sample]) -> store::Result<WriteReport> {
        self.samples
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        Ok(WriteReport {
            written: samples.len() as u64,
            ..WriteReport::default()
        })
    }

    async fn record_cli_output(&self, output: &CliOutput) -> store::Result<Option<CliChange>> {
        store::cli::check_output(output)?;
        self.outputs.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }

    async fn cli_output(
        &self,
        _device: &DeviceKey,
        _command: &str,
    ) -> store::Result<Option<CliOutput>> {
        Ok(None)
    }

    async fn devices(&self) -> store::Result<Vec<DeviceSummary>> {
        Ok(Vec::new())
    }

    async fn device(&self, _name: &DeviceKey) -> store::Result<Option<DeviceSummary>> {
        Ok(None)
    }

    async fn series(&self, _device: &DeviceKey) -> store::Result<Vec<SeriesSummary>> {
        Ok(Vec::new())
    }

    async fn range(
        &self,
        _device: &DeviceKey,
        _path: &Path,
        _from: TimestampNs,
        _to: TimestampNs,
    ) -> store::Result<Vec<Point>> {
        Ok(Vec::new())
    }

    async fn ping(&self) -> store::Result<()> {
        Ok(())
    }
}

/// utime + stime of a `/proc/.../stat` file, in seconds.
fn cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(stat).with_context(|| stat.to_owned())?;
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / TICKS_PER_SECOND)
}

fn rss_kib() -> anyhow::Result<u64> {
    rss_kib_at("/proc/self/status")
}

/// VmRSS of a `/proc/.../status` file, in KiB.
fn rss_kib_at(status: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(status).with_context(|| status.to_owned())?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no VmRSS value")?
        .parse()?)
}

/// Reads the sessions-by-state gauge (cheap: no per-device snapshot).
#[derive(Debug)]
struct Sessions(Registry);

impl Sessions {
    fn new(metrics: &collector::CollectorMetrics) -> Self {
        let mut registry = Registry::default();
        registry.register("sessions", "sessions by state", metrics.sessions.clone());
        Self(registry)
    }

    /// Sessions synced or degraded (connected, some samples missing), and synced only.
    fn up(&self) -> (usize, usize) {
        let mut text = String::new();
        if encode(&mut text, &self.0).is_err() {
            return (0, 0);
        }
        let count = |state: &str| -> usize {
            let key = format!("sessions{{state=\"{state}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&key))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(0)
                .max(0) as usize
        };
        let synced = count("synced");
        (synced + count("degraded"), synced)
    }
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    at: Instant,
    cpu: f64,
    received: u64,
    expected: u64,
    missing: u64,
    notifications: u64,
    bytes: u64,
}

fn counters(metrics: &collector::CollectorMetrics) -> anyhow::Result<Counters> {
    Ok(Counters {
        at: Instant::now(),
        cpu: cpu_seconds("/proc/self/stat")?,
        received: metrics.samples_received.get(),
        expected: metrics.samples_expected.get(),
        missing: metrics.samples_missing.get(),
        notifications: metrics.notifications.get(),
        bytes: metrics.bytes_received.get(),
    })
}

#[allow(clippy::too_many_lines)]
async fn collect(
    file: PathBuf,
    limit: Option<usize>,
    sync_timeout: u64,
    warmup: u64,
    seconds: u64,
    storm_timeout: Option<u64>,
) -> anyhow::Result<()> {
    let mut devices = collector::source::from_file(&file)?;
    if let Some(limit) = limit {
        devices.truncate(limit);
    }
    let n = devices.len();
    let rss_before = rss_kib()?;
    let store = Arc::new(CountingStore::default());
    let bus = bus::open(None, "bench")?;
    let metrics = Arc::new(collector::CollectorMetrics::default());
    let sessions = Sessions::new(&metrics);
    let health = collector::HealthBook::default();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(collector::run(
        devices,
        store.clone(),
        bus,
        metrics.clone(),
        health,
        collector::CollectorConfig::default(),
        shutdown.clone(),
    ));

    let started = Instant::now();
    let mut last_note = Instant::now();
    loop {
        let (up, _) = sessions.up();
        if up == n {
            break;
        }
        if started.elapsed() > Duration::from_secs(sync_timeout) {
            eprintln!("  only {up}/{n} sessions synced after {sync_timeout}s; measuring anyway");
            break;
        }
        if last_note.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {up}/{n} synced after {:.0}s",
                started.elapsed().as_secs_f64()
            );
            last_note = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sync_seconds = started.elapsed().as_secs_f64();
    eprintln!("  all-synced wait ended after {sync_seconds:.1}s; warming up {warmup}s");
    tokio::time::sleep(Duration::from_secs(warmup)).await;

    let c0 = counters(&metrics)?;
    let written0 = store.samples.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let c1 = counters(&metrics)?;
    let written1 = store.samples.load(Ordering::Relaxed);
    let rss = rss_kib()?;
    let (up, synced_only) = sessions.up();
    let t = (c1.at - c0.at).as_secs_f64();
    let cpu = c1.cpu - c0.cpu;
    let received = (c1.received - c0.received) as f64;
    let expected = (c1.expected - c0.expected) as f64;
    let missing = (c1.missing - c0.missing) as f64;
    let completeness = if expected > 0.0 {
        100.0 * (1.0 - missing / expected)
    } else {
        0.0
    };
    println!(
        "devices={n} up={up} synced={synced_only} initial_sync_s={sync_seconds:.1} \
         received_per_s={:.0} sunk_per_s={:.0} notifications_per_s={:.0} rx_mib_per_s={:.2} \
         expected_per_s={:.0} missing_per_s={:.1} completeness_pct={completeness:.3} \
         cpu_pct={:.1} updates_per_cpu_s={:.0} rss_mib={:.1} rss_before_mib={:.1} \
         kib_per_device={:.1} window_s={t:.1}",
        received / t,
        (written1 - written0) as f64 / t,
        (c1.notifications - c0.notifications) as f64 / t,
        (c1.bytes - c0.bytes) as f64 / t / 1_048_576.0,
        expected / t,
        missing / t,
        100.0 * cpu / t,
        // Decoded and batched into the store: what the sink counted (the sessions'
        // received counters reach the metrics once a second).
        if cpu > 0.0 {
            (written1 - written0) as f64 / cpu
        } else {
            0.0
        },
        rss as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        rss.saturating_sub(rss_before) as f64 / n.max(1) as f64,
    );

    if let Some(timeout) = storm_timeout {
        storm(&sessions, &metrics, n, Duration::from_secs(timeout)).await?;
    }
    shutdown.cancel();
    // The counting store flushes at once; do not wait on slow session teardown.
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
    Ok(())
}

/// Waits for the sessions to drop (the driver kills the simulator after `STORM-READY`)
/// and measures the time from the first drop seen until every session is up again.
async fn storm(
    sessions: &Sessions,
    metrics: &collector::CollectorMetrics,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    use std::io::Write;
    let connects0 = metrics.connects.get();
    println!("STORM-READY");
    std::io::stdout().flush()?;
    let deadline = Instant::now() + timeout;
    let dropped_at = loop {
        if sessions.up().0 < n {
            break Instant::now();
        }
        if Instant::now() > deadline {
            bail!("no session dropped within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("  sessions dropping; waiting for all {n} to be synced again");
    let mut lowest = n;
    let mut last_note = Instant::now();
    // Wait until most sessions have seen the drop before looking for the recovery.
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let (up, _) = sessions.up();
        lowest = lowest.min(up);
        if up == n {
            break;
        }
        if Instant::now() > deadline {
            println!(
                "storm devices={n} recovered=no up={up} lowest_up={lowest} after_s={:.1}",
                dropped_at.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if last_note.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {up}/{n} up after {:.0}s",
                dropped_at.elapsed().as_secs_f64()
            );
            last_note = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "storm devices={n} recovered=yes resync_s={:.2} lowest_up={lowest} connect_attempts={}",
        dropped_at.elapsed().as_secs_f64(),
        metrics.connects.get() - connects0,
    );
    Ok(())
}

/// Subscribe responses of the first device of `file`, as the collector would ask.
async fn fetch_responses(file: &std::path::Path) -> anyhow::Result<Vec<gnmi::SubscribeResponse>> {
    let devices = collector::source::from_file(file)?;
    let device = devices.first().context("no device in the file")?;
    let url = format!("http://{}:{}", device.spec.address, device.spec.gnmi.port);
    let channel = tonic::transport::Endpoint::from_shared(url)?
        .connect()
        .await?;
    let mut client = gnmi::g_nmi_client::GNmiClient::new(channel);
    let mut subscriptions = Vec::new();
    for s in &device.spec.gnmi.subscriptions {
        let path: Path = s.path.parse()?;
        let interval = s
            .sample_interval
            .as_deref()
            .map(crds::parse_duration)
            .transpose()?
            .unwrap_or(Duration::from_secs(1));
        subscriptions.push(gnmi::Subscription {
            path: Some(gnmi::Path::from(&path)),
            mode: gnmi::SubscriptionMode::Sample as i32,
            sample_interval: interval.as_nanos() as u64,
            ..Default::default()
        });
    }
    let request = gnmi::SubscribeRequest {
        request: Some(gnmi::subscribe_request::Request::Subscribe(
            gnmi::SubscriptionList {
                subscription: subscriptions,
                mode: gnmi::subscription_list::Mode::Stream as i32,
                encoding: gnmi::Encoding::Proto as i32,
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(request).await?;
    let mut stream = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    // The initial dump, the sync response and one more round of samples.
    let mut responses = Vec::new();
    let mut syncs = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while syncs < 1 || responses.len() < 2 * device.spec.gnmi.subscriptions.len().max(1) {
        let next = tokio::time::timeout_at(deadline, stream.message()).await;
        let Ok(Ok(Some(response))) = next else {
            break;
        };
        if matches!(
            response.response,
            Some(gnmi::subscribe_response::Response::SyncResponse(_))
        ) {
            syncs += 1;
        } else {
            responses.push(response);
        }
    }
    drop(tx);
    if responses.is_empty() {
        bail!("no Subscribe response received");
    }
    Ok(responses)
}

async fn decode(file: PathBuf, seconds: u64) -> anyhow::Result<()> {
    let responses = fetch_responses(&file).await?;
    let encoded: Vec<Vec<u8>> = responses.iter().map(Message::encode_to_vec).collect();
    let device: DeviceKey = "sim-0001".parse()?;
    let updates_per_round: u64 = responses
        .iter()
        .filter_map(|r| match &r.response {
            Some(gnmi::subscribe_response::Response::Update(n)) => Some(n.update.len() as u64),
            _ => None,
        })
        .sum();
    let bytes_per_round: usize = encoded.iter().map(Vec::len).sum();
    let budget = Duration::from_secs(seconds);
    let thread_stat = "/proc/thread-self/stat";

    // 1. prost decode only.
    let (mut rounds, mut sink) = (0u64, 0usize);
    let cpu0 = cpu_seconds(thread_stat)?;
    let started = Instant::now();
    while started.elapsed() < budget {
        for bytes in &encoded {
            let r = gnmi::SubscribeResponse::decode(bytes.as_slice())?;
            sink += usize::from(r.response.is_some());
        }
        rounds += 1;
    }
    let prost_cpu = cpu_seconds(thread_stat)? - cpu0;
    let prost_rate = (rounds * updates_per_round) as f64 / prost_cpu;

    // 2. decode_notification only (messages decoded once beforehand), with a path cache
    // kept across rounds, as the collector keeps one.
    let mut paths = proto::PathCache::new(1 << 18);
    let notifications: Vec<&gnmi::Notification> = responses
        .iter()
        .filter_map(|r| match &r.response {
            Some(gnmi::subscribe_response::Response::Update(n)) => Some(n),
            _ => None,
        })
        .collect();
    let mut convert_rounds = 0u64;
    let cpu0 = cpu_seconds(thread_stat)?;
    let started = Instant::now();
    while started.elapsed() < budget {
        for n in &notifications {
            sink += proto::decode_notification_cached(&device, n, &mut paths)
                .samples
                .len();
        }
        convert_rounds += 1;
    }
    let convert_cpu = cpu_seconds(thread_stat)? - cpu0;
    let convert_rate = (convert_rounds * updates_per_round) as f64 / convert_cpu;

    // 3. Both, as the collector does per message.
    let mut both_rounds = 0u64;
    let cpu0 = cpu_seconds(thread_stat)?;
    let started = Instant::now();
    while started.elapsed() < budget {
        for bytes in &encoded {
            let r = gnmi::SubscribeResponse::decode(bytes.as_slice())?;
            if let Some(gnmi::subscribe_response::Response::Update(n)) = &r.response {
                sink += proto::decode_notification_cached(&device, n, &mut paths)
                    .samples
                    .len();
            }
        }
        both_rounds += 1;
    }
    let both_cpu = cpu_seconds(thread_stat)? - cpu0;
    let both_rate = (both_rounds * updates_per_round) as f64 / both_cpu;

    // 4. What the collector runs: `proto::wire` from the bytes, warm cache.
    let mut wire_rounds = 0u64;
    let mut cache = proto::PathCache::new(1 << 18);
    let cpu0 = cpu_seconds(thread_stat)?;
    let started = Instant::now();
    while started.elapsed() < budget {
        for bytes in &encoded {
            if let proto::wire::Response::Update { decoded, .. } =
                proto::wire::decode_response(bytes, &device, &mut cache)?
            {
                sink += decoded.samples.len();
            }
        }
        wire_rounds += 1;
    }
    let wire_cpu = cpu_seconds(thread_stat)? - cpu0;
    let wire_rate = (wire_rounds * updates_per_round) as f64 / wire_cpu;
    println!(
        "decode messages={} updates={updates_per_round} bytes={bytes_per_round} \
         prost_updates_per_cpu_s={prost_rate:.0} decode_notification_updates_per_cpu_s={convert_rate:.0} \
         both_updates_per_cpu_s={both_rate:.0} wire_updates_per_cpu_s={wire_rate:.0} check={sink}",
        encoded.len(),
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = cli.workers {
        builder.worker_threads(workers.max(1));
    }
    let runtime = builder.enable_all().build()?;
    match cli.command {
        Command::Collect {
            devices,
            limit,
            sync_timeout,
            warmup,
            seconds,
            storm_timeout,
        } => runtime.block_on(collect(
            devices,
            limit,
            sync_timeout,
            warmup,
            seconds,
            storm_timeout,
        )),
        Command::Decode { devices, seconds } => runtime.block_on(decode(devices, seconds)),
        Command::Blocks {
            series,
            block_minutes,
            interval,
            seed,
        } => blocks::run(&blocks::Blocks {
            series,
            block_minutes,
            interval_s: interval,
            seed,
        }),
        Command::BlocksOnDisk {
            database_url,
            devices,
            hours,
            seed,
        } => runtime.block_on(blocks::on_disk(&blocks::OnDisk {
            database_url,
            devices,
            hours,
            seed,
        })),
        Command::Placement(cfg) => placement::run(&cfg),
        Command::Bus(cfg) => runtime.block_on(live::bus_bench(&cfg)),
        Command::Fanout(cfg) => runtime.block_on(live::fanout(&cfg)),
        Command::SseFloor(cfg) => runtime.block_on(sse_floor::run(&cfg)),
        Command::SseFloorServer { mode } => runtime.block_on(sse_floor::server(mode)),
        Command::E2e(cfg) => runtime.block_on(e2e::run(&cfg)),
        Command::Failover(cfg) => placement::failover(&cfg),
        Command::SingleNode(cfg) => runtime.block_on(single_node::run(&cfg)),
        Command::Query(cfg) => runtime.block_on(query::run(&cfg)),
        Command::SshPoll(cfg) => runtime.block_on(ssh_poll::run(&cfg)),
        Command::Ingest {
            database_url,
            devices,
            rounds,
            batch,
            writers,
            csv,
        } => runtime.block_on(ingest::run(ingest::Ingest {
            database_url,
            devices,
            rounds,
            batch,
            writers,
            csv,
        })),
    }?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
