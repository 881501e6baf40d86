//! A series over a time range in fixed steps: one bucket per step, gaps kept as gaps.
//!
//! Pure: [`buckets`] aggregates points already read. Every numeric kind counts (booleans
//! as 0/1, decimals as floats); text, bytes and the like are skipped; a delete breaks the
//! counter chain. A bucket without a numeric sample is a gap (`stats: None`), never a
//! zero: a chart draws a hole there.
//!
//! `increase` is what a counter grew by within the bucket: the sum of the differences
//! between consecutive samples. A drop from the top sixteenth of the 32-bit or the 64-bit
//! range to the bottom sixteenth is the counter wrapping: the increase is what it took to
//! reach 2^32 (2^64) plus the new value. Any other drop is a counter reset (the device
//! restarted) and the new value itself is the increase since the reset, as Prometheus
//! counts it. (A 64-bit counter that restarts while in the top sixteenth of the 32-bit
//! range is taken for a wrap: counting up to 2^28 too much once, instead of losing up to
//! 2^32 on every wrap of a 32-bit counter.) The difference from the last sample before a bucket to its first
//! belongs to that bucket; the first sample of the range has nothing before it.

use model::{TimestampNs, Value};
use serde::Serialize;

use crate::Point;

/// Most buckets one query may ask for (a chart is a few thousand pixels wide).
pub const MAX_BUCKETS: i64 = 10_000;

/// One step of a series: `[start, start + step)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the step, ns since the epoch.
    pub start: TimestampNs,
    /// Aggregates of its numeric samples; `None` is a gap.
    pub stats: Option<Stats>,
}

/// Aggregates of the numeric samples of one bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Samples in the bucket.
    pub count: u64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean of the values.
    pub avg: f64,
    /// Newest value.
    pub last: f64,
    /// Counter increase within the bucket (see the module documentation).
    pub increase: f64,
}

/// Why a step query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The step is zero or negative.
    #[error("the step must be positive")]
    NotPositive,
    /// `from` is after `to`.
    #[error("`from` is after `to`")]
    Backwards,
    /// More than [`MAX_BUCKETS`] buckets.
    #[error("{0} steps asked for; at most {MAX_BUCKETS}: use a longer step")]
    TooMany(i64),
}

/// The number of buckets `[from, to]` makes at `step`, or why it is refused.
pub fn count(from: TimestampNs, to: TimestampNs, step: i64) -> Result<i64, StepError> {
    if step <= 0 {
        return Err(StepError::NotPositive);
    }
    if from > to {
        return Err(StepError::Backwards);
    }
    let n = (to - from) / step + 1;
    if n > MAX_BUCKETS {
        return Err(StepError::TooMany(n));
    }
    Ok(n)
}

/// The value of a sample as a number, if it has one.
fn numeric(value: &Value) -> Option<f64> {
    match value {
        Value::Int(v) => Some(*v as f64),
        Value::Uint(v) => Some(*v as f64),
        Value::Float(v) => Some(*v),
        Value::Bool(v) => Some(if *v { 1.0 } else { 0.0 }),
        Value::Decimal { digits, precision } => {
            Some(*digits as f64 / 10f64.powi(i32::try_from(*precision).unwrap_or(i32::MAX)))
        }
        _ => None,
    }
}

/// A counter followed sample by sample, oldest first: the increase each numeric sample
/// adds (see the module documentation). [`buckets`] and the rate query
/// ([`crate::rate`]) both count through it, so they agree on resets and deletes.
#[derive(Debug, Clone, Default)]
pub struct Increase {
    previous: Option<f64>,
}

impl Increase {
    /// The next sample's numeric value and what the counter grew by since the previous
    /// numeric sample (0 for the first one, or the first after a delete); `None` for a
    /// sample without a number, which a delete also makes break the chain.
    pub fn next(&mut self, value: &Value) -> Option<(f64, f64)> {
        let Some(v) = numeric(value) else {
            if value.is_deleted() {
                self.previous = None;
            }
            return None;
        };
        let increase = self.previous.map_or(0.0, |p| growth(p, v));
        self.previous = Some(v);
        Some((v, increase))
    }

    /// A run of numeric samples summarised by its first and last values (a rollup
    /// bucket, see [`crate::rollup`]): what the counter grew by from the previous sample
    /// to `first` (0 if there is none), after which `last` is the previous sample.
    pub fn span(&mut self, first: f64, last: f64) -> f64 {
        let increase = self.previous.map_or(0.0, |p| growth(p, first));
        self.previous = Some(last);
        increase
    }
}

