//! The data tree of one virtual device: its interfaces, their leaves and values.

use std::time::Duration;

use model::{Path, Value};
use proto::gnmi::{self, Encoding};

use crate::pattern::{self, Seg};
use crate::traffic::Traffic;

/// Operational status strings, as OpenConfig spells them.
const UP: &str = "UP";
const DOWN: &str = "DOWN";

/// The leaves every interface has, below `/interfaces/interface[name=X]/state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaf {
    Name,
    OperStatus,
    InOctets,
    OutOctets,
    InPkts,
    OutPkts,
    InErrors,
    OutErrors,
}

impl Leaf {
    pub(crate) const ALL: [Leaf; 8] = [
        Leaf::Name,
        Leaf::OperStatus,
        Leaf::InOctets,
        Leaf::OutOctets,
        Leaf::InPkts,
        Leaf::OutPkts,
        Leaf::InErrors,
        Leaf::OutErrors,
    ];

    /// Path below the interface's `state` container.
    fn relative(self) -> &'static [&'static str] {
        match self {
            Leaf::Name => &["name"],
            Leaf::OperStatus => &["oper-status"],
            Leaf::InOctets => &["counters", "in-octets"],
            Leaf::OutOctets => &["counters", "out-octets"],
            Leaf::InPkts => &["counters", "in-pkts"],
            Leaf::OutPkts => &["counters", "out-pkts"],
            Leaf::InErrors => &["counters", "in-errors"],
            Leaf::OutErrors => &["counters", "out-errors"],
        }
    }

    /// This leaf's bit in a [`Mask`].
    pub(crate) const fn bit(self) -> Mask {
        1 << self as u8
    }
}

/// A set of [`Leaf`]s of one interface, one bit each.
pub(crate) type Mask = u8;

/// Leaves selected on a device: one mask per interface, by interface index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selection(Vec<Mask>);

impl Selection {
    /// Nothing selected on a device with `interfaces` interfaces.
    pub(crate) fn none(interfaces: usize) -> Self {
        Self(vec![0; interfaces])
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.iter().all(|m| *m == 0)
    }

    /// Adds everything `other` selects.
    pub(crate) fn add(&mut self, other: &Selection) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    /// Clears every selection.
    pub(crate) fn clear(&mut self) {
        self.0.fill(0);
    }

    /// Selects `leaf` of interface `iface`.
    pub(crate) fn insert(&mut self, iface: usize, leaf: Leaf) {
        if let Some(m) = self.0.get_mut(iface) {
            *m |= leaf.bit();
        }
    }

    /// The selected leaves as (interface index, mask), skipping empty interfaces.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, Mask)> + '_ {
        self.0.iter().copied().enumerate().filter(|(_, m)| *m != 0)
    }
}

/// One interface: its name, the prefix its notifications carry, and its traffic.
#[derive(Debug)]
pub(crate) struct Interface {
    pub name: String,
    prefix: gnmi::Path,
    traffic: Traffic,
}

/// The data of one virtual device.
#[derive(Debug)]
pub(crate) struct Device {
    pub name: String,
    pub interfaces: Vec<Interface>,
    /// Wire paths of the leaves relative to an interface prefix, by `Leaf as usize`.
    relative: Vec<gnmi::Path>,
}

impl Device {
    /// Device number `index` of a fleet built from `seed`, with `interfaces` interfaces
    /// named `Ethernet1`, `Ethernet2`, ...
    pub(crate) fn new(name: String, index: usize, interfaces: usize, seed: u64) -> Self {
        let interfaces = (0..interfaces)
            .map(|i| {
                let name = format!("Ethernet{}", i + 1);
                let prefix = gnmi::Path {
                    elem: vec![
                        wire_elem("interfaces", None),
                        wire_elem("interface", Some(("name", &name))),
                        wire_elem("state", None),
                    ],
                    ..Default::default()
                };
                Interface {
                    prefix,
                    traffic: Traffic::new(seed, index, i),
                    name,
                }
            })
            .collect();
        let relative = Leaf::ALL
            .iter()
            .map(|leaf| gnmi::Path {
                elem: leaf.relative().iter().map(|n| wire_elem(n, None)).collect(),
                ..Default::default()
            })
            .collect();
        Self {
            name,
            interfaces,
            relative,
        }
    }

    /// The leaves `pattern` selects.
    pub(crate) fn select(&self, pattern: &Path) -> Selection {
        let mut selection = Selection::none(self.interfaces.len());
        if !pattern::origin_served(pattern) {
            return selection;
        }
        for (i, iface) in self.interfaces.iter().enumerate() {
            for leaf in Leaf::ALL {
                let mut segs = [Seg::plain(""); 5];
                segs[0] = Seg::plain("interfaces");
                segs[1] = Seg {
                    name: "interface",
                    key: Some(("name", &iface.name)),
                };
                segs[2] = Seg::plain("state");
                let rel = leaf.relative();
                for (slot, name) in segs[3..].iter_mut().zip(rel) {
                    *slot = Seg::plain(name);
                }
                if pattern::matches(&pattern.elems, &segs[..3 + rel.len()]) {
                    selection.insert(i, leaf);
                }
            }
        }
        selection
    }

    /// Every leaf of interface `iface` as a number, by `Leaf as usize`: counters as they
    /// are, oper-status as 1 (up) or 0, the name as 0. Cheap to compare for changes.
    pub(crate) fn raw_values(&self, iface: usize, t: Duration) -> [u64; 8] {
        let Some(traffic) = self.interfaces.get(iface).map(|i| &i.traffic) else {
            return [0; 8];
        };
        let c = traffic.counters(t);
        let mut out = [0; 8];
        for leaf in Leaf::ALL {
            out[leaf as usize] = match leaf {
                Leaf::Name => 0,
                Leaf::OperStatus => u64::from(traffic.is_up(t)),
                Leaf::InOctets => c.in_octets,
                Leaf::OutOctets => c.out_octets,
                Leaf::InPkts => c.in_pkts,
                Leaf::OutPkts => c.out_pkts,
                Leaf::InErrors => c.in_errors,
                Leaf::OutErrors => c.out_errors,
            };
        }
        out
    }

