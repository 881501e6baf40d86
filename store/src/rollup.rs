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
//! 7 x     varint byte length, then a block (crate::block) of the aggregates' starts
//!         with, in this order: count, min, max, sum, first, last, increase
//! ```
//!
//! Seven blocks repeat the timestamps, which cost next to nothing (bucket starts are a
//! regular grid: zero-width residuals); in exchange each column gets the block codec's
//! choice of integer or XOR coding (counts and a counter's first/last/min/max are
//! integers with a steady slope, a gauge's sum is not).

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

/// Packs aggregates (oldest first, strictly increasing starts, at least one).
pub fn encode(aggregates: &[Aggregate]) -> Result<Vec<u8>, BlockError> {
    let column = |f: fn(&Aggregate) -> f64| -> Vec<(TimestampNs, f64)> {
        aggregates.iter().map(|a| (a.start, f(a))).collect()
    };
    let columns: [fn(&Aggregate) -> f64; COLUMNS] = [
        |a| a.count as f64,
        |a| a.min,
        |a| a.max,
        |a| a.sum,
        |a| a.first,
        |a| a.last,
        |a| a.increase,
    ];
    let mut out = vec![VERSION];
    for f in columns {
        let bytes = block::encode(&column(f))?;
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
    let mut pos = 1;
    let mut columns: Vec<Vec<(TimestampNs, f64)>> = Vec::with_capacity(COLUMNS);
    for _ in 0..COLUMNS {
        let len = usize::try_from(block::read_varint(bytes, &mut pos)?)
            .map_err(|_| BlockError::Corrupt("column length beyond memory"))?;
        let end = pos.checked_add(len).ok_or(BlockError::Truncated)?;
        let column = bytes.get(pos..end).ok_or(BlockError::Truncated)?;
        columns.push(block::decode(column)?);
        pos = end;
    }
    if pos != bytes.len() {
        return Err(BlockError::Corrupt("bytes after the last column"));
    }
    let counts = &columns[0];
    if columns
        .iter()
        .any(|c| c.len() != counts.len() || c.iter().zip(counts).any(|(a, b)| a.0 != b.0))
    {
        return Err(BlockError::Corrupt("columns of different buckets"));
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, &(start, count))| {
            if !(count >= 1.0 && count.fract() == 0.0 && count < 2f64.powi(53)) {
                return Err(BlockError::Corrupt("count is no positive integer"));
            }
            Ok(Aggregate {
                start,
                count: count as u64,
                min: columns[1][i].1,
                max: columns[2][i].1,
                sum: columns[3][i].1,
                first: columns[4][i].1,
                last: columns[5][i].1,
                increase: columns[6][i].1,
            })
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
        assert_eq!(plan(T0, now, 10 * 1_000_000_000, cov), vec![(Raw, T0, now + 1)]);
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
        // 60 minutes of 7 columns: well under a raw row per sample (~40 bytes).
        assert!(bytes.len() < 60 * 7 * 4, "{} bytes", bytes.len());
        let one = &minutes[..1];
        assert_eq!(decode(&encode(one).expect("encodes")).expect("decodes"), one);
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
        let mut mixed = vec![VERSION];
        let first_len = |b: &[u8]| {
            let mut pos = 1;
            let len = block::read_varint(b, &mut pos).expect("varint") as usize;
            (pos, len)
        };
        let (pos, len) = first_len(&other);
        mixed.extend_from_slice(&other[1..pos + len]);
        let (pos, len) = first_len(&bytes);
        mixed.extend_from_slice(&bytes[pos + len..]);
        assert_eq!(
            decode(&mixed),
            Err(BlockError::Corrupt("columns of different buckets"))
        );
    }
}
