//! Durable storage of devices, series and samples.
//!
//! Owns the `Store` trait (the port every role talks to) and its two adapters: PostgreSQL
//! (production) and SQLite (bundled, single-node mode), both through sqlx, with the
//! migrations in `migrations/{postgres,sqlite}`. Imports `model` only from netpulse; must
//! not import the bus, the collector or the web crates.
//!
//! Storage rules both adapters follow (the `conformance` test suite holds them to it):
//!
//! - Timestamps: SQLite keeps the model's nanoseconds; PostgreSQL keeps microseconds
//!   (`timestamptz`), flooring on write, so there a sample's `ts` reads back floored to the
//!   microsecond and two samples of a series in one microsecond are one sample.
//! - Values: numbers (booleans as 0/1) are stored as `f64`, so integers beyond ±2^53 lose
//!   their low bits; text is stored as text, with NUL replaced by U+FFFD. A series keeps the
//!   kind of its first value, and whole numbers read back as that kind.
//! - Listings sort by bytes (device names, canonical path strings), as Rust sorts strings.
//! - CLI output: the latest output of each (device, command) and the changes between
//!   consecutive outputs as bounded unified diffs (see [`cli`]); changes expire with raw
//!   samples. Parsed outputs as structured snapshots (JSON rows), a new one kept only when
//!   it differs from the latest; they expire as changes do, except the latest.

pub mod block;
mod cache;
pub mod cli;
mod codec;
#[cfg(test)]
mod conformance;
pub mod maintenance;
mod postgres;
pub mod rate;
pub mod rollup;
mod schema;
mod sqlite;
pub mod step;

pub use cli::{CliChange, CliError, CliOutput, CliSnapshot, SnapshotOutcome, SnapshotRow};
pub use maintenance::{MaintenanceReport, Retention};
pub use rate::{RateError, SeriesRate, TopRates};
pub use step::{Bucket, Stats, StepError};

use std::sync::Arc;

use async_trait::async_trait;
use model::{DeviceEvent, DeviceKey, DeviceState, Path, Sample, TimestampNs, Value};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is neither `postgres://`/`postgresql://` nor `sqlite:` (shown
    /// without its credentials).
    #[error("unsupported database URL {0:?}: expected postgres://... or sqlite:...")]
    UnsupportedUrl(String),
    /// The database could not be reached or refused the connection.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// The directory meant to hold a SQLite file does not exist and could not be created.
    #[error("cannot create directory {path:?} for the SQLite database: {source}")]
    CreateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why it could not be created.
        #[source]
        source: std::io::Error,
    },
    /// The database holds migrations this binary does not know, newer than its own: a newer
    /// netpulse has migrated it. Old code must not write to a schema it does not understand.
    #[error(
        "database schema version {found} is newer than this netpulse understands ({supported}); \
         upgrade netpulse"
    )]
    SchemaTooNew {
        /// Newest migration version applied to the database.
        found: i64,
        /// Newest migration version this binary embeds.
        supported: i64,
    },
    /// Opened without migrating, and the database lacks migrations this binary needs.
    #[error(
        "database schema version {} is older than this netpulse needs ({required}); \
         run `netpulse migrate`",
        found.map_or_else(|| "none".to_owned(), |v| v.to_string())
    )]
    SchemaOutdated {
        /// Newest migration version applied to the database, `None` for an empty database.
        found: Option<i64>,
        /// Newest migration version this binary embeds.
        required: i64,
    },
    /// The applied migrations do not match this binary's (edited, missing or failed
    /// migrations), or migrating failed.
    #[error("database schema: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored row could not be read back into the model (corrupt or foreign data).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// This store implementation does not offer the operation (test doubles).
    #[error("this store does not support {0}")]
    Unsupported(&'static str),
    /// A step query that cannot be answered as asked.
    #[error("{0}")]
    Step(#[from] StepError),
    /// A rate query that cannot be answered as asked.
    #[error("{0}")]
    Rate(#[from] RateError),
    /// CLI output or a query about it that cannot be stored or answered as asked.
    #[error("{0}")]
    Cli(#[from] CliError),
    /// An epoch beyond what the database holds (2^63 - 1).
    #[error("epoch {0} is too large")]
    EpochTooLarge(u64),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a collector knows about a device before any data arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device name.
    pub name: DeviceKey,
    /// Address it is collected from (`host:port`).
    pub address: String,
}

/// A device as listed by the API and the UI.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSummary {
    /// Device name.
    pub name: DeviceKey,
    /// Address it is collected from.
    pub address: String,
    /// Last reported collection state.
    pub state: DeviceState,
    /// Last error in plain words, if the state came from one.
    pub last_error: Option<String>,
    /// When the state last changed.
    pub state_since: Option<TimestampNs>,
    /// Timestamp of the newest sample of any of its series.
    pub last_sample: Option<TimestampNs>,
    /// Number of series (paths) stored for it.
    pub series: i64,
    /// The newest health report a collector recorded for it (the collector's JSON: state,
    /// lastError, encoding, quirks, reconnects, per-subscription completeness), `None`
    /// until one is recorded.
    pub health: Option<serde_json::Value>,
    /// When the collector took that report.
    pub health_at: Option<TimestampNs>,
}

/// One device's health report, as a collector records it with
/// [`Store::record_health_batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// Device name.
    pub device: DeviceKey,
    /// The report: any JSON value; the store keeps it as it is.
    pub health: serde_json::Value,
}

impl HealthReport {
    /// The report of `device` holding `health` serialized to JSON.
    pub fn of(
        device: DeviceKey,
        health: &impl serde::Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            device,
            health: serde_json::to_value(health)?,
        })
    }
}

