//! Keeping the time-series tables in shape, run by one process at a time: time partitions
//! ahead of the data, hourly rollups and compression of sealed hours, and retention per
//! resolution (PostgreSQL; SQLite deletes expired raw rows).
//!
//! On PostgreSQL four tables are partitioned by time ([`FAMILIES`]): raw `samples` and
//! their compressed `sample_blocks` by UTC day, 1-minute `rollups_1m` by day, 1-hour
//! `rollups_1h` by month (`<table>_pYYYYMMDD`, `<table>_pYYYYMM`), each with a default
//! partition for anything outside the periods prepared (old backfill, a migrated
//! database). Maintenance creates the sample partitions of the days around now, moving
//! rows of such a day out of the default partition first, creates the others as the
//! hourly pass reaches them, and drops whole partitions once their period is older than
//! the retention of their resolution (no `DELETE` of expired rows, except the few in
//! default partitions). A PostgreSQL advisory lock elects the runner: a second process
//! asking at the same time is told it was skipped.

use std::time::Duration;

use model::TimestampNs;

/// Nanoseconds per UTC day.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// One hour, the span of a compressed block and of a 1-minute rollup row.
pub const HOUR_NS: i64 = crate::rollup::HOUR_NS;

/// The advisory lock key maintenance holds while it runs (PostgreSQL): "netpulse" in
/// ASCII, read as a number.
pub const LOCK_KEY: i64 = 0x6e65_7470_756c_7365;

/// Most hours one maintenance run seals (a long-stopped maintenance catches up over
/// several runs instead of holding the lock for hours).
pub const MAX_HOURS_PER_RUN: i64 = 48;

/// What maintenance keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long raw samples (and their compressed blocks) are kept.
    pub raw: Duration,
    /// How long 1-minute rollups are kept.
    pub minutes: Duration,
    /// How long 1-hour rollups are kept.
    pub hours: Duration,
    /// Days prepared ahead of now (besides today and yesterday).
    pub days_ahead: u32,
    /// Hours older than this are sealed: rolled up into 1-minute and 1-hour aggregates and
    /// their numeric samples packed into compressed blocks, one per series and hour
    /// (PostgreSQL; see `store::block` and `store::rollup`). `None`: never compressed;
    /// hours are still rolled up once [`DEFAULT_SEAL_AFTER`] old.
    pub compress_after: Option<Duration>,
}

/// The age at which hours are rolled up when compression is off.
pub const DEFAULT_SEAL_AFTER: Duration = Duration::from_secs(2 * 3600);

impl Default for Retention {
    /// Raw samples 7 days, 1-minute rollups 90 days, 1-hour rollups 2 years (730 days),
    /// partitions prepared 2 days ahead, hours sealed and compressed after 2 hours.
    fn default() -> Self {
        Self {
            raw: Duration::from_secs(7 * 86_400),
            minutes: Duration::from_secs(90 * 86_400),
            hours: Duration::from_secs(730 * 86_400),
            days_ahead: 2,
            compress_after: Some(DEFAULT_SEAL_AFTER),
        }
    }
}

impl Retention {
    /// The end (exclusive) of the hours that may be sealed at `now`.
    pub fn seal_before(&self, now: TimestampNs) -> TimestampNs {
        let after = self.compress_after.unwrap_or(DEFAULT_SEAL_AFTER);
        let after = i64::try_from(after.as_nanos()).unwrap_or(i64::MAX);
        now.saturating_sub(after).div_euclid(HOUR_NS) * HOUR_NS
    }

    /// The oldest raw sample kept at `now`.
    pub fn cutoff(&self, now: TimestampNs) -> TimestampNs {
        age_cutoff(now, self.raw)
    }

    /// The oldest data of `family` kept at `now`.
    pub fn cutoff_of(&self, family: &Family, now: TimestampNs) -> TimestampNs {
        age_cutoff(
            now,
            match family.resolution {
                Resolution::Raw => self.raw,
                Resolution::Minute => self.minutes,
                Resolution::Hour => self.hours,
            },
        )
    }
}

fn age_cutoff(now: TimestampNs, keep: Duration) -> TimestampNs {
    now.saturating_sub(i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX))
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
    /// Expired rows deleted one by one (SQLite; PostgreSQL's default partitions).
    pub deleted: u64,
    /// Hours sealed: rolled up (and compressed, unless compression is off).
    pub compressed_hours: u64,
    /// Samples packed into blocks (and removed from the raw table).
    pub compressed_samples: u64,
    /// 1-minute aggregates written.
    pub rolled_up_minutes: u64,
    /// 1-hour aggregates written.
    pub rolled_up_hours: u64,
}

