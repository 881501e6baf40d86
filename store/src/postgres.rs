//! The PostgreSQL adapter: the production store.
//!
//! Timestamps are `timestamptz`, which holds microseconds: nanosecond timestamps are
//! truncated (floored) to the microsecond on write and read back as whole microseconds.
//! Range bounds apply to the stored values (`from` rounds up, `to` down), and two samples of
//! one series within the same microsecond are one sample (the second is a duplicate).
//!
//! Batches are written with one statement per step (samples by binary `COPY`, the rest over
//! `unnest`ed arrays), so a batch costs a handful of round trips whatever its size.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::{DeviceEvent, DeviceKey, Path, Sample, TimestampNs};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Row};

use crate::cache::{IdCache, Known};
use crate::cli::{self, CliChange, CliOutput, CliSnapshot, Plan, SnapshotOutcome};
use crate::codec::{self, Batch, Kind, SeriesKey};
use crate::schema::{self, Applied};
use crate::{
    Claim, DeviceInfo, DeviceSummary, Error, Fence, HealthReport, MaintenanceReport,
    MigrationReport, Point, Result, Retention, SeriesSummary, Store, WriteReport, maintenance,
};

/// The migrations in `migrations/postgres`, embedded at compile time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

const NS_PER_US: i64 = 1_000;

/// How long to wait for a pooled connection (including the first one) before giving up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC), the origin of
/// `timestamptz` in the binary format.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Inserts a batch's rows, idempotent on (series, ts).
///
/// `COPY ... (FORMAT binary)` first: PostgreSQL inserts copied rows in bulk, several
/// times faster than an `INSERT` of the same rows (docs/PERFORMANCE.md, store ingest).
/// `COPY` has no `ON CONFLICT`: a batch holding a row already stored (a retried batch,
/// two collectors during a handoff) fails it on the primary key, and is then inserted
/// with `ON CONFLICT DO NOTHING`. The `COPY` runs in a savepoint, so its failure leaves
/// the transaction usable. Returns the rows written.
async fn insert_rows(tx: &mut PgConnection, rows: &[codec::Row]) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let copied: std::result::Result<u64, sqlx::Error> = async {
        let mut savepoint = tx.begin().await?;
        let mut copy = savepoint
            .copy_in_raw(
                "COPY samples (series_id, ts, value, value_text) FROM STDIN (FORMAT binary)",
            )
            .await?;
        copy.send(copy_data(rows)).await?;
        let written = copy.finish().await?;
        savepoint.commit().await?;
        Ok(written)
    }
    .await;
    match copied {
        Ok(written) => return Ok(written),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNIQUE_VIOLATION) => {}
        Err(e) => return Err(e.into()),
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.series_id).collect();
    let ts: Vec<DateTime<Utc>> = rows.iter().map(|r| timestamptz(r.ts)).collect();
    let values: Vec<Option<f64>> = rows.iter().map(|r| r.value).collect();
    let texts: Vec<Option<&str>> = rows.iter().map(|r| r.text.as_deref()).collect();
    Ok(sqlx::query(
        "INSERT INTO samples (series_id, ts, value, value_text) \
         SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::float8[], $4::text[]) \
         ON CONFLICT (series_id, ts) DO NOTHING",
    )
    .bind(&ids)
    .bind(&ts)
    .bind(&values)
    .bind(&texts)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}

/// SQLSTATE of a unique (primary key) violation.
const UNIQUE_VIOLATION: &str = "23505";

/// Rows in `COPY`'s binary format: header, one tuple per row (series id, timestamp in
/// microseconds since 2000-01-01, value, text, NULL as length -1), trailer.
fn copy_data(rows: &[codec::Row]) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + rows.len() * 48 + 2);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for r in rows {
        out.extend_from_slice(&4i16.to_be_bytes());
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&r.series_id.to_be_bytes());
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&(r.ts - PG_EPOCH_US).to_be_bytes());
        match r.value {
            Some(v) => {
                out.extend_from_slice(&8i32.to_be_bytes());
                out.extend_from_slice(&v.to_bits().to_be_bytes());
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        match &r.text {
            // Texts are bounded far below 2 GiB by the batch limits.
            Some(t) => {
                out.extend_from_slice(&(t.len() as i32).to_be_bytes());
                out.extend_from_slice(t.as_bytes());
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// Connects a pool to the server named by `url`.
///
/// One probe connection first, so that an unreachable server, a refused login or a missing
/// database fail at once with their own message (the pool would retry a refused connection
/// until its timeout and then only say that it timed out).
pub(crate) async fn connect(url: &str) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .map_err(Error::Connect)?
        .application_name("netpulse");
    let probe = tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect())
        .await
        .map_err(|_| Error::Connect(sqlx::Error::PoolTimedOut))?
        .map_err(Error::Connect)?;
    probe.close().await.map_err(Error::Connect)?;
    Ok(PgPoolOptions::new()
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(options))
}

/// Applies pending migrations after refusing a newer schema.
pub(crate) async fn migrate(pool: &PgPool) -> Result<MigrationReport> {
    let before = applied(pool).await?;
    schema::check(&MIGRATOR, &before, false)?;
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| schema::run_error(&MIGRATOR, e))?;
    let report = schema::report(&before, &applied(pool).await?);
    if report.applied > 0 {
        tracing::info!(
            applied = report.applied,
            version = report.version,
            "PostgreSQL schema migrated"
        );
    }
    Ok(report)
}

/// The rows of sqlx's migration table; none when it does not exist yet.
async fn applied(pool: &PgPool) -> Result<Vec<Applied>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, bool, Vec<u8>)> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(version, success, checksum)| Applied {
            version,
            success,
            checksum,
        })
        .collect())
}

/// Nanoseconds to the stored microseconds.
fn to_us(ns: TimestampNs) -> i64 {
    ns.div_euclid(NS_PER_US)
}

