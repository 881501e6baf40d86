//! Which devices this collector collects, as it changes: the assignments a device source
//! publishes (a fixed list from a file, or the Devices labelled with this pod's name in
//! Kubernetes), the changes that turn the running sessions into them, and the ownership
//! table the pipeline fences its writes with.
//!
//! A device is either *owned* (collected and written, fenced at its epoch) or *incoming*
//! (the new owner of a handoff in flight: it connects and collects while the old owner
//! still does, writes at the same epoch, and reports "synced" so the operator can flip
//! ownership; ADR-0015). Epoch 0 means "not fenced": devices from a file have no owner
//! but this process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crds::devices_file::DeviceEntry;
use model::DeviceKey;
use tokio::sync::watch;

/// What this collector is to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It owns the device: collects, writes, reports the device's state.
    Owner,
    /// It takes the device over in a handoff: collects and writes alongside the owner,
    /// reports only whether it is synced.
    Incoming,
}

/// One device this collector should collect.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The device and its spec.
    pub entry: DeviceEntry,
    /// Ownership epoch the writes are fenced at (0: unfenced).
    pub epoch: u64,
    /// Owner or incoming owner.
    pub role: Role,
    /// The spec generation (Kubernetes `metadata.generation`), reported back in status.
    pub generation: Option<i64>,
}

impl Assignment {
    /// A device this process owns without fencing (a devices file, the simulator).
    pub fn unfenced(entry: DeviceEntry) -> Self {
        Self {
            entry,
            epoch: 0,
            role: Role::Owner,
            generation: None,
        }
    }
}

/// Every device this collector should collect, by name.
pub type Desired = BTreeMap<DeviceKey, Assignment>;

/// The receiving end of a device source: the latest [`Desired`] set.
pub type Assignments = watch::Receiver<Arc<Desired>>;

/// A source that never changes: `devices`, owned and unfenced.
pub fn fixed(devices: Vec<DeviceEntry>) -> Assignments {
    let desired: Desired = devices
        .into_iter()
        .map(|d| (d.name.clone(), Assignment::unfenced(d)))
        .collect();
    // The sender is dropped: the receiver keeps the value and reports no more changes.
    watch::channel(Arc::new(desired)).1
}

/// What changes for one device between the running sessions and the desired set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Not running: start a session.
    Start(DeviceKey),
    /// No longer assigned: stop its session.
    Stop(DeviceKey),
    /// Its spec changed: stop the session and start a new one.
    Restart(DeviceKey),
    /// Only the epoch, role or generation changed: the session goes on, its writes are
    /// fenced at the new epoch (an incoming owner promoted to owner keeps its stream).
    Reassign(DeviceKey),
}

/// The changes that make `running` into `desired`, in name order: stops first, so a
/// collector that loses devices and gains others never holds both at once.
pub fn changes(running: &HashMap<DeviceKey, Assignment>, desired: &Desired) -> Vec<Change> {
    let mut stops: Vec<DeviceKey> = running
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .cloned()
        .collect();
    stops.sort();
    let mut out: Vec<Change> = stops.into_iter().map(Change::Stop).collect();
    for (key, want) in desired {
        match running.get(key) {
            None => out.push(Change::Start(key.clone())),
            Some(have) if have.entry.spec != want.entry.spec => {
                out.push(Change::Restart(key.clone()));
            }
            Some(have)
                if have.epoch != want.epoch
                    || have.role != want.role
                    || have.generation != want.generation =>
            {
                out.push(Change::Reassign(key.clone()));
            }
            Some(_) => {}
        }
    }
    out
}

/// Role and epoch per device, shared by the supervisor (which writes it), the pipeline
/// (which fences with it) and the state reporter (which asks who reports what).
///
/// A stopped device keeps its last epoch, so samples still queued when it was taken away
/// are written fenced at the epoch they were collected under: a deposed owner's late
/// batch is refused by the store rather than written unfenced.
#[derive(Debug, Clone, Default)]
pub struct OwnershipTable {
    inner: Arc<RwLock<HashMap<DeviceKey, Held>>>,
}

