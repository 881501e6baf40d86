//! The SQLite adapter: the bundled store of single-node mode.
//!
//! Timestamps are INTEGER nanoseconds, exactly as in the model. The database runs in WAL mode
//! (readers never wait for the writer) and write transactions start with `BEGIN IMMEDIATE`,
//! so two writers queue on the busy timeout instead of failing on a lock upgrade.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use model::{DeviceEvent, DeviceKey, Path, Sample, TimestampNs};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::cache::{IdCache, Known};
use crate::cli::{self, CliChange, CliOutput, CliSnapshot, Plan, SnapshotOutcome};
use crate::codec::{self, Batch, Kind, SeriesKey};
use crate::maintenance::{self, span_of};
use crate::schema::{self, Applied};
use crate::{
    Claim, DeviceInfo, DeviceSummary, Error, Fence, HealthReport, MaintenanceReport,
    MigrationReport, Point, Result, Retention, SeriesSummary, Store, WriteReport,
};

/// The migrations in `migrations/sqlite`, embedded at compile time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections of a file database: one writer at a time, the others read concurrently.
const MAX_CONNECTIONS: u32 = 4;

/// Opens a pool on the database named by `url`, creating the file and its directory.
///
/// An in-memory database (`sqlite::memory:`) lives as long as its connections, so its pool
/// keeps exactly one, forever.
pub(crate) async fn connect(url: &str) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(Error::Connect)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    let pool = if is_in_memory(url) {
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        if let Some(dir) = options
            .get_filename()
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
        {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| Error::CreateDir {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
    };
    pool.connect_with(options).await.map_err(Error::Connect)
}

/// Whether `url` names an in-memory database, read the way sqlx reads it (whose options do
/// not tell, and whose `to_url_lossy` panics on in-memory options).
fn is_in_memory(url: &str) -> bool {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

/// Applies pending migrations after refusing a newer schema.
pub(crate) async fn migrate(pool: &SqlitePool) -> Result<MigrationReport> {
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
            "SQLite schema migrated"
        );
    }
    Ok(report)
}

/// The rows of sqlx's migration table; none when it does not exist yet.
async fn applied(pool: &SqlitePool) -> Result<Vec<Applied>> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master \
                        WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
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

/// The store over a SQLite pool.
#[derive(Debug)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    ids: IdCache,
}

impl SqliteStore {
    /// Opens and migrates (or checks) the schema; see [`crate::open`].
    pub(crate) async fn open(url: &str, migrate: bool) -> Result<Self> {
        let pool = connect(url).await?;
        if migrate {
            self::migrate(&pool).await?;
        } else {
            schema::check(&MIGRATOR, &applied(&pool).await?, true)?;
        }
        Ok(Self {
            pool,
            ids: IdCache::default(),
        })
    }
}

/// The id of a device, creating it if unknown.
async fn device_id(conn: &mut SqliteConnection, name: &DeviceKey) -> Result<i64> {
    sqlx::query("INSERT INTO devices (name) VALUES (?1) ON CONFLICT (name) DO NOTHING")
        .bind(name.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_scalar("SELECT id FROM devices WHERE name = ?1")
        .bind(name.as_str())
        .fetch_one(&mut *conn)
        .await?)
}