/// Stored microseconds to a `timestamptz` parameter.
fn timestamptz(us: i64) -> DateTime<Utc> {
    // Cannot saturate: i64 nanoseconds span ±292 years, chrono ±262,000.
    DateTime::from_timestamp_micros(us).unwrap_or(if us < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// A stored `timestamptz` back to nanoseconds.
fn from_timestamptz(ts: DateTime<Utc>) -> Result<TimestampNs> {
    ts.timestamp_micros()
        .checked_mul(NS_PER_US)
        .ok_or_else(|| Error::Corrupt(format!("timestamp {ts} is outside the nanosecond range")))
}

/// The store over a PostgreSQL pool.
#[derive(Debug)]
pub(crate) struct PgStore {
    pool: PgPool,
    ids: IdCache,
    /// Per series, the timestamp (µs) this process last wrote into `series.last_ts`
    /// (see [`LAST_VALUE_REFRESH_US`]).
    last_written: std::sync::Mutex<HashMap<i64, i64>>,
}

/// A series' stored last value is rewritten only when a sample is at least this much
/// newer than the one it holds (from this process's point of view): rewriting it for
/// every sample was 40 % of the time of a batch (docs/PERFORMANCE.md, store ingest).
/// Readers take the newest sample after the stored one ([`PgStore::series`]), so what
/// they see is exact; this only bounds how many samples they look through.
const LAST_VALUE_REFRESH_US: i64 = 60_000_000;

impl PgStore {
    /// Connects and migrates (or checks) the schema; see [`crate::open`].
    pub(crate) async fn open(url: &str, migrate: bool) -> Result<Self> {
        let pool = connect(url).await?;
        if migrate {
            self::migrate(&pool).await?;
        } else {
            schema::check(&MIGRATOR, &applied(&pool).await?, true)?;
        }
        // TimescaleDB is detected and said, not used (ADR-0012): the same partitioned
        // tables, rollups and blocks serve both.
        let timescale: Option<String> =
            sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
                .fetch_optional(&pool)
                .await?;
        if let Some(version) = timescale {
            tracing::info!(
                %version,
                "TimescaleDB is installed in this database; netpulse uses its own partitions, \
                 rollups and compression on it as on plain PostgreSQL"
            );
        }
        Ok(Self {
            pool,
            ids: IdCache::default(),
            last_written: std::sync::Mutex::default(),
        })
    }
}

/// A series as queries need it.
#[derive(Debug, Clone)]
struct SeriesRef {
    id: i64,
    kind: Kind,
    /// Which hours have rollups, if any have.
    coverage: Option<crate::rollup::Coverage>,
}

impl PgStore {
    /// The series of `device` at `path`, with the rollup coverage, if it exists.
    async fn series_of(&self, device: &DeviceKey, path: &Path) -> Result<Option<SeriesRef>> {
        type Row = (i64, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT s.id, s.kind, p.rolled_up_from, p.done_until \
             FROM series s JOIN devices d ON d.id = s.device_id \
             LEFT JOIN compression_progress p ON true \
             WHERE d.name = $1 AND s.path = $2",
        )
        .bind(device.as_str())
        .bind(path.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id, kind, from, until)| {
            Ok(SeriesRef {
                id,
                kind: Kind::parse(&kind)?,
                coverage: match (from, until) {
                    (Some(from), Some(until)) if from < until => Some(crate::rollup::Coverage {
                        from: from_timestamptz(from)?,
                        until: from_timestamptz(until)?,
                    }),
                    _ => None,
                },
            })
        })
        .transpose()
    }

    /// The points of `series` with `from <= ts <= to`, oldest first: raw rows and
    /// compressed blocks, a raw row winning over a block point of the same instant.
    async fn points(
        &self,
        series: &SeriesRef,
        from: TimestampNs,
        to: TimestampNs,
    ) -> Result<Vec<Point>> {
        // Bounds on the stored microseconds: the first whole microsecond at or after `from`,
        // the last at or before `to`.
        let from_us = to_us(from) + i64::from(from.rem_euclid(NS_PER_US) != 0);
        let to_us = to_us(to);
        if from_us > to_us {
            return Ok(Vec::new());
        }
        let rows: Vec<(DateTime<Utc>, Option<f64>, Option<String>)> = sqlx::query_as(
            "SELECT ts, value, value_text FROM samples \
             WHERE series_id = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts",
        )
        .bind(series.id)
        .bind(timestamptz(from_us))
        .bind(timestamptz(to_us))
        .fetch_all(&self.pool)
        .await?;
        let mut points: Vec<Point> = rows
            .into_iter()
            .map(|(ts, value, text)| {
                Ok(Point {
                    ts: from_timestamptz(ts)?,
                    value: codec::decode(series.kind, value, text)?,
                })
            })
            .collect::<Result<_>>()?;
        let packed = block_points(&self.pool, series.id, from_us, to_us).await?;
        if !packed.is_empty() {
            for (ts, value) in packed {
                points.push(Point {
                    ts,
                    value: codec::decode(series.kind, Some(value), None)?,
                });
            }
            // A stable sort keeps raw rows first among equal timestamps: a sample
            // written again after its hour was compressed is one point, not two.
            points.sort_by_key(|p| p.ts);
            points.dedup_by_key(|p| p.ts);
        }
        Ok(points)
    }
}

/// Resolves the device and series ids of a batch's series, creating missing rows.
/// `known` holds what the cache knew, one entry per series.
async fn resolve_ids(
    conn: &mut PgConnection,
    series: &[SeriesKey<'_>],
    known: &[Known],
) -> Result<(Vec<i64>, Vec<i64>)> {
    let missing_devices: BTreeSet<&str> = series
        .iter()
        .zip(known)
        .filter(|(_, k)| k.device.is_none())
        .map(|(s, _)| s.device.as_str())
        .collect();
    let mut device_by_name: HashMap<String, i64> = HashMap::new();
    if !missing_devices.is_empty() {
        // Sorted, so that concurrent writers take the unique-index locks in one order.
        let names: Vec<&str> = missing_devices.into_iter().collect();
        sqlx::query(
            "INSERT INTO devices (name) SELECT * FROM unnest($1::text[]) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&names)
        .execute(&mut *conn)
        .await?;
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, name FROM devices WHERE name = ANY($1::text[])")
                .bind(&names)
                .fetch_all(&mut *conn)
                .await?;
        device_by_name = rows.into_iter().map(|(id, name)| (name, id)).collect();
    }
    let device_ids = series
        .iter()
        .zip(known)
        .map(|(s, k)| {
            k.device
                .or_else(|| device_by_name.get(s.device.as_str()).copied())
                .ok_or_else(|| Error::Corrupt(format!("device {} was not created", s.device)))
        })
        .collect::<Result<Vec<i64>>>()?;

    let mut missing: Vec<(i64, &str, Kind)> = series
        .iter()
        .zip(known)
        .zip(&device_ids)
        .filter(|((_, k), _)| k.series.is_none())
        .map(|((s, _), &device)| (device, s.path.as_str(), s.kind))
        .collect();
    let mut series_by_key: HashMap<(i64, String), i64> = HashMap::new();
    if !missing.is_empty() {
        missing.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let devices: Vec<i64> = missing.iter().map(|m| m.0).collect();
        let paths: Vec<&str> = missing.iter().map(|m| m.1).collect();
        let kinds: Vec<&str> = missing.iter().map(|m| m.2.as_str()).collect();
        sqlx::query(
            "INSERT INTO series (device_id, path, kind) \
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) \
             ON CONFLICT (device_id, path) DO NOTHING",
        )
        .bind(&devices)
        .bind(&paths)
        .bind(&kinds)
        .execute(&mut *conn)
        .await?;
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT s.id, s.device_id, s.path FROM series s \
             JOIN unnest($1::bigint[], $2::text[]) AS u (device_id, path) \
               ON s.device_id = u.device_id AND s.path = u.path",
        )
        .bind(&devices)
        .bind(&paths)
        .fetch_all(&mut *conn)
        .await?;
        series_by_key = rows
            .into_iter()
            .map(|(id, device, path)| ((device, path), id))
            .collect();
    }
    let series_ids = series
        .iter()
        .zip(known)
        .zip(&device_ids)
        .map(|((s, k), &device)| {
            k.series
                .or_else(|| series_by_key.get(&(device, s.path.clone())).copied())
                .ok_or_else(|| {
                    Error::Corrupt(format!("series {} {} was not created", s.device, s.path))
                })
        })
        .collect::<Result<Vec<i64>>>()?;
    Ok((device_ids, series_ids))
}

fn device_summary(row: &PgRow) -> Result<DeviceSummary> {
    let name: String = row.try_get("name")?;
    let state: String = row.try_get("state")?;
    let state_since: Option<DateTime<Utc>> = row.try_get("state_since")?;
    let last_sample: Option<DateTime<Utc>> = row.try_get("last_sample")?;
    let health_at: Option<DateTime<Utc>> = row.try_get("health_at")?;
    Ok(DeviceSummary {
        name: DeviceKey::new(name).map_err(|e| Error::Corrupt(e.to_string()))?,
        address: row.try_get("address")?,
        state: codec::state(&state)?,
        last_error: row.try_get("last_error")?,
        state_since: state_since.map(from_timestamptz).transpose()?,
        last_sample: last_sample.map(from_timestamptz).transpose()?,
        series: row.try_get("series")?,
        health: codec::health(row.try_get("health")?)?,
        health_at: health_at.map(from_timestamptz).transpose()?,
    })
}

#[async_trait]
impl Store for PgStore {
    async fn upsert_devices(&self, devices: &[DeviceInfo]) -> Result<()> {
        // One row per name (the last one wins): ON CONFLICT DO UPDATE refuses to touch a row
        // twice in one statement. Sorted, for a stable lock order.
        let by_name: BTreeMap<&str, &str> = devices
            .iter()
            .map(|d| (d.name.as_str(), d.address.as_str()))
            .collect();
        if by_name.is_empty() {
            return Ok(());
        }
        let (names, addresses): (Vec<&str>, Vec<&str>) = by_name.into_iter().unzip();
        sqlx::query(
            "INSERT INTO devices (name, address) SELECT * FROM unnest($1::text[], $2::text[]) \
             ON CONFLICT (name) DO UPDATE SET address = EXCLUDED.address \
             WHERE devices.address IS DISTINCT FROM EXCLUDED.address",
        )
        .bind(&names)
        .bind(&addresses)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_event(&self, event: &DeviceEvent) -> Result<()> {
        let ts = timestamptz(to_us(event.ts));
        let error = event.error.as_deref().map(codec::text);
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO devices (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(event.device.as_str())
            .execute(&mut *tx)
            .await?;
        let device_id: i64 = sqlx::query_scalar("SELECT id FROM devices WHERE name = $1")
            .bind(event.device.as_str())
            .fetch_one(&mut *tx)
            .await?;
        // An event older than the current state (late delivery) is kept in the history but
        // does not change the current state; repeating the current state keeps its start.
        sqlx::query(
            "UPDATE devices SET state = $2, last_error = $3, \
               state_since = CASE WHEN state = $2 AND state_since IS NOT NULL \
                                  THEN state_since ELSE $4 END \
             WHERE id = $1 AND (state_since IS NULL OR state_since <= $4)",
        )
        .bind(device_id)
        .bind(event.state.as_str())
        .bind(error.as_deref())
        .bind(ts)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO device_events (device_id, ts, state, error) VALUES ($1, $2, $3, $4)",
        )
        .bind(device_id)
        .bind(ts)
        .bind(event.state.as_str())
        .bind(error.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim(&self, device: &DeviceKey, owner: &str, epoch: u64) -> Result<Claim> {
        let wanted = codec::epoch_to_db(epoch)?;
        let mut tx = self.pool.begin().await?;
        let granted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO devices (name, epoch, owner) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET epoch = EXCLUDED.epoch, owner = EXCLUDED.owner \
             WHERE devices.epoch <= EXCLUDED.epoch \
             RETURNING epoch",
        )
        .bind(device.as_str())
        .bind(wanted)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let (current, holder): (i64, Option<String>) =
            sqlx::query_as("SELECT epoch, owner FROM devices WHERE name = $1")
                .bind(device.as_str())
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Claim {
            granted: granted.is_some(),
            epoch: codec::epoch_from_db(current)?,
            owner: holder,
        })
    }

    async fn write_samples(&self, samples: &[Sample]) -> Result<WriteReport> {
        self.write_fenced(samples, &Fence::new()).await
    }

    async fn write_fenced(&self, samples: &[Sample], fence: &Fence) -> Result<WriteReport> {
        let mut batch = match Batch::admit(samples, to_us) {
            Ok(batch) => batch,
            Err(nothing_to_write) => return Ok(nothing_to_write),
        };
        let known = self.ids.lookup(&batch.series);
        let mut tx = self.pool.begin().await?;
        let (device_ids, series_ids) = resolve_ids(&mut tx, &batch.series, &known).await?;
        let admitted = batch.admitted();
        let fenced_ids = codec::fenced_ids(&batch, &device_ids, fence)?;
        let mut rows = batch.take_rows(&device_ids, &series_ids);
        // Fencing: lock the fenced devices (in id order, so writers never deadlock) and
        // drop the rows of those whose epoch has grown past the batch's.
        let mut stale: Vec<i64> = Vec::new();
        if !fenced_ids.is_empty() {
            let ids: Vec<i64> = fenced_ids.iter().map(|(id, _)| *id).collect();
            let current: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT id, epoch FROM devices WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            stale = codec::stale_devices(&fenced_ids, &current);
        }
        let fenced = rows.drop_devices(&stale);

        let written = insert_rows(&mut tx, &rows.rows).await?;

        let newest: Vec<&codec::Row> = {
            let written = self
                .last_written
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            rows.newest_per_series()
                .into_iter()
                .filter(|r| {
                    written
                        .get(&r.series_id)
                        .is_none_or(|&last| r.ts - last >= LAST_VALUE_REFRESH_US)
                })
                .collect()
        };
        let ids: Vec<i64> = newest.iter().map(|r| r.series_id).collect();
        let ts: Vec<DateTime<Utc>> = newest.iter().map(|r| timestamptz(r.ts)).collect();
        let values: Vec<Option<f64>> = newest.iter().map(|r| r.value).collect();
        let texts: Vec<Option<&str>> = newest.iter().map(|r| r.text.as_deref()).collect();
        if !newest.is_empty() {
            sqlx::query(
                "UPDATE series AS s \
                 SET last_ts = u.ts, last_value = u.value, last_value_text = u.value_text \
                 FROM unnest($1::bigint[], $2::timestamptz[], $3::float8[], $4::text[]) \
                   AS u (id, ts, value, value_text) \
                 WHERE s.id = u.id AND (s.last_ts IS NULL OR s.last_ts < u.ts)",
            )
            .bind(&ids)
            .bind(&ts)
            .bind(&values)
            .bind(&texts)
            .execute(&mut *tx)
            .await?;
        }
        let refreshed: Vec<(i64, i64)> = newest.iter().map(|r| (r.series_id, r.ts)).collect();

        let (ids, ts): (Vec<i64>, Vec<DateTime<Utc>>) = rows
            .newest_per_device()
            .into_iter()
            .map(|(id, us)| (id, timestamptz(us)))
            .unzip();
        sqlx::query(
            "UPDATE devices AS d SET last_sample = u.ts \
             FROM unnest($1::bigint[], $2::timestamptz[]) AS u (id, ts) \
             WHERE d.id = u.id AND (d.last_sample IS NULL OR d.last_sample < u.ts)",
        )
        .bind(&ids)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        {
            let mut written = self
                .last_written
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (id, ts) in refreshed {
                let last = written.entry(id).or_insert(ts);
                *last = (*last).max(ts);
            }
        }
        self.ids
            .remember_resolved(&batch.series, &known, &device_ids, &series_ids);
        Ok(batch.report(admitted, written, fenced, &device_ids, &stale))
    }

    async fn record_health_batch(&self, reports: &[HealthReport], at: TimestampNs) -> Result<()> {
        let rows = codec::health_rows(reports);
        if rows.is_empty() {
            return Ok(());
        }
        let (names, health): (Vec<&str>, Vec<String>) = rows.into_iter().unzip();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO devices (name) SELECT * FROM unnest($1::text[]) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&names)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE devices AS d SET health = u.health::jsonb, health_at = $3 \
             FROM unnest($1::text[], $2::text[]) AS u (name, health) \
             WHERE d.name = u.name AND (d.health_at IS NULL OR d.health_at <= $3)",
        )
        .bind(&names)
        .bind(&health)
        .bind(timestamptz(to_us(at)))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn devices(&self) -> Result<Vec<DeviceSummary>> {
        let rows = sqlx::query(
            "SELECT d.name, d.address, d.state, d.last_error, d.state_since, d.last_sample, \
                    d.health::text AS health, d.health_at, \
                    COALESCE(c.n, 0) AS series \
             FROM devices d \
             LEFT JOIN (SELECT device_id, count(*) AS n FROM series GROUP BY device_id) c \
               ON c.device_id = d.id \
             ORDER BY d.name COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_summary).collect()
    }

    async fn device(&self, name: &DeviceKey) -> Result<Option<DeviceSummary>> {
        let row = sqlx::query(
            "SELECT d.name, d.address, d.state, d.last_error, d.state_since, d.last_sample, \
                    d.health::text AS health, d.health_at, \
                    (SELECT count(*) FROM series s WHERE s.device_id = d.id) AS series \
             FROM devices d WHERE d.name = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_summary).transpose()
    }

    async fn series(&self, device: &DeviceKey) -> Result<Vec<SeriesSummary>> {
        let rows: Vec<(String, String, DateTime<Utc>, Option<f64>, Option<String>)> =
            sqlx::query_as(
                // The stored last value, or a newer sample: writers refresh the stored
                // one only now and then (LAST_VALUE_REFRESH_US). The lateral search is
                // bounded below by the stored timestamp, so it reads only recent rows
                // (and recent partitions).
                "SELECT s.path, s.kind, \
                   COALESCE(n.ts, s.last_ts), \
                   CASE WHEN n.ts IS NULL THEN s.last_value ELSE n.value END, \
                   CASE WHEN n.ts IS NULL THEN s.last_value_text ELSE n.value_text END \
                 FROM series s JOIN devices d ON d.id = s.device_id \
                 LEFT JOIN LATERAL ( \
                   SELECT x.ts, x.value, x.value_text FROM samples x \
                   WHERE x.series_id = s.id AND (s.last_ts IS NULL OR x.ts > s.last_ts) \
                   ORDER BY x.ts DESC LIMIT 1) n ON true \
                 WHERE d.name = $1 AND (s.last_ts IS NOT NULL OR n.ts IS NOT NULL) \
                 ORDER BY s.path COLLATE \"C\"",
            )
            .bind(device.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(path, kind, ts, value, text)| {
                Ok(SeriesSummary {
                    path: codec::path(&path)?,
                    last_ts: from_timestamptz(ts)?,
                    last_value: codec::decode(Kind::parse(&kind)?, value, text)?,
                })
            })
            .collect()
    }

    async fn range(
        &self,
        device: &DeviceKey,
        path: &Path,
        from: TimestampNs,
        to: TimestampNs,
    ) -> Result<Vec<Point>> {
        match self.series_of(device, path).await? {
            Some(series) => self.points(&series, from, to).await,
            None => Ok(Vec::new()),
        }
    }

    async fn range_step(
        &self,
        device: &DeviceKey,
        path: &Path,
        from: TimestampNs,
        to: TimestampNs,
        step: i64,
    ) -> Result<Vec<crate::Bucket>> {
        use crate::rollup;
        let mut stepper = crate::step::Stepper::new(from, to, step)?;
        let Some(series) = self.series_of(device, path).await? else {
            return Ok(stepper.finish());
        };
        // The spans are read concurrently (each on its own pooled connection) and folded
        // in time order.
        enum Read {
            Points(Vec<Point>),
            Aggregates(Vec<rollup::Aggregate>),
        }
        let series = &series;
        let reads = rollup::plan(from, to, step, series.coverage)
            .into_iter()
            .map(|(source, start, end)| async move {
                let Some(rollup::Table { name, key, width }) = source.table() else {
                    return Ok(Read::Points(self.points(series, start, end - 1).await?));
                };
                let rows: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT data FROM {name} \
                     WHERE series_id = $1 AND {key} >= $2 AND {key} < $3 ORDER BY {key}"
                )))
                .bind(series.id)
                .bind(timestamptz(to_us(start.div_euclid(width) * width)))
                .bind(timestamptz(to_us(end)))
                .fetch_all(&self.pool)
                .await?;
                let aggregates = rollup::span(&rows, start, end).map_err(|e| {
                    Error::Corrupt(format!("{name} row of series {}: {e}", series.id))
                })?;
                Ok::<_, Error>(Read::Aggregates(aggregates))
            });
        for read in futures::future::try_join_all(reads).await? {
            match read {
                Read::Points(points) => points.iter().for_each(|p| stepper.point(p.ts, &p.value)),
                Read::Aggregates(aggregates) => {
                    aggregates.iter().for_each(|a| stepper.aggregate(a))
                }
            }
        }
        Ok(stepper.finish())
    }

    async fn top_rates(&self, query: &crate::TopRates) -> Result<Vec<crate::SeriesRate>> {
        use futures::TryStreamExt as _;
        crate::rate::check(query)?;
        // Bounds on the stored microseconds, as in `range`.
        let from_us = to_us(query.from) + i64::from(query.from.rem_euclid(NS_PER_US) != 0);
        let to_us = to_us(query.to);
        if from_us > to_us {
            return Ok(Vec::new());
        }
        // The leaf is matched on the path string (the path ends with `/<leaf>`, or the leaf
        // element has keys: `/<leaf>[`); `Ranking` confirms on the parsed path. One
        // statement per case rather than `$1 IS NULL OR ...`, so that a device's query
        // always plans on the (device_id, path) index.
        let leaf = query.leaf.as_deref();
        let series: Vec<(i64, String, String, String)> = match &query.device {
            Some(device) => {
                sqlx::query_as(
                    "SELECT s.id, d.name, s.path, s.kind \
                     FROM series s JOIN devices d ON d.id = s.device_id \
                     WHERE d.name = $1 AND s.kind IN ('int', 'uint', 'float') \
                       AND ($2::text IS NULL \
                            OR right(s.path, length($2::text) + 1) = ('/' || $2::text) \
                            OR strpos(s.path, '/' || $2::text || '[') > 0)",
                )
                .bind(device.as_str())
                .bind(leaf)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as(
                    "SELECT s.id, d.name, s.path, s.kind \
                     FROM series s JOIN devices d ON d.id = s.device_id \
                     WHERE s.kind IN ('int', 'uint', 'float') \
                       AND ($1::text IS NULL \
                            OR right(s.path, length($1::text) + 1) = ('/' || $1::text) \
                            OR strpos(s.path, '/' || $1::text || '[') > 0)",
                )
                .bind(leaf)
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut ranking = crate::rate::Ranking::new(query);
        for (id, device, path, kind) in series {
            ranking.series(id, device, path, &kind)?;
        }
        let ids = ranking.ids();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Both streams ordered by series: each series' blocks are decoded when the merge
        // reaches it and merged with its raw rows by time (a raw row wins over a block
        // point of the same instant, as in `range`). Memory holds one series' blocks.
        let (from_ns, to_ns) = (from_us * NS_PER_US, to_us * NS_PER_US);
        let mut blocks = sqlx::query_as::<_, (i64, Vec<u8>)>(
            "SELECT series_id, data FROM sample_blocks \
             WHERE series_id = ANY($1::bigint[]) AND first_ts <= $3 AND last_ts >= $2 \
             ORDER BY series_id, first_ts",
        )
        .bind(&ids)
        .bind(timestamptz(from_us))
        .bind(timestamptz(to_us))
        .fetch(&self.pool);
        // Streamed: memory holds one count per series, not the window's samples. The time
        // range prunes the day partitions; each series is read on its primary key.
        let mut rows = sqlx::query_as::<_, (i64, DateTime<Utc>, Option<f64>, Option<String>)>(
            "SELECT series_id, ts, value, value_text FROM samples \
             WHERE series_id = ANY($1::bigint[]) AND ts >= $2 AND ts <= $3 \
             ORDER BY series_id, ts",
        )
        .bind(&ids)
        .bind(timestamptz(from_us))
        .bind(timestamptz(to_us))
        .fetch(&self.pool);
        let mut next_block = blocks.try_next().await?;
        let mut next_row = rows.try_next().await?;
        loop {
            let id = match (&next_block, &next_row) {
                (None, None) => break,
                (Some((b, _)), None) => *b,
                (None, Some((r, ..))) => *r,
                (Some((b, _)), Some((r, ..))) => (*b).min(*r),
            };
            let mut packed: Vec<(TimestampNs, f64)> = Vec::new();
            while let Some((_, data)) = next_block.take_if(|(b, _)| *b == id) {
                let points = crate::block::decode(&data)
                    .map_err(|e| Error::Corrupt(format!("block of series {id}: {e}")))?;
                packed.extend(
                    points
                        .into_iter()
                        .filter(|(ts, _)| *ts >= from_ns && *ts <= to_ns),
                );
                next_block = blocks.try_next().await?;
            }
            let mut packed = packed.into_iter().peekable();
            while let Some((_, ts, value, text)) = next_row.take_if(|(r, ..)| *r == id) {
                let ts = from_timestamptz(ts)?;
                while let Some((block_ts, block_value)) = packed.next_if(|(b, _)| *b <= ts) {
                    if block_ts < ts {
                        ranking.sample(id, block_ts, Some(block_value), None)?;
                    }
                }
                ranking.sample(id, ts, value, text)?;
                next_row = rows.try_next().await?;
            }
            for (ts, value) in packed {
                ranking.sample(id, ts, Some(value), None)?;
            }
        }
        ranking.finish()
    }

    async fn record_cli_output(&self, output: &CliOutput) -> Result<Option<CliChange>> {
        cli::check_output(output)?;
        // The stored times, so that the change returned is the one stored.
        let current = CliOutput {
            ts: to_us(output.ts).saturating_mul(NS_PER_US),
            output: codec::text(&output.output),
            ..output.clone()
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO devices (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(current.device.as_str())
            .execute(&mut *tx)
            .await?;
        let device_id: i64 = sqlx::query_scalar("SELECT id FROM devices WHERE name = $1")
            .bind(current.device.as_str())
            .fetch_one(&mut *tx)
            .await?;
        // A first output racing another one of the same command finds its row taken: it
        // then waits for that transaction and plans again against what it stored.
        for _ in 0..3 {
            if let Some(change) = record_cli(&mut tx, device_id, &current).await? {
                tx.commit().await?;
                return Ok(change);
            }
        }
        Err(Error::Corrupt(format!(
            "the latest output of {:?} on {} neither exists nor can be inserted",
            current.command, current.device
        )))
    }

    async fn cli_output(&self, device: &DeviceKey, command: &str) -> Result<Option<CliOutput>> {
        let row: Option<(DateTime<Utc>, String, bool)> = sqlx::query_as(
            "SELECT o.ts, o.output, o.truncated \
             FROM cli_outputs o JOIN devices d ON d.id = o.device_id \
             WHERE d.name = $1 AND o.command = $2",
        )
        .bind(device.as_str())
        .bind(command)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(ts, output, truncated)| {
            Ok(CliOutput {
                device: device.clone(),
                command: command.to_owned(),
                ts: from_timestamptz(ts)?,
                output,
                truncated,
                track_changes: true,
            })
        })
        .transpose()
    }

    async fn cli_changes(
        &self,
        device: &DeviceKey,
        since: TimestampNs,
        limit: usize,
    ) -> Result<Vec<CliChange>> {
        cli::check_limit(limit)?;
        // `since` rounds up to the stored microseconds, as range bounds do.
        let since = timestamptz(to_us(since) + i64::from(since.rem_euclid(NS_PER_US) != 0));
        let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>, String, i64, i64)> = sqlx::query_as(
            "SELECT c.command, c.ts, c.previous_ts, c.diff, c.added, c.removed \
                 FROM cli_changes c JOIN devices d ON d.id = c.device_id \
                 WHERE d.name = $1 AND c.ts >= $2 \
                 ORDER BY c.ts DESC, c.id DESC LIMIT $3",
        )
        .bind(device.as_str())
        .bind(since)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(command, ts, previous_ts, diff, added, removed)| {
                Ok(CliChange {
                    device: device.clone(),
                    command,
                    ts: from_timestamptz(ts)?,
                    previous_ts: from_timestamptz(previous_ts)?,
                    diff,
                    added: cli::stored_count(added)?,
                    removed: cli::stored_count(removed)?,
                })
            })
            .collect()
    }

    async fn record_cli_snapshot(&self, snapshot: &CliSnapshot) -> Result<SnapshotOutcome> {
        let rows = cli::check_snapshot(snapshot)?;
        let ts = timestamptz(to_us(snapshot.ts));
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO devices (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(snapshot.device.as_str())
            .execute(&mut *tx)
            .await?;
        let device_id: i64 = sqlx::query_scalar("SELECT id FROM devices WHERE name = $1")
            .bind(snapshot.device.as_str())
            .fetch_one(&mut *tx)
            .await?;
        // Writers of one (device, command) take turns, so that two equal snapshots make
        // one row and the latest is always compared with. A hash collision only makes two
        // commands take turns.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2::text || ' ' || $3))")
            .bind(SNAPSHOT_LOCK_CLASS)
            .bind(device_id)
            .bind(snapshot.command.as_str())
            .execute(&mut *tx)
            .await?;
        let latest: Option<(i64, DateTime<Utc>, bool)> = sqlx::query_as(
            "SELECT id, last_seen, template = $3 AND truncated = $4 AND rows_json = $5::jsonb \
             FROM cli_snapshots WHERE device_id = $1 AND command = $2 \
             ORDER BY ts DESC, id DESC LIMIT 1",
        )
        .bind(device_id)
        .bind(snapshot.command.as_str())
        .bind(snapshot.template.as_str())
        .bind(snapshot.truncated)
        .bind(rows.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let compared = latest
            .as_ref()
            .map(|(_, last_seen, same)| Ok::<_, Error>((from_timestamptz(*last_seen)?, *same)))
            .transpose()?;
        let outcome = cli::plan_snapshot(compared, to_us(snapshot.ts).saturating_mul(NS_PER_US));
        match (outcome, latest) {
            (SnapshotOutcome::Late, _) => return Ok(outcome),
            (SnapshotOutcome::Unchanged, Some((id, ..))) => {
                sqlx::query("UPDATE cli_snapshots SET last_seen = $2 WHERE id = $1")
                    .bind(id)
                    .bind(ts)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {
                sqlx::query(
                    "INSERT INTO cli_snapshots \
                       (device_id, command, template, ts, last_seen, row_count, truncated, rows_json) \
                     VALUES ($1, $2, $3, $4, $4, $5, $6, $7::jsonb)",
                )
                .bind(device_id)
                .bind(snapshot.command.as_str())
                .bind(snapshot.template.as_str())
                .bind(ts)
                .bind(i32::try_from(snapshot.rows.len()).unwrap_or(i32::MAX))
                .bind(snapshot.truncated)
                .bind(rows.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn cli_snapshot(&self, device: &DeviceKey, command: &str) -> Result<Option<CliSnapshot>> {
        let row: Option<SnapshotColumns> = sqlx::query_as(
            "SELECT s.command, s.template, s.ts, s.last_seen, s.truncated, s.rows_json::text \
             FROM cli_snapshots s JOIN devices d ON d.id = s.device_id \
             WHERE d.name = $1 AND s.command = $2 ORDER BY s.ts DESC, s.id DESC LIMIT 1",
        )
        .bind(device.as_str())
        .bind(command)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| snapshot_of(device, r)).transpose()
    }

    async fn cli_snapshots(
        &self,
        device: &DeviceKey,
        command: Option<&str>,
        since: TimestampNs,
        limit: usize,
    ) -> Result<Vec<CliSnapshot>> {
        cli::check_snapshot_limit(limit)?;
        // `since` rounds up to the stored microseconds, as range bounds do.
        let since = timestamptz(to_us(since) + i64::from(since.rem_euclid(NS_PER_US) != 0));
        let rows: Vec<SnapshotColumns> = sqlx::query_as(
            "SELECT s.command, s.template, s.ts, s.last_seen, s.truncated, s.rows_json::text \
             FROM cli_snapshots s JOIN devices d ON d.id = s.device_id \
             WHERE d.name = $1 AND ($2::text IS NULL OR s.command = $2) AND s.last_seen >= $3 \
             ORDER BY s.ts DESC, s.id DESC LIMIT $4",
        )
        .bind(device.as_str())
        .bind(command)
        .bind(since)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|r| snapshot_of(device, r)).collect()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn maintain(&self, now: TimestampNs, retention: &Retention) -> Result<MaintenanceReport> {
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(maintenance::LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(MaintenanceReport {
                skipped: true,
                ..MaintenanceReport::default()
            });
        }
        let report = maintain_locked(&mut conn, now, retention).await;
        // The lock belongs to the session: release it before the connection goes back to
        // the pool, or close the connection if that fails.
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(maintenance::LOCK_KEY)
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            drop(conn.detach());
        }
        report
    }
}

/// First key of the transaction advisory locks that serialise the snapshot writers of one
/// (device, command) (two-key locks do not share the one-key locks' space: maintenance's
/// lock is apart).
const SNAPSHOT_LOCK_CLASS: i32 = 0x4E50_0C11;

/// A stored snapshot: command, template, first and last seen, truncated, rows as text.
type SnapshotColumns = (String, String, DateTime<Utc>, DateTime<Utc>, bool, String);

fn snapshot_of(device: &DeviceKey, columns: SnapshotColumns) -> Result<CliSnapshot> {
    let (command, template, ts, last_seen, truncated, rows) = columns;
    Ok(CliSnapshot {
        device: device.clone(),
        command,
        template,
        ts: from_timestamptz(ts)?,
        last_seen: from_timestamptz(last_seen)?,
        rows: cli::stored_rows(&rows)?,
        truncated,
    })
}

/// One attempt at recording `current` (times already stored ones) in `tx`: the change
/// recorded (`Some(None)` when none), or `None` when a concurrent first output of the same
/// command took the row (the caller tries again, and then finds it).
async fn record_cli(
    tx: &mut PgConnection,
    device_id: i64,
    current: &CliOutput,
) -> Result<Option<Option<CliChange>>> {
    let row: Option<(DateTime<Utc>, String, bool)> = sqlx::query_as(
        "SELECT ts, output, truncated FROM cli_outputs \
         WHERE device_id = $1 AND command = $2 FOR UPDATE",
    )
    .bind(device_id)
    .bind(current.command.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let previous = row
        .map(|(ts, output, truncated)| {
            Ok::<_, Error>(CliOutput {
                device: current.device.clone(),
                command: current.command.clone(),
                ts: from_timestamptz(ts)?,
                output,
                truncated,
                track_changes: true,
            })
        })
        .transpose()?;
    let ts = timestamptz(to_us(current.ts));
    match cli::plan(previous.as_ref(), current) {
        Plan::Ignore => Ok(Some(None)),
        Plan::Touch => {
            sqlx::query("UPDATE cli_outputs SET ts = $3 WHERE device_id = $1 AND command = $2")
                .bind(device_id)
                .bind(current.command.as_str())
                .bind(ts)
                .execute(&mut *tx)
                .await?;
            Ok(Some(None))
        }
        Plan::Replace(change) => {
            let stored = if previous.is_some() {
                sqlx::query(
                    "UPDATE cli_outputs SET ts = $3, output = $4, truncated = $5 \
                     WHERE device_id = $1 AND command = $2",
                )
            } else {
                sqlx::query(
                    "INSERT INTO cli_outputs (device_id, command, ts, output, truncated) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id, command) DO NOTHING",
                )
            }
            .bind(device_id)
            .bind(current.command.as_str())
            .bind(ts)
            .bind(current.output.as_str())
            .bind(current.truncated)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if stored == 0 {
                return Ok(None);
            }
            if let Some(c) = &change {
                sqlx::query(
                    "INSERT INTO cli_changes \
                       (device_id, command, ts, previous_ts, diff, added, removed) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(device_id)
                .bind(c.command.as_str())
                .bind(ts)
                .bind(timestamptz(to_us(c.previous_ts)))
                .bind(c.diff.as_str())
                .bind(i64::from(c.added))
                .bind(i64::from(c.removed))
                .execute(&mut *tx)
                .await?;
            }
            Ok(Some(change))
        }
    }
}

/// One maintenance run, holding the advisory lock on `conn`.
async fn maintain_locked(
    conn: &mut PgConnection,
    now: TimestampNs,
    retention: &Retention,
) -> Result<MaintenanceReport> {
    let mut report = MaintenanceReport::default();
    let parents: Vec<&str> = maintenance::FAMILIES.iter().map(|f| f.table).collect();
    let mut existing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = ANY($1::text[]::regclass[])",
    )
    .bind(&parents)
    .fetch_all(&mut *conn)
    .await?;
    for day in maintenance::days_wanted(now, retention) {
        ensure_partition(conn, &maintenance::SAMPLES, day, &mut existing, &mut report).await?;
    }
    seal(conn, now, retention, &mut existing, &mut report).await?;
    for family in &maintenance::FAMILIES {
        for name in family.expired(&existing, now, retention) {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {name}")))
                .execute(&mut *conn)
                .await?;
            report.dropped.push(name.to_owned());
        }
        // The default partition keeps what no period was prepared for: its expired rows
        // are deleted. A row holds what starts at its key and lasts `span`: it expires
        // once all of that is older than the cutoff.
        let (table, key) = (family.table, family.key);
        let span = maintenance::span_of(family);
        let cutoff = retention.cutoff_of(family, now);
        let sql = if span == 0 {
            format!("DELETE FROM {table}_default WHERE {key} < $1")
        } else {
            format!("DELETE FROM {table}_default WHERE {key} <= $1")
        };
        report.deleted += sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(timestamptz(to_us(cutoff - span)))
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    // CLI changes follow the raw samples' retention (see `Store::maintain`).
    report.deleted += sqlx::query("DELETE FROM cli_changes WHERE ts < $1")
        .bind(timestamptz(to_us(retention.cutoff(now))))
        .execute(&mut *conn)
        .await?
        .rows_affected();
    // So do snapshots, but the latest of each command stays (as its latest output does).
    report.deleted += sqlx::query(
        "DELETE FROM cli_snapshots s WHERE s.last_seen < $1 AND EXISTS \
           (SELECT 1 FROM cli_snapshots n WHERE n.device_id = s.device_id \
              AND n.command = s.command AND (n.ts, n.id) > (s.ts, s.id))",
    )
    .bind(timestamptz(to_us(retention.cutoff(now))))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    report.dropped.sort();
    Ok(report)
}

/// `'YYYY-MM-DD HH:MM:SS+00'` of `ts`, for DDL, which takes no parameters.
fn sql_timestamp(ts: TimestampNs) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ts)
        .format("'%Y-%m-%d %H:%M:%S+00'")
        .to_string()
}

/// Creates the partition of `family` for period `index` unless `existing` names it,
/// moving that period's rows out of the default partition first.
async fn ensure_partition(
    conn: &mut PgConnection,
    family: &maintenance::Family,
    index: i64,
    existing: &mut Vec<String>,
    report: &mut MaintenanceReport,
) -> Result<()> {
    use sqlx::Connection as _;
    let name = family.partition_name(index);
    if existing.contains(&name) {
        return Ok(());
    }
    // Identifiers and bounds are built from constants and period numbers: safe to splice.
    let (table, key) = (family.table, family.key);
    let (from, to) = (
        sql_timestamp(family.start(index)),
        sql_timestamp(family.start(index + 1)),
    );
    let mut tx = conn.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {name} \
         (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)"
    )))
    .execute(&mut *tx)
    .await?;
    report.moved += sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH moved AS (DELETE FROM {table}_default \
         WHERE {key} >= {from} AND {key} < {to} RETURNING *) \
         INSERT INTO {name} SELECT * FROM moved"
    )))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to})"
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    existing.push(name.clone());
    report.created.push(name);
    Ok(())
}

