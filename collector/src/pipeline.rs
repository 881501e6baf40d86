//! The batcher: collects what sessions received into batches, writes each batch to the
//! store, then publishes it on the bus.
//!
//! Store first, bus second: a web node that hears about samples can already read them. A
//! failed write is retried with backoff while the queue in front of the batcher fills, so
//! backpressure reaches the sessions and nothing received is thrown away. The bus never
//! blocks (its drops are counted on the bus side).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus::{Bus, BusMessage};
use model::{DeviceKey, Sample};
use store::Store;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::membership::OwnershipTable;
use crate::{CollectorConfig, CollectorMetrics};

const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// After shutdown is requested, how long a failing store is retried before giving up.
const SHUTDOWN_RETRY_BUDGET: Duration = Duration::from_secs(10);

/// Runs until every sender of `rx` is dropped, then flushes and returns.
///
/// Up to `config.writers` batches are written at once (each in its own transaction; the
/// store orders its row locks, so concurrent batches cannot deadlock); the next batch
/// is collected meanwhile, and when every writer is busy the batcher waits, so
/// backpressure still reaches the sessions.
pub async fn batcher(
    mut rx: mpsc::Receiver<Vec<Sample>>,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    metrics: Arc<CollectorMetrics>,
    table: OwnershipTable,
    config: CollectorConfig,
    shutdown: CancellationToken,
) {
    let writers = config.writers.max(1);
    let rejecting = Arc::new(Mutex::new(Rejecting::default()));
    let mut in_flight = JoinSet::new();
    loop {
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut batch: Vec<Sample> = Vec::with_capacity(config.batch_size);
        batch.extend(first);
        // One timer per batch, armed only when the queue runs dry: a timeout per
        // notification cost a timer registration each.
        let wait = tokio::time::sleep(config.batch_wait);
        tokio::pin!(wait);
        while batch.len() < config.batch_size {
            let more = match rx.try_recv() {
                Ok(more) => Some(more),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
                    more = rx.recv() => more,
                    _ = &mut wait => None,
                },
            };
            match more {
                Some(more) => batch.extend(more),
                None => break,
            }
        }
        metrics.queue_depth.set(rx.len() as i64);
        while in_flight.len() >= writers {
            joined(in_flight.join_next().await);
        }
        // The fence is taken when the batch is cut: samples collected before a device was
        // taken away are written at the epoch they were collected under.
        let fence = table.fence(batch.iter().map(|s| &s.device));
        in_flight.spawn(flush(
            Batch {
                samples: batch,
                fence,
            },
            store.clone(),
            bus.clone(),
            metrics.clone(),
            shutdown.clone(),
            rejecting.clone(),
        ));
    }
    while let Some(done) = in_flight.join_next().await {
        joined(Some(done));
    }
    metrics.queue_depth.set(0);
}

fn joined(done: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(error)) = done {
        tracing::error!(%error, "Batch writer task failed");
    }
}

/// Samples to write, with the epochs of the fenced devices among them.
struct Batch {
    samples: Vec<Sample>,
    fence: store::Fence,
}

/// Devices whose refused samples were already logged: each is logged once, not once per
/// batch (a device with a wrong clock would otherwise flood the log).
#[derive(Debug, Default)]
struct Rejecting {
    logged: HashSet<DeviceKey>,
    fenced: HashSet<DeviceKey>,
}

impl Rejecting {
    /// Most devices remembered; past it the set starts over (and some log again).
    const LIMIT: usize = 100_000;

    fn note(&mut self, rejections: &[store::Rejection]) {
        for r in rejections {
            if self.logged.contains(&r.device) {
                continue;
            }
            if self.logged.len() >= Self::LIMIT {
                self.logged.clear();
            }
            self.logged.insert(r.device.clone());
            tracing::warn!(device = %r.device, reason = %r.reason, "Samples refused by the store (logged once per device; counted in samples_rejected)");
        }
    }

    fn note_fenced(&mut self, devices: &[DeviceKey], fence: &store::Fence) {
        for device in devices {
            if self.fenced.insert(device.clone()) {
                if self.fenced.len() > Self::LIMIT {
                    self.fenced.clear();
                }
                tracing::info!(%device, epoch = fence.get(device).copied().unwrap_or(0), "Samples fenced: another collector owns the device at a newer epoch (logged once per device; counted in samples_fenced)");
            }
        }
    }
}

async fn flush(
    Batch {
        samples: mut batch,
        fence,
    }: Batch,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    metrics: Arc<CollectorMetrics>,
    shutdown: CancellationToken,
    rejecting: Arc<Mutex<Rejecting>>,
) {
    let mut backoff = RETRY_MIN;
    let mut shutdown_since: Option<Instant> = None;
    let fenced: Vec<DeviceKey>;
    loop {
        let started = Instant::now();
        let written = if fence.is_empty() {
            store.write_samples(&batch).await
        } else {
            store.write_fenced(&batch, &fence).await
        };
        match written {
            Ok(report) => {
                metrics
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics.samples_written.inc_by(report.written);
                metrics.samples_duplicate.inc_by(report.duplicates);
                metrics.samples_rejected.inc_by(report.rejected);
                metrics.samples_fenced.inc_by(report.fenced);
                let mut logs = rejecting
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                logs.note(&report.rejections);
                logs.note_fenced(&report.fenced_devices, &fence);
                drop(logs);
                metrics.batches.inc();
                fenced = report.fenced_devices;
                break;
            }
            Err(error) => {
                metrics.batch_errors.inc();
                if shutdown.is_cancelled() {
                    let since = *shutdown_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > SHUTDOWN_RETRY_BUDGET {
                        metrics.samples_dropped.inc_by(batch.len() as u64);
                        tracing::error!(%error, samples = batch.len(), "Store still failing at shutdown; batch lost");
                        return;
                    }
                }
                tracing::warn!(%error, samples = batch.len(), retry_in = ?backoff, "Batch write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
    // One message per device. Samples come in runs (a notification's samples are
    // together), so the device is looked up once per run, not once per sample.
    let mut groups: Vec<(DeviceKey, Vec<Sample>)> = Vec::new();
    let mut index: HashMap<DeviceKey, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut current = usize::MAX;
    for sample in batch.drain(..) {
        if groups.get(current).is_none_or(|(d, _)| *d != sample.device) {
            current = *index.entry(sample.device.clone()).or_insert_with(|| {
                groups.push((sample.device.clone(), Vec::new()));
                groups.len() - 1
            });
        }
        groups[current].1.push(sample);
    }
    // Fenced samples are not stored: live views must not show them either.
    for (device, samples) in groups {
        if fenced.contains(&device) {
            continue;
        }
        bus.publish(BusMessage::Samples { device, samples });
    }
}
