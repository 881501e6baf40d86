//! Keeping the sample table in shape: time partitions ahead of the data (PostgreSQL) and
//! raw-sample retention, run by one process at a time.
//!
//! On PostgreSQL `samples` is partitioned by day (`samples_pYYYYMMDD`, UTC days) with a
//! default partition for anything outside the days prepared (old backfill, a migrated
//! database). Maintenance creates the partitions of the days around now, moving rows of
//! such a day out of the default partition first, and drops whole partitions once their
//! day is older than the raw retention (no `DELETE` of expired rows, except the few in
//! the default partition). A PostgreSQL advisory lock elects the runner: a second
//! process asking at the same time is told it was skipped. SQLite has no partitions:
//! expired rows are deleted.

use std::time::Duration;

use model::TimestampNs;

/// Nanoseconds per UTC day.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The advisory lock key maintenance holds while it runs (PostgreSQL): "netpulse" in
/// ASCII, read as a number.
pub const LOCK_KEY: i64 = 0x6e65_7470_756c_7365;

/// What maintenance keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long raw samples are kept.
    pub raw: Duration,
    /// Days prepared ahead of now (besides today and yesterday).
    pub days_ahead: u32,
    /// Numeric samples older than this are packed into compressed blocks, one per series
    /// and hour (PostgreSQL; see `store::block`). `None`: never.
    pub compress_after: Option<Duration>,
}

impl Default for Retention {
    /// Raw samples 7 days, partitions prepared 2 days ahead, compressed after 2 hours.
    fn default() -> Self {
        Self {
            raw: Duration::from_secs(7 * 86_400),
            days_ahead: 2,
            compress_after: Some(Duration::from_secs(2 * 3600)),
        }
    }
}

/// One hour, the span of a compressed block.
pub const HOUR_NS: i64 = 3_600 * 1_000_000_000;

/// Most hours one maintenance run compresses (a long-stopped maintenance catches up over
/// several runs instead of holding the lock for hours).
pub const MAX_HOURS_PER_RUN: i64 = 48;

impl Retention {
    /// The end (exclusive) of the hours that may be compressed at `now`, if any.
    pub fn compress_before(&self, now: TimestampNs) -> Option<TimestampNs> {
        let after = i64::try_from(self.compress_after?.as_nanos()).unwrap_or(i64::MAX);
        Some(now.saturating_sub(after).div_euclid(HOUR_NS) * HOUR_NS)
    }

    /// The oldest timestamp kept at `now`.
    pub fn cutoff(&self, now: TimestampNs) -> TimestampNs {
        now.saturating_sub(i64::try_from(self.raw.as_nanos()).unwrap_or(i64::MAX))
    }
}

/// What one maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Another process held the maintenance lock: nothing was done.
    pub skipped: bool,
    /// Partitions created (names).
    pub created: Vec<String>,
    /// Partitions dropped, whole (names).
    pub dropped: Vec<String>,
    /// Rows moved out of the default partition into a new day's partition.
    pub moved: u64,
    /// Expired rows deleted one by one (SQLite; PostgreSQL's default partition).
    pub deleted: u64,
    /// Hours whose numeric samples were packed into blocks.
    pub compressed_hours: u64,
    /// Samples packed into blocks (and removed from the raw table).
    pub compressed_samples: u64,
}

/// The UTC day (days since the epoch) holding `ts`.
pub fn day_of(ts: TimestampNs) -> i64 {
    ts.div_euclid(DAY_NS)
}

/// The partition holding day `day`: `samples_pYYYYMMDD`.
pub fn partition_name(day: i64) -> String {
    let date = chrono::DateTime::<chrono::Utc>::from_timestamp(day * 86_400, 0)
        .map(|t| t.format("%Y%m%d").to_string())
        .unwrap_or_else(|| "00000000".to_owned());
    format!("samples_p{date}")
}

/// The day of partition `name`, if it is one of ours.
pub fn partition_day(name: &str) -> Option<i64> {
    let date = name.strip_prefix("samples_p")?;
    let date = chrono::NaiveDate::parse_from_str(date, "%Y%m%d").ok()?;
    let midnight = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    Some(midnight.div_euclid(86_400))
}

/// The days whose partitions should exist at `now`: yesterday through `days_ahead` after
/// today, but none whose data would already be expired.
pub fn days_wanted(now: TimestampNs, retention: &Retention) -> Vec<i64> {
    let today = day_of(now);
    let oldest = day_of(retention.cutoff(now));
    (today - 1..=today + i64::from(retention.days_ahead))
        .filter(|d| *d >= oldest)
        .collect()
}

/// Of the partitions `existing`, those entirely older than the cutoff at `now`.
pub fn expired<'a>(
    existing: &'a [String],
    now: TimestampNs,
    retention: &Retention,
) -> Vec<&'a str> {
    let cutoff = retention.cutoff(now);
    existing
        .iter()
        .filter(|name| partition_day(name).is_some_and(|day| (day + 1) * DAY_NS <= cutoff))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T12:00:00Z.
    const NOON: TimestampNs = 1_767_268_800_000_000_000;

    #[test]
    fn partition_names_round_trip_through_days() {
        let day = day_of(NOON);
        assert_eq!(partition_name(day), "samples_p20260101");
        assert_eq!(partition_day("samples_p20260101"), Some(day));
        assert_eq!(partition_day("samples_default"), None);
        assert_eq!(partition_day("samples_p2026"), None);
        assert_eq!(day_of(-1), -1, "before the epoch floors");
    }

    #[test]
    fn the_days_around_now_are_wanted_and_old_ones_expire() {
        let r = Retention::default();
        let today = day_of(NOON);
        assert_eq!(
            days_wanted(NOON, &r),
            vec![today - 1, today, today + 1, today + 2]
        );
        let existing: Vec<String> = (today - 10..=today).map(partition_name).collect();
        // Cutoff is 7 days before noon: day today-7 still holds unexpired afternoon data.
        let gone = expired(&existing, NOON, &r);
        assert_eq!(
            gone,
            existing[..3].iter().map(String::as_str).collect::<Vec<_>>()
        );
        let short = Retention {
            raw: Duration::from_secs(3600),
            days_ahead: 0,
            compress_after: None,
        };
        assert_eq!(
            days_wanted(NOON, &short),
            vec![today],
            "yesterday is all expired"
        );
    }
}