/// Which data a partitioned table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Samples as received (and their compressed blocks).
    Raw,
    /// 1-minute rollups.
    Minute,
    /// 1-hour rollups.
    Hour,
}

/// How a partitioned table is cut in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// UTC days: `<table>_pYYYYMMDD`.
    Day,
    /// UTC months: `<table>_pYYYYMM`.
    Month,
}

/// A table partitioned by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The partitioned (parent) table.
    pub table: &'static str,
    /// Its partition key, a `timestamptz` column.
    pub key: &'static str,
    /// How its partitions are cut.
    pub period: Period,
    /// Whose retention applies.
    pub resolution: Resolution,
}

/// Raw samples, by day.
pub const SAMPLES: Family = Family {
    table: "samples",
    key: "ts",
    period: Period::Day,
    resolution: Resolution::Raw,
};
/// Compressed blocks of raw samples, by day of the block's hour.
pub const BLOCKS: Family = Family {
    table: "sample_blocks",
    key: "first_ts",
    period: Period::Day,
    resolution: Resolution::Raw,
};
/// 1-minute rollups, one row per series and hour, by day.
pub const MINUTES: Family = Family {
    table: "rollups_1m",
    key: "hour",
    period: Period::Day,
    resolution: Resolution::Minute,
};
/// 1-hour rollups, one row per series and day, by month.
pub const HOURS: Family = Family {
    table: "rollups_1h",
    key: "day",
    period: Period::Month,
    resolution: Resolution::Hour,
};
/// Every partitioned table.
pub const FAMILIES: [Family; 4] = [SAMPLES, BLOCKS, MINUTES, HOURS];

/// The UTC day (days since the epoch) holding `ts`.
pub fn day_of(ts: TimestampNs) -> i64 {
    ts.div_euclid(DAY_NS)
}

/// Midnight UTC starting `day`.
fn midnight(day: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::<chrono::Utc>::from_timestamp(day.checked_mul(86_400)?, 0)
}

impl Family {
    /// The period (days or months since 1970-01) holding `ts`.
    pub fn period_of(&self, ts: TimestampNs) -> i64 {
        use chrono::Datelike as _;
        let day = day_of(ts);
        match self.period {
            Period::Day => day,
            Period::Month => midnight(day).map_or(0, |t| {
                i64::from(t.year() - 1970) * 12 + i64::from(t.month0())
            }),
        }
    }

    /// The start of period `index`, ns since the epoch.
    pub fn start(&self, index: i64) -> TimestampNs {
        match self.period {
            Period::Day => index.saturating_mul(DAY_NS),
            Period::Month => {
                let (year, month0) = (1970 + index.div_euclid(12), index.rem_euclid(12));
                i32::try_from(year)
                    .ok()
                    .and_then(|y| chrono::NaiveDate::from_ymd_opt(y, month0 as u32 + 1, 1))
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .and_then(|t| t.and_utc().timestamp_nanos_opt())
                    .unwrap_or(if index < 0 { i64::MIN } else { i64::MAX })
            }
        }
    }

    /// The partition of period `index`.
    pub fn partition_name(&self, index: i64) -> String {
        let format = match self.period {
            Period::Day => "%Y%m%d",
            Period::Month => "%Y%m",
        };
        let date = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(self.start(index))
            .format(format)
            .to_string();
        format!("{}_p{date}", self.table)
    }

    /// The period of partition `name`, if it is one of this table's.
    pub fn partition_index(&self, name: &str) -> Option<i64> {
        let date = name.strip_prefix(self.table)?.strip_prefix("_p")?;
        let (len, date) = match self.period {
            Period::Day => (8, date.to_owned()),
            Period::Month => (6, format!("{date}01")),
        };
        if name.len() != self.table.len() + 2 + len || !date.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let date = chrono::NaiveDate::parse_from_str(&date, "%Y%m%d").ok()?;
        let ts = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt()?;
        Some(self.period_of(ts))
    }

    /// Of the partitions `existing` (of any table), this table's entirely older than its
    /// retention's cutoff at `now`.
    pub fn expired<'a>(
        &self,
        existing: &'a [String],
        now: TimestampNs,
        retention: &Retention,
    ) -> Vec<&'a str> {
        let cutoff = retention.cutoff_of(self, now);
        existing
            .iter()
            .filter(|name| {
                self.partition_index(name)
                    .is_some_and(|index| self.start(index + 1) <= cutoff)
            })
            .map(String::as_str)
            .collect()
    }
}