/// Seals whole hours before [`Retention::seal_before`], resuming where the last run
/// stopped; a store that never sealed starts [`maintenance::MAX_HOURS_PER_RUN`] hours
/// back (older samples stay raw until retention drops them, and have no rollups).
///
/// Each hour is one transaction: its numeric rows become 1-minute rollups (one row per
/// series) and, with compression on, are deleted and packed into one block per series
/// (`DELETE ... RETURNING`, so a sample arriving meanwhile is either in the block or
/// still raw, never lost). The last hour of a UTC day also writes the day's 1-hour
/// rollups, from the day's 1-minute rows.
async fn seal(
    conn: &mut PgConnection,
    now: TimestampNs,
    retention: &Retention,
    existing: &mut Vec<String>,
    report: &mut MaintenanceReport,
) -> Result<()> {
    use crate::rollup;
    use maintenance::{BLOCKS, HOUR_NS, HOURS, MINUTES};
    use sqlx::Connection as _;
    let hour_us = HOUR_NS / NS_PER_US;
    let before_us = to_us(retention.seal_before(now));
    let compress = retention.compress_after.is_some();
    let progress: Option<(DateTime<Utc>, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT done_until, rolled_up_from FROM compression_progress")
            .fetch_optional(&mut *conn)
            .await?;
    // Hours whose raw samples retention has dropped are not sealed (they have no
    // samples left); a stopped maintenance resumes at the oldest raw hour kept.
    let oldest_kept = to_us(retention.cutoff(now)).div_euclid(hour_us) * hour_us;
    let mut hour = match progress {
        Some((done, _)) => done.timestamp_micros(),
        None => before_us - maintenance::MAX_HOURS_PER_RUN * hour_us,
    }
    .max(oldest_kept);
    let rolled_up_from = progress
        .and_then(|(_, from)| from)
        .map_or(hour, |t| t.timestamp_micros());
    let mut hours = 0;
    while hour + hour_us <= before_us && hours < maintenance::MAX_HOURS_PER_RUN {
        let hour_ns = hour * NS_PER_US;
        let day_ends = (hour_ns + HOUR_NS).rem_euclid(maintenance::DAY_NS) == 0;
        ensure_partition(conn, &MINUTES, MINUTES.period_of(hour_ns), existing, report).await?;
        if compress {
            ensure_partition(conn, &BLOCKS, BLOCKS.period_of(hour_ns), existing, report).await?;
        }
        if day_ends {
            ensure_partition(conn, &HOURS, HOURS.period_of(hour_ns), existing, report).await?;
        }
        let mut tx = conn.begin().await?;
        let numeric = "ts >= $1 AND ts < $2 AND value IS NOT NULL AND value_text IS NULL";
        let mut rows: Vec<(i64, DateTime<Utc>, f64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(if compress {
                format!("DELETE FROM samples WHERE {numeric} RETURNING series_id, ts, value")
            } else {
                format!("SELECT series_id, ts, value FROM samples WHERE {numeric}")
            }))
            .bind(timestamptz(hour))
            .bind(timestamptz(hour + hour_us))
            .fetch_all(&mut *tx)
            .await?;
        rows.sort_unstable_by_key(|(id, ts, _)| (*id, *ts));
        let mut ids = Vec::new();
        let (mut firsts, mut lasts, mut last_values, mut blocks) = (vec![], vec![], vec![], vec![]);
        let mut minutes = Vec::new();
        for series in rows.chunk_by(|a, b| a.0 == b.0) {
            let id = series[0].0;
            let points: Vec<(i64, f64)> = series
                .iter()
                .map(|(_, ts, v)| Ok((from_timestamptz(*ts)?, *v)))
                .collect::<Result<_>>()?;
            let (row, n) = rollup::hour_row(&points)
                .map_err(|e| Error::Corrupt(format!("rollup of series {id}: {e}")))?;
            report.rolled_up_minutes += n;
            minutes.push(row);
            ids.push(id);
            if compress {
                blocks.push(
                    crate::block::encode(&points)
                        .map_err(|e| Error::Corrupt(format!("series {id}: {e}")))?,
                );
                firsts.push(series[0].1);
                lasts.push(series[series.len() - 1].1);
                last_values.push(series[series.len() - 1].2);
            }
        }
        if compress {
            // A series' stored last value may lag its newest samples (writers refresh it
            // once a minute, `Store::series` adds the newer raw rows): those rows are about
            // to leave the raw table, so the stored value catches up with them here.
            sqlx::query(
                "UPDATE series AS s \
                 SET last_ts = u.ts, last_value = u.value, last_value_text = NULL \
                 FROM unnest($1::bigint[], $2::timestamptz[], $3::float8[]) AS u (id, ts, value) \
                 WHERE s.id = u.id AND (s.last_ts IS NULL OR s.last_ts < u.ts)",
            )
            .bind(&ids)
            .bind(&lasts)
            .bind(&last_values)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO sample_blocks (series_id, first_ts, last_ts, data) \
                 SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], \
                 $4::bytea[])",
            )
            .bind(&ids)
            .bind(&firsts)
            .bind(&lasts)
            .bind(&blocks)
            .execute(&mut *tx)
            .await?;
            report.compressed_samples += rows.len() as u64;
        }
        sqlx::query(
            "INSERT INTO rollups_1m (series_id, hour, data) \
             SELECT u.id, $2, u.data FROM unnest($1::bigint[], $3::bytea[]) AS u (id, data) \
             ON CONFLICT (series_id, hour) DO UPDATE SET data = excluded.data",
        )
        .bind(&ids)
        .bind(timestamptz(hour))
        .bind(&minutes)
        .execute(&mut *tx)
        .await?;
        if day_ends {
            report.rolled_up_hours +=
                roll_up_day(&mut tx, hour_ns + HOUR_NS - maintenance::DAY_NS).await?;
        }
        sqlx::query(
            "INSERT INTO compression_progress (done_until, rolled_up_from) VALUES ($1, $2) \
             ON CONFLICT (singleton) DO UPDATE SET done_until = excluded.done_until, \
             rolled_up_from = excluded.rolled_up_from",
        )
        .bind(timestamptz(hour + hour_us))
        .bind(timestamptz(rolled_up_from))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        report.compressed_hours += 1;
        hour += hour_us;
        hours += 1;
    }
    Ok(())
}

