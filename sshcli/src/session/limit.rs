//! Limits on concurrent sessions, and the reconnect backoff.
//!
//! Devices and AAA servers both suffer when a collector opens many sessions at once:
//! a [`Limiter`] caps sessions per device, per AAA group (devices sharing a TACACS+ or
//! RADIUS server) and per collector. [`backoff`] is the pure delay computation for
//! reconnects; [`jittered_backoff`] feeds it randomness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Concurrency caps; each at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sessions to one device.
    pub per_device: usize,
    /// Sessions to devices of one AAA group.
    pub per_group: usize,
    /// Sessions of this collector.
    pub global: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_device: 1,
            per_group: 8,
            global: 64,
        }
    }
}

/// Semaphores keyed by device and by AAA group, plus a global one.
///
/// A keyed semaphore exists while someone holds or waits for one of its permits: the
/// last [`Permit`] (or abandoned wait) of a device or group removes its entry, so the
/// maps hold the devices with sessions, not every device ever seen.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    global: Arc<Semaphore>,
    devices: Arc<Keyed>,
    groups: Arc<Keyed>,
}

/// Semaphores by key. Every handle on one outside the map is a [`Slot`], taken and
/// given back under the map's lock: an entry whose only handle is the map's is unused
/// and nobody can be about to use it.
type Keyed = Mutex<HashMap<String, Arc<Semaphore>>>;

/// The right to hold one session; released on drop.
#[derive(Debug)]
pub struct Permit {
    _device: Slot,
    _group: Option<Slot>,
    _global: OwnedSemaphorePermit,
}

/// A handle on a keyed semaphore, and the permit taken from it once there is one. Dropping
/// it gives the permit back, then removes the entry if nobody else holds a handle.
#[derive(Debug)]
struct Slot {
    map: Arc<Keyed>,
    key: String,
    semaphore: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Slot {
    /// A handle on the semaphore of `key`, created with `limit` permits if missing.
    fn of(map: &Arc<Keyed>, key: &str, limit: usize) -> Self {
        let semaphore = Arc::clone(
            lock(map)
                .entry(key.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(limit))),
        );
        Slot {
            map: Arc::clone(map),
            key: key.to_owned(),
            semaphore,
            permit: None,
        }
    }

    async fn acquire(mut self) -> Self {
        self.permit = Some(acquire(Arc::clone(&self.semaphore)).await);
        self
    }

    fn try_acquire(mut self) -> Option<Self> {
        self.permit = Some(Arc::clone(&self.semaphore).try_acquire_owned().ok()?);
        Some(self)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The permit holds the semaphore too: give it back first.
        self.permit.take();
        let mut entries = lock(&self.map);
        // Ours and the map's are the only handles left: nobody holds, awaits or is about
        // to take a permit of it (handles are only made under this lock).
        let unused = entries.get(&self.key).is_some_and(|entry| {
            Arc::ptr_eq(entry, &self.semaphore) && Arc::strong_count(entry) == 2
        });
        if unused {
            entries.remove(&self.key);
        }
    }
}

fn lock(map: &Keyed) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
    map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Limiter {
    /// A limiter with these caps (zeros are raised to 1).
    pub fn new(limits: Limits) -> Self {
        let limits = Limits {
            per_device: limits.per_device.max(1),
            per_group: limits.per_group.max(1),
            global: limits.global.max(1),
        };
        Limiter {
            limits,
            global: Arc::new(Semaphore::new(limits.global)),
            devices: Arc::default(),
            groups: Arc::default(),
        }
    }

    /// Waits for a slot for `device` (in AAA `group`, if any). Permits are always taken
    /// in the order device, group, global, so waiters cannot deadlock each other.
    pub async fn acquire(&self, device: &str, group: Option<&str>) -> Permit {
        let device_slot = Slot::of(&self.devices, device, self.limits.per_device);
        let group_slot = group.map(|g| Slot::of(&self.groups, g, self.limits.per_group));
        let device_slot = device_slot.acquire().await;
        let group_slot = match group_slot {
            Some(slot) => Some(slot.acquire().await),
            None => None,
        };
        let global_permit = acquire(Arc::clone(&self.global)).await;
        Permit {
            _device: device_slot,
            _group: group_slot,
            _global: global_permit,
        }
    }

    /// A slot now, or `None` if any cap is reached.
    pub fn try_acquire(&self, device: &str, group: Option<&str>) -> Option<Permit> {
        let device_slot = Slot::of(&self.devices, device, self.limits.per_device).try_acquire()?;
        let group_slot = match group {
            Some(g) => Some(Slot::of(&self.groups, g, self.limits.per_group).try_acquire()?),
            None => None,
        };
        let global_permit = Arc::clone(&self.global).try_acquire_owned().ok()?;
        Some(Permit {
            _device: device_slot,
            _group: group_slot,
            _global: global_permit,
        })
    }

    /// Free global slots.
    pub fn available(&self) -> usize {
        self.global.available_permits()
    }

    /// Devices and AAA groups with a semaphore: those with a permit held or awaited.
    pub fn tracked(&self) -> (usize, usize) {
        (lock(&self.devices).len(), lock(&self.groups).len())
    }
}

