//! Limits on concurrent sessions and logins, and the reconnect backoff.
//!
//! Devices and AAA servers both suffer when a collector opens many sessions at once: a
//! [`Limiter`] holds one session per device for the session's life, and caps the
//! *logins* in progress (connect, authenticate, open the shell) per AAA group (devices
//! sharing a TACACS+ or RADIUS server) and per collector. A login slot is given back once
//! the session is up ([`Permit::logged_in`]): sessions are long-lived, so capping open
//! sessions would leave every device over the cap unpolled for good, while what
//! overwhelms an AAA server or a collector is a storm of logins. [`backoff`] is the pure
//! delay computation for reconnects; [`jittered_backoff`] feeds it randomness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Concurrency caps; each at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sessions open to one device at once, held for each session's life.
    pub per_device: usize,
    /// Logins in progress at once to the devices of one AAA group (what a TACACS+ or
    /// RADIUS server sees of a reconnect storm); open sessions do not count.
    pub per_group: usize,
    /// Logins in progress at once in this collector (a connect storm); open sessions do
    /// not count, so a collector with more devices than this still polls them all.
    pub global: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_device: 1,
            per_group: 16,
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

/// The right to hold one session to a device, and while it logs in, a login slot of its
/// AAA group and of the collector; all released on drop.
#[derive(Debug)]
pub struct Permit {
    _device: Slot,
    login: Option<Login>,
}

/// The login slots of a [`Permit`].
#[derive(Debug)]
struct Login {
    _group: Option<Slot>,
    _global: OwnedSemaphorePermit,
}

impl Permit {
    /// The session is up: gives back the login slots (AAA group, collector) and keeps
    /// the device's for as long as the permit lives.
    pub fn logged_in(&mut self) {
        self.login = None;
    }

    /// Whether the permit still holds login slots.
    pub fn logging_in(&self) -> bool {
        self.login.is_some()
    }
}

