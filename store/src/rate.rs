//! The series growing fastest over a time window ("busiest interfaces").
//!
//! Pure: an adapter selects the candidate series (by device, by leaf, numeric kinds only)
//! and feeds their samples in the window to a [`Ranking`], which counts each series through
//! [`step::Increase`] (resets and deletes exactly as in step buckets) and ranks them.
//!
//! A series' `increase` is the sum of what its numeric samples inside the window add; the
//! first of them has nothing before it, so growth from a sample before the window does not
//! count. Its rate is that increase over the time between its first and last numeric
//! samples in the window. A series with fewer than two numeric samples there has no rate,
//! nor has one whose rate is not a finite number (a NaN sample); both are left out. Only
//! series of kind `int`, `uint` and `float` are ranked: a `bool`, text or decimal series
//! never is, even if some of its samples are numbers.

use std::cmp::Ordering;
use std::collections::HashMap;

use model::{DeviceKey, Path, TimestampNs};

use crate::codec::{self, Kind};
use crate::step::Increase;
use crate::{Error, Result};

/// Most series one rate query may return.
pub const MAX_LIMIT: usize = 1000;

/// A rate query: the `limit` fastest-growing series over `[from, to]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopRates {
    /// Only this device's series; every device's when `None`.
    pub device: Option<DeviceKey>,
    /// Only series whose last path element has this name (`in-octets`), whatever the keys
    /// of that element; every leaf when `None`.
    pub leaf: Option<String>,
    /// Start of the window, inclusive, ns since the epoch.
    pub from: TimestampNs,
    /// End of the window, inclusive, ns since the epoch.
    pub to: TimestampNs,
    /// How many series to return at most, 1 to [`MAX_LIMIT`].
    pub limit: usize,
}

/// One ranked series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRate {
    /// Its device.
    pub device: DeviceKey,
    /// Its canonical path.
    pub path: Path,
    /// `increase` per second between its first and last numeric samples in the window.
    pub per_second: f64,
    /// Counter increase within the window (see the module documentation).
    pub increase: f64,
    /// Numeric samples in the window.
    pub samples: u32,
}

/// Why a rate query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// The limit is zero.
    #[error("the limit must be at least 1")]
    NoLimit,
    /// The limit is above [`MAX_LIMIT`].
    #[error("limit {0} is too large; at most {MAX_LIMIT}")]
    LimitTooLarge(usize),
    /// `from` is not before `to`.
    #[error("the window is empty: `from` must be before `to`")]
    EmptyWindow,
    /// The leaf is not the name of a path element.
    #[error("leaf {0:?} is not a path element name (non-empty, without '/', '[', ']', '=')")]
    Leaf(String),
}

/// Whether `query` can be answered, or why not.
pub fn check(query: &TopRates) -> Result<(), RateError> {
    if query.limit == 0 {
        return Err(RateError::NoLimit);
    }
    if query.limit > MAX_LIMIT {
        return Err(RateError::LimitTooLarge(query.limit));
    }
    if query.from >= query.to {
        return Err(RateError::EmptyWindow);
    }
    if let Some(leaf) = &query.leaf
        && (leaf.is_empty() || leaf.contains(['/', '[', ']', '=']))
    {
        return Err(RateError::Leaf(leaf.clone()));
    }
    Ok(())
}

/// The order of a ranking: fastest first, then device and path by bytes.
fn order(a: &Candidate, b: &Candidate) -> Ordering {
    b.per_second
        .total_cmp(&a.per_second)
        .then_with(|| a.device.cmp(&b.device))
        .then_with(|| a.path.cmp(&b.path))
}

/// A series with a rate, before its names are parsed.
#[derive(Debug)]
struct Candidate {
    device: String,
    path: String,
    per_second: f64,
    increase: f64,
    samples: u32,
}

/// One series of a ranking and its count so far.
#[derive(Debug)]
struct Tracked {
    device: String,
    path: String,
    kind: Kind,
    counter: Increase,
    first: Option<TimestampNs>,
    last: TimestampNs,
    increase: f64,
    samples: u32,
}

impl Tracked {
    fn into_candidate(self) -> Option<Candidate> {
        let first = self.first?;
        if self.samples < 2 || self.last <= first {
            return None;
        }
        let per_second = self.increase / ((self.last - first) as f64 / 1e9);
        per_second.is_finite().then_some(Candidate {
            device: self.device,
            path: self.path,
            per_second,
            increase: self.increase,
            samples: self.samples,
        })
    }
}