/// Writes the 1-hour rollups of the UTC day starting at `day` from its 1-minute rows;
/// returns how many hourly aggregates it wrote.
async fn roll_up_day(tx: &mut PgConnection, day: TimestampNs) -> Result<u64> {
    use crate::rollup;
    use futures::TryStreamExt as _;
    let mut rows = sqlx::query_as::<_, (i64, Vec<u8>)>(
        "SELECT series_id, data FROM rollups_1m WHERE hour >= $1 AND hour < $2 \
         ORDER BY series_id, hour",
    )
    .bind(timestamptz(to_us(day)))
    .bind(timestamptz(to_us(day + maintenance::DAY_NS)))
    .fetch(&mut *tx);
    let mut day_rollup = rollup::DayRollup::default();
    let corrupt = |(id, e): (i64, crate::block::BlockError)| {
        Error::Corrupt(format!("rollup of series {id}: {e}"))
    };
    while let Some((id, data)) = rows.try_next().await? {
        day_rollup.push(id, &data).map_err(corrupt)?;
    }
    drop(rows);
    let day_rollup = day_rollup.finish().map_err(corrupt)?;
    sqlx::query(
        "INSERT INTO rollups_1h (series_id, day, data) \
         SELECT u.id, $2, u.data FROM unnest($1::bigint[], $3::bytea[]) AS u (id, data) \
         ON CONFLICT (series_id, day) DO UPDATE SET data = excluded.data",
    )
    .bind(&day_rollup.ids)
    .bind(timestamptz(to_us(day)))
    .bind(&day_rollup.rows)
    .execute(&mut *tx)
    .await?;
    Ok(day_rollup.hours)
}

