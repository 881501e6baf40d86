//! `netpulse-bench query`: step-query latency with a fleet's worth of history in
//! PostgreSQL.
//!
//! One simulated device (`dev-00000`, 116 series of 10 s samples) is written through the
//! real store for `days` days and two hours, and maintenance seals every whole hour as
//! it would have over those days (1-minute and 1-hour rollups, compressed blocks). The
//! rest of the fleet's history is then copied server-side from that device's rollups:
//! `devices - 1` more devices with the same series and the same rollup rows: all their
//! 1-hour rows, and their 1-minute rows of the last `fleet_minute_hours` hours. (A
//! fleet's week of 1-minute rows, ~600 bytes per series-hour, and of compressed blocks,
//! ~1.2 KB, would take over 100 GB here; the queries read the 1-minute rows of the last
//! day, the 1-hour rows of the week and the raw samples of the queried device only.)
//!
//! A second run against the same database skips the filling and times the queries again.
//!
//! Then, warm (each query run once first), the median of `runs` runs of: 24 h of one
//! counter in 1-minute steps; 7 days of 32 series in 1-hour and 5-minute steps; and the
//! same 24 h read from raw samples and blocks (a `from` one second off the minute makes
//! the planner read raw), for comparison.

use std::time::{Duration, Instant};

use model::{DeviceKey, TimestampNs};

use crate::blocks::{Shape, series_paths, write_device};

/// Settings of `netpulse-bench query`.
#[derive(Debug, clap::Args)]
pub struct Query {
    /// Database to write to (migrated first; use a throwaway one).
    #[arg(long)]
    pub database_url: String,
    /// Devices whose rollups the database holds (one written and sealed for real, the
    /// rest copied from it).
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Days of 10 s samples of the written device.
    #[arg(long, default_value_t = 7)]
    pub days: u64,
    /// Hours of 1-minute rollups copied to the rest of the fleet (1-hour rollups are
    /// copied for all days).
    #[arg(long, default_value_t = 24)]
    pub fleet_minute_hours: u64,
    /// Timed runs of each query (the median is printed).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Seed of the simulated device.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub(crate) const NS_PER_S: i64 = 1_000_000_000;
pub(crate) const MINUTE: i64 = 60 * NS_PER_S;
pub(crate) const HOUR: i64 = 60 * MINUTE;

/// Seals the hours of samples written from `first_ts` to `last_ts` as maintenance would
/// have while those days went by (each run seals up to 48 hours); returns the hours sealed.
pub(crate) async fn seal_history(
    store: &dyn store::Store,
    first_ts: TimestampNs,
    last_ts: TimestampNs,
) -> anyhow::Result<u64> {
    let retention = store::Retention::default();
    let mut now = first_ts + 3 * HOUR;
    let mut sealed = 0;
    loop {
        sealed += store.maintain(now, &retention).await?.compressed_hours;
        if now >= last_ts {
            return Ok(sealed);
        }
        now = (now + 24 * HOUR).min(last_ts);
    }
}

pub async fn run(cfg: &Query) -> anyhow::Result<()> {
    anyhow::ensure!(cfg.devices >= 1 && cfg.runs >= 1, "need a device and a run");
    let store = store::open(&cfg.database_url, true).await?;
    let pool = sqlx::PgPool::connect(&cfg.database_url).await?;
    let paths = series_paths()?;
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM devices")
        .fetch_one(&pool)
        .await?;
    let last_ts = if existing == i64::try_from(cfg.devices)? {
        // Filled by an earlier run with the same settings: time the queries again.
        let newest: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("SELECT max(last_sample) FROM devices")
                .fetch_one(&pool)
                .await?;
        eprintln!("  reusing the {existing} devices already in the database");
        newest
            .timestamp_nanos_opt()
            .ok_or_else(|| anyhow::anyhow!("newest sample out of range"))?
    } else {
        anyhow::ensure!(
            existing == 0,
            "use an empty database (or one filled by this bench)"
        );
        fill(cfg, &store, &pool, &paths).await?
    };
    let sizes: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM rollups_1m), (SELECT count(*) FROM rollups_1h), \
         (SELECT COALESCE(sum(pg_total_relation_size(inhrelid)), 0)::bigint \
            FROM pg_inherits WHERE inhparent = 'rollups_1m'::regclass), \
         (SELECT COALESCE(sum(pg_total_relation_size(inhrelid)), 0)::bigint \
            FROM pg_inherits WHERE inhparent = 'rollups_1h'::regclass)",
    )
    .fetch_one(&pool)
    .await?;

    let key = DeviceKey::new("dev-00000")?;
    let time = |from: TimestampNs, step: i64, series: usize| {
        time_steps(
            &store,
            &key,
            &paths[..series],
            (from, last_ts),
            step,
            cfg.runs,
        )
    };
    let day_ago = (last_ts - 24 * HOUR).div_euclid(MINUTE) * MINUTE;
    let week_ago = (last_ts - 7 * 24 * HOUR).div_euclid(HOUR) * HOUR;
    let (day_1m, day_buckets) = time(day_ago, MINUTE, 1).await?;
    let (day_raw, _) = time(day_ago + NS_PER_S, MINUTE, 1).await?;
    let (week_1h, week_1h_buckets) = time(week_ago, HOUR, 32).await?;
    let (week_5m, week_5m_buckets) = time(week_ago, 5 * MINUTE, 32).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "query devices={} days={} runs={} rollup_1m_rows={} rollup_1h_rows={} \
         rollup_1m_bytes={} rollup_1h_bytes={} \
         day_1m_one_series_ms={:.2} day_1m_buckets={day_buckets} \
         day_raw_one_series_ms={:.2} \
         week_1h_32_series_ms={:.2} week_1h_buckets={week_1h_buckets} \
         week_5m_32_series_ms={:.2} week_5m_buckets={week_5m_buckets}",
        cfg.devices,
        cfg.days,
        cfg.runs,
        sizes.0,
        sizes.1,
        sizes.2,
        sizes.3,
        ms(day_1m),
        ms(day_raw),
        ms(week_1h),
        ms(week_5m),
    );
    Ok(())
}