/// A rate query being answered: the series an adapter selected and their counts.
#[derive(Debug)]
pub(crate) struct Ranking {
    leaf: Option<String>,
    limit: usize,
    series: HashMap<i64, Tracked>,
}

impl Ranking {
    /// An empty ranking for `query`, which [`check`] accepted.
    pub(crate) fn new(query: &TopRates) -> Self {
        Self {
            leaf: query.leaf.clone(),
            limit: query.limit,
            series: HashMap::new(),
        }
    }

    /// Adds a series an adapter selected (row `id`, its device name, canonical path and
    /// stored kind). The adapter's SQL matches the leaf on the path string, which a key
    /// value holding `/<leaf>[` can fool; the exact test is here, on the parsed path.
    pub(crate) fn series(
        &mut self,
        id: i64,
        device: String,
        path: String,
        kind: &str,
    ) -> Result<()> {
        if let Some(leaf) = &self.leaf
            && codec::path(&path)?.leaf() != leaf
        {
            return Ok(());
        }
        self.series.insert(
            id,
            Tracked {
                device,
                path,
                kind: Kind::parse(kind)?,
                counter: Increase::default(),
                first: None,
                last: 0,
                increase: 0.0,
                samples: 0,
            },
        );
        Ok(())
    }

    /// The row ids of the series kept, ascending.
    pub(crate) fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.series.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Counts one stored sample (its columns) of series `id`; each series' samples must
    /// come oldest first. Samples of series not kept are ignored.
    pub(crate) fn sample(
        &mut self,
        id: i64,
        ts: TimestampNs,
        value: Option<f64>,
        text: Option<String>,
    ) -> Result<()> {
        let Some(s) = self.series.get_mut(&id) else {
            return Ok(());
        };
        let value = codec::decode(s.kind, value, text)?;
        if let Some((_, increase)) = s.counter.next(&value) {
            s.first.get_or_insert(ts);
            s.last = ts;
            s.increase += increase;
            s.samples = s.samples.saturating_add(1);
        }
        Ok(())
    }

