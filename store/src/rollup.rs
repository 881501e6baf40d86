//! Rollups: one series' numeric samples pre-aggregated per minute and per hour, so a
//! week-long chart reads a few hundred aggregates per series instead of every sample,
//! and history outlives the raw samples (7 days raw, 90 days of minutes, 2 years of hours
//! by default: [`crate::Retention`]).
//!
//! Pure: [`aggregate`] turns points into per-bucket [`Aggregate`]s, [`coarsen`] merges
//! fine buckets into coarser ones (hours from minutes), [`encode`] and [`decode`] pack a
//! run of aggregates into bytes. The step query ([`crate::step::Stepper`]) folds
//! aggregates and raw points alike, and gets from aggregates what the raw samples would
//! give: an aggregate keeps its first and last values besides min, max, sum and count, so
//! the counter's growth from one bucket to the next (resets and wraps included) is
//! computed at query time exactly as between two raw samples.
//!
//! What an aggregate cannot know: a delete between two samples (it breaks the counter
//! chain in raw data, see [`crate::step`]); rollups are built from numeric samples only.
//!
//! # Format, version 1
//!
//! ```text
//! u8      version (1)
//! u8      columns left out because they follow from others in every bucket:
//!         bit 0 min (= first), bit 1 max (= last), bit 2 increase (= last - first)
//! n x     for each column present, in this order: count, min, max, sum, first, last,
//!         increase: varint byte length, then a block (crate::block) of the aggregates'
//!         starts with that column's values
//! ```
//!
//! The blocks repeat the timestamps, which cost next to nothing (bucket starts are a
//! regular grid: zero-width residuals); in exchange each column gets the block codec's
//! choice of integer or XOR coding (counts and a counter's first/last are integers with
//! a steady slope, a gauge's sum is not). A counter that neither resets nor wraps within
//! a minute has min = first, max = last and increase = last - first: three of its seven
//! columns are left out (compared bit for bit, so decoding gives the same aggregates).

use model::TimestampNs;

use crate::block::{self, BlockError};

/// Nanoseconds per minute: the width of the fine rollup.
pub const MINUTE_NS: i64 = 60 * 1_000_000_000;
/// Nanoseconds per hour: the width of the coarse rollup.
pub const HOUR_NS: i64 = 60 * MINUTE_NS;

/// Format version written in the first byte.
pub const VERSION: u8 = 1;

/// The aggregates of one bucket of a series: the samples with `start <= ts < start +
/// width`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    /// Start of the bucket, a multiple of its width.
    pub start: TimestampNs,
    /// Samples in it (at least 1).
    pub count: u64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Sum of the values.
    pub sum: f64,
    /// Oldest value.
    pub first: f64,
    /// Newest value.
    pub last: f64,
    /// What a counter grew by between the bucket's own samples (not from the sample
    /// before the bucket: that is the query's to add, see the module documentation).
    pub increase: f64,
}

impl Aggregate {
    /// Adds the next bucket (later, within this one's coarser bucket).
    fn absorb(&mut self, next: &Self) {
        self.increase += crate::step::growth(self.last, next.first) + next.increase;
        self.count += next.count;
        self.min = self.min.min(next.min);
        self.max = self.max.max(next.max);
        self.sum += next.sum;
        self.last = next.last;
    }
}

/// The aggregates of `points` (sorted by time, numeric values) in buckets of `width` ns
/// aligned on multiples of it, oldest first; buckets without points are left out.
pub fn aggregate(points: &[(TimestampNs, f64)], width: i64) -> Vec<Aggregate> {
    let mut out: Vec<Aggregate> = Vec::new();
    for &(ts, v) in points {
        let start = ts.div_euclid(width) * width;
        match out.last_mut() {
            Some(a) if a.start == start => {
                a.increase += crate::step::growth(a.last, v);
                a.count += 1;
                a.min = a.min.min(v);
                a.max = a.max.max(v);
                a.sum += v;
                a.last = v;
            }
            _ => out.push(Aggregate {
                start,
                count: 1,
                min: v,
                max: v,
                sum: v,
                first: v,
                last: v,
                increase: 0.0,
            }),
        }
    }
    out
}