/// What the table holds for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Owner or incoming; `None` once the device was taken away.
    pub role: Option<Role>,
    /// Epoch of the last assignment.
    pub epoch: u64,
    /// Spec generation of the last assignment.
    pub generation: Option<i64>,
}

impl OwnershipTable {
    /// Records what `assignment` makes this collector to its device.
    pub fn set(&self, assignment: &Assignment) {
        self.write().insert(
            assignment.entry.name.clone(),
            Held {
                role: Some(assignment.role),
                epoch: assignment.epoch,
                generation: assignment.generation,
            },
        );
    }

    /// Marks `device` as no longer collected here, keeping its epoch for fencing.
    pub fn retire(&self, device: &DeviceKey) {
        if let Some(held) = self.write().get_mut(device) {
            held.role = None;
        }
    }

    /// What is held for `device`.
    pub fn get(&self, device: &DeviceKey) -> Option<Held> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(device)
            .copied()
    }

    /// The fence for a batch of samples from `devices`: each fenced device (epoch > 0)
    /// with its epoch.
    pub fn fence<'a>(&self, devices: impl IntoIterator<Item = &'a DeviceKey>) -> store::Fence {
        let table = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut fence = store::Fence::new();
        for device in devices {
            if fence.contains_key(device) {
                continue;
            }
            if let Some(held) = table.get(device).filter(|h| h.epoch > 0) {
                fence.insert(device.clone(), held.epoch);
            }
        }
        fence
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<DeviceKey, Held>> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::plain_text_device;

    fn entry(name: &str, port: u16) -> DeviceEntry {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        plain_text_device(DeviceKey::new(name).unwrap(), addr, "1s")
    }

    fn assign(name: &str, port: u16, epoch: u64, role: Role) -> (DeviceKey, Assignment) {
        let entry = entry(name, port);
        (
            entry.name.clone(),
            Assignment {
                entry,
                epoch,
                role,
                generation: Some(1),
            },
        )
    }

    fn key(name: &str) -> DeviceKey {
        DeviceKey::new(name).unwrap()
    }

    #[test]
    fn changes_stop_first_then_start_restart_or_reassign() {
        let running: HashMap<_, _> = [
            assign("a", 1, 1, Role::Owner),
            assign("b", 2, 1, Role::Owner),
            assign("c", 3, 1, Role::Incoming),
            assign("d", 4, 2, Role::Owner),
        ]
        .into_iter()
        .collect();
        let desired: Desired = [
            // a: gone. b: new port (spec change). c: promoted. d: unchanged. e: new.
            assign("b", 20, 1, Role::Owner),
            assign("c", 3, 2, Role::Owner),
            assign("d", 4, 2, Role::Owner),
            assign("e", 5, 1, Role::Incoming),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            changes(&running, &desired),
            vec![
                Change::Stop(key("a")),
                Change::Restart(key("b")),
                Change::Reassign(key("c")),
                Change::Start(key("e")),
            ]
        );
        // Nothing to do once running matches.
        let now: HashMap<_, _> = desired.clone().into_iter().collect();
        assert!(changes(&now, &desired).is_empty());
    }

    #[test]
    fn the_fence_names_fenced_devices_and_keeps_epochs_of_retired_ones() {
        let table = OwnershipTable::default();
        table.set(&assign("a", 1, 3, Role::Owner).1);
        table.set(&assign("b", 2, 5, Role::Incoming).1);
        table.set(&assign("file", 3, 0, Role::Owner).1);
        table.retire(&key("a"));
        let fence = table.fence([&key("a"), &key("b"), &key("file"), &key("never"), &key("a")]);
        assert_eq!(fence, [(key("a"), 3), (key("b"), 5)].into_iter().collect());
        assert_eq!(
            table.get(&key("a")),
            Some(Held {
                role: None,
                epoch: 3,
                generation: Some(1),
            })
        );
    }

    #[test]
    fn a_fixed_source_holds_its_devices_and_never_changes() {
        let rx = fixed(vec![entry("a", 1), entry("b", 2)]);
        assert_eq!(rx.borrow().len(), 2);
        assert!(
            rx.borrow()
                .values()
                .all(|a| a.epoch == 0 && a.role == Role::Owner)
        );
        assert!(!rx.has_changed().unwrap_or(false));
    }
}