    /// The ranked series with a rate, at most the query's limit.
    pub(crate) fn finish(self) -> Result<Vec<SeriesRate>> {
        let mut ranked: Vec<Candidate> = self
            .series
            .into_values()
            .filter_map(Tracked::into_candidate)
            .collect();
        if ranked.len() > self.limit {
            ranked.select_nth_unstable_by(self.limit, order);
            ranked.truncate(self.limit);
        }
        // (device, path) is unique: no two candidates are equal.
        ranked.sort_unstable_by(order);
        ranked
            .into_iter()
            .map(|c| {
                Ok(SeriesRate {
                    device: DeviceKey::new(c.device).map_err(|e| Error::Corrupt(e.to_string()))?,
                    path: codec::path(&c.path)?,
                    per_second: c.per_second,
                    increase: c.increase,
                    samples: c.samples,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use model::Value;

    use super::*;
    use crate::Point;

    const S: i64 = 1_000_000_000;

    fn query(limit: usize) -> TopRates {
        TopRates {
            device: None,
            leaf: None,
            from: 0,
            to: 100 * S,
            limit,
        }
    }

    /// Feeds `values` (one per second from 0) of a series stored as `kind`.
    fn feed(
        ranking: &mut Ranking,
        id: i64,
        device: &str,
        path: &str,
        kind: Kind,
        values: &[Value],
    ) {
        ranking
            .series(id, device.into(), path.into(), kind.as_str())
            .expect("series");
        for (i, v) in values.iter().enumerate() {
            let (value, text) = codec::encode(v);
            let ts = i64::try_from(i).expect("small") * S;
            ranking.sample(id, ts, value, text).expect("sample");
        }
    }

    #[test]
    fn queries_are_bounded() {
        assert_eq!(check(&query(1)), Ok(()));
        assert_eq!(check(&query(MAX_LIMIT)), Ok(()));
        assert_eq!(check(&query(0)), Err(RateError::NoLimit));
        assert_eq!(
            check(&query(MAX_LIMIT + 1)),
            Err(RateError::LimitTooLarge(MAX_LIMIT + 1))
        );
        for (from, to) in [(5, 5), (6, 5)] {
            let q = TopRates {
                from,
                to,
                ..query(1)
            };
            assert_eq!(check(&q), Err(RateError::EmptyWindow));
        }
        for bad in ["", "a/b", "a[k=v]", "x]", "a=b"] {
            let q = TopRates {
                leaf: Some(bad.into()),
                ..query(1)
            };
            assert_eq!(check(&q), Err(RateError::Leaf(bad.into())), "{bad:?}");
        }
        assert!(
            RateError::LimitTooLarge(5000)
                .to_string()
                .contains("at most 1000")
        );
    }

    #[test]
    fn the_increase_is_the_step_buckets_increase() {
        // Resets, a delete, text and a boolean among the numbers: whatever the step code
        // counts in one bucket over the same points, the ranking counts too.
        let values = [
            Value::Uint(1_000),
            Value::Uint(1_500),
            Value::Uint(200),
            Value::String("n/a".into()),
            Value::Uint(300),
            Value::Deleted,
            Value::Uint(900),
            Value::Bool(true),
            Value::Uint(950),
        ];
        let mut ranking = Ranking::new(&query(10));
        feed(&mut ranking, 1, "leaf1", "/c", Kind::Uint, &values);
        let rates = ranking.finish().expect("finish");
        let points: Vec<Point> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                ts: i64::try_from(i).expect("small") * S,
                value: v.clone(),
            })
            .collect();
        let bucket = crate::step::buckets(&points, 0, 99 * S, 100 * S).expect("one bucket")[0]
            .stats
            .clone()
            .expect("data");
        assert_eq!(rates.len(), 1);
        assert_eq!(rates[0].increase, bucket.increase);
        assert_eq!(u64::from(rates[0].samples), bucket.count);
        // 500 + 200 (reset) + 100, then 0 after the delete, 1 (reset to true) and 949.
        assert_eq!(rates[0].increase, 500.0 + 200.0 + 100.0 + 1.0 + 949.0);
        assert_eq!(rates[0].per_second, rates[0].increase / 8.0);
    }

    #[test]
    fn ranks_fastest_first_then_by_bytes_and_keeps_the_limit() {
        let mut ranking = Ranking::new(&query(3));
        let counter = |per_s: u64| [Value::Uint(0), Value::Uint(per_s)];
        feed(&mut ranking, 1, "b", "/x", Kind::Uint, &counter(10));
        feed(&mut ranking, 2, "a", "/y", Kind::Uint, &counter(10));
        feed(&mut ranking, 3, "a", "/x", Kind::Uint, &counter(10));
        feed(&mut ranking, 4, "a", "/z", Kind::Uint, &counter(20));
        feed(&mut ranking, 5, "a", "/w", Kind::Uint, &counter(5));
        // One sample, and a NaN: no rate.
        feed(&mut ranking, 6, "a", "/one", Kind::Uint, &[Value::Uint(7)]);
        let nan = [Value::Float(1.0), Value::Float(f64::NAN)];
        feed(&mut ranking, 7, "a", "/nan", Kind::Float, &nan);
        let ranked: Vec<(String, String, f64)> = ranking
            .finish()
            .expect("finish")
            .into_iter()
            .map(|r| (r.device.to_string(), r.path.to_string(), r.per_second))
            .collect();
        assert_eq!(
            ranked,
            [
                ("a".into(), "/z".into(), 20.0),
                ("a".into(), "/x".into(), 10.0),
                ("a".into(), "/y".into(), 10.0),
            ]
        );
    }

    #[test]
    fn the_leaf_is_the_parsed_last_element() {
        let q = TopRates {
            leaf: Some("in-octets".into()),
            ..query(10)
        };
        let mut ranking = Ranking::new(&q);
        let up = [Value::Uint(0), Value::Uint(1)];
        for (id, path) in [
            (
                1,
                "/interfaces/interface[name=Ethernet1]/state/counters/in-octets",
            ),
            // The SQL prefilter lets these through; they are not `in-octets` leaves.
            (2, "/probe[target=a/in-octets[x]"),
            (3, "/interfaces/interface[name=x/in-octets]"),
        ] {
            feed(&mut ranking, id, "leaf1", path, Kind::Uint, &up);
        }
        assert_eq!(ranking.ids(), [1]);
        let q = TopRates {
            leaf: Some("interface".into()),
            ..query(10)
        };
        let mut ranking = Ranking::new(&q);
        feed(
            &mut ranking,
            3,
            "leaf1",
            "/interfaces/interface[name=x/in-octets]",
            Kind::Uint,
            &up,
        );
        assert_eq!(ranking.ids(), [3]);
    }
}
