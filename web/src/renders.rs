//! Chart renders shared by every browser of a web node that watches the same device
//! over the same window.
//!
//! A live page re-renders its device's charts at most once a second after new samples.
//! Rendering reads the store and draws SVG: ~0.3 ms of CPU for a one-series device,
//! which 10,000 browsers would pay 10,000 times a second. Browsers of the same device
//! become due at the same moment (they hear the same bus message), so the first one
//! renders and the others take its result: a render is reused while it is younger than
//! [`FRESH_FOR`] and includes the newest sample the asking browser knows of (the store
//! is written before the bus is told, so a render that starts after a message arrived
//! includes it). Renders of one key are serialised: the others wait for the one in
//! progress rather than start their own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::DeviceKey;

/// A render is reused for this long (the live pages' render period).
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// Keys with no render for this long are forgotten when the map is swept.
const FORGET_AFTER: Duration = Duration::from_secs(60);
/// The map is swept when it has grown to twice its size after the last sweep, and at
/// least to this.
const SWEEP_AT_LEAST: usize = 256;

/// One render of a device's charts, serialised once for every browser that takes it.
#[derive(Debug)]
pub struct Rendered {
    /// When it was rendered, ns since the epoch.
    pub at: i64,
    /// The newest sample it includes (the device's last sample), ns since the epoch.
    pub newest: Option<i64>,
    /// Server-sent events as (event name, data), in the order to send them.
    pub events: Vec<(&'static str, String)>,
}

/// The key of a render: a device and a window in minutes.
type Key = (DeviceKey, i64);

#[derive(Debug, Default)]
struct Slot {
    last: Option<Arc<Rendered>>,
}

#[derive(Debug, Default)]
struct Map {
    slots: HashMap<Key, Arc<tokio::sync::Mutex<Slot>>>,
    swept_len: usize,
}

/// The web node's shared renders (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Renders {
    map: Arc<Mutex<Map>>,
}

/// Whether a render was made for the caller or taken from another browser's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Rendered for this call.
    Rendered,
    /// Another browser's render, fresh enough.
    Shared,
}

impl Renders {
    /// A render of `device` over `minutes` that includes samples up to `newest` and is
    /// younger than [`FRESH_FOR`] at `now`: the last one if it qualifies, else the
    /// result of `render` (stored for the next browsers).
    pub async fn get<F, Fut, E>(
        &self,
        device: &DeviceKey,
        minutes: i64,
        newest: i64,
        now: i64,
        render: F,
    ) -> Result<(Arc<Rendered>, Source), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Rendered, E>>,
    {
        let slot = self.slot((device.clone(), minutes), now);
        let mut slot = slot.lock().await;
        if let Some(last) = &slot.last {
            let young = now.saturating_sub(last.at) < FRESH_FOR.as_nanos() as i64;
            if young && last.newest.unwrap_or(0) >= newest {
                return Ok((last.clone(), Source::Shared));
            }
        }
        let rendered = Arc::new(render().await?);
        slot.last = Some(rendered.clone());
        Ok((rendered, Source::Rendered))
    }

    /// Keys currently held (renders kept, or in progress).
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// Whether no render is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        // A panic while holding this lock leaves the map valid: keep serving.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn slot(&self, key: Key, now: i64) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut map = self.lock();
        if let Some(slot) = map.slots.get(&key) {
            return slot.clone();
        }
        if map.slots.len() >= (map.swept_len * 2).max(SWEEP_AT_LEAST) {
            let forget = FORGET_AFTER.as_nanos() as i64;
            map.slots.retain(|_, slot| {
                // In use (a render in progress or awaited), or rendered recently.
                Arc::strong_count(slot) > 1
                    || slot.try_lock().map_or(true, |s| {
                        s.last
                            .as_ref()
                            .is_some_and(|r| now.saturating_sub(r.at) < forget)
                    })
            });
            map.swept_len = map.slots.len();
        }
        map.slots.entry(key).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn device(name: &str) -> DeviceKey {
        DeviceKey::new(name).expect("valid")
    }

    async fn get(
        renders: &Renders,
        count: &AtomicUsize,
        name: &str,
        newest: i64,
        now: i64,
    ) -> (Arc<Rendered>, Source) {
        renders
            .get(&device(name), 60, newest, now, || async {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok::<_, std::convert::Infallible>(Rendered {
                    at: now,
                    newest: Some(newest),
                    events: vec![("chart", format!("{name}@{newest}"))],
                })
            })
            .await
            .unwrap_or_else(|never| match never {})
    }

    #[tokio::test]
    async fn browsers_of_one_device_due_together_share_one_render() {
        let renders = Renders::default();
        let count = AtomicUsize::new(0);
        let asks = (0..50).map(|_| get(&renders, &count, "leaf1", 10 * SECOND, 11 * SECOND));
        let got = futures::future::join_all(asks).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(got.iter().filter(|(_, s)| *s == Source::Shared).count(), 49);
        assert!(
            got.iter()
                .all(|(r, _)| r.events[0].1 == "leaf1@10000000000")
        );
        // Another device, or another window, is another render.
        get(&renders, &count, "leaf2", 10 * SECOND, 11 * SECOND).await;
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_render_is_not_reused_when_old_or_missing_a_newer_sample() {
        let renders = Renders::default();
        let count = AtomicUsize::new(0);
        get(&renders, &count, "leaf1", 10 * SECOND, 11 * SECOND).await;
        // A browser that knows of a newer sample than the render includes.
        let (r, source) = get(&renders, &count, "leaf1", 12 * SECOND, 11 * SECOND + 1).await;
        assert_eq!((source, r.newest), (Source::Rendered, Some(12 * SECOND)));
        // Fresh and complete: shared.
        let (_, source) = get(&renders, &count, "leaf1", 12 * SECOND, 11 * SECOND + 2).await;
        assert_eq!(source, Source::Shared);
        // A second later: rendered again, the chart's time axis has moved.
        let (_, source) = get(&renders, &count, "leaf1", 12 * SECOND, 12 * SECOND + 1).await;
        assert_eq!(source, Source::Rendered);
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn keys_not_rendered_for_a_minute_are_forgotten() {
        let renders = Renders::default();
        let count = AtomicUsize::new(0);
        for i in 0..SWEEP_AT_LEAST {
            get(&renders, &count, &format!("old{i}"), SECOND, SECOND).await;
        }
        assert_eq!(renders.len(), SWEEP_AT_LEAST);
        // The next new key, 61 s later, sweeps the old ones.
        get(&renders, &count, "new", SECOND, 62 * SECOND).await;
        assert_eq!(renders.len(), 1);
    }
}
