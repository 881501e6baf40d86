//! How a Device's ownership is written on its metadata: shared by the operator, which
//! writes it, and the collectors, which follow it (ADR-0014).
//!
//! - label [`OWNER_LABEL`] `netpulse.io/collector=<pod>`: the owner;
//! - label [`NEXT_LABEL`] `netpulse.io/next-collector=<pod>`: the incoming owner of a
//!   handoff in flight, which connects while the owner keeps collecting;
//! - annotation [`EPOCH_ANNOTATION`] `netpulse.io/epoch`: the ownership epoch, written in
//!   the same apply as the owner label;
//! - annotation [`NEXT_SYNCED_ANNOTATION`] `netpulse.io/next-synced=<pod>@<epoch>`, set by
//!   the incoming collector once it is synced. The epoch in the value ties the report to
//!   one handoff: a value left behind by an earlier handoff to the same pod names an older
//!   epoch and never completes a later one.

use std::collections::BTreeMap;

use kube::ResourceExt as _;

/// Label naming a Device's owner (collector pod name).
pub const OWNER_LABEL: &str = crate::COLLECTOR_LABEL;
/// Label naming the incoming owner of a handoff in flight.
pub const NEXT_LABEL: &str = "netpulse.io/next-collector";
/// Annotation holding the ownership epoch.
pub const EPOCH_ANNOTATION: &str = "netpulse.io/epoch";
/// Annotation the incoming collector sets once it is synced: [`synced_value`].
pub const NEXT_SYNCED_ANNOTATION: &str = "netpulse.io/next-synced";

/// The value of [`NEXT_SYNCED_ANNOTATION`] saying `pod` is synced for the handoff that
/// starts from `epoch` (the epoch the Device holds while the handoff is in flight).
pub fn synced_value(pod: &str, epoch: u64) -> String {
    format!("{pod}@{epoch}")
}

/// The ownership a Device's metadata holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ownership {
    /// The owner's pod name.
    pub owner: Option<String>,
    /// The incoming owner's pod name, during a handoff.
    pub next: Option<String>,
    /// The epoch annotation (0 when absent or not a number).
    pub epoch: u64,
    /// The [`NEXT_SYNCED_ANNOTATION`] value, as written.
    pub next_synced: Option<String>,
}

impl Ownership {
    /// Reads the labels and annotations; empty label values count as absent.
    pub fn read(labels: &BTreeMap<String, String>, annotations: &BTreeMap<String, String>) -> Self {
        let label = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
        Self {
            owner: label(OWNER_LABEL),
            next: label(NEXT_LABEL),
            epoch: annotations
                .get(EPOCH_ANNOTATION)
                .and_then(|e| e.trim().parse::<u64>().ok())
                .unwrap_or(0),
            next_synced: annotations.get(NEXT_SYNCED_ANNOTATION).cloned(),
        }
    }

    /// The ownership of `device`: its metadata, with the epoch raised to the status's
    /// when that is larger, so an edited or lost annotation never takes the epoch back.
    pub fn of(device: &crate::Device) -> Self {
        let mut o = Self::read(device.labels(), device.annotations());
        o.epoch = o.epoch.max(device.status.as_ref().map_or(0, |s| s.epoch));
        o
    }

    /// Whether the incoming owner has said it is synced for this epoch's handoff.
    pub fn next_is_synced(&self, epoch: u64) -> bool {
        match (&self.next, &self.next_synced) {
            (Some(next), Some(value)) => *value == synced_value(next, epoch),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_synced_report_counts_only_for_its_own_handoff() {
        let labels = map(&[(OWNER_LABEL, "c-0"), (NEXT_LABEL, "c-1")]);
        let o = Ownership::read(
            &labels,
            &map(&[(EPOCH_ANNOTATION, "7"), (NEXT_SYNCED_ANNOTATION, "c-1@7")]),
        );
        assert_eq!(o.owner.as_deref(), Some("c-0"));
        assert_eq!(o.epoch, 7);
        assert!(o.next_is_synced(7));
        // Left over from the handoff at epoch 5 to the same pod: not this one.
        let stale = Ownership::read(
            &labels,
            &map(&[(EPOCH_ANNOTATION, "7"), (NEXT_SYNCED_ANNOTATION, "c-1@5")]),
        );
        assert!(!stale.next_is_synced(7));
        // Written by another pod, or with no incoming owner at all.
        let other = Ownership::read(&labels, &map(&[(NEXT_SYNCED_ANNOTATION, "c-2@0")]));
        assert!(!other.next_is_synced(0));
        let none = Ownership::read(
            &map(&[(OWNER_LABEL, "c-0"), (NEXT_LABEL, "")]),
            &map(&[(EPOCH_ANNOTATION, "x"), (NEXT_SYNCED_ANNOTATION, "@0")]),
        );
        assert_eq!(none.next, None);
        assert_eq!(none.epoch, 0);
        assert!(!none.next_is_synced(0));
    }
}