/// The points of a series' blocks overlapping `[from_us, to_us]`, inside it.
async fn block_points(
    pool: &PgPool,
    series_id: i64,
    from_us: i64,
    to_us: i64,
) -> Result<Vec<(TimestampNs, f64)>> {
    let blocks: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT data FROM sample_blocks \
         WHERE series_id = $1 AND first_ts <= $3 AND last_ts >= $2 ORDER BY first_ts",
    )
    .bind(series_id)
    .bind(timestamptz(from_us))
    .bind(timestamptz(to_us))
    .fetch_all(pool)
    .await?;
    let (from, to) = (from_us * NS_PER_US, to_us * NS_PER_US);
    let mut points = Vec::new();
    for data in blocks {
        let decoded = crate::block::decode(&data)
            .map_err(|e| Error::Corrupt(format!("block of series {series_id}: {e}")))?;
        points.extend(
            decoded
                .into_iter()
                .filter(|(ts, _)| *ts >= from && *ts <= to),
        );
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_floor_to_microseconds() {
        assert_eq!(to_us(1_999), 1);
        assert_eq!(to_us(-1), -1);
        assert_eq!(to_us(i64::MIN), i64::MIN / 1000 - 1);
        for ns in [
            0,
            1_000,
            -5_000,
            1_700_000_000_123_456_000,
            i64::MAX / 1000 * 1000,
        ] {
            assert_eq!(
                from_timestamptz(timestamptz(to_us(ns))).expect("in range"),
                ns
            );
        }
        assert_eq!(
            from_timestamptz(timestamptz(to_us(1_234_567))).expect("in range"),
            1_234_000
        );
        assert!(from_timestamptz(DateTime::<Utc>::MAX_UTC).is_err());
    }
}