/// One series of a device with its newest value.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    /// Canonical path.
    pub path: Path,
    /// Timestamp of the newest sample.
    pub last_ts: TimestampNs,
    /// Newest value.
    pub last_value: Value,
}

/// One stored point of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Sample timestamp, ns since the epoch.
    pub ts: TimestampNs,
    /// Stored value.
    pub value: Value,
}

/// Oldest timestamp a sample may carry: 2000-01-01T00:00:00Z. Older ones come from
/// device clocks that were never set (1970) and would land in no useful chart.
pub const OLDEST_SAMPLE_TS: TimestampNs = 946_684_800_000_000_000;

/// How far ahead of the store's clock a sample's timestamp may be (device clock skew).
pub const MAX_SAMPLE_AHEAD: std::time::Duration = std::time::Duration::from_secs(3600);

/// Outcome of one `write_samples` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Samples newly stored.
    pub written: u64,
    /// Samples already present for the same (series, ts), ignored.
    pub duplicates: u64,
    /// Samples refused one by one (the rest of the batch is written): timestamps before
    /// [`OLDEST_SAMPLE_TS`] or more than [`MAX_SAMPLE_AHEAD`] ahead of the store's clock.
    pub rejected: u64,
    /// The first refusal of each device in the batch, in plain words, for logging once.
    pub rejections: Vec<Rejection>,
    /// Samples refused because their device's epoch has grown past the batch's (the
    /// writer no longer owns the device), see [`Store::write_fenced`].
    pub fenced: u64,
    /// The devices refused for that reason, each once.
    pub fenced_devices: Vec<DeviceKey>,
}

/// The ownership epoch a writer holds for each device it writes (see
/// [`Store::write_fenced`]). Devices not named are written without fencing.
pub type Fence = std::collections::HashMap<DeviceKey, u64>;

/// Outcome of [`Store::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Whether the claim took effect (its epoch was not older than the device's).
    pub granted: bool,
    /// The device's epoch afterwards.
    pub epoch: u64,
    /// The device's owner afterwards.
    pub owner: Option<String>,
}