/// What a counter grew by from `p` to `v`: the difference, across a wrap what it took to
/// wrap plus `v`, after a reset `v` itself (see the module documentation).
pub fn growth(p: f64, v: f64) -> f64 {
    if v >= p {
        v - p
    } else {
        wrapped(p, v).unwrap_or(v)
    }
}

/// The increase across a counter wrap from `p` down to `v`, if the drop is one.
fn wrapped(p: f64, v: f64) -> Option<f64> {
    const RANGES: [f64; 2] = [4_294_967_296.0, 18_446_744_073_709_551_616.0];
    RANGES.into_iter().find_map(|range| {
        let sixteenth = range / 16.0;
        (p < range && p >= range - sixteenth && v < sixteenth).then_some(range - p + v)
    })
}

/// `points` (oldest first, within `[from, to]`) in buckets of `step` from `from`.
pub fn buckets(
    points: &[Point],
    from: TimestampNs,
    to: TimestampNs,
    step: i64,
) -> Result<Vec<Bucket>, StepError> {
    let mut stepper = Stepper::new(from, to, step)?;
    for point in points {
        stepper.point(point.ts, &point.value);
    }
    Ok(stepper.finish())
}

/// Step buckets filled from one series in time order: raw points and rollup aggregates
/// ([`crate::rollup::Aggregate`]) mixed, so a query reads old hours from rollups and
/// recent ones from raw samples and gets what the raw samples alone would give (up to
/// float rounding of sums). An aggregate lands whole in the bucket holding its start: the
/// caller passes aggregates only when `from` and `step` are multiples of their width and
/// they end at or before `to`.
#[derive(Debug)]
pub struct Stepper {
    from: TimestampNs,
    to: TimestampNs,
    step: i64,
    buckets: Vec<(TimestampNs, Option<Sum>)>,
    counter: Increase,
}

/// A bucket being filled: [`Stats`] with the sum in place of the mean.
#[derive(Debug, Clone, Copy)]
struct Sum {
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    last: f64,
    increase: f64,
}

impl Stepper {
    /// Empty buckets over `[from, to]`, or why the query is refused (see [`count`]).
    pub fn new(from: TimestampNs, to: TimestampNs, step: i64) -> Result<Self, StepError> {
        let n = count(from, to, step)?;
        Ok(Self {
            from,
            to,
            step,
            buckets: (0..n).map(|i| (from + i * step, None)).collect(),
            counter: Increase::default(),
        })
    }

    /// The bucket holding `ts`, if it is inside `[from, to]`.
    fn slot(&mut self, ts: TimestampNs) -> Option<&mut Option<Sum>> {
        if ts < self.from || ts > self.to {
            return None;
        }
        let i = usize::try_from((ts - self.from) / self.step).ok()?;
        self.buckets.get_mut(i).map(|(_, s)| s)
    }

    /// The next raw sample (outside `[from, to]`: ignored).
    pub fn point(&mut self, ts: TimestampNs, value: &Value) {
        if ts < self.from || ts > self.to {
            return;
        }
        let Some((v, increase)) = self.counter.next(value) else {
            return;
        };
        if let Some(slot) = self.slot(ts) {
            add(
                slot,
                Sum {
                    count: 1,
                    min: v,
                    max: v,
                    sum: v,
                    last: v,
                    increase,
                },
            );
        }
    }

    /// The next rollup aggregate (starting outside `[from, to]`: ignored).
    pub fn aggregate(&mut self, a: &crate::rollup::Aggregate) {
        if a.start < self.from || a.start > self.to || a.count == 0 {
            return;
        }
        let boundary = self.counter.span(a.first, a.last);
        if let Some(slot) = self.slot(a.start) {
            add(
                slot,
                Sum {
                    count: a.count,
                    min: a.min,
                    max: a.max,
                    sum: a.sum,
                    last: a.last,
                    increase: boundary + a.increase,
                },
            );
        }
    }

    /// The buckets, gaps as gaps.
    pub fn finish(self) -> Vec<Bucket> {
        self.buckets
            .into_iter()
            .map(|(start, sum)| Bucket {
                start,
                stats: sum.map(|s| Stats {
                    count: s.count,
                    min: s.min,
                    max: s.max,
                    avg: s.sum / s.count as f64,
                    last: s.last,
                    increase: s.increase,
                }),
            })
            .collect()
    }
}