/// `fine` (oldest first) merged into buckets of `width` ns, a multiple of theirs.
pub fn coarsen(fine: &[Aggregate], width: i64) -> Vec<Aggregate> {
    let mut out: Vec<Aggregate> = Vec::new();
    for a in fine {
        let start = a.start.div_euclid(width) * width;
        match out.last_mut() {
            Some(c) if c.start == start => c.absorb(a),
            _ => out.push(Aggregate { start, ..*a }),
        }
    }
    out
}

/// The 1-minute row of one series' sealed hour: its points (sorted, numeric) rolled up
/// and packed; with the number of aggregates.
pub fn hour_row(points: &[(TimestampNs, f64)]) -> Result<(Vec<u8>, u64), BlockError> {
    let minutes = aggregate(points, MINUTE_NS);
    Ok((encode(&minutes)?, minutes.len() as u64))
}

/// Builds the 1-hour rows of one UTC day from its 1-minute rows, fed in (series, hour)
/// order.
#[derive(Debug, Default)]
pub struct DayRollup {
    current: Option<(i64, Vec<Aggregate>)>,
    /// Series with a 1-hour row, in the order fed.
    pub ids: Vec<i64>,
    /// Their 1-hour rows.
    pub rows: Vec<Vec<u8>>,
    /// Hourly aggregates in all rows.
    pub hours: u64,
}

impl DayRollup {
    /// The next 1-minute row; a corrupt one is an error naming its series.
    pub fn push(&mut self, id: i64, minutes: &[u8]) -> Result<(), (i64, BlockError)> {
        let minutes = decode(minutes).map_err(|e| (id, e))?;
        match &mut self.current {
            Some((current, all)) if *current == id => all.extend(minutes),
            _ => {
                let done = self.current.replace((id, minutes));
                self.close(done)?;
            }
        }
        Ok(())
    }

    /// The rows of every series fed.
    pub fn finish(mut self) -> Result<Self, (i64, BlockError)> {
        let done = self.current.take();
        self.close(done)?;
        Ok(self)
    }

    fn close(&mut self, done: Option<(i64, Vec<Aggregate>)>) -> Result<(), (i64, BlockError)> {
        if let Some((id, minutes)) = done {
            let hours = coarsen(&minutes, HOUR_NS);
            self.hours += hours.len() as u64;
            self.rows.push(encode(&hours).map_err(|e| (id, e))?);
            self.ids.push(id);
        }
        Ok(())
    }
}

/// Nanoseconds per UTC day.
const DAY_NS: i64 = 24 * HOUR_NS;

/// Which hours have rollups: 1-minute aggregates for every hour in `[from, until)` (both
/// multiples of an hour), 1-hour aggregates for every whole UTC day inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// First hour rolled up.
    pub from: TimestampNs,
    /// End of the last hour rolled up (exclusive).
    pub until: TimestampNs,
}

/// Where a part of a step query is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Raw samples (and compressed blocks).
    Raw,
    /// 1-minute aggregates.
    Minutes,
    /// 1-hour aggregates.
    Hours,
}

/// A rollup table as queries read it: a row per series holds the aggregates of the
/// `width` starting at its `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// Table name.
    pub name: &'static str,
    /// Its time column.
    pub key: &'static str,
    /// The span of one row, ns.
    pub width: i64,
}

impl Source {
    /// The table this source reads, `None` for raw samples.
    pub fn table(self) -> Option<Table> {
        match self {
            Self::Raw => None,
            Self::Minutes => Some(Table {
                name: "rollups_1m",
                key: "hour",
                width: HOUR_NS,
            }),
            Self::Hours => Some(Table {
                name: "rollups_1h",
                key: "day",
                width: DAY_NS,
            }),
        }
    }
}

