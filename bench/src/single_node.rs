//! `netpulse-bench single-node`: a week of a small fleet in the bundled SQLite file.
//!
//! Writes `days` days of `devices` simulated devices through the real store into a SQLite
//! file, each with the 32 numeric series of a `netpulse all --simulate` device (4
//! interfaces' counters and statuses, CPU, memory, temperature) every `interval` seconds,
//! sealing hours as the days go by (rollups) the way the maintenance task does. Then it
//! prints the file's size, how long one maintenance run takes on that much data, and the
//! median time of the queries a dashboard makes: 24 h of one series in 1-minute steps,
//! a week of one device's 32 series in 1-hour and 5-minute steps, and the last hour of
//! 32 series read raw.

use std::time::Instant;

use model::{DeviceKey, TimestampNs};

use crate::blocks::{SMALL_DEVICE, Shape, series_paths, write_device};
use crate::query::{HOUR, MINUTE, NS_PER_S, seal_history, time_steps};

/// Settings of `netpulse-bench single-node`.
#[derive(Debug, clap::Args)]
pub struct SingleNode {
    /// SQLite file to create (must not exist).
    #[arg(long)]
    pub database: std::path::PathBuf,
    /// Simulated devices (32 numeric series each).
    #[arg(long, default_value_t = 20)]
    pub devices: usize,
    /// Days of samples.
    #[arg(long, default_value_t = 7)]
    pub days: u64,
    /// Seconds between samples (`netpulse all` asks simulated devices for 2 s).
    #[arg(long = "interval", default_value_t = 2)]
    pub interval_s: u64,
    /// Timed runs of each query (the median is printed).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub async fn run(cfg: &SingleNode) -> anyhow::Result<()> {
    anyhow::ensure!(
        !cfg.database.exists(),
        "{} exists: give a new file",
        cfg.database.display()
    );
    let url = format!("sqlite:{}", cfg.database.display());
    let store = store::open(&url, true).await?;
    let paths = series_paths()?;
    let ticks = usize::try_from(cfg.days * 86_400 / cfg.interval_s + 2 * 3_600 / cfg.interval_s)?;
    let shape = Shape {
        ticks,
        interval_s: cfg.interval_s,
        series: Some(&SMALL_DEVICE),
    };
    let started = Instant::now();
    let (mut written, mut last_ts) = (0, 0);
    for d in 0..cfg.devices {
        let (n, last) = write_device(store.as_ref(), cfg.seed, d, &paths, &shape).await?;
        written += n;
        last_ts = last_ts.max(last);
        eprintln!(
            "  device {}/{}: {written} samples in {:.0?}",
            d + 1,
            cfg.devices,
            started.elapsed()
        );
    }
    let write_s = started.elapsed().as_secs_f64();
    let first_ts = last_ts - i64::try_from(ticks)? * i64::try_from(cfg.interval_s)? * NS_PER_S;
    let retention = store::Retention::default();
    let started = Instant::now();
    let sealed = seal_history(store.as_ref(), first_ts, last_ts).await?;
    eprintln!("  sealed {sealed} hours in {:.0?}", started.elapsed());
    // The periodic run on a week of data: an hour to seal, expired samples to delete.
    let started = Instant::now();
    let report = store.maintain(last_ts + HOUR, &retention).await?;
    let maintain_ms = started.elapsed().as_secs_f64() * 1e3;

    let file_bytes: u64 = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut name = cfg.database.clone().into_os_string();
            name.push(suffix);
            std::fs::metadata(name).ok().map(|m| m.len())
        })
        .sum();
    let key = DeviceKey::new("dev-00000")?;
    let kept: Vec<_> = SMALL_DEVICE.iter().map(|&k| paths[k].clone()).collect();
    let time = |from: TimestampNs, step: i64, n: usize| {
        time_steps(&store, &key, &kept[..n], (from, last_ts), step, cfg.runs)
    };
    let day_ago = (last_ts - 24 * HOUR).div_euclid(MINUTE) * MINUTE;
    let week_ago = (last_ts - 7 * 24 * HOUR).div_euclid(HOUR) * HOUR;
    let (day_1m, _) = time(day_ago, MINUTE, 1).await?;
    let (week_1h, _) = time(week_ago, HOUR, 32).await?;
    let (week_5m, _) = time(week_ago, 5 * MINUTE, 32).await?;
    let (hour_raw, _) = time(last_ts - HOUR, 10 * NS_PER_S, 32).await?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "single_node devices={} days={} interval_s={} samples={written} \
         write_samples_per_s={:.0} file_bytes={file_bytes} bytes_per_sample={:.1} \
         maintain_ms={maintain_ms:.0} maintain_deleted={} \
         day_1m_one_series_ms={:.2} week_1h_32_series_ms={:.2} week_5m_32_series_ms={:.2} \
         hour_10s_raw_32_series_ms={:.2}",
        cfg.devices,
        cfg.days,
        cfg.interval_s,
        written as f64 / write_s,
        file_bytes as f64 / written.max(1) as f64,
        report.deleted,
        ms(day_1m),
        ms(week_1h),
        ms(week_5m),
        ms(hour_raw),
    );
    Ok(())
}