/// How long after its key a row of `family` holds data: 0 for a sample, an hour for a
/// block or a row of 1-minute rollups, a day for a row of 1-hour rollups.
pub fn span_of(family: &Family) -> i64 {
    match (family.table, family.resolution) {
        ("samples", _) => 0,
        (_, Resolution::Raw | Resolution::Minute) => HOUR_NS,
        (_, Resolution::Hour) => DAY_NS,
    }
}

/// The days whose raw sample partitions should exist at `now`: yesterday through
/// `days_ahead` after today, but none whose data would already be expired.
pub fn days_wanted(now: TimestampNs, retention: &Retention) -> Vec<i64> {
    let today = day_of(now);
    let oldest = day_of(retention.cutoff(now));
    (today - 1..=today + i64::from(retention.days_ahead))
        .filter(|d| *d >= oldest)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T12:00:00Z.
    const NOON: TimestampNs = 1_767_268_800_000_000_000;

    #[test]
    fn partition_names_round_trip_through_periods() {
        let day = day_of(NOON);
        assert_eq!(SAMPLES.partition_name(day), "samples_p20260101");
        assert_eq!(SAMPLES.partition_index("samples_p20260101"), Some(day));
        assert_eq!(BLOCKS.partition_index("samples_p20260101"), None);
        assert_eq!(SAMPLES.partition_index("samples_default"), None);
        assert_eq!(SAMPLES.partition_index("samples_p2026"), None);
        assert_eq!(SAMPLES.partition_index("samples_p2026010"), None);
        assert_eq!(day_of(-1), -1, "before the epoch floors");
        let month = HOURS.period_of(NOON);
        assert_eq!(month, 56 * 12);
        assert_eq!(HOURS.partition_name(month), "rollups_1h_p202601");
        assert_eq!(HOURS.partition_index("rollups_1h_p202601"), Some(month));
        assert_eq!(HOURS.partition_index("rollups_1h_p20260101"), None);
        assert_eq!(HOURS.start(month), NOON - 12 * HOUR_NS);
        assert_eq!(HOURS.start(month + 1), NOON - 12 * HOUR_NS + 31 * DAY_NS);
        assert_eq!(HOURS.period_of(HOURS.start(month + 1) - 1), month);
        assert_eq!(MINUTES.partition_name(day), "rollups_1m_p20260101");
    }

    #[test]
    fn the_days_around_now_are_wanted_and_old_ones_expire_per_resolution() {
        let r = Retention::default();
        let today = day_of(NOON);
        assert_eq!(
            days_wanted(NOON, &r),
            vec![today - 1, today, today + 1, today + 2]
        );
        let existing: Vec<String> = (today - 100..=today)
            .flat_map(|d| [SAMPLES.partition_name(d), MINUTES.partition_name(d)])
            .chain((0..30).map(|m| HOURS.partition_name(HOURS.period_of(NOON) - m)))
            .collect();
        // Cutoff is 7 days before noon: day today-7 still holds unexpired afternoon data.
        let gone = SAMPLES.expired(&existing, NOON, &r);
        assert_eq!(gone.len(), 93);
        assert_eq!(
            gone.last().copied(),
            Some(&*SAMPLES.partition_name(today - 8))
        );
        let gone = MINUTES.expired(&existing, NOON, &r);
        assert_eq!(gone.len(), 10);
        assert_eq!(
            gone.last().copied(),
            Some(&*MINUTES.partition_name(today - 91))
        );
        // 730 days back from 2026-01-01 is 2024-01-02: December 2023 and older go.
        let gone = HOURS.expired(&existing, NOON, &r);
        assert_eq!(gone.first().copied(), Some("rollups_1h_p202312"));
        assert_eq!(gone.len(), 5);
        let short = Retention {
            raw: Duration::from_secs(3600),
            days_ahead: 0,
            ..Retention::default()
        };
        assert_eq!(
            days_wanted(NOON, &short),
            vec![today],
            "yesterday is all expired"
        );
    }

    #[test]
    fn hours_are_sealed_after_the_compression_age_or_two_hours() {
        let r = Retention::default();
        assert_eq!(
            r.seal_before(NOON + 59 * 60 * 1_000_000_000),
            NOON - 2 * HOUR_NS
        );
        let off = Retention {
            compress_after: None,
            ..r
        };
        assert_eq!(off.seal_before(NOON), NOON - 2 * HOUR_NS);
    }
}
