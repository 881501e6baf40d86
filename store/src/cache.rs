//! In-memory cache of database ids: device name -> device id, (device, path) -> series id.
//!
//! Ids never change once assigned (nothing deletes devices or series yet), so entries never
//! go stale. Callers remember ids only after the transaction that created them committed:
//! an id from a rolled-back transaction would point at nothing.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use model::DeviceKey;

use crate::codec::SeriesKey;

/// Most series ids kept. A collector writes only the devices it owns, so this is far above
/// what one process needs; if it is ever reached, the cache starts over rather than grow.
const MAX_SERIES: usize = 1 << 21;

#[derive(Debug, Default)]
pub(crate) struct IdCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    devices: HashMap<DeviceKey, DeviceIds>,
    series: usize,
}

#[derive(Debug)]
struct DeviceIds {
    id: i64,
    series: HashMap<String, i64>,
}

/// Ids of one series of a batch, as far as they are known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Known {
    pub device: Option<i64>,
    pub series: Option<i64>,
}

impl IdCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map is valid after any panic (every update is a single insert).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The known ids of each series, in order.
    pub(crate) fn lookup(&self, series: &[SeriesKey<'_>]) -> Vec<Known> {
        let inner = self.lock();
        series
            .iter()
            .map(|key| match inner.devices.get(key.device) {
                Some(device) => Known {
                    device: Some(device.id),
                    series: device.series.get(&key.path).copied(),
                },
                None => Known::default(),
            })
            .collect()
    }

    /// Remembers the ids a committed batch resolved for series that were not cached:
    /// `series`, `known`, `device_ids` and `series_ids` are parallel, one entry per series.
    pub(crate) fn remember_resolved(
        &self,
        series: &[SeriesKey<'_>],
        known: &[Known],
        device_ids: &[i64],
        series_ids: &[i64],
    ) {
        self.remember(
            series
                .iter()
                .zip(known)
                .zip(device_ids.iter().zip(series_ids))
                .filter(|((_, k), _)| k.series.is_none())
                .map(|((s, _), (&device, &series))| (s.device, device, s.path.as_str(), series)),
        );
    }

    /// Remembers committed ids: `(device, device id, path, series id)`.
    pub(crate) fn remember<'a>(
        &self,
        ids: impl IntoIterator<Item = (&'a DeviceKey, i64, &'a str, i64)>,
    ) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        for (device, device_id, path, series_id) in ids {
            if inner.series >= MAX_SERIES {
                inner.devices.clear();
                inner.series = 0;
            }
            let entry = inner
                .devices
                .entry(device.clone())
                .or_insert_with(|| DeviceIds {
                    id: device_id,
                    series: HashMap::new(),
                });
            if !entry.series.contains_key(path) {
                entry.series.insert(path.to_owned(), series_id);
                inner.series += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Kind;

    #[test]
    fn remembers_devices_and_series() {
        let cache = IdCache::default();
        let a = DeviceKey::new("a").expect("test value");
        let b = DeviceKey::new("b").expect("test value");
        let key = |device, path: &str| SeriesKey {
            device,
            path: path.to_owned(),
            kind: Kind::Int,
        };
        let keys = [key(&a, "/x"), key(&a, "/y"), key(&b, "/x")];
        assert_eq!(cache.lookup(&keys), vec![Known::default(); 3]);

        cache.remember([(&a, 1, "/x", 10), (&a, 1, "/x", 10)]);
        assert_eq!(
            cache.lookup(&keys),
            vec![
                Known {
                    device: Some(1),
                    series: Some(10)
                },
                Known {
                    device: Some(1),
                    series: None
                },
                Known::default(),
            ]
        );
        assert_eq!(cache.lock().series, 1);
    }
}