async fn acquire(semaphore: Arc<Semaphore>) -> OwnedSemaphorePermit {
    loop {
        // The semaphores are never closed, so this only loops in theory.
        if let Ok(permit) = Arc::clone(&semaphore).acquire_owned().await {
            return permit;
        }
    }
}

/// The delay before reconnect attempt `attempt` (0 for the first retry): `base * 2^attempt`
/// capped at `max`, then scaled into its upper half by `jitter` in `[0, 1]`
/// (`0` gives half the delay, `1` the full delay), so that devices dropped together do
/// not reconnect together.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponential = base
        .saturating_mul(2u32.saturating_pow(attempt.min(31)))
        .min(max);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    exponential.mul_f64(0.5 + 0.5 * jitter)
}

/// [`backoff`] with a random jitter.
pub fn jittered_backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    backoff(attempt, base, max, fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_table() {
        let s = Duration::from_secs;
        let cases = [
            (0, 0.0, Duration::from_millis(500)),
            (0, 1.0, s(1)),
            (1, 1.0, s(2)),
            (3, 1.0, s(8)),
            (3, 0.5, s(6)),
            (10, 1.0, s(60)),
            (u32::MAX, 1.0, s(60)),
            (2, f64::NAN, s(2)),
            (2, 7.0, s(4)),
        ];
        for (attempt, jitter, want) in cases {
            assert_eq!(
                backoff(attempt, s(1), s(60), jitter),
                want,
                "attempt {attempt} jitter {jitter}"
            );
        }
    }

    #[test]
    fn jittered_backoff_stays_in_range() {
        for attempt in 0..20 {
            let d = jittered_backoff(attempt, Duration::from_secs(1), Duration::from_secs(30));
            assert!(d <= Duration::from_secs(30));
            assert!(d >= Duration::from_millis(500));
        }
    }

    #[tokio::test]
    async fn per_device_cap_blocks_until_release() {
        tokio::time::pause();
        let limiter = Arc::new(Limiter::new(Limits {
            per_device: 1,
            per_group: 10,
            global: 10,
        }));
        let first = limiter.acquire("leaf1", None).await;
        assert!(limiter.try_acquire("leaf1", None).is_none());
        // Another device is not blocked.
        assert!(limiter.try_acquire("leaf2", None).is_some());
        let waiter = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.acquire("leaf1", None).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        drop(first);
        let second = waiter.await;
        assert!(second.is_ok());
    }

    #[tokio::test]
    async fn entries_without_permits_are_pruned() {
        let limiter = Limiter::new(Limits {
            per_device: 2,
            per_group: 10,
            global: 1000,
        });
        let permits: Vec<Permit> = (0..100)
            .map(|i| {
                limiter
                    .try_acquire(&format!("leaf{i}"), Some(&format!("aaa{}", i % 10)))
                    .unwrap_or_else(|| panic!("leaf{i}"))
            })
            .collect();
        assert_eq!(limiter.tracked(), (100, 10));
        drop(permits);
        assert_eq!(limiter.tracked(), (0, 0), "every device seen, none kept");
        // An entry with a permit still held stays, and keeps counting: the second of two
        // permits of a device with a cap of 2 leaves the entry (and its count) in place.
        let a = limiter
            .try_acquire("leaf1", Some("aaa"))
            .unwrap_or_else(|| panic!("a"));
        let b = limiter
            .try_acquire("leaf1", Some("aaa"))
            .unwrap_or_else(|| panic!("b"));
        drop(a);
        assert_eq!(limiter.tracked(), (1, 1));
        let c = limiter
            .try_acquire("leaf1", None)
            .unwrap_or_else(|| panic!("c"));
        assert!(
            limiter.try_acquire("leaf1", None).is_none(),
            "b and c hold the cap"
        );
        drop((b, c));
        assert_eq!(limiter.tracked(), (0, 0));
        // A refused try leaves nothing behind either.
        let _full = limiter
            .try_acquire("x", None)
            .unwrap_or_else(|| panic!("x"));
        let _full2 = limiter
            .try_acquire("x", None)
            .unwrap_or_else(|| panic!("x2"));
        assert!(limiter.try_acquire("x", Some("g")).is_none());
        assert_eq!(limiter.tracked(), (1, 0));
    }

    #[tokio::test]
    async fn a_waiter_keeps_its_entry_and_an_abandoned_wait_prunes_it() {
        tokio::time::pause();
        let limiter = Arc::new(Limiter::new(Limits {
            per_device: 1,
            per_group: 10,
            global: 10,
        }));
        let held = limiter.acquire("leaf1", None).await;
        let waiter = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.acquire("leaf1", None).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Released while someone waits: the entry stays, and the waiter gets the permit
        // of the same semaphore, so the cap of 1 still holds against a newcomer.
        drop(held);
        let second = waiter.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(limiter.tracked(), (1, 0));
        assert!(limiter.try_acquire("leaf1", None).is_none());
        // A wait given up (a cancelled connect) does not leave its entry behind.
        let gave_up =
            tokio::time::timeout(Duration::from_secs(1), limiter.acquire("leaf1", None)).await;
        assert!(gave_up.is_err());
        drop(second);
        assert_eq!(limiter.tracked(), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pruning_never_lets_two_sessions_in_at_once() {
        // Many tasks take and release the one permit of a few devices as fast as they can,
        // so entries are pruned and re-created all the time. Were an entry ever replaced
        // while a permit of it was held or awaited, two holders would overlap.
        let limiter = Arc::new(Limiter::new(Limits {
            per_device: 1,
            per_group: 100,
            global: 100,
        }));
        let holders: Arc<[std::sync::atomic::AtomicUsize; 3]> = Arc::default();
        let overlaps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..24)
            .map(|t| {
                let (limiter, holders, overlaps) = (
                    Arc::clone(&limiter),
                    Arc::clone(&holders),
                    Arc::clone(&overlaps),
                );
                tokio::spawn(async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    for i in 0..300 {
                        let d = (t + i) % 3;
                        let permit = limiter.acquire(&format!("leaf{d}"), Some("aaa")).await;
                        if holders[d].fetch_add(1, SeqCst) != 0 {
                            overlaps.fetch_add(1, SeqCst);
                        }
                        tokio::task::yield_now().await;
                        holders[d].fetch_sub(1, SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(overlaps.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(limiter.tracked(), (0, 0));
    }

    #[tokio::test]
    async fn group_and_global_caps() {
        let limiter = Limiter::new(Limits {
            per_device: 5,
            per_group: 2,
            global: 3,
        });
        let a = limiter
            .try_acquire("a", Some("tacacs1"))
            .unwrap_or_else(|| panic!("a"));
        let _b = limiter
            .try_acquire("b", Some("tacacs1"))
            .unwrap_or_else(|| panic!("b"));
        assert!(
            limiter.try_acquire("c", Some("tacacs1")).is_none(),
            "group cap"
        );
        let _d = limiter
            .try_acquire("d", Some("radius"))
            .unwrap_or_else(|| panic!("d"));
        assert_eq!(limiter.available(), 0);
        assert!(limiter.try_acquire("e", None).is_none(), "global cap");
        drop(a);
        assert!(limiter.try_acquire("c", Some("tacacs1")).is_some());
    }
}