/// Why a device's sample was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The device that sent it.
    pub device: DeviceKey,
    /// What is wrong with it, naming the path.
    pub reason: String,
}

impl WriteReport {
    /// The report of a batch of `total` admitted samples of which `written` were new.
    pub fn of(total: usize, written: u64) -> Self {
        let total = u64::try_from(total).unwrap_or(u64::MAX);
        Self {
            written,
            duplicates: total.saturating_sub(written),
            ..Self::default()
        }
    }
}

/// Now, ns since the epoch (0 if the clock is before 1970).
pub(crate) fn now_ns() -> TimestampNs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The storage port. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Inserts devices or updates their address; other devices are left alone.
    async fn upsert_devices(&self, devices: &[DeviceInfo]) -> Result<()>;

    /// Records a state change: updates the device's current state and appends the event.
    /// Creates the device (with an empty address) if it is unknown. An event older than the
    /// current state's start is only appended; repeating the current state keeps its start.
    async fn record_event(&self, event: &DeviceEvent) -> Result<()>;

    /// Writes a batch in one transaction. Idempotent on (device, path, ts): a sample
    /// already stored (or earlier in the same batch) is counted as a duplicate, not written
    /// twice. Unknown devices are created. Each series' last value moves only forward.
    /// Samples with implausible timestamps are refused one by one and reported in
    /// [`WriteReport::rejected`]; they never fail the batch.
    async fn write_samples(&self, samples: &[Sample]) -> Result<WriteReport>;

    /// [`Store::write_samples`], fenced: the samples of a device named in `fence` are
    /// written only while the device's epoch is not newer than the fence's; otherwise
    /// they are refused and counted in [`WriteReport::fenced`]. A fenced write and a
    /// [`Store::claim`] of the same device never interleave: the claim waits for the
    /// write's transaction or the write sees the claim.
    ///
    /// The default ignores nothing silently: it writes when `fence` is empty and fails
    /// with [`Error::Unsupported`] otherwise (test doubles); both adapters fence.
    async fn write_fenced(&self, samples: &[Sample], fence: &Fence) -> Result<WriteReport> {
        if fence.is_empty() {
            self.write_samples(samples).await
        } else {
            Err(Error::Unsupported("fenced writes"))
        }
    }

    /// Makes `owner` the writer of `device` from `epoch` on, if `epoch` is not older than
    /// the device's current epoch (epochs never go back; claiming the current epoch again
    /// is allowed, so a retried claim succeeds). Creates an unknown device. The default
    /// fails with [`Error::Unsupported`]; both adapters implement it.
    async fn claim(&self, device: &DeviceKey, owner: &str, epoch: u64) -> Result<Claim> {
        let _ = (device, owner, epoch);
        Err(Error::Unsupported("ownership claims"))
    }

    /// Records the health reports of several devices taken at `at`, in one transaction.
    /// Unknown devices are created (with an empty address and state `pending`), as
    /// [`Store::record_event`] and [`Store::write_samples`] do: a collector may report a
    /// device before the operator's registration reaches the store. A report replaces the
    /// stored one unless that one was taken later (a late writer never rolls health back);
    /// one taken at the same instant replaces it. Of two reports for one device in a batch
    /// the last wins.
    ///
    /// The default keeps nothing, for test doubles and wrappers that do not care about
    /// health; both adapters override it.
    async fn record_health_batch(&self, reports: &[HealthReport], at: TimestampNs) -> Result<()> {
        let _ = (reports, at);
        Ok(())
    }

    /// Records one device's health report taken at `at`; see [`Store::record_health_batch`].
    async fn record_health(
        &self,
        device: &DeviceKey,
        health: &serde_json::Value,
        at: TimestampNs,
    ) -> Result<()> {
        self.record_health_batch(
            &[HealthReport {
                device: device.clone(),
                health: health.clone(),
            }],
            at,
        )
        .await
    }

    /// All devices, ordered by name (byte order).
    async fn devices(&self) -> Result<Vec<DeviceSummary>>;

    /// One device, or `None` if unknown.
    async fn device(&self, name: &DeviceKey) -> Result<Option<DeviceSummary>>;

    /// The series of a device with their newest values, ordered by the canonical path
    /// string (byte order). Empty for an unknown device.
    async fn series(&self, device: &DeviceKey) -> Result<Vec<SeriesSummary>>;

    /// Points of one series with `from <= ts <= to`, oldest first. Empty for an unknown
    /// device or path.
    async fn range(
        &self,
        device: &DeviceKey,
        path: &Path,
        from: TimestampNs,
        to: TimestampNs,
    ) -> Result<Vec<Point>>;

    /// One series over `[from, to]` in steps of `step` ns from `from`: one bucket per
    /// step, gaps as gaps, with min/max/avg/last and the counter increase (see
    /// [`step`]). Refused with [`Error::Step`] for a non-positive step, `from > to` or
    /// more than [`step::MAX_BUCKETS`] buckets.
    ///
    /// The default computes from the raw points of the range (test doubles). Both
    /// adapters read sealed hours from their 1-minute and 1-hour rollups where `from` and
    /// `step` are multiples of an aggregate's width (see [`rollup::plan`]), with the same
    /// result up to float rounding of sums, except that samples written into an hour
    /// after it was sealed, and deletes inside sealed hours, are not in the aggregates.
    async fn range_step(
        &self,
        device: &DeviceKey,
        path: &Path,
        from: TimestampNs,
        to: TimestampNs,
        step: i64,
    ) -> Result<Vec<Bucket>> {
        step::count(from, to, step)?;
        let points = self.range(device, path, from, to).await?;
        Ok(step::buckets(&points, from, to, step)?)
    }

    /// The series that grew fastest over `[query.from, query.to]`, of one device or of
    /// every device, of one leaf or of every leaf: at most `query.limit`, by `per_second`
    /// descending, then device and canonical path by bytes. Counter semantics are the step
    /// buckets' (resets, deletes); which series have a rate is told in [`rate`]. Refused
    /// with [`Error::Rate`] for a limit of 0 or above [`rate::MAX_LIMIT`], `from >= to` or
    /// a leaf that is no element name.
    ///
    /// Reads the samples of the selected series within the window, streamed and counted
    /// as they arrive. The default fails with [`Error::Unsupported`] (test doubles); both
    /// adapters implement it.
    async fn top_rates(&self, query: &TopRates) -> Result<Vec<SeriesRate>> {
        rate::check(query)?;
        Err(Error::Unsupported("rate queries"))
    }

    /// Records the output of one run of a command on a device, in one transaction: reads
    /// the stored latest output of (device, command), stores this one as the latest and,
    /// when it differs from the previous one (see [`cli::diff`]: line endings and trailing
    /// whitespace are no difference), records and returns the change.
    ///
    /// - The first output of a command is stored and returns `None`.
    /// - An output equal to the latest only moves the latest's time (last seen); `None`.
    /// - An output older than the latest (late delivery) is ignored: `None`, nothing
    ///   stored. One of the same time is not older.
    ///
    /// Creates the device (with an empty address) if it is unknown. Refused with
    /// [`Error::Cli`] for an output above [`cli::MAX_OUTPUT_BYTES`] or an unstorable
    /// command. Times are stored as samples' are (microseconds on PostgreSQL): the change
    /// returned carries the stored times. The default fails with [`Error::Unsupported`]
    /// (test doubles); both adapters implement it.
    async fn record_cli_output(&self, output: &CliOutput) -> Result<Option<CliChange>> {
        cli::check_output(output)?;
        Err(Error::Unsupported("CLI output"))
    }

    /// The latest output of `command` on `device` (its `ts` is when it was last seen), or
    /// `None` if none was recorded. The default fails with [`Error::Unsupported`].
    async fn cli_output(&self, device: &DeviceKey, command: &str) -> Result<Option<CliOutput>> {
        let _ = (device, command);
        Err(Error::Unsupported("CLI output"))
    }

    /// The changes of every command of `device` seen at or after `since`, newest first
    /// (then the last recorded first), at most `limit`. Empty for an unknown device.
    /// Refused with [`Error::Cli`] for a limit of 0 or above [`cli::MAX_CHANGES_LIMIT`].
    /// The default fails with [`Error::Unsupported`].
    async fn cli_changes(
        &self,
        device: &DeviceKey,
        since: TimestampNs,
        limit: usize,
    ) -> Result<Vec<CliChange>> {
        let _ = (device, since);
        cli::check_limit(limit)?;
        Err(Error::Unsupported("CLI output"))
    }

    /// Records the table a template parsed from one output of a command, in one
    /// transaction with the comparison against the latest snapshot of (device, command):
    ///
    /// - the first of its command is stored ([`SnapshotOutcome::First`]);
    /// - one equal to the latest (same template, `truncated` and rows, compared as
    ///   canonical JSON, see [`cli::check_snapshot`]) only moves the latest's
    ///   `last_seen` to its `ts` ([`SnapshotOutcome::Unchanged`]);
    /// - one that differs is stored as the new latest ([`SnapshotOutcome::Changed`]);
    /// - one older than the latest's `last_seen` is ignored ([`SnapshotOutcome::Late`]).
    ///
    /// Concurrent recordings of one (device, command) are serialised, so equal snapshots
    /// racing make one row. Creates the device (with an empty address) if it is unknown.
    /// Refused with [`Error::Cli`] for a snapshot above [`cli::MAX_SNAPSHOT_ROWS`] or
    /// [`cli::MAX_SNAPSHOT_BYTES`], or an unstorable command or template name. The default
    /// fails with [`Error::Unsupported`] (test doubles); both adapters implement it.
    async fn record_cli_snapshot(&self, snapshot: &CliSnapshot) -> Result<SnapshotOutcome> {
        cli::check_snapshot(snapshot)?;
        Err(Error::Unsupported("CLI snapshots"))
    }

    /// The latest snapshot of `command` on `device` (`ts` when first seen, `last_seen`
    /// when last seen), or `None` if none was recorded. The default fails with
    /// [`Error::Unsupported`].
    async fn cli_snapshot(&self, device: &DeviceKey, command: &str) -> Result<Option<CliSnapshot>> {
        let _ = (device, command);
        Err(Error::Unsupported("CLI snapshots"))
    }

    /// The history of snapshots of `device`, of one `command` or of all, last seen at or
    /// after `since`: newest first (by first seen, then the last recorded first), at most
    /// `limit`. Consecutive snapshots of a command differ; the first is the latest. Empty
    /// for an unknown device. Refused with [`Error::Cli`] for a limit of 0 or above
    /// [`cli::MAX_SNAPSHOTS_LIMIT`]. The default fails with [`Error::Unsupported`].
    async fn cli_snapshots(
        &self,
        device: &DeviceKey,
        command: Option<&str>,
        since: TimestampNs,
        limit: usize,
    ) -> Result<Vec<CliSnapshot>> {
        let _ = (device, command, since);
        cli::check_snapshot_limit(limit)?;
        Err(Error::Unsupported("CLI snapshots"))
    }

    /// Prepares time partitions around `now`, seals old hours (rollups, compression) and
    /// drops data older than the retention of its resolution (see [`maintenance`]). CLI
    /// changes ([`Store::cli_changes`]) and snapshots ([`Store::cli_snapshots`]) follow
    /// the raw samples' retention ([`Retention::raw`]): changes older than
    /// [`Retention::cutoff`], and snapshots last seen before it, are deleted (counted in
    /// [`MaintenanceReport::deleted`]); the latest output and the latest snapshot of each
    /// command stay, as a series' last value does. On PostgreSQL one process runs it at a time: a
    /// second caller gets a report with `skipped` set. The default does nothing and says
    /// it skipped (test doubles).
    async fn maintain(&self, now: TimestampNs, retention: &Retention) -> Result<MaintenanceReport> {
        let _ = (now, retention);
        Ok(MaintenanceReport {
            skipped: true,
            ..MaintenanceReport::default()
        })
    }

    /// Cheap round trip proving the database answers (readiness).
    async fn ping(&self) -> Result<()>;
}

