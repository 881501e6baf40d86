//! `netpulse-bench ingest`: sustained writes through the real `Store` (idempotency on),
//! from several concurrent writers, and the same rows as CSV for the `psql \copy`
//! ceiling that `bench/ingest.sh` measures beside it.
//!
//! Rows: `devices` devices × 112 leaves (16 interfaces × 7 counters, like the
//! simulator) × `rounds` rounds 10 s apart. Round 0 creates every series and is not
//! timed (the ceiling table has no series to create either); rounds 1.. are timed.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use model::{DeviceKey, Path, Sample, Value};

const LEAVES: [&str; 7] = [
    "in-octets",
    "out-octets",
    "in-pkts",
    "out-pkts",
    "in-errors",
    "out-errors",
    "oper-status-changes",
];
const INTERFACES: usize = 16;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000_000_000;
const ROUND_NS: i64 = 10_000_000_000;

/// Settings of one run.
#[derive(Debug)]
pub struct Ingest {
    pub database_url: String,
    pub devices: usize,
    pub rounds: usize,
    pub batch: usize,
    pub writers: usize,
    pub csv: Option<PathBuf>,
}

fn paths() -> anyhow::Result<Vec<Arc<Path>>> {
    let mut out = Vec::with_capacity(INTERFACES * LEAVES.len());
    for i in 1..=INTERFACES {
        for leaf in LEAVES {
            let p: Path = format!("/interfaces/interface[name=Ethernet{i}]/state/counters/{leaf}")
                .parse()
                .context("path")?;
            out.push(Arc::new(p));
        }
    }
    Ok(out)
}

fn round(devices: &[DeviceKey], paths: &[Arc<Path>], r: usize) -> Vec<Sample> {
    let ts = T0 + r as i64 * ROUND_NS;
    devices
        .iter()
        .flat_map(|d| {
            paths.iter().enumerate().map(move |(i, p)| Sample {
                device: d.clone(),
                path: p.clone(),
                ts,
                value: Value::Uint((r as u64 + 1) * 1_000 + i as u64),
            })
        })
        .collect()
}

/// Runs one measurement and prints one `ingest ...` line.
pub async fn run(cfg: Ingest) -> anyhow::Result<()> {
    let devices: Vec<DeviceKey> = (0..cfg.devices)
        .map(|i| DeviceKey::new(format!("dev-{i:05}")))
        .collect::<Result<_, _>>()?;
    let paths = paths()?;
    if let Some(csv) = &cfg.csv {
        // The timed rounds as `series_id,ts,value`, series ids dense from 1.
        let mut out = std::io::BufWriter::new(std::fs::File::create(csv)?);
        for r in 1..cfg.rounds {
            let ts =
                chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(T0 + r as i64 * ROUND_NS)
                    .to_rfc3339();
            for d in 0..cfg.devices {
                for i in 0..paths.len() {
                    let series = d * paths.len() + i + 1;
                    let value = (r as u64 + 1) * 1_000 + i as u64;
                    writeln!(out, "{series},{ts},{value}")?;
                }
            }
        }
        out.flush()?;
    }
    let store = store::open(&cfg.database_url, true).await?;
    // Round 0: every series created, untimed.
    for chunk in round(&devices, &paths, 0).chunks(cfg.batch) {
        store.write_samples(chunk).await?;
    }
    let mut batches: Vec<Vec<Sample>> = Vec::new();
    for r in 1..cfg.rounds {
        let samples = round(&devices, &paths, r);
        batches.extend(samples.chunks(cfg.batch).map(<[Sample]>::to_vec));
    }
    let total: usize = batches.iter().map(Vec::len).sum();
    let queue = Arc::new(Mutex::new(batches));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..cfg.writers.max(1) {
        let (queue, store) = (queue.clone(), store.clone());
        tasks.spawn(async move {
            let mut written = 0u64;
            loop {
                let next = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
                let Some(batch) = next else {
                    return Ok::<u64, anyhow::Error>(written);
                };
                written += store.write_samples(&batch).await?.written;
            }
        });
    }
    let mut written = 0;
    while let Some(done) = tasks.join_next().await {
        written += done??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "ingest rows={total} written={written} writers={} batch={} seconds={seconds:.2} rows_per_s={:.0}",
        cfg.writers,
        cfg.batch,
        total as f64 / seconds
    );
    Ok(())
}