/// Tests against a real PostgreSQL server: each test creates its own database and drops it.
#[cfg(test)]
mod server_tests {
    use std::future::Future;
    use std::panic::AssertUnwindSafe;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::FutureExt;
    use model::{DeviceState, Value};

    use super::*;
    use crate::conformance::for_each_case;

    /// Server URL (any database on it); tests create their own databases beside it.
    const URL_VAR: &str = "NETPULSE_TEST_POSTGRES_URL";
    const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

    static NEXT_DB: AtomicU64 = AtomicU64::new(0);

    /// A database of its own for one test.
    struct TestDb {
        admin: PgConnectOptions,
        name: String,
        url: String,
    }

    impl TestDb {
        /// Creates the database; panics with instructions when the server is unreachable, so
        /// that a missing server fails the suite instead of skipping it.
        async fn create() -> Self {
            let base = std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_owned());
            let admin = PgConnectOptions::from_str(&base)
                .unwrap_or_else(|e| panic!("{URL_VAR}={base:?} is not a PostgreSQL URL: {e}"))
                .database("postgres");
            let name = format!(
                "netpulse_test_{}_{}",
                std::process::id(),
                NEXT_DB.fetch_add(1, Ordering::Relaxed)
            );
            let mut conn = Self::admin(&admin, &base).await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .expect("drop a leftover test database");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create the test database");
            conn.close().await.expect("close");
            let url = admin.clone().database(&name).to_url_lossy().to_string();
            Self { admin, name, url }
        }