/// Outcome of [`migrate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations applied by this call (0 when the schema was already current).
    pub applied: u64,
    /// Schema version of the database afterwards: the newest migration applied.
    pub version: i64,
}

/// Opens the store named by `url` (`postgres://...`, `postgresql://...` or `sqlite:...`).
///
/// With `migrate`, pending migrations are applied first; without, a database lacking some
/// of this binary's migrations is refused with [`Error::SchemaOutdated`]. In every case a
/// schema newer than this binary is refused with [`Error::SchemaTooNew`].
///
/// A SQLite file is created if missing, with its directory; `sqlite::memory:` gives a
/// private in-memory database that lives as long as the returned store (handy in tests).
pub async fn open(url: &str, migrate: bool) -> Result<Arc<dyn Store>> {
    Ok(match Backend::of(url)? {
        Backend::Postgres => Arc::new(postgres::PgStore::open(url, migrate).await?),
        Backend::Sqlite => Arc::new(sqlite::SqliteStore::open(url, migrate).await?),
    })
}

/// Applies pending migrations to the database named by `url` (the `netpulse migrate`
/// subcommand). A schema newer than this binary is refused with [`Error::SchemaTooNew`].
pub async fn migrate(url: &str) -> Result<MigrationReport> {
    match Backend::of(url)? {
        Backend::Postgres => {
            let pool = postgres::connect(url).await?;
            let report = postgres::migrate(&pool).await;
            pool.close().await;
            report
        }
        Backend::Sqlite => {
            let pool = sqlite::connect(url).await?;
            let report = sqlite::migrate(&pool).await;
            pool.close().await;
            report
        }
    }
}