/// The median time of reading `paths` of `key` over `span` in steps of `step`, one
/// series after the other, over `runs` runs after a warm-up run; with the buckets that
/// hold data.
pub(crate) async fn time_steps(
    store: &std::sync::Arc<dyn store::Store>,
    key: &DeviceKey,
    paths: &[std::sync::Arc<model::Path>],
    (from, to): (TimestampNs, TimestampNs),
    step: i64,
    runs: usize,
) -> anyhow::Result<(Duration, usize)> {
    let mut times = Vec::with_capacity(runs);
    let mut filled = 0;
    for run in 0..=runs {
        let started = Instant::now();
        filled = 0;
        for path in paths {
            let buckets = store.range_step(key, path, from, to, step).await?;
            filled += buckets.iter().filter(|b| b.stats.is_some()).count();
        }
        if run > 0 {
            times.push(started.elapsed());
        }
    }
    anyhow::ensure!(filled > 0, "no data read back");
    times.sort();
    Ok((times[times.len() / 2], filled))
}

/// Writes and seals `dev-00000`, then copies its rollups to the rest of the fleet;
/// returns the newest sample's timestamp.
async fn fill(
    cfg: &Query,
    store: &std::sync::Arc<dyn store::Store>,
    pool: &sqlx::PgPool,
    paths: &[std::sync::Arc<model::Path>],
) -> anyhow::Result<TimestampNs> {
    let started = Instant::now();
    let ticks = usize::try_from((cfg.days * 24 + 2) * 360)?;
    let shape = Shape {
        ticks,
        interval_s: 10,
        series: None,
    };
    let (written, last_ts) = write_device(store.as_ref(), cfg.seed, 0, paths, &shape).await?;
    eprintln!(
        "  dev-00000: {written} samples written in {:.0?}",
        started.elapsed()
    );
    let first_ts = last_ts - i64::try_from(ticks)? * 10 * NS_PER_S;
    let sealed = seal_history(store.as_ref(), first_ts, last_ts).await?;
    eprintln!("  sealed {sealed} hours");
    let started = Instant::now();
    let minutes_from = last_ts - i64::try_from(cfg.fleet_minute_hours)? * HOUR;
    fill_fleet(pool, cfg.devices, minutes_from).await?;
    eprintln!(
        "  {} more devices' rollups copied in {:.0?}",
        cfg.devices - 1,
        started.elapsed()
    );
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    Ok(last_ts)
}

/// Copies `dev-00000`'s series and rollup rows to `dev-00001` .. `dev-{devices - 1}`,
/// in slices of 500 devices with progress on stderr.
async fn fill_fleet(
    pool: &sqlx::PgPool,
    devices: usize,
    minutes_from: TimestampNs,
) -> anyhow::Result<()> {
    let minutes_from = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(minutes_from);
    const SLICE: usize = 500;
    let mut first = 1;
    while first < devices {
        let last = (first + SLICE).min(devices) - 1;
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO devices (name) \
             SELECT format('dev-%s', lpad(i::text, 5, '0')) FROM generate_series($1, $2) i",
        )
        .bind(first as i64)
        .bind(last as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO series (device_id, path, kind) \
             SELECT d.id, p.path, p.kind FROM devices d \
             CROSS JOIN (SELECT s.path, s.kind FROM series s JOIN devices pd \
                         ON pd.id = s.device_id WHERE pd.name = 'dev-00000') p \
             WHERE d.name BETWEEN format('dev-%s', lpad($1::text, 5, '0')) \
                              AND format('dev-%s', lpad($2::text, 5, '0'))",
        )
        .bind(first as i64)
        .bind(last as i64)
        .execute(&mut *tx)
        .await?;
        for (table, key, since) in [
            ("rollups_1m", "hour", minutes_from),
            (
                "rollups_1h",
                "day",
                chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (series_id, {key}, data) \
                 SELECT t.id, r.{key}, r.data \
                 FROM devices d JOIN series t ON t.device_id = d.id \
                 JOIN series p ON p.path = t.path \
                 JOIN devices pd ON pd.id = p.device_id AND pd.name = 'dev-00000' \
                 JOIN {table} r ON r.series_id = p.id AND r.{key} >= $3 \
                 WHERE d.name BETWEEN format('dev-%s', lpad($1::text, 5, '0')) \
                                  AND format('dev-%s', lpad($2::text, 5, '0'))"
            )))
            .bind(first as i64)
            .bind(last as i64)
            .bind(since)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        eprintln!("  devices up to {last}/{} filled", devices - 1);
        first = last + 1;
    }
    Ok(())
}