/// Adds a later run of samples to a bucket.
fn add(slot: &mut Option<Sum>, next: Sum) {
    match slot {
        None => *slot = Some(next),
        Some(s) => {
            s.count += next.count;
            s.min = s.min.min(next.min);
            s.max = s.max.max(next.max);
            s.sum += next.sum;
            s.last = next.last;
            s.increase += next.increase;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn p(ts: i64, value: Value) -> Point {
        Point { ts, value }
    }

    #[test]
    fn gaps_stay_gaps_and_aggregates_are_per_step() {
        let points = [
            p(0, Value::Uint(10)),
            p(10 * S, Value::Uint(20)),
            p(59 * S, Value::Uint(30)),
            // Nothing in [60 s, 120 s).
            p(120 * S, Value::Uint(50)),
        ];
        let b = buckets(&points, 0, 179 * S, 60 * S).expect("valid");
        assert_eq!(b.len(), 3);
        let first = b[0].stats.clone().expect("data");
        assert_eq!(
            (
                first.count,
                first.min,
                first.max,
                first.avg,
                first.last,
                first.increase
            ),
            (3, 10.0, 30.0, 20.0, 30.0, 20.0)
        );
        assert_eq!(
            b[1],
            Bucket {
                start: 60 * S,
                stats: None
            }
        );
        // The growth across the gap belongs to the bucket that sees it.
        assert_eq!(b[2].stats.as_ref().map(|s| s.increase), Some(20.0));
    }

    #[test]
    fn a_drop_from_the_top_of_the_32_or_64_bit_range_is_a_wrap() {
        let mut c = Increase::default();
        let mut next = |v: f64| c.next(&Value::Float(v)).map(|(_, i)| i);
        assert_eq!(next(4_294_967_000.0), Some(0.0));
        // 296 to reach 2^32, then 500.
        assert_eq!(next(500.0), Some(796.0));
        assert_eq!(next(1_500.0), Some(1_000.0));
        // From below the top sixteenth: a reset, the new value is the increase.
        assert_eq!(next(4_000_000_000.0), Some(3_999_998_500.0));
        assert_eq!(next(100.0), Some(100.0));
        // To above the bottom sixteenth: a reset too.
        assert_eq!(next(4_294_967_000.0), Some(4_294_966_900.0));
        assert_eq!(next(300_000_000.0), Some(300_000_000.0));
        // 64-bit.
        let top = 18_446_744_073_709_551_616.0 - 8_192.0;
        assert_eq!(next(top), Some(top - 300_000_000.0));
        assert_eq!(next(4_096.0), Some(12_288.0));
    }

    #[test]
    fn a_drop_is_a_counter_reset_and_a_delete_breaks_the_chain() {
        let points = [
            p(0, Value::Uint(1_000)),
            p(S, Value::Uint(1_500)),
            // Device restarted: the counter starts again from 0.
            p(2 * S, Value::Uint(200)),
            p(3 * S, Value::Uint(300)),
            p(4 * S, Value::Deleted),
            p(5 * S, Value::Uint(900)),
            p(6 * S, Value::String("text is skipped".into())),
        ];
        let b = buckets(&points, 0, 9 * S, 10 * S).expect("valid");
        let s = b[0].stats.clone().expect("data");
        assert_eq!(s.increase, 500.0 + 200.0 + 100.0);
        assert_eq!((s.count, s.last, s.min, s.max), (5, 900.0, 200.0, 1_500.0));
    }

    #[test]
    fn every_numeric_kind_counts() {
        let points = [
            p(0, Value::Int(-2)),
            p(1, Value::Float(0.5)),
            p(2, Value::Bool(true)),
            p(
                3,
                Value::Decimal {
                    digits: 25,
                    precision: 1,
                },
            ),
        ];
        let s = buckets(&points, 0, 3, 4).expect("valid")[0]
            .stats
            .clone()
            .expect("data");
        assert_eq!((s.count, s.min, s.max, s.last), (4, -2.0, 2.5, 2.5));
    }

    #[test]
    fn bounds_and_limits() {
        // `to` is inclusive: a point at `to` lands in the last bucket.
        let b = buckets(&[p(10, Value::Uint(1))], 0, 10, 5).expect("valid");
        assert_eq!(b.len(), 3);
        assert!(b[2].stats.is_some());
        assert_eq!(count(0, 10, 0), Err(StepError::NotPositive));
        assert_eq!(count(10, 0, 1), Err(StepError::Backwards));
        assert_eq!(
            count(0, MAX_BUCKETS, 1),
            Err(StepError::TooMany(MAX_BUCKETS + 1))
        );
        assert_eq!(count(0, MAX_BUCKETS - 1, 1), Ok(MAX_BUCKETS));
        assert!(
            StepError::TooMany(20_000)
                .to_string()
                .contains("use a longer step")
        );
    }
}