/// The aggregates starting in `[start, end)` of one series' rows of a table, read in key
/// order from the first key at or before `start`.
pub fn span(
    rows: &[Vec<u8>],
    start: TimestampNs,
    end: TimestampNs,
) -> Result<Vec<Aggregate>, BlockError> {
    let mut out = Vec::new();
    for row in rows {
        out.extend(
            decode(row)?
                .into_iter()
                .filter(|a| a.start >= start && a.start < end),
        );
    }
    Ok(out)
}

/// How to read `[from, to]` (inclusive) in steps of `step` from `from`: consecutive
/// half-open spans `[start, end)` covering `[from, to + 1)`, each from the coarsest
/// source that answers it exactly. Aggregates serve only where `from` and `step` are
/// multiples of their width (an aggregate lands whole in one step) and only for buckets
/// ending by `to + 1`; everything else, and everything outside `coverage`, is raw.
pub fn plan(
    from: TimestampNs,
    to: TimestampNs,
    step: i64,
    coverage: Option<Coverage>,
) -> Vec<(Source, TimestampNs, TimestampNs)> {
    let end = to.saturating_add(1);
    let aligned = |width: i64| step % width == 0 && from.rem_euclid(width) == 0;
    let floor = |t: i64, width: i64| t.div_euclid(width) * width;
    let ceil = |t: i64, width: i64| floor(t.saturating_add(width - 1), width);
    let Some(cov) = coverage.filter(|_| aligned(MINUTE_NS)) else {
        return vec![(Source::Raw, from, end)];
    };
    let lo = from.max(cov.from);
    let hi = cov.until.min(floor(end, MINUTE_NS));
    if lo >= hi {
        return vec![(Source::Raw, from, end)];
    }
    let mut spans = vec![(Source::Raw, from, lo)];
    let (h_lo, h_hi) = (
        lo.max(ceil(cov.from, DAY_NS)),
        floor(hi, HOUR_NS).min(floor(cov.until, DAY_NS)),
    );
    if aligned(HOUR_NS) && h_lo < h_hi {
        spans.extend([
            (Source::Minutes, lo, h_lo),
            (Source::Hours, h_lo, h_hi),
            (Source::Minutes, h_hi, hi),
        ]);
    } else {
        spans.push((Source::Minutes, lo, hi));
    }
    spans.push((Source::Raw, hi, end));
    spans.retain(|(_, a, b)| a < b);
    spans
}

/// The columns of a rollup block, in their order.
const COLUMNS: usize = 7;

/// Column indexes of those that may be left out, and their bit in the flags byte.
const MIN: usize = 1;
const MAX: usize = 2;
const INCREASE: usize = 6;
const DERIVED: [(usize, u8); 3] = [(MIN, 1), (MAX, 2), (INCREASE, 4)];

/// Column `i` of an aggregate.
fn column(a: &Aggregate, i: usize) -> f64 {
    match i {
        0 => a.count as f64,
        MIN => a.min,
        MAX => a.max,
        3 => a.sum,
        4 => a.first,
        5 => a.last,
        _ => a.increase,
    }
}

/// What column `i` is when it is left out.
fn derived(a: &Aggregate, i: usize) -> f64 {
    match i {
        MIN => a.first,
        MAX => a.last,
        _ => a.last - a.first,
    }
}