    /// Whether interface `iface` is up `t` after fleet start.
    pub(crate) fn is_up(&self, iface: usize, t: Duration) -> bool {
        self.interfaces
            .get(iface)
            .is_some_and(|i| i.traffic.is_up(t))
    }

    /// The next oper-status change after `t` of any interface in `selection` whose
    /// oper-status is selected.
    pub(crate) fn next_status_change(
        &self,
        selection: &Selection,
        t: Duration,
    ) -> Option<Duration> {
        selection
            .iter()
            .filter(|(_, mask)| mask & Leaf::OperStatus.bit() != 0)
            .filter_map(|(i, _)| self.interfaces.get(i)?.traffic.next_status_change(t))
            .min()
    }

    /// Appends one notification per interface in `selection` (prefix
    /// `/interfaces/interface[name=X]/state`, leaf paths relative to it) with the values at
    /// `t`, stamped `timestamp_ns`, encoded as `encoding`.
    pub(crate) fn notifications(
        &self,
        selection: &Selection,
        t: Duration,
        timestamp_ns: i64,
        encoding: Encoding,
        out: &mut Vec<gnmi::Notification>,
    ) {
        for (i, mask) in selection.iter() {
            let Some(iface) = self.interfaces.get(i) else {
                continue;
            };
            let counters = (mask & !(Leaf::Name.bit() | Leaf::OperStatus.bit()) != 0)
                .then(|| iface.traffic.counters(t));
            let update = Leaf::ALL
                .iter()
                .filter(|leaf| mask & leaf.bit() != 0)
                .map(|&leaf| {
                    let value = match (leaf, counters) {
                        (Leaf::Name, _) => Value::String(iface.name.clone()),
                        (Leaf::OperStatus, _) => {
                            let up = iface.traffic.is_up(t);
                            Value::String(if up { UP } else { DOWN }.to_owned())
                        }
                        (Leaf::InOctets, Some(c)) => Value::Uint(c.in_octets),
                        (Leaf::OutOctets, Some(c)) => Value::Uint(c.out_octets),
                        (Leaf::InPkts, Some(c)) => Value::Uint(c.in_pkts),
                        (Leaf::OutPkts, Some(c)) => Value::Uint(c.out_pkts),
                        (Leaf::InErrors, Some(c)) => Value::Uint(c.in_errors),
                        (_, c) => Value::Uint(c.map_or(0, |c| c.out_errors)),
                    };
                    gnmi::Update {
                        path: Some(self.relative[leaf as usize].clone()),
                        val: Some(proto::to_typed_value(&value, encoding)),
                        ..Default::default()
                    }
                })
                .collect();
            out.push(gnmi::Notification {
                timestamp: timestamp_ns,
                prefix: Some(iface.prefix.clone()),
                update,
                ..Default::default()
            });
        }
    }
}

fn wire_elem(name: &str, key: Option<(&str, &str)>) -> gnmi::PathElem {
    gnmi::PathElem {
        name: name.to_owned(),
        key: key
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::new("sim-0001".into(), 0, 3, 1)
    }

    fn select(d: &Device, p: &str) -> Selection {
        d.select(&p.parse().unwrap())
    }

    #[test]
    fn selections_follow_the_path() {
        let d = device();
        let all = select(&d, "/");
        assert_eq!(all.iter().count(), 3);
        assert!(all.iter().all(|(_, m)| m == u8::MAX));
        let counters = select(&d, "/interfaces/interface[name=*]/state/counters");
        assert!(counters.iter().all(|(_, m)| m.count_ones() == 6));
        let one = select(
            &d,
            "/interfaces/interface[name=Ethernet2]/state/oper-status",
        );
        assert_eq!(
            one.iter().collect::<Vec<_>>(),
            vec![(1, Leaf::OperStatus.bit())]
        );
        assert!(select(&d, "/interfaces/interface[name=Ethernet9]").is_empty());
        assert!(select(&d, "cli:/interfaces").is_empty());
    }

    #[test]
    fn notifications_use_interface_prefix_and_relative_paths() {
        let d = device();
        let sel = select(&d, "/interfaces/interface[name=Ethernet1]/state");
        let mut out = Vec::new();
        d.notifications(&sel, Duration::from_secs(5), 123, Encoding::Proto, &mut out);
        assert_eq!(out.len(), 1);
        let n = &out[0];
        assert_eq!(n.timestamp, 123);
        let prefix = Path::try_from(n.prefix.as_ref().unwrap()).unwrap();
        assert_eq!(
            prefix.to_string(),
            "/interfaces/interface[name=Ethernet1]/state"
        );
        let leaves: Vec<(String, Value)> = n
            .update
            .iter()
            .map(|u| {
                let p = proto::full_path(None, u.path.as_ref()).unwrap();
                (
                    p.to_string(),
                    proto::to_value(u.val.as_ref().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(leaves.len(), 8);
        assert_eq!(
            leaves[0],
            ("/name".into(), Value::String("Ethernet1".into()))
        );
        assert_eq!(leaves[2].0, "/counters/in-octets");
        let raw = d.raw_values(0, Duration::from_secs(5));
        assert_eq!(leaves[2].1, Value::Uint(raw[Leaf::InOctets as usize]));
        assert!(matches!(&leaves[1].1, Value::String(s) if s == "UP" || s == "DOWN"));
    }
}