/// The database behind a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    fn of(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err(Error::UnsupportedUrl(redact(url)))
        }
    }
}

/// `url` without its credentials (`scheme://user:secret@host` -> `scheme://***@host`), fit
/// for an error message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_a_backend() {
        assert_eq!(Backend::of("postgres://h/db").ok(), Some(Backend::Postgres));
        assert_eq!(
            Backend::of("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of("sqlite:data/np.db").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::of("sqlite::memory:").ok(), Some(Backend::Sqlite));
        for bad in ["mysql://h/db", "data/np.db", ""] {
            assert!(matches!(Backend::of(bad), Err(Error::UnsupportedUrl(u)) if u == bad));
        }
    }

    #[test]
    fn refused_urls_do_not_show_credentials() {
        let err = Backend::of("postgress://np:s3cret@db:5432/np").expect_err("typo");
        assert_eq!(
            err.to_string(),
            "unsupported database URL \"postgress://***@db:5432/np\": \
             expected postgres://... or sqlite:..."
        );
    }

    #[tokio::test]
    async fn open_refuses_an_unsupported_url() {
        let err = open("redis://localhost", true)
            .await
            .expect_err("redis is no database");
        assert!(
            err.to_string().contains("unsupported database URL"),
            "{err}"
        );
    }

    #[test]
    fn schema_errors_read_as_instructions() {
        let newer = Error::SchemaTooNew {
            found: 7,
            supported: 3,
        };
        assert_eq!(
            newer.to_string(),
            "database schema version 7 is newer than this netpulse understands (3); \
             upgrade netpulse"
        );
        let older = Error::SchemaOutdated {
            found: None,
            required: 3,
        };
        assert_eq!(
            older.to_string(),
            "database schema version none is older than this netpulse needs (3); \
             run `netpulse migrate`"
        );
    }
}