        async fn admin(admin: &PgConnectOptions, base: &str) -> PgConnection {
            match tokio::time::timeout(Duration::from_secs(10), admin.connect()).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => panic!(
                    "PostgreSQL at {base} is unreachable: {e}. These tests need a server: \
                     start one or point {URL_VAR} at one."
                ),
                Err(_) => panic!(
                    "PostgreSQL at {base} did not answer within 10 s. These tests need a \
                     server: start one or point {URL_VAR} at one."
                ),
            }
        }

        async fn drop(self) {
            let mut conn = Self::admin(&self.admin, &self.url).await;
            let name = &self.name;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .expect("drop the test database");
            conn.close().await.expect("close");
        }

        /// A pool on the test database, for looking behind the store.
        async fn pool(&self) -> PgPool {
            connect(&self.url)
                .await
                .expect("connect to the test database")
        }
    }

    /// Runs `test` with a fresh database, dropping it afterwards even if the test panics.
    async fn with_db<F, Fut>(test: F)
    where
        F: FnOnce(Arc<TestDb>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let db = Arc::new(TestDb::create().await);
        let outcome = AssertUnwindSafe(test(db.clone())).catch_unwind().await;
        match Arc::try_unwrap(db) {
            Ok(db) => db.drop().await,
            Err(_) => panic!("a test kept its TestDb"),
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    macro_rules! server_cases {
        ($($case:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $case() {
                with_db(|db| async move {
                    let store = crate::open(&db.url, true).await.expect("open");
                    crate::conformance::$case(store).await;
                })
                .await;
            }
        )*};
    }

    /// The conformance suite on PostgreSQL.
    mod conformance {
        use super::*;
        for_each_case!(server_cases);
    }

    #[tokio::test]
    async fn timestamps_are_truncated_to_microseconds() {
        with_db(|db| async move {
            let store = crate::open(&db.url, true).await.expect("open");
            // A plausible instant on a whole microsecond; offsets below are in ns.
            let t = crate::OLDEST_SAMPLE_TS;
            let at = |ts: i64, v: i64| Sample {
                device: DeviceKey::new("leaf1").expect("key"),
                path: "/x".parse::<model::Path>().expect("path").into(),
                ts: t + ts,
                value: Value::Int(v),
            };
            // 1.5 us and 1.999 us are both stored as 1 us: the second is a duplicate.
            let report = store
                .write_samples(&[at(1_500, 1), at(1_999, 2)])
                .await
                .expect("write");
            assert_eq!(
                report,
                WriteReport {
                    written: 1,
                    duplicates: 1,
                    ..WriteReport::default()
                }
            );
            let key = DeviceKey::new("leaf1").expect("key");
            let path: Path = "/x".parse().expect("path");
            let points = store
                .range(&key, &path, t + 1_000, t + 1_000)
                .await
                .expect("range");
            assert_eq!(
                points,
                [Point {
                    ts: t + 1_000,
                    value: Value::Int(1)
                }]
            );
            // Bounds apply to stored microseconds: (1.001 us ..= 1.999 us) holds none.
            assert!(
                store
                    .range(&key, &path, t + 1_001, t + 1_999)
                    .await
                    .expect("range")
                    .is_empty()
            );
            assert_eq!(
                store
                    .range(&key, &path, t + 999, t + 1_001)
                    .await
                    .expect("range")
                    .len(),
                1
            );
        })
        .await;
    }

    #[tokio::test]
    async fn migrate_reports_what_it_applied() {
        with_db(|db| async move {
            let latest = schema::latest(&MIGRATOR);
            let first = crate::migrate(&db.url).await.expect("migrate");
            assert_eq!(
                first,
                MigrationReport {
                    applied: u64::try_from(MIGRATOR.iter().count()).expect("count"),
                    version: latest
                }
            );
            let again = crate::migrate(&db.url).await.expect("migrate again");
            assert_eq!(
                again,
                MigrationReport {
                    applied: 0,
                    version: latest
                }
            );
            crate::open(&db.url, false)
                .await
                .expect("open a current schema");
        })
        .await;
    }

    #[tokio::test]
    async fn an_unmigrated_database_is_refused_without_migrate() {
        with_db(|db| async move {
            let err = crate::open(&db.url, false)
                .await
                .expect_err("empty database");
            assert!(
                matches!(err, Error::SchemaOutdated { found: None, .. }),
                "{err}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        with_db(|db| async move {
            crate::migrate(&db.url).await.expect("migrate");
            let future = schema::latest(&MIGRATOR) + 1;
            let pool = db.pool().await;
            sqlx::query(
                "INSERT INTO _sqlx_migrations \
                   (version, description, success, checksum, execution_time) \
                 VALUES ($1, 'from a newer netpulse', TRUE, '\\x00', 0)",
            )
            .bind(future)
            .execute(&pool)
            .await
            .expect("fake a newer migration");
            pool.close().await;

            let expected = format!(
                "database schema version {future} is newer than this netpulse understands \
                 ({}); upgrade netpulse",
                schema::latest(&MIGRATOR)
            );
            for migrate in [true, false] {
                let err = crate::open(&db.url, migrate)
                    .await
                    .expect_err("newer schema");
                assert!(matches!(err, Error::SchemaTooNew { .. }), "{err:?}");
                assert_eq!(err.to_string(), expected);
            }
            let err = crate::migrate(&db.url).await.expect_err("newer schema");
            assert_eq!(err.to_string(), expected);
        })
        .await;
    }

    #[tokio::test]
    async fn record_event_appends_to_the_history() {
        with_db(|db| async move {
            let store = crate::open(&db.url, true).await.expect("open");
            let device = DeviceKey::new("leaf1").expect("key");
            for (i, state) in [
                DeviceState::Connecting,
                DeviceState::Synced,
                DeviceState::Synced,
            ]
            .into_iter()
            .enumerate()
            {
                let ts = i64::try_from(i).expect("small") * NS_PER_US;
                let event = DeviceEvent {
                    device: device.clone(),
                    state,
                    error: None,
                    ts,
                };
                store.record_event(&event).await.expect("event");
            }
            let pool = db.pool().await;
            let history: Vec<(DateTime<Utc>, String)> =
                sqlx::query_as("SELECT ts, state FROM device_events ORDER BY ts")
                    .fetch_all(&pool)
                    .await
                    .expect("history");
            pool.close().await;
            let history: Vec<(i64, &str)> = history
                .iter()
                .map(|(ts, state)| (ts.timestamp_micros(), state.as_str()))
                .collect();
            assert_eq!(history, [(0, "connecting"), (1, "synced"), (2, "synced")]);
        })
        .await;
    }

    #[tokio::test]
    async fn a_first_cli_output_racing_another_is_compared_with_it() {
        // Another writer has inserted the first output of the command but not committed:
        // this one's insert waits for it, finds the row taken, and plans again against it.
        with_db(|db| async move {
            let store = crate::open(&db.url, true).await.expect("open");
            let leaf1 = DeviceKey::new("leaf1").expect("key");
            store
                .upsert_devices(&[crate::DeviceInfo {
                    name: leaf1.clone(),
                    address: String::new(),
                }])
                .await
                .expect("device");
            let pool = db.pool().await;
            let mut other = pool.begin().await.expect("begin");
            let t0 = crate::OLDEST_SAMPLE_TS;
            sqlx::query(
                "INSERT INTO cli_outputs (device_id, command, ts, output, truncated) \
                 SELECT id, 'show version', $1, 'v1', false FROM devices WHERE name = 'leaf1'",
            )
            .bind(timestamptz(to_us(t0)))
            .execute(&mut *other)
            .await
            .expect("uncommitted first output");
            let racing = tokio::spawn({
                let store = store.clone();
                let output = CliOutput {
                    device: leaf1.clone(),
                    command: "show version".into(),
                    ts: t0 + 1_000_000_000,
                    output: "v2\n".into(),
                    truncated: false,
                    track_changes: true,
                };
                async move { store.record_cli_output(&output).await }
            });
            // Wait until the store's insert waits on the other transaction.
            let mut waiting = false;
            for _ in 0..200 {
                waiting = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                     WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO cli_outputs%')",
                )
                .fetch_one(&pool)
                .await
                .expect("activity");
                if waiting {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            assert!(
                waiting,
                "the store's insert never waited on the other writer"
            );
            other.commit().await.expect("commit the other writer");
            let change = racing
                .await
                .expect("task")
                .expect("record")
                .expect("v1 -> v2 is a change");
            assert_eq!(
                (change.previous_ts, change.added, change.removed),
                (t0, 1, 1)
            );
            let latest = store
                .cli_output(&leaf1, "show version")
                .await
                .expect("latest")
                .expect("stored");
            assert_eq!(latest.output, "v2\n");
            pool.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn crossed_handoffs_never_deadlock_and_the_stale_side_is_fenced() {
        // Two collectors mid-rebalance: A owns leaf1 and is stale for leaf2, B the
        // reverse; both write both devices at once, many times.
        with_db(|db| async move {
            let a = crate::open(&db.url, true).await.expect("open a");
            let b = crate::open(&db.url, false).await.expect("open b");
            let (d1, d2) = (
                DeviceKey::new("leaf1").expect("key"),
                DeviceKey::new("leaf2").expect("key"),
            );
            assert!(a.claim(&d1, "a", 2).await.expect("claim").granted);
            assert!(b.claim(&d2, "b", 2).await.expect("claim").granted);
            let batch = |round: i64| -> Vec<Sample> {
                [&d1, &d2]
                    .into_iter()
                    .flat_map(|d| {
                        (0..20).map(move |i| Sample {
                            device: d.clone(),
                            path: format!("/p{i}")
                                .parse::<model::Path>()
                                .expect("path")
                                .into(),
                            ts: crate::OLDEST_SAMPLE_TS + round * 1_000_000,
                            value: Value::Int(round),
                        })
                    })
                    .collect()
            };
            let fence_a: Fence = [(d1.clone(), 2), (d2.clone(), 1)].into_iter().collect();
            let fence_b: Fence = [(d1.clone(), 1), (d2.clone(), 2)].into_iter().collect();
            for round in 0..30 {
                let samples = batch(round);
                let (ra, rb) = tokio::join!(
                    a.write_fenced(&samples, &fence_a),
                    b.write_fenced(&samples, &fence_b)
                );
                let (ra, rb) = (ra.expect("a writes"), rb.expect("b writes"));
                assert_eq!((ra.fenced, rb.fenced), (20, 20), "round {round}");
                assert_eq!(ra.fenced_devices, vec![d2.clone()]);
                assert_eq!(rb.fenced_devices, vec![d1.clone()]);
                assert_eq!(ra.written + ra.duplicates + rb.written + rb.duplicates, 40);
            }
            let path: Path = "/p0".parse().expect("path");
            for d in [&d1, &d2] {
                let points = a.range(d, &path, i64::MIN, i64::MAX).await.expect("range");
                assert_eq!(points.len(), 30, "one point per round for {d}");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn old_numeric_samples_are_packed_into_blocks_and_read_back_unchanged() {
        with_db(|db| async move {
            let store = crate::open(&db.url, true).await.expect("open");
            let hour = crate::maintenance::HOUR_NS;
            let second = 1_000_000_000;
            // 2026-01-01T00:00:00Z; six hours of 10 s samples, with jitter in µs.
            let t0: TimestampNs = 1_767_225_600_000_000_000;
            let key = DeviceKey::new("leaf1").expect("key");
            let sample = |path: &str, ts: TimestampNs, value: Value| Sample {
                device: key.clone(),
                path: path.parse::<model::Path>().expect("path").into(),
                ts,
                value,
            };
            let mut batch = Vec::new();
            for i in 0..6 * 360 {
                let ts = t0 + i * 10 * second + (i * 7_919 % 3_000) * 1_000;
                // A counter with a reset in hour 2, a gauge, a text leaf.
                let count = if i < 900 {
                    i * 1_000
                } else {
                    (i - 900) * 1_000
                };
                batch.push(sample("/c", ts, Value::Uint(count as u64)));
                batch.push(sample("/g", ts, Value::Float(i as f64 / 3.0)));
                batch.push(sample("/t", ts, Value::String(format!("s{}", i % 3))));
            }
            batch.push(sample("/g", t0 + 1_800 * second + 1_000, Value::Deleted));
            for chunk in batch.chunks(2_000) {
                store.write_samples(chunk).await.expect("write");
            }
            let all = (t0 - hour, t0 + 7 * hour);
            let read = |path: &'static str| {
                let store = store.clone();
                let key = key.clone();
                async move {
                    let path: model::Path = path.parse().expect("path");
                    store.range(&key, &path, all.0, all.1).await.expect("range")
                }
            };
            let before = (read("/c").await, read("/g").await, read("/t").await);
            let query = crate::TopRates {
                device: None,
                leaf: None,
                from: t0 + 1_000 * second,
                to: t0 + 20_000 * second,
                limit: 10,
            };
            let rates_before = store.top_rates(&query).await.expect("rates");
            let buckets = |store: Arc<dyn crate::Store>| {
                let key = key.clone();
                async move {
                    let path: model::Path = "/c".parse().expect("path");
                    store
                        .range_step(&key, &path, t0, t0 + 6 * hour, 60 * second)
                        .await
                        .expect("step")
                }
            };
            let steps_before = buckets(store.clone()).await;

            // At t0 + 6 h, hours before t0 + 4 h are compressed: four of them.
            let retention = Retention::default();
            let report = store
                .maintain(t0 + 6 * hour, &retention)
                .await
                .expect("maintain");
            assert_eq!(
                report.compressed_hours, 48,
                "from 48 hours back: {report:?}"
            );
            // 4 hours x 360 samples x 2 numeric leaves, less the delete (stays raw).
            assert_eq!(report.compressed_samples, 4 * 360 * 2);
            let raw: i64 = sqlx::query_scalar("SELECT count(*) FROM samples")
                .fetch_one(&db.pool().await)
                .await
                .expect("count");
            assert_eq!(raw, 6 * 360 * 3 + 1 - 4 * 360 * 2);

            assert_eq!(
                (read("/c").await, read("/g").await, read("/t").await),
                before
            );
            assert_eq!(store.top_rates(&query).await.expect("rates"), rates_before);
            assert_eq!(buckets(store.clone()).await, steps_before);

            // A sample written again after its hour was compressed is still one point.
            store.write_samples(&batch[..3]).await.expect("rewrite");
            assert_eq!(read("/c").await, before.0);
            // Nothing more to do at the same instant; the next hour an hour later.
            let again = store
                .maintain(t0 + 6 * hour, &retention)
                .await
                .expect("again");
            assert_eq!(again.compressed_hours, 0);
            // One more /c sample, 5 s after the newest: the stored last value is not
            // rewritten for it (less than a minute newer); then every hour is compressed.
            let extra = sample("/c", t0 + 21_595 * second, Value::Uint(1_259_500));
            store
                .write_samples(std::slice::from_ref(&extra))
                .await
                .expect("extra");
            let later = store
                .maintain(t0 + 9 * hour, &retention)
                .await
                .expect("later");
            assert_eq!(later.compressed_hours, 3);
            assert_eq!(read("/g").await, before.1);
            // The newest numeric samples were compressed too: the series still shows them.
            let series = store.series(&key).await.expect("series");
            assert_eq!(series.len(), 3);
            let newest_c = Point {
                ts: extra.ts,
                value: extra.value.clone(),
            };
            let newest_c = &newest_c;
            let listed = series
                .iter()
                .find(|s| s.path.to_string() == "/c")
                .expect("/c listed");
            assert_eq!(
                (listed.last_ts, &listed.last_value),
                (newest_c.ts, &newest_c.value)
            );

            // Once the day is sealed its hours are rolled up; after the raw samples expire
            // the rollups still answer, the same as the raw samples did, in 1-minute steps
            // for 90 days and in 1-hour steps for 2 years.
            let c: model::Path = "/c".parse().expect("path");
            let steps = |step: i64| {
                let (store, key, c) = (store.clone(), key.clone(), c.clone());
                async move {
                    store
                        .range_step(&key, &c, t0, t0 + 6 * hour - 1, step)
                        .await
                        .expect("step")
                }
            };
            let (minutes, hours) = (steps(60 * second).await, steps(hour).await);
            assert_eq!(hours.iter().filter(|b| b.stats.is_some()).count(), 6);
            let day = crate::maintenance::DAY_NS;
            let sealed = store
                .maintain(t0 + day + 3 * hour, &retention)
                .await
                .expect("seal the day");
            assert_eq!(sealed.compressed_hours, 18, "t0 + 7 h to t0 + 25 h");
            assert_eq!(sealed.rolled_up_hours, 2 * 6, "/c and /g, six hours each");
            assert_eq!(steps(hour).await, hours);
            let expire = |at: TimestampNs| {
                let store = store.clone();
                async move { store.maintain(at, &retention).await.expect("expire") }
            };
            let report = expire(t0 + 8 * day).await;
            assert!(
                report.dropped.contains(&"samples_p20260101".to_owned())
                    && report
                        .dropped
                        .contains(&"sample_blocks_p20260101".to_owned()),
                "{report:?}"
            );
            assert!(read("/c").await.is_empty(), "raw samples expired");
            assert_eq!(steps(60 * second).await, minutes);
            assert_eq!(steps(hour).await, hours);
            let report = expire(t0 + 91 * day).await;
            assert!(
                report.dropped.contains(&"rollups_1m_p20260101".to_owned()),
                "{report:?}"
            );
            assert!(steps(60 * second).await.iter().all(|b| b.stats.is_none()));
            assert_eq!(steps(hour).await, hours);
            // Hours go by the month: January 2026 is past two years at 2028-02-01.
            let report = expire(t0 + (730 + 31) * day).await;
            assert!(
                report.dropped.contains(&"rollups_1h_p202601".to_owned()),
                "{report:?}"
            );
            assert!(steps(hour).await.iter().all(|b| b.stats.is_none()));
        })
        .await;
    }

    #[tokio::test]
    async fn maintenance_partitions_by_day_moves_rows_and_drops_whole_days() {
        with_db(|db| async move {
            let store = crate::open(&db.url, true).await.expect("open");
            let day = crate::maintenance::DAY_NS;
            // 2026-01-01T00:00:00Z, a plausible instant.
            let t0: TimestampNs = 1_767_225_600_000_000_000;
            let key = DeviceKey::new("leaf1").expect("key");
            let at = |ts: TimestampNs| Sample {
                device: key.clone(),
                path: "/x".parse::<model::Path>().expect("path").into(),
                ts,
                value: Value::Int(1),
            };
            // Before any partition exists everything lands in the default partition.
            store
                .write_samples(&[at(t0 + 3 * day), at(t0 + 3 * day + 60_000_000_000)])
                .await
                .expect("write");
            let report = store
                .maintain(t0 + 3 * day + 3_600_000_000_000, &Retention::default())
                .await
                .expect("maintain");
            // (The hourly pass also made the partitions of the blocks and rollups of the
            // hours it sealed, from 48 hours back.)
            let raw_days = |names: &[String]| -> Vec<String> {
                names
                    .iter()
                    .filter(|n| n.starts_with("samples_p"))
                    .cloned()
                    .collect()
            };
            assert!(
                report.created.contains(&"rollups_1m_p20260102".to_owned()),
                "{report:?}"
            );
            assert_eq!(
                raw_days(&report.created),
                [
                    "samples_p20260103",
                    "samples_p20260104",
                    "samples_p20260105",
                    "samples_p20260106"
                ]
            );
            assert_eq!(report.moved, 2, "day 3's rows left the default partition");
            let pool = connect(&db.url).await.expect("connect");
            let in_day: i64 = sqlx::query_scalar("SELECT count(*) FROM samples_p20260104")
                .fetch_one(&pool)
                .await
                .expect("count");
            assert_eq!(in_day, 2);
            // Writes after that go to their day's partition.
            store
                .write_samples(&[at(t0 + 4 * day)])
                .await
                .expect("write");
            let in_next: i64 = sqlx::query_scalar("SELECT count(*) FROM samples_p20260105")
                .fetch_one(&pool)
                .await
                .expect("count");
            assert_eq!(in_next, 1);
            // Twelve days later, the old days are dropped whole.
            let later = store
                .maintain(t0 + 15 * day, &Retention::default())
                .await
                .expect("maintain");
            assert_eq!(
                raw_days(&later.dropped),
                [
                    "samples_p20260103",
                    "samples_p20260104",
                    "samples_p20260105",
                    "samples_p20260106"
                ]
            );
            let path: Path = "/x".parse().expect("path");
            assert!(
                store
                    .range(&key, &path, i64::MIN, i64::MAX)
                    .await
                    .expect("range")
                    .is_empty()
            );

            // One runner at a time: while another session holds the lock, maintenance
            // skips.
            let mut holder = pool.acquire().await.expect("conn");
            let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(crate::maintenance::LOCK_KEY)
                .fetch_one(&mut *holder)
                .await
                .expect("lock");
            assert!(held);
            let skipped = store
                .maintain(t0 + 16 * day, &Retention::default())
                .await
                .expect("maintain");
            assert!(skipped.skipped && skipped.created.is_empty(), "{skipped:?}");
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(crate::maintenance::LOCK_KEY)
                .execute(&mut *holder)
                .await
                .expect("unlock");
            drop(holder);
            let ran = store
                .maintain(t0 + 16 * day, &Retention::default())
                .await
                .expect("maintain");
            assert!(!ran.skipped && !ran.created.is_empty(), "{ran:?}");
            pool.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn two_stores_share_one_database() {
        // Two collectors (here: two stores, two id caches) during a handoff.
        with_db(|db| async move {
            let a = crate::open(&db.url, true).await.expect("open a");
            let b = crate::open(&db.url, false).await.expect("open b");
            let s = Sample {
                device: DeviceKey::new("leaf1").expect("key"),
                path: "/x".parse::<model::Path>().expect("path").into(),
                ts: crate::OLDEST_SAMPLE_TS,
                value: Value::Bool(true),
            };
            a.write_samples(std::slice::from_ref(&s))
                .await
                .expect("write a");
            let report = b.write_samples(&[s]).await.expect("write b");
            assert_eq!(
                report,
                WriteReport {
                    written: 0,
                    duplicates: 1,
                    ..WriteReport::default()
                }
            );
        })
        .await;
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_at_once_with_its_reason() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let started = std::time::Instant::now();
        let err = crate::open("postgres://postgres@127.0.0.1:1/postgres", true)
            .await
            .expect_err("nothing listens on port 1");
        assert!(matches!(err, Error::Connect(_)), "{err:?}");
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(
            started.elapsed() < ACQUIRE_TIMEOUT,
            "no retrying until the pool timeout"
        );
    }
}