/// The cap a wait for a [`Permit`] is held up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// Another session to the device is open (or opening).
    Device {
        /// The cap ([`Limits::per_device`]).
        limit: usize,
    },
    /// The AAA group has as many logins in progress as it may.
    Group {
        /// The AAA group.
        group: String,
        /// The cap ([`Limits::per_group`]).
        limit: usize,
    },
    /// The collector has as many logins in progress as it may.
    Collector {
        /// The cap ([`Limits::global`]).
        limit: usize,
    },
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

    /// Waits for a session to `device` and a login slot (in AAA `group`, if any):
    /// [`Limiter::device`] then [`Limiter::login`].
    pub async fn acquire(&self, device: &str, group: Option<&str>) -> Permit {
        let mut permit = self.device(device).await;
        self.login(&mut permit, group).await;
        permit
    }

    /// A session and a login slot now, or `None` if any cap is reached.
    pub fn try_acquire(&self, device: &str, group: Option<&str>) -> Option<Permit> {
        let mut permit = self.try_device(device)?;
        self.try_login(&mut permit, group).then_some(permit)
    }

    /// Waits for a session to `device`, without a login slot yet.
    pub async fn device(&self, device: &str) -> Permit {
        Permit {
            _device: Slot::of(&self.devices, device, self.limits.per_device)
                .acquire()
                .await,
            login: None,
        }
    }

    /// A session to `device` now (without a login slot), or `None` at its cap.
    pub fn try_device(&self, device: &str) -> Option<Permit> {
        Some(Permit {
            _device: Slot::of(&self.devices, device, self.limits.per_device).try_acquire()?,
            login: None,
        })
    }

    /// Waits for login slots of AAA `group` (if any) and of the collector, in that order
    /// (after the device's: permits are always taken device, group, global, so waiters
    /// cannot deadlock each other). A permit that still holds them keeps them.
    pub async fn login(&self, permit: &mut Permit, group: Option<&str>) {
        if permit.login.is_some() {
            return;
        }
        let group = match group {
            Some(g) => Some(
                Slot::of(&self.groups, g, self.limits.per_group)
                    .acquire()
                    .await,
            ),
            None => None,
        };
        let global = acquire(Arc::clone(&self.global)).await;
        permit.login = Some(Login {
            _group: group,
            _global: global,
        });
    }

    /// Takes login slots now, as [`Limiter::login`]; `false` (and nothing taken) if a cap
    /// is reached.
    pub fn try_login(&self, permit: &mut Permit, group: Option<&str>) -> bool {
        if permit.login.is_some() {
            return true;
        }
        let group = match group {
            Some(g) => match Slot::of(&self.groups, g, self.limits.per_group).try_acquire() {
                Some(slot) => Some(slot),
                None => return false,
            },
            None => None,
        };
        let Ok(global) = Arc::clone(&self.global).try_acquire_owned() else {
            return false;
        };
        permit.login = Some(Login {
            _group: group,
            _global: global,
        });
        true
    }

    /// What keeps a login in AAA `group` (if any) from its slots now, if anything: the
    /// group's cap first, as [`Limiter::login`] waits for it first.
    pub fn login_blocked(&self, group: Option<&str>) -> Option<Blocked> {
        if let Some(g) = group {
            let full = lock(&self.groups)
                .get(g)
                .is_some_and(|s| s.available_permits() == 0);
            if full {
                return Some(Blocked::Group {
                    group: g.to_owned(),
                    limit: self.limits.per_group,
                });
            }
        }
        (self.global.available_permits() == 0).then_some(Blocked::Collector {
            limit: self.limits.global,
        })
    }

    /// The caps of this limiter (zeros raised to 1).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Free login slots of the collector.
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
    async fn logins_are_capped_until_logged_in_and_sessions_only_per_device() {
        tokio::time::pause();
        let limiter = Arc::new(Limiter::new(Limits {
            per_device: 1,
            per_group: 1,
            global: 2,
        }));
        let mut a = limiter.acquire("a", Some("tacacs1")).await;
        assert!(a.logging_in());
        // While `a` logs in, its group is full; another group takes the second global slot.
        assert!(limiter.try_acquire("b", Some("tacacs1")).is_none());
        assert_eq!(
            limiter.login_blocked(Some("tacacs1")),
            Some(Blocked::Group {
                group: "tacacs1".into(),
                limit: 1
            })
        );
        let mut c = limiter.acquire("c", Some("radius")).await;
        assert_eq!(
            limiter.login_blocked(None),
            Some(Blocked::Collector { limit: 2 })
        );
        let spawn = |device: &'static str, group: Option<&'static str>| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.acquire(device, group).await })
        };
        let (b, d) = (spawn("b", Some("tacacs1")), spawn("d", None));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!b.is_finished() && !d.is_finished(), "two logins at most");
        // Up: `a` and `c` give their login slots back and keep their sessions.
        a.logged_in();
        c.logged_in();
        assert!(!a.logging_in());
        let b = tokio::time::timeout(Duration::from_secs(1), b).await;
        let d = tokio::time::timeout(Duration::from_secs(1), d).await;
        let (Ok(Ok(mut b)), Ok(Ok(mut d))) = (b, d) else {
            panic!("logins still waiting after the sessions before them came up");
        };
        b.logged_in();
        d.logged_in();
        assert!(
            limiter.try_device("a").is_none(),
            "a's session is still open"
        );
        assert_eq!(limiter.login_blocked(Some("tacacs1")), None);
        // Many more sessions than logins at once: each logs in in turn, all stay open.
        let mut open = vec![a, b, c, d];
        for i in 0..20 {
            let name = format!("x{i}");
            let login = limiter.acquire(&name, Some("tacacs1"));
            let mut permit = tokio::time::timeout(Duration::from_secs(1), login)
                .await
                .unwrap_or_else(|_| panic!("session {i} starved by open sessions"));
            permit.logged_in();
            open.push(permit);
        }
        assert_eq!(limiter.available(), 2);
        assert_eq!(
            limiter.tracked(),
            (24, 0),
            "open sessions hold no group slot"
        );
        drop(open);
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
