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
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    global: Arc<Semaphore>,
    devices: Mutex<HashMap<String, Arc<Semaphore>>>,
    groups: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// The right to hold one session; released on drop.
#[derive(Debug)]
pub struct Permit {
    _device: OwnedSemaphorePermit,
    _group: Option<OwnedSemaphorePermit>,
    _global: OwnedSemaphorePermit,
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
            devices: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot for `device` (in AAA `group`, if any). Permits are always taken
    /// in the order device, group, global, so waiters cannot deadlock each other.
    pub async fn acquire(&self, device: &str, group: Option<&str>) -> Permit {
        let device_sem = keyed(&self.devices, device, self.limits.per_device);
        let group_sem = group.map(|g| keyed(&self.groups, g, self.limits.per_group));
        let device_permit = acquire(device_sem).await;
        let group_permit = match group_sem {
            Some(sem) => Some(acquire(sem).await),
            None => None,
        };
        let global_permit = acquire(Arc::clone(&self.global)).await;
        Permit {
            _device: device_permit,
            _group: group_permit,
            _global: global_permit,
        }
    }

    /// A slot now, or `None` if any cap is reached.
    pub fn try_acquire(&self, device: &str, group: Option<&str>) -> Option<Permit> {
        let device_permit = keyed(&self.devices, device, self.limits.per_device)
            .try_acquire_owned()
            .ok()?;
        let group_permit = match group {
            Some(g) => Some(
                keyed(&self.groups, g, self.limits.per_group)
                    .try_acquire_owned()
                    .ok()?,
            ),
            None => None,
        };
        let global_permit = Arc::clone(&self.global).try_acquire_owned().ok()?;
        Some(Permit {
            _device: device_permit,
            _group: group_permit,
            _global: global_permit,
        })
    }

    /// Free global slots.
    pub fn available(&self) -> usize {
        self.global.available_permits()
    }
}

fn keyed(map: &Mutex<HashMap<String, Arc<Semaphore>>>, key: &str, limit: usize) -> Arc<Semaphore> {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    Arc::clone(
        map.entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(limit))),
    )
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