/// Resolves the device and series ids of a batch's series, creating missing rows.
/// `known` holds what the cache knew, one entry per series.
async fn resolve_ids(
    conn: &mut SqliteConnection,
    series: &[SeriesKey<'_>],
    known: &[Known],
) -> Result<(Vec<i64>, Vec<i64>)> {
    let mut device_ids = Vec::with_capacity(series.len());
    let mut series_ids = Vec::with_capacity(series.len());
    let mut created: std::collections::HashMap<&DeviceKey, i64> = Default::default();
    for (key, known) in series.iter().zip(known) {
        let device = match known.device.or_else(|| created.get(key.device).copied()) {
            Some(id) => id,
            None => {
                let id = device_id(conn, key.device).await?;
                created.insert(key.device, id);
                id
            }
        };
        let series_id = match known.series {
            Some(id) => id,
            None => {
                sqlx::query(
                    "INSERT INTO series (device_id, path, kind) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (device_id, path) DO NOTHING",
                )
                .bind(device)
                .bind(key.path.as_str())
                .bind(key.kind.as_str())
                .execute(&mut *conn)
                .await?;
                sqlx::query_scalar("SELECT id FROM series WHERE device_id = ?1 AND path = ?2")
                    .bind(device)
                    .bind(key.path.as_str())
                    .fetch_one(&mut *conn)
                    .await?
            }
        };
        device_ids.push(device);
        series_ids.push(series_id);
    }
    Ok((device_ids, series_ids))
}

fn device_summary(row: &SqliteRow) -> Result<DeviceSummary> {
    let name: String = row.try_get("name")?;
    let state: String = row.try_get("state")?;
    Ok(DeviceSummary {
        name: DeviceKey::new(name).map_err(|e| Error::Corrupt(e.to_string()))?,
        address: row.try_get("address")?,
        state: codec::state(&state)?,
        last_error: row.try_get("last_error")?,
        state_since: row.try_get("state_since")?,
        last_sample: row.try_get("last_sample")?,
        series: row.try_get("series")?,
        health: codec::health(row.try_get("health")?)?,
        health_at: row.try_get("health_at")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_devices(&self, devices: &[DeviceInfo]) -> Result<()> {
        if devices.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for device in devices {
            sqlx::query(
                "INSERT INTO devices (name, address) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET address = excluded.address \
                 WHERE address IS NOT excluded.address",
            )
            .bind(device.name.as_str())
            .bind(device.address.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_event(&self, event: &DeviceEvent) -> Result<()> {
        let error = event.error.as_deref().map(codec::text);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let device_id = device_id(&mut tx, &event.device).await?;
        // An event older than the current state (late delivery) is kept in the history but
        // does not change the current state; repeating the current state keeps its start.
        sqlx::query(
            "UPDATE devices SET state = ?2, last_error = ?3, \
               state_since = CASE WHEN state = ?2 AND state_since IS NOT NULL \
                                  THEN state_since ELSE ?4 END \
             WHERE id = ?1 AND (state_since IS NULL OR state_since <= ?4)",
        )
        .bind(device_id)
        .bind(event.state.as_str())
        .bind(error.as_deref())
        .bind(event.ts)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO device_events (device_id, ts, state, error) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(device_id)
        .bind(event.ts)
        .bind(event.state.as_str())
        .bind(error.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim(&self, device: &DeviceKey, owner: &str, epoch: u64) -> Result<Claim> {
        let wanted = codec::epoch_to_db(epoch)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let granted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO devices (name, epoch, owner) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET epoch = excluded.epoch, owner = excluded.owner \
             WHERE devices.epoch <= excluded.epoch \
             RETURNING epoch",
        )
        .bind(device.as_str())
        .bind(wanted)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let (current, holder): (i64, Option<String>) =
            sqlx::query_as("SELECT epoch, owner FROM devices WHERE name = ?1")
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
        let mut batch = match Batch::admit(samples, |ns| ns) {
            Ok(batch) => batch,
            Err(nothing_to_write) => return Ok(nothing_to_write),
        };
        let known = self.ids.lookup(&batch.series);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let (device_ids, series_ids) = resolve_ids(&mut tx, &batch.series, &known).await?;
        let admitted = batch.admitted();
        let fenced_ids = codec::fenced_ids(&batch, &device_ids, fence)?;
        let mut rows = batch.take_rows(&device_ids, &series_ids);
        // Fencing (the IMMEDIATE transaction already excludes other writers and claims):
        // drop the rows of devices whose epoch has grown past the batch's.
        let mut current: Vec<(i64, i64)> = Vec::with_capacity(fenced_ids.len());
        for (id, _) in &fenced_ids {
            let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM devices WHERE id = ?1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            current.push((*id, epoch));
        }
        let stale = codec::stale_devices(&fenced_ids, &current);
        let fenced = rows.drop_devices(&stale);

        // One prepared statement, cached by the connection, run per row: SQLite is in-process,
        // so a round trip costs a function call rather than a network hop.
        let mut written = 0;
        for row in &rows.rows {
            written += sqlx::query(
                "INSERT INTO samples (series_id, ts, value, value_text) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (series_id, ts) DO NOTHING",
            )
            .bind(row.series_id)
            .bind(row.ts)
            .bind(row.value)
            .bind(row.text.as_deref())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        for row in rows.newest_per_series() {
            sqlx::query(
                "UPDATE series SET last_ts = ?2, last_value = ?3, last_value_text = ?4 \
                 WHERE id = ?1 AND (last_ts IS NULL OR last_ts < ?2)",
            )
            .bind(row.series_id)
            .bind(row.ts)
            .bind(row.value)
            .bind(row.text.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        for (device_id, ts) in rows.newest_per_device() {
            sqlx::query(
                "UPDATE devices SET last_sample = ?2 \
                 WHERE id = ?1 AND (last_sample IS NULL OR last_sample < ?2)",
            )
            .bind(device_id)
            .bind(ts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;

        self.ids
            .remember_resolved(&batch.series, &known, &device_ids, &series_ids);
        Ok(batch.report(admitted, written, fenced, &device_ids, &stale))
    }

    async fn record_health_batch(&self, reports: &[HealthReport], at: TimestampNs) -> Result<()> {
        let rows = codec::health_rows(reports);
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (name, health) in &rows {
            sqlx::query("INSERT INTO devices (name) VALUES (?1) ON CONFLICT (name) DO NOTHING")
                .bind(*name)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE devices SET health = ?2, health_at = ?3 \
                 WHERE name = ?1 AND (health_at IS NULL OR health_at <= ?3)",
            )
            .bind(*name)
            .bind(health.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn devices(&self) -> Result<Vec<DeviceSummary>> {
        let rows = sqlx::query(
            "SELECT d.name, d.address, d.state, d.last_error, d.state_since, d.last_sample, \
                    d.health, d.health_at, \
                    COALESCE(c.n, 0) AS series \
             FROM devices d \
             LEFT JOIN (SELECT device_id, count(*) AS n FROM series GROUP BY device_id) c \
               ON c.device_id = d.id \
             ORDER BY d.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_summary).collect()
    }

    async fn device(&self, name: &DeviceKey) -> Result<Option<DeviceSummary>> {
        let row = sqlx::query(
            "SELECT d.name, d.address, d.state, d.last_error, d.state_since, d.last_sample, \
                    d.health, d.health_at, \
                    (SELECT count(*) FROM series s WHERE s.device_id = d.id) AS series \
             FROM devices d WHERE d.name = ?1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_summary).transpose()
    }

    async fn series(&self, device: &DeviceKey) -> Result<Vec<SeriesSummary>> {
        let rows: Vec<(String, String, i64, Option<f64>, Option<String>)> = sqlx::query_as(
            "SELECT s.path, s.kind, s.last_ts, s.last_value, s.last_value_text \
             FROM series s JOIN devices d ON d.id = s.device_id \
             WHERE d.name = ?1 AND s.last_ts IS NOT NULL \
             ORDER BY s.path",
        )
        .bind(device.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(path, kind, last_ts, value, text)| {
                Ok(SeriesSummary {
                    path: codec::path(&path)?,
                    last_ts,
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
            Some((id, kind, _)) => self.points(id, kind, from, to).await,
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
        let Some((id, kind, coverage)) = self.series_of(device, path).await? else {
            return Ok(stepper.finish());
        };
        for (source, start, end) in rollup::plan(from, to, step, coverage) {
            let Some(rollup::Table { name, key, width }) = source.table() else {
                for p in self.points(id, kind, start, end - 1).await? {
                    stepper.point(p.ts, &p.value);
                }
                continue;
            };
            let rows: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT data FROM {name} WHERE series_id = ?1 AND {key} >= ?2 AND {key} < ?3 \
                 ORDER BY {key}"
            )))
            .bind(id)
            .bind(start.div_euclid(width) * width)
            .bind(end)
            .fetch_all(&self.pool)
            .await?;
            let aggregates = rollup::span(&rows, start, end)
                .map_err(|e| Error::Corrupt(format!("{name} row of series {id}: {e}")))?;
            aggregates.iter().for_each(|a| stepper.aggregate(a));
        }
        Ok(stepper.finish())
    }

    async fn top_rates(&self, query: &crate::TopRates) -> Result<Vec<crate::SeriesRate>> {
        use futures::TryStreamExt as _;
        crate::rate::check(query)?;
        // The leaf is matched on the path string (the path ends with `/<leaf>`, or the leaf
        // element has keys: `/<leaf>[`); `Ranking` confirms on the parsed path. One
        // statement per case, so that a device's query always uses the (device_id, path)
        // index.
        let leaf = query.leaf.as_deref();
        let series: Vec<(i64, String, String, String)> = match &query.device {
            Some(device) => {
                sqlx::query_as(
                    "SELECT s.id, d.name, s.path, s.kind \
                     FROM series s JOIN devices d ON d.id = s.device_id \
                     WHERE d.name = ?1 AND s.kind IN ('int', 'uint', 'float') \
                       AND (?2 IS NULL \
                            OR substr(s.path, -(length(?2) + 1)) = ('/' || ?2) \
                            OR instr(s.path, '/' || ?2 || '[') > 0)",
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
                       AND (?1 IS NULL \
                            OR substr(s.path, -(length(?1) + 1)) = ('/' || ?1) \
                            OR instr(s.path, '/' || ?1 || '[') > 0)",
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
        // The ids as one JSON array parameter (SQLite has no arrays). Streamed: memory holds
        // one count per series, not the window's samples; each series is read on its
        // primary key.
        let ids = format!(
            "[{}]",
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        );
        let mut rows = sqlx::query_as::<_, (i64, i64, Option<f64>, Option<String>)>(
            "SELECT series_id, ts, value, value_text FROM samples \
             WHERE series_id IN (SELECT value FROM json_each(?1)) AND ts >= ?2 AND ts <= ?3 \
             ORDER BY series_id, ts",
        )
        .bind(ids)
        .bind(query.from)
        .bind(query.to)
        .fetch(&self.pool);
        while let Some((id, ts, value, text)) = rows.try_next().await? {
            ranking.sample(id, ts, value, text)?;
        }
        ranking.finish()
    }

    async fn record_cli_output(&self, output: &CliOutput) -> Result<Option<CliChange>> {
        cli::check_output(output)?;
        let current = CliOutput {
            output: codec::text(&output.output),
            ..output.clone()
        };
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let device_id = device_id(&mut tx, &current.device).await?;
        let previous: Option<(i64, String, bool)> = sqlx::query_as(
            "SELECT ts, output, truncated FROM cli_outputs WHERE device_id = ?1 AND command = ?2",
        )
        .bind(device_id)
        .bind(current.command.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let previous = previous.map(|(ts, output, truncated)| CliOutput {
            device: current.device.clone(),
            command: current.command.clone(),
            ts,
            output,
            truncated,
            track_changes: true,
        });
        let change = match cli::plan(previous.as_ref(), &current) {
            Plan::Ignore => None,
            Plan::Touch => {
                sqlx::query("UPDATE cli_outputs SET ts = ?3 WHERE device_id = ?1 AND command = ?2")
                    .bind(device_id)
                    .bind(current.command.as_str())
                    .bind(current.ts)
                    .execute(&mut *tx)
                    .await?;
                None
            }
            Plan::Replace(change) => {
                sqlx::query(
                    "INSERT INTO cli_outputs (device_id, command, ts, output, truncated) \
                     VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (device_id, command) DO UPDATE SET ts = excluded.ts, \
                       output = excluded.output, truncated = excluded.truncated",
                )
                .bind(device_id)
                .bind(current.command.as_str())
                .bind(current.ts)
                .bind(current.output.as_str())
                .bind(current.truncated)
                .execute(&mut *tx)
                .await?;
                if let Some(c) = &change {
                    sqlx::query(
                        "INSERT INTO cli_changes \
                           (device_id, command, ts, previous_ts, diff, added, removed) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .bind(device_id)
                    .bind(c.command.as_str())
                    .bind(c.ts)
                    .bind(c.previous_ts)
                    .bind(c.diff.as_str())
                    .bind(i64::from(c.added))
                    .bind(i64::from(c.removed))
                    .execute(&mut *tx)
                    .await?;
                }
                change
            }
        };
        tx.commit().await?;
        Ok(change)
    }

    async fn cli_output(&self, device: &DeviceKey, command: &str) -> Result<Option<CliOutput>> {
        let row: Option<(i64, String, bool)> = sqlx::query_as(
            "SELECT o.ts, o.output, o.truncated \
             FROM cli_outputs o JOIN devices d ON d.id = o.device_id \
             WHERE d.name = ?1 AND o.command = ?2",
        )
        .bind(device.as_str())
        .bind(command)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(ts, output, truncated)| CliOutput {
            device: device.clone(),
            command: command.to_owned(),
            ts,
            output,
            truncated,
            track_changes: true,
        }))
    }

    async fn cli_changes(
        &self,
        device: &DeviceKey,
        since: TimestampNs,
        limit: usize,
    ) -> Result<Vec<CliChange>> {
        cli::check_limit(limit)?;
        let rows: Vec<(String, i64, i64, String, i64, i64)> = sqlx::query_as(
            "SELECT c.command, c.ts, c.previous_ts, c.diff, c.added, c.removed \
             FROM cli_changes c JOIN devices d ON d.id = c.device_id \
             WHERE d.name = ?1 AND c.ts >= ?2 \
             ORDER BY c.ts DESC, c.id DESC LIMIT ?3",
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
                    ts,
                    previous_ts,
                    diff,
                    added: cli::stored_count(added)?,
                    removed: cli::stored_count(removed)?,
                })
            })
            .collect()
    }

    async fn record_cli_snapshot(&self, snapshot: &CliSnapshot) -> Result<SnapshotOutcome> {
        let rows = cli::check_snapshot(snapshot)?;
        // One writer at a time: the latest read here is the latest when this commits.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let device_id = device_id(&mut tx, &snapshot.device).await?;
        let latest: Option<(i64, i64, bool)> = sqlx::query_as(
            "SELECT id, last_seen, template = ?3 AND truncated = ?4 AND rows_json = ?5 \
             FROM cli_snapshots WHERE device_id = ?1 AND command = ?2 \
             ORDER BY ts DESC, id DESC LIMIT 1",
        )
        .bind(device_id)
        .bind(snapshot.command.as_str())
        .bind(snapshot.template.as_str())
        .bind(snapshot.truncated)
        .bind(rows.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = cli::plan_snapshot(
            latest.map(|(_, last_seen, same)| (last_seen, same)),
            snapshot.ts,
        );
        match (outcome, latest) {
            (SnapshotOutcome::Late, _) => return Ok(outcome),
            (SnapshotOutcome::Unchanged, Some((id, ..))) => {
                sqlx::query("UPDATE cli_snapshots SET last_seen = ?2 WHERE id = ?1")
                    .bind(id)
                    .bind(snapshot.ts)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {
                sqlx::query(
                    "INSERT INTO cli_snapshots \
                       (device_id, command, template, ts, last_seen, row_count, truncated, rows_json) \
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)",
                )
                .bind(device_id)
                .bind(snapshot.command.as_str())
                .bind(snapshot.template.as_str())
                .bind(snapshot.ts)
                .bind(i64::try_from(snapshot.rows.len()).unwrap_or(i64::MAX))
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
            "SELECT s.command, s.template, s.ts, s.last_seen, s.truncated, s.rows_json \
             FROM cli_snapshots s JOIN devices d ON d.id = s.device_id \
             WHERE d.name = ?1 AND s.command = ?2 ORDER BY s.ts DESC, s.id DESC LIMIT 1",
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
        let rows: Vec<SnapshotColumns> = sqlx::query_as(
            "SELECT s.command, s.template, s.ts, s.last_seen, s.truncated, s.rows_json \
             FROM cli_snapshots s JOIN devices d ON d.id = s.device_id \
             WHERE d.name = ?1 AND (?2 IS NULL OR s.command = ?2) AND s.last_seen >= ?3 \
             ORDER BY s.ts DESC, s.id DESC LIMIT ?4",
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
        // No partitions here: expired rows are deleted. SQLite serializes writers, so two
        // processes running this at once seal an hour once (each hour is one write
        // transaction that re-reads the progress) and repeat cheap DELETEs. Every table
        // is keyed by (series, time): `series_id IN (SELECT id FROM series)` makes each
        // statement a range read per series rather than a scan of the whole table.
        let mut report = MaintenanceReport::default();
        self.seal(now, retention, &mut report).await?;
        // A row holds what starts at its key and lasts `span`: it expires once all of that
        // is older than the cutoff.
        for family in [
            maintenance::SAMPLES,
            maintenance::MINUTES,
            maintenance::HOURS,
        ] {
            let (table, key) = (family.table, family.key);
            let bound = retention.cutoff_of(&family, now) - (span_of(&family) - 1).max(0);
            report.deleted += sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE series_id IN (SELECT id FROM series) AND {key} < ?1"
            )))
            .bind(bound)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        // CLI changes follow the raw samples' retention (see `Store::maintain`).
        report.deleted += sqlx::query("DELETE FROM cli_changes WHERE ts < ?1")
            .bind(retention.cutoff(now))
            .execute(&self.pool)
            .await?
            .rows_affected();
        // So do snapshots, but the latest of each command stays (as its latest output does).
        report.deleted += sqlx::query(
            "DELETE FROM cli_snapshots AS s WHERE s.last_seen < ?1 AND EXISTS \
               (SELECT 1 FROM cli_snapshots n WHERE n.device_id = s.device_id \
                  AND n.command = s.command AND (n.ts > s.ts OR (n.ts = s.ts AND n.id > s.id)))",
        )
        .bind(retention.cutoff(now))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(report)
    }
}

/// A stored snapshot: command, template, first and last seen, truncated, rows.
type SnapshotColumns = (String, String, i64, i64, bool, String);

fn snapshot_of(device: &DeviceKey, columns: SnapshotColumns) -> Result<CliSnapshot> {
    let (command, template, ts, last_seen, truncated, rows) = columns;
    Ok(CliSnapshot {
        device: device.clone(),
        command,
        template,
        ts,
        last_seen,
        rows: cli::stored_rows(&rows)?,
        truncated,
    })
}

impl SqliteStore {
    /// The id and kind of the series of `device` at `path`, and which hours have
    /// rollups, if the series exists.
    async fn series_of(
        &self,
        device: &DeviceKey,
        path: &Path,
    ) -> Result<Option<(i64, Kind, Option<crate::rollup::Coverage>)>> {
        let row: Option<(i64, String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT s.id, s.kind, p.rolled_up_from, p.done_until \
             FROM series s JOIN devices d ON d.id = s.device_id \
             LEFT JOIN seal_progress p ON true \
             WHERE d.name = ?1 AND s.path = ?2",
        )
        .bind(device.as_str())
        .bind(path.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id, kind, from, until)| {
            let coverage = match (from, until) {
                (Some(from), Some(until)) if from < until => {
                    Some(crate::rollup::Coverage { from, until })
                }
                _ => None,
            };
            Ok((id, Kind::parse(&kind)?, coverage))
        })
        .transpose()
    }

    /// The points of series `id` with `from <= ts <= to`, oldest first.
    async fn points(
        &self,
        id: i64,
        kind: Kind,
        from: TimestampNs,
        to: TimestampNs,
    ) -> Result<Vec<Point>> {
        if from > to {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, Option<f64>, Option<String>)> = sqlx::query_as(
            "SELECT ts, value, value_text FROM samples \
             WHERE series_id = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(ts, value, text)| {
                Ok(Point {
                    ts,
                    value: codec::decode(kind, value, text)?,
                })
            })
            .collect()
    }

    /// Seals whole hours before [`Retention::seal_before`] into rollups, as PostgreSQL
    /// does (see `postgres::seal`) but without compressed blocks: raw samples stay.
    async fn seal(
        &self,
        now: TimestampNs,
        retention: &Retention,
        report: &mut MaintenanceReport,
    ) -> Result<()> {
        use crate::rollup::{self, HOUR_NS};
        let before = retention.seal_before(now);
        let oldest_kept = retention.cutoff(now).div_euclid(HOUR_NS) * HOUR_NS;
        for _ in 0..maintenance::MAX_HOURS_PER_RUN {
            let mut tx = self.pool.begin().await?;
            let progress: Option<(i64, i64)> =
                sqlx::query_as("SELECT rolled_up_from, done_until FROM seal_progress")
                    .fetch_optional(&mut *tx)
                    .await?;
            let hour = progress
                .map_or(before - maintenance::MAX_HOURS_PER_RUN * HOUR_NS, |p| p.1)
                .max(oldest_kept);
            if hour + HOUR_NS > before {
                break;
            }
            let rolled_up_from = progress.map_or(hour, |p| p.0);
            let rows: Vec<(i64, i64, f64)> = sqlx::query_as(
                "SELECT series_id, ts, value FROM samples \
                 WHERE series_id IN (SELECT id FROM series) AND ts >= ?1 AND ts < ?2 \
                   AND value IS NOT NULL AND value_text IS NULL \
                 ORDER BY series_id, ts",
            )
            .bind(hour)
            .bind(hour + HOUR_NS)
            .fetch_all(&mut *tx)
            .await?;
            for series in rows.chunk_by(|a, b| a.0 == b.0) {
                let id = series[0].0;
                let points: Vec<(i64, f64)> = series.iter().map(|&(_, ts, v)| (ts, v)).collect();
                let (row, n) = rollup::hour_row(&points)
                    .map_err(|e| Error::Corrupt(format!("rollup of series {id}: {e}")))?;
                report.rolled_up_minutes += n;
                sqlx::query(
                    "INSERT OR REPLACE INTO rollups_1m (series_id, hour, data) VALUES (?1, ?2, ?3)",
                )
                .bind(id)
                .bind(hour)
                .bind(row)
                .execute(&mut *tx)
                .await?;
            }
            if (hour + HOUR_NS).rem_euclid(maintenance::DAY_NS) == 0 {
                let day = hour + HOUR_NS - maintenance::DAY_NS;
                let minutes: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT series_id, data FROM rollups_1m \
                     WHERE series_id IN (SELECT id FROM series) AND hour >= ?1 AND hour < ?2 \
                     ORDER BY series_id, hour",
                )
                .bind(day)
                .bind(day + maintenance::DAY_NS)
                .fetch_all(&mut *tx)
                .await?;
                let corrupt = |(id, e): (i64, crate::block::BlockError)| {
                    Error::Corrupt(format!("rollup of series {id}: {e}"))
                };
                let mut day_rollup = rollup::DayRollup::default();
                for (id, data) in &minutes {
                    day_rollup.push(*id, data).map_err(corrupt)?;
                }
                let day_rollup = day_rollup.finish().map_err(corrupt)?;
                for (id, row) in day_rollup.ids.iter().zip(&day_rollup.rows) {
                    sqlx::query("INSERT OR REPLACE INTO rollups_1h (series_id, day, data) VALUES (?1, ?2, ?3)")
                        .bind(id)
                        .bind(day)
                        .bind(row)
                        .execute(&mut *tx)
                        .await?;
                }
                report.rolled_up_hours += day_rollup.hours;
            }
            sqlx::query(
                "INSERT INTO seal_progress (singleton, rolled_up_from, done_until) \
                 VALUES (1, ?1, ?2) \
                 ON CONFLICT (singleton) DO UPDATE SET rolled_up_from = excluded.rolled_up_from, \
                 done_until = excluded.done_until",
            )
            .bind(rolled_up_from)
            .bind(hour + HOUR_NS)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            report.compressed_hours += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use model::{DeviceState, Value};

    use super::*;
    use crate::conformance::for_each_case;

    fn file_url(dir: &tempfile::TempDir) -> String {
        format!("sqlite:{}", dir.path().join("netpulse.db").display())
    }

    macro_rules! file_cases {
        ($($case:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $case() {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = crate::open(&file_url(&dir), true).await.expect("open");
                crate::conformance::$case(store).await;
            }
        )*};
    }

    macro_rules! memory_cases {
        ($($case:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $case() {
                let store = crate::open("sqlite::memory:", true).await.expect("open");
                crate::conformance::$case(store).await;
            }
        )*};
    }

    /// The conformance suite on a database file.
    mod file {
        use super::*;
        for_each_case!(file_cases);
    }

    /// The conformance suite on an in-memory database.
    mod memory {
        use super::*;
        for_each_case!(memory_cases);
    }

    #[test]
    fn in_memory_urls_are_recognised() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "sqlite:x?cache=shared&mode=memory",
        ] {
            assert!(is_in_memory(url), "{url}");
        }
        for url in [
            "sqlite:data/netpulse.db",
            "sqlite:///var/lib/netpulse/db?mode=rwc",
        ] {
            assert!(!is_in_memory(url), "{url}");
        }
    }

    #[tokio::test]
    async fn a_file_in_a_missing_directory_is_created_and_persists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not").join("yet").join("netpulse.db");
        let url = format!("sqlite:{}", file.display());
        let store = crate::open(&url, true).await.expect("open");
        let s = Sample {
            device: DeviceKey::new("leaf1").expect("key"),
            path: "/x".parse::<model::Path>().expect("path").into(),
            ts: crate::OLDEST_SAMPLE_TS + 5,
            value: Value::Int(1),
        };
        store.write_samples(&[s]).await.expect("write");
        drop(store);
        assert!(file.is_file());

        // Nanoseconds survive (no microsecond truncation here).
        let store = crate::open(&url, false)
            .await
            .expect("reopen without migrating");
        let device = store
            .device(&s_key())
            .await
            .expect("device")
            .expect("persisted");
        assert_eq!(device.last_sample, Some(crate::OLDEST_SAMPLE_TS + 5));
    }

    fn s_key() -> DeviceKey {
        DeviceKey::new("leaf1").expect("key")
    }

    #[tokio::test]
    async fn migrate_reports_what_it_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = file_url(&dir);
        let latest = schema::latest(&MIGRATOR);
        let first = crate::migrate(&url).await.expect("migrate");
        assert_eq!(
            first,
            MigrationReport {
                applied: u64::try_from(MIGRATOR.iter().count()).expect("count"),
                version: latest
            }
        );
        let again = crate::migrate(&url).await.expect("migrate again");
        assert_eq!(
            again,
            MigrationReport {
                applied: 0,
                version: latest
            }
        );
        crate::open(&url, false)
            .await
            .expect("open a current schema");
    }

    /// Version 2 rebuilds `series` (SQLite cannot alter a CHECK constraint): data written
    /// under version 1 must survive, and the foreign keys must still cascade.
    #[tokio::test]
    async fn version_2_keeps_the_data_of_version_1() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = file_url(&dir);
        let v1 = dir.path().join("v1");
        std::fs::create_dir(&v1).expect("mkdir");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../migrations/sqlite/0001_initial.sql"
            ),
            v1.join("0001_initial.sql"),
        )
        .expect("copy");
        let pool = connect(&url).await.expect("connect");
        sqlx::migrate::Migrator::new(v1.as_path())
            .await
            .expect("v1 migrator")
            .run(&pool)
            .await
            .expect("migrate to v1");
        for sql in [
            "INSERT INTO devices (id, name) VALUES (1, 'leaf1')",
            "INSERT INTO series (id, device_id, path, kind, last_ts, last_value) \
             VALUES (7, 1, '/c', 'uint', 2, 20.0)",
            "INSERT INTO samples (series_id, ts, value) VALUES (7, 1, 10.0), (7, 2, 20.0)",
        ] {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        pool.close().await;

        let store = crate::open(&url, true).await.expect("migrate to v2");
        let path: Path = "/c".parse().expect("path");
        let points = store
            .range(&s_key(), &path, i64::MIN, i64::MAX)
            .await
            .expect("range");
        let values: Vec<Value> = points.into_iter().map(|p| p.value).collect();
        assert_eq!(values, vec![Value::Uint(10), Value::Uint(20)]);
        let decimal = Value::Decimal {
            digits: 5,
            precision: 1,
        };
        store
            .write_samples(&[Sample {
                device: s_key(),
                path: "/d".parse::<model::Path>().expect("path").into(),
                ts: crate::OLDEST_SAMPLE_TS + 3,
                value: decimal.clone(),
            }])
            .await
            .expect("a new kind is accepted");

        let pool = connect(&url).await.expect("connect");
        let broken: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(&pool)
                .await
                .expect("foreign key check");
        assert!(broken.is_empty(), "{broken:?}");
        sqlx::query("DELETE FROM devices")
            .execute(&pool)
            .await
            .expect("delete");
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM samples")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(left, 0, "deleting a device cascades to its samples");
    }

    #[tokio::test]
    async fn an_unmigrated_database_is_refused_without_migrate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = crate::open(&file_url(&dir), false)
            .await
            .expect_err("empty database");
        assert!(
            matches!(err, Error::SchemaOutdated { found: None, required } if required == schema::latest(&MIGRATOR)),
            "{err}"
        );
        assert!(err.to_string().contains("run `netpulse migrate`"), "{err}");
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = file_url(&dir);
        crate::migrate(&url).await.expect("migrate");
        let future = schema::latest(&MIGRATOR) + 1;
        let pool = connect(&url).await.expect("connect");
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?1, 'from a newer netpulse', TRUE, X'00', 0)",
        )
        .bind(future)
        .execute(&pool)
        .await
        .expect("fake a newer migration");
        pool.close().await;

        let expected = format!(
            "database schema version {future} is newer than this netpulse understands ({}); \
             upgrade netpulse",
            schema::latest(&MIGRATOR)
        );
        for migrate in [true, false] {
            let err = crate::open(&url, migrate).await.expect_err("newer schema");
            assert!(matches!(err, Error::SchemaTooNew { .. }), "{err:?}");
            assert_eq!(err.to_string(), expected);
        }
        let err = crate::migrate(&url).await.expect_err("newer schema");
        assert_eq!(err.to_string(), expected);
    }

    #[tokio::test]
    async fn record_event_appends_to_the_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = file_url(&dir);
        let store = crate::open(&url, true).await.expect("open");
        for (i, state) in [
            DeviceState::Connecting,
            DeviceState::Synced,
            DeviceState::Synced,
        ]
        .into_iter()
        .enumerate()
        {
            let event = DeviceEvent {
                device: s_key(),
                state,
                error: None,
                ts: i64::try_from(i).expect("small"),
            };
            store.record_event(&event).await.expect("event");
        }
        let pool = connect(&url).await.expect("connect");
        let history: Vec<(i64, String)> =
            sqlx::query_as("SELECT ts, state FROM device_events ORDER BY ts")
                .fetch_all(&pool)
                .await
                .expect("history");
        assert_eq!(
            history,
            [
                (0, "connecting".to_owned()),
                (1, "synced".to_owned()),
                (2, "synced".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn stores_share_one_file() {
        // Two processes (here: two stores) on one file see each other's writes.
        let dir = tempfile::tempdir().expect("tempdir");
        let url = file_url(&dir);
        let a: Arc<dyn Store> = crate::open(&url, true).await.expect("open a");
        let b: Arc<dyn Store> = crate::open(&url, false).await.expect("open b");
        let s = Sample {
            device: s_key(),
            path: "/x".parse::<model::Path>().expect("path").into(),
            ts: crate::OLDEST_SAMPLE_TS + 1,
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
    }
}