/// Packs aggregates (oldest first, strictly increasing starts, at least one).
pub fn encode(aggregates: &[Aggregate]) -> Result<Vec<u8>, BlockError> {
    let mut omitted = 0u8;
    for (i, bit) in DERIVED {
        if aggregates
            .iter()
            .all(|a| column(a, i).to_bits() == derived(a, i).to_bits())
        {
            omitted |= bit;
        }
    }
    let mut out = vec![VERSION, omitted];
    for i in 0..COLUMNS {
        if DERIVED.iter().any(|&(c, bit)| c == i && omitted & bit != 0) {
            continue;
        }
        let values: Vec<(TimestampNs, f64)> =
            aggregates.iter().map(|a| (a.start, column(a, i))).collect();
        let bytes = block::encode(&values)?;
        block::push_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Unpacks what [`encode`] packed; corrupt or truncated bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<Vec<Aggregate>, BlockError> {
    let version = *bytes.first().ok_or(BlockError::Truncated)?;
    if version != VERSION {
        return Err(BlockError::UnknownVersion(version));
    }
    let omitted = *bytes.get(1).ok_or(BlockError::Truncated)?;
    if omitted & !7 != 0 {
        return Err(BlockError::Corrupt("unknown columns left out"));
    }
    let mut pos = 2;
    let mut columns: Vec<Option<Vec<(TimestampNs, f64)>>> = Vec::with_capacity(COLUMNS);
    for i in 0..COLUMNS {
        if DERIVED.iter().any(|&(c, bit)| c == i && omitted & bit != 0) {
            columns.push(None);
            continue;
        }
        let len = usize::try_from(block::read_varint(bytes, &mut pos)?)
            .map_err(|_| BlockError::Corrupt("column length beyond memory"))?;
        let end = pos.checked_add(len).ok_or(BlockError::Truncated)?;
        let column = bytes.get(pos..end).ok_or(BlockError::Truncated)?;
        columns.push(Some(block::decode(column)?));
        pos = end;
    }
    if pos != bytes.len() {
        return Err(BlockError::Corrupt("bytes after the last column"));
    }
    let counts = columns[0].as_deref().unwrap_or_default();
    if columns
        .iter()
        .flatten()
        .any(|c| c.len() != counts.len() || c.iter().zip(counts).any(|(a, b)| a.0 != b.0))
    {
        return Err(BlockError::Corrupt("columns of different buckets"));
    }
    let value = |c: usize, i: usize| columns[c].as_ref().map(|c| c[i].1);
    counts
        .iter()
        .enumerate()
        .map(|(i, &(start, count))| {
            if !(count >= 1.0 && count.fract() == 0.0 && count < 2f64.powi(53)) {
                return Err(BlockError::Corrupt("count is no positive integer"));
            }
            let mut a = Aggregate {
                start,
                count: count as u64,
                min: 0.0,
                max: 0.0,
                sum: value(3, i).unwrap_or_default(),
                first: value(4, i).unwrap_or_default(),
                last: value(5, i).unwrap_or_default(),
                increase: 0.0,
            };
            a.min = value(MIN, i).unwrap_or_else(|| derived(&a, MIN));
            a.max = value(MAX, i).unwrap_or_else(|| derived(&a, MAX));
            a.increase = value(INCREASE, i).unwrap_or_else(|| derived(&a, INCREASE));
            Ok(a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use model::Value;

    use super::*;
    use crate::Point;
    use crate::step::{Bucket, Stepper, buckets};

    const S: i64 = 1_000_000_000;
    /// 2026-01-01T00:00:00Z.
    const T0: TimestampNs = 1_767_225_600 * S;

    /// A counter sampled every 10 s with jitter, a reset, a wrap of a 32-bit counter and
    /// a gap, over `hours` hours.
    fn counter(hours: i64) -> Vec<(TimestampNs, f64)> {
        let mut v = 4_000_000_000.0f64;
        let mut out = Vec::new();
        for i in 0..hours * 360 {
            if (1000..1100).contains(&i) {
                continue; // a gap of ~17 minutes
            }
            v += 1_000.0 + (i % 7) as f64 * 13.0;
            if v >= 4_294_967_296.0 {
                v -= 4_294_967_296.0; // wrapped
            }
            if i == 2000 {
                v = 5.0; // device restarted
            }
            out.push((T0 + i * 10 * S + (i * 7919 % 3000) * 1_000_000, v));
        }
        out
    }

    fn close(a: &[Bucket], b: &[Bucket]) -> bool {
        let near = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
        a.len() == b.len()
            && a.iter().zip(b).all(|(a, b)| {
                a.start == b.start
                    && match (&a.stats, &b.stats) {
                        (None, None) => true,
                        (Some(x), Some(y)) => {
                            x.count == y.count
                                && x.min == y.min
                                && x.max == y.max
                                && x.last == y.last
                                && near(x.avg, y.avg)
                                && near(x.increase, y.increase)
                        }
                        _ => false,
                    }
            })
    }

    #[test]
    fn steps_from_rollups_equal_steps_from_raw_samples() {
        let points = counter(8);
        let raw: Vec<Point> = points
            .iter()
            .map(|&(ts, v)| Point {
                ts,
                value: Value::Float(v),
            })
            .collect();
        let minutes = aggregate(&points, MINUTE_NS);
        let hours = coarsen(&minutes, HOUR_NS);
        assert_eq!(hours.len(), 8);
        assert_eq!(
            minutes.iter().map(|a| a.count).sum::<u64>(),
            points.len() as u64
        );
        let to = T0 + 8 * HOUR_NS - 1;
        for (step, aggregates) in [
            (MINUTE_NS, &minutes),
            (5 * MINUTE_NS, &minutes),
            (HOUR_NS, &minutes),
            (HOUR_NS, &hours),
            (2 * HOUR_NS, &hours),
        ] {
            let expected = buckets(&raw, T0, to, step).expect("valid");
            let mut stepper = Stepper::new(T0, to, step).expect("valid");
            for a in aggregates.iter() {
                stepper.aggregate(a);
            }
            let got = stepper.finish();
            assert!(close(&got, &expected), "step {step}: {got:?}\n{expected:?}");
        }
        // Mixed: the first three hours from hourly rollups, the next two from minutes, the
        // rest raw, as a query across the rollup horizon reads them.
        let expected = buckets(&raw, T0, to, HOUR_NS).expect("valid");
        let mut stepper = Stepper::new(T0, to, HOUR_NS).expect("valid");
        let split = T0 + 3 * HOUR_NS;
        let raw_from = T0 + 5 * HOUR_NS;
        hours
            .iter()
            .filter(|a| a.start < split)
            .for_each(|a| stepper.aggregate(a));
        minutes
            .iter()
            .filter(|a| a.start >= split && a.start < raw_from)
            .for_each(|a| stepper.aggregate(a));
        raw.iter()
            .filter(|p| p.ts >= raw_from)
            .for_each(|p| stepper.point(p.ts, &p.value));
        assert!(close(&stepper.finish(), &expected));
    }

    #[test]
    fn queries_read_the_coarsest_source_that_answers() {
        use Source::{Hours, Minutes, Raw};
        const D: i64 = DAY_NS;
        // Rolled up from 06:00 on day 0 to 14:00 on day 3.
        let cov = Some(Coverage {
            from: T0 + 6 * HOUR_NS,
            until: T0 + 3 * D + 14 * HOUR_NS,
        });
        let now = T0 + 3 * D + 16 * HOUR_NS + 123;
        assert_eq!(
            plan(T0, now, HOUR_NS, cov),
            vec![
                (Raw, T0, T0 + 6 * HOUR_NS),
                (Minutes, T0 + 6 * HOUR_NS, T0 + D),
                (Hours, T0 + D, T0 + 3 * D),
                (Minutes, T0 + 3 * D, T0 + 3 * D + 14 * HOUR_NS),
                (Raw, T0 + 3 * D + 14 * HOUR_NS, now + 1),
            ]
        );
        // A 5-minute step cannot take hours; an unaligned start takes nothing.
        assert_eq!(
            plan(T0 + D, now, 5 * MINUTE_NS, cov),
            vec![
                (Minutes, T0 + D, T0 + 3 * D + 14 * HOUR_NS),
                (Raw, T0 + 3 * D + 14 * HOUR_NS, now + 1),
            ]
        );
        assert_eq!(
            plan(T0 + D + 1, now, HOUR_NS, cov),
            vec![(Raw, T0 + D + 1, now + 1)]
        );
        assert_eq!(
            plan(T0, now, 10 * 1_000_000_000, cov),
            vec![(Raw, T0, now + 1)]
        );
        assert_eq!(plan(T0, now, HOUR_NS, None), vec![(Raw, T0, now + 1)]);
        // Ending inside the coverage: the last, partial minute is raw.
        let to = T0 + D + 30 * MINUTE_NS + 5;
        assert_eq!(
            plan(T0 + D, to, MINUTE_NS, cov),
            vec![
                (Minutes, T0 + D, T0 + D + 30 * MINUTE_NS),
                (Raw, T0 + D + 30 * MINUTE_NS, to + 1),
            ]
        );
        // Entirely before the coverage.
        assert_eq!(
            plan(T0, T0 + HOUR_NS, MINUTE_NS, cov),
            vec![(Raw, T0, T0 + HOUR_NS + 1)]
        );
    }

    #[test]
    fn rollups_round_trip_and_stay_small() {
        let points = counter(1);
        let minutes = aggregate(&points, MINUTE_NS);
        let bytes = encode(&minutes).expect("encodes");
        assert_eq!(decode(&bytes).expect("decodes"), minutes);
        // 60 minutes of a steady counter: 4 columns, under 4 bytes per minute (209 bytes
        // when written).
        assert_eq!(bytes[1], 7, "min, max and increase left out");
        assert!(bytes.len() < 240, "{} bytes", bytes.len());
        // A steady counter leaves min, max and increase out; a reset keeps them.
        let steady = encode(&minutes[..10]).expect("encodes");
        assert_eq!(steady[1], 7);
        let mut bumpy = minutes[..10].to_vec();
        bumpy[3].min -= 1.0;
        bumpy[5].increase += 1.0;
        let bumpy_bytes = encode(&bumpy).expect("encodes");
        assert_eq!(bumpy_bytes[1], 2, "max only");
        assert_eq!(decode(&bumpy_bytes).expect("decodes"), bumpy);
        let mut unknown = steady.clone();
        unknown[1] = 8;
        assert_eq!(
            decode(&unknown),
            Err(BlockError::Corrupt("unknown columns left out"))
        );
        let one = &minutes[..1];
        assert_eq!(
            decode(&encode(one).expect("encodes")).expect("decodes"),
            one
        );
        assert_eq!(encode(&[]), Err(BlockError::Empty));
    }

    #[test]
    fn corrupt_rollups_are_errors() {
        let bytes = encode(&aggregate(&counter(1), MINUTE_NS)).expect("encodes");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer),
            Err(BlockError::Corrupt("bytes after the last column"))
        );
        let mut newer = bytes.clone();
        newer[0] = 2;
        assert_eq!(decode(&newer), Err(BlockError::UnknownVersion(2)));
        // A count column from other buckets.
        let other = encode(&aggregate(&counter(2)[360..], MINUTE_NS)).expect("encodes");
        assert_eq!(other[1], bytes[1], "the same columns left out");
        let mut mixed = vec![VERSION, bytes[1]];
        let first_len = |b: &[u8]| {
            let mut pos = 2;
            let len = block::read_varint(b, &mut pos).expect("varint") as usize;
            (pos, len)
        };
        let (pos, len) = first_len(&other);
        mixed.extend_from_slice(&other[2..pos + len]);
        let (pos, len) = first_len(&bytes);
        mixed.extend_from_slice(&bytes[pos + len..]);
        assert_eq!(
            decode(&mixed),
            Err(BlockError::Corrupt("columns of different buckets"))
        );
    }
}
