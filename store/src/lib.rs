//! Durable storage of devices, series and samples.
//!
//! Owns the `Store` trait (the port every role talks to) and its two adapters: PostgreSQL
//! (production) and SQLite (bundled, single-node mode), both through sqlx, with the
//! migrations in `migrations/{postgres,sqlite}`. Imports `model` only from netpulse; must
//! not import the bus, the collector or the web crates.

use std::sync::Arc;

use async_trait::async_trait;
use model::{DeviceEvent, DeviceKey, DeviceState, Path, Sample, TimestampNs, Value};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is neither `postgres://`/`postgresql://` nor `sqlite:`.
    #[error("unsupported database URL {0:?}: expected postgres://... or sqlite:...")]
    UnsupportedUrl(String),
    /// The database could not be reached or refused the connection.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// The database schema is newer than this binary understands, or migrating failed.
    #[error("database schema: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored row could not be read back into the model (corrupt or foreign data).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
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

/// Outcome of one `write_samples` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Samples newly stored.
    pub written: u64,
    /// Samples already present for the same (series, ts), ignored.
    pub duplicates: u64,
}

/// The storage port. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Inserts devices or updates their address; other devices are left alone.
    async fn upsert_devices(&self, devices: &[DeviceInfo]) -> Result<()>;

    /// Records a state change: updates the device's current state and appends the event.
    /// Creates the device (with an empty address) if it is unknown.
    async fn record_event(&self, event: &DeviceEvent) -> Result<()>;

    /// Writes a batch in one transaction. Idempotent on (device, path, ts): a sample
    /// already stored is counted as a duplicate, not written twice. Unknown devices are
    /// created.
    async fn write_samples(&self, samples: &[Sample]) -> Result<WriteReport>;

    /// All devices, ordered by name.
    async fn devices(&self) -> Result<Vec<DeviceSummary>>;

    /// One device, or `None` if unknown.
    async fn device(&self, name: &DeviceKey) -> Result<Option<DeviceSummary>>;

    /// The series of a device with their newest values, ordered by path.
    async fn series(&self, device: &DeviceKey) -> Result<Vec<SeriesSummary>>;

    /// Points of one series with `from <= ts <= to`, oldest first.
    async fn range(
        &self,
        device: &DeviceKey,
        path: &Path,
        from: TimestampNs,
        to: TimestampNs,
    ) -> Result<Vec<Point>>;

    /// Cheap round trip proving the database answers (readiness).
    async fn ping(&self) -> Result<()>;
}

/// Opens the store named by `url` (`postgres://...`, `postgresql://...` or `sqlite:...`).
/// With `migrate`, pending migrations are applied first; in every case a schema newer
/// than this binary is refused with [`Error::Migrate`].
pub async fn open(url: &str, migrate: bool) -> Result<Arc<dyn Store>> {
    let _ = (url, migrate);
    todo!("implemented by the store adapters")
}
