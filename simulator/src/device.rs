//! The data tree of one virtual device: its leaves, grouped by the notification prefix
//! they are sent under, and their values.
//!
//! Groups, in order (a group's index is its place in a [`Selection`]):
//! - one per interface, `/interfaces/interface[name=X]/state`: name, oper-status and six
//!   counters (interface `i` is group `i`);
//! - one per interface with an LLDP neighbour,
//!   `/lldp/interfaces/interface[name=X]/neighbors/neighbor[id=N]/state`: system-name and
//!   port-id (the neighbour id is its system name);
//! - with system leaves, `/components/component[name=CPU0]/cpu/utilization/state`: instant
//!   (percent), and `/system/memory/state`: physical and used (bytes).
//!
//! Only what differs per device is stored; paths are built when sent, so a fleet of
//! thousands of devices stays small.

use std::f64::consts::TAU;
use std::sync::LazyLock;
use std::time::Duration;

use model::{Path, Value};
use proto::gnmi::{self, Encoding};

use crate::fabric::Fabric;
use crate::pattern::{self, Seg};
use crate::traffic::{DIURNAL_PERIOD, Traffic};

/// Operational status strings, as OpenConfig spells them.
const UP: &str = "UP";
const DOWN: &str = "DOWN";
/// Name of the one CPU component.
pub(crate) const CPU_NAME: &str = "CPU0";
/// Key of an LLDP neighbour.
const NEIGHBOR_KEY: &str = "id";

/// Every leaf a device serves; the group says which interface or neighbour it is of.
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
    NeighborSystemName,
    NeighborPortId,
    CpuInstant,
    MemoryPhysical,
    MemoryUsed,
}

/// Number of [`Leaf`] variants.
pub(crate) const LEAVES: usize = 13;

impl Leaf {
    pub(crate) const ALL: [Leaf; LEAVES] = [
        Leaf::Name,
        Leaf::OperStatus,
        Leaf::InOctets,
        Leaf::OutOctets,
        Leaf::InPkts,
        Leaf::OutPkts,
        Leaf::InErrors,
        Leaf::OutErrors,
        Leaf::NeighborSystemName,
        Leaf::NeighborPortId,
        Leaf::CpuInstant,
        Leaf::MemoryPhysical,
        Leaf::MemoryUsed,
    ];

    /// Path below its group's prefix.
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
            Leaf::NeighborSystemName => &["system-name"],
            Leaf::NeighborPortId => &["port-id"],
            Leaf::CpuInstant => &["instant"],
            Leaf::MemoryPhysical => &["physical"],
            Leaf::MemoryUsed => &["used"],
        }
    }

    /// This leaf's bit in a [`Mask`].
    pub(crate) const fn bit(self) -> Mask {
        1 << self as u8
    }
}

/// Wire paths of every leaf relative to its group's prefix, by `Leaf as usize`; shared by
/// every device.
static RELATIVE: LazyLock<Vec<gnmi::Path>> = LazyLock::new(|| {
    Leaf::ALL
        .iter()
        .map(|leaf| gnmi::Path {
            elem: leaf.relative().iter().map(|n| wire_elem(n, None)).collect(),
            ..Default::default()
        })
        .collect()
});

/// A set of [`Leaf`]s of one group, one bit each.
pub(crate) type Mask = u16;

/// The numbers of every leaf of a group, by `Leaf as usize`; text leaves are 0.
pub(crate) type Raw = [u64; LEAVES];

/// What a group of leaves is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// Interface state and counters, by interface index.
    Interface(usize),
    /// The LLDP neighbour on an interface, by interface index.
    Neighbor(usize),
    /// CPU utilisation.
    Cpu,
    /// Memory.
    Memory,
}

impl Group {
    fn leaves(self) -> &'static [Leaf] {
        match self {
            Group::Interface(_) => &Leaf::ALL[..8],
            Group::Neighbor(_) => &[Leaf::NeighborSystemName, Leaf::NeighborPortId],
            Group::Cpu => &[Leaf::CpuInstant],
            Group::Memory => &[Leaf::MemoryPhysical, Leaf::MemoryUsed],
        }
    }
}

/// Leaves selected on a device: one mask per group, by group index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selection(Vec<Mask>);

impl Selection {
    /// Nothing selected on a device with `groups` groups.
    pub(crate) fn none(groups: usize) -> Self {
        Self(vec![0; groups])
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

    /// Selects `leaf` of group `group`.
    pub(crate) fn insert(&mut self, group: usize, leaf: Leaf) {
        if let Some(m) = self.0.get_mut(group) {
            *m |= leaf.bit();
        }
    }

    /// The selected leaves as (group index, mask), skipping empty groups.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, Mask)> + '_ {
        self.0.iter().copied().enumerate().filter(|(_, m)| *m != 0)
    }
}

/// CPU and memory behaviour of a device: slow waves around a base, like [`Traffic`].
#[derive(Debug, Clone)]
struct System {
    cpu_base: f64,
    cpu_swing: f64,
    phase: f64,
    memory_physical: u64,
    memory_base: f64,
}

impl System {
    fn new(seed: u64, index: usize) -> Self {
        let mut rng =
            fastrand::Rng::with_seed(seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        Self {
            cpu_base: 5.0 + rng.f64() * 45.0,
            cpu_swing: 2.0 + rng.f64() * 15.0,
            phase: rng.f64() * TAU,
            memory_physical: (8u64 << 30) << rng.u32(0..=3),
            memory_base: 0.3 + rng.f64() * 0.4,
        }
    }

    fn wave(&self, t: Duration, harmonic: f64) -> f64 {
        let omega = TAU * harmonic / DIURNAL_PERIOD.as_secs_f64();
        (omega * t.as_secs_f64() + self.phase).sin()
    }

    /// CPU utilisation in percent.
    fn cpu(&self, t: Duration) -> u64 {
        let v = self.cpu_base + self.cpu_swing * self.wave(t, 1.0) + 3.0 * self.wave(t, 37.0);
        v.clamp(0.0, 100.0).round() as u64
    }

    fn memory_used(&self, t: Duration) -> u64 {
        let share = (self.memory_base + 0.05 * self.wave(t, 2.0)).clamp(0.0, 1.0);
        (self.memory_physical as f64 * share) as u64 & !0xfff
    }
}

/// The data of one virtual device.
#[derive(Debug)]
pub(crate) struct Device {
    pub name: String,
    index: usize,
    fabric: Fabric,
    traffic: Vec<Traffic>,
    system: Option<System>,
    groups: Vec<Group>,
}

impl Device {
    /// Device number `index` of a fleet built from `seed`, with `interfaces` interfaces
    /// named `Ethernet1`, `Ethernet2`, ..., its place in `fabric`, and CPU and memory
    /// leaves if `system`.
    pub(crate) fn new(
        name: String,
        index: usize,
        interfaces: usize,
        seed: u64,
        fabric: Fabric,
        system: bool,
    ) -> Self {
        let traffic: Vec<_> = (0..interfaces)
            .map(|i| Traffic::new(seed, index, i))
            .collect();
        let mut groups: Vec<Group> = (0..interfaces).map(Group::Interface).collect();
        groups.extend(
            (0..interfaces)
                .filter(|&i| fabric.neighbor(index, i).is_some())
                .map(Group::Neighbor),
        );
        if system {
            groups.extend([Group::Cpu, Group::Memory]);
        }
        groups.shrink_to_fit();
        Self {
            name,
            index,
            fabric,
            traffic,
            system: system.then(|| System::new(seed, index)),
            groups,
        }
    }

    /// Number of groups: the length of a [`Selection`] of this device.
    pub(crate) fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Number of interfaces.
    pub(crate) fn interface_count(&self) -> usize {
        self.traffic.len()
    }

    /// (physical, used) memory in bytes `t` after fleet start, when the device serves
    /// system leaves.
    pub(crate) fn memory(&self, t: Duration) -> Option<(u64, u64)> {
        self.system
            .as_ref()
            .map(|s| (s.memory_physical, s.memory_used(t)))
    }

    /// The name of interface `iface`.
    pub(crate) fn interface_name(iface: usize) -> String {
        format!("Ethernet{}", iface + 1)
    }

    /// (system name, port id) of the neighbour on interface `iface`.
    fn neighbor(&self, iface: usize) -> Option<(String, String)> {
        let (device, port) = self.fabric.neighbor(self.index, iface)?;
        Some((device_name(device), Self::interface_name(port)))
    }

    /// The prefix of group `group` as (name, key) elements.
    fn prefix(&self, group: Group) -> Vec<(&'static str, Option<(&'static str, String)>)> {
        match group {
            Group::Interface(i) => vec![
                ("interfaces", None),
                ("interface", Some(("name", Self::interface_name(i)))),
                ("state", None),
            ],
            Group::Neighbor(i) => {
                let id = self.neighbor(i).map(|(name, _)| name).unwrap_or_default();
                vec![
                    ("lldp", None),
                    ("interfaces", None),
                    ("interface", Some(("name", Self::interface_name(i)))),
                    ("neighbors", None),
                    ("neighbor", Some((NEIGHBOR_KEY, id))),
                    ("state", None),
                ]
            }
            Group::Cpu => vec![
                ("components", None),
                ("component", Some(("name", CPU_NAME.to_owned()))),
                ("cpu", None),
                ("utilization", None),
                ("state", None),
            ],
            Group::Memory => vec![("system", None), ("memory", None), ("state", None)],
        }
    }

    /// The leaves `pattern` selects.
    pub(crate) fn select(&self, pattern: &Path) -> Selection {
        let mut selection = Selection::none(self.groups.len());
        if !pattern::origin_served(pattern) {
            return selection;
        }
        for (g, &group) in self.groups.iter().enumerate() {
            let prefix = self.prefix(group);
            let mut segs: Vec<Seg<'_>> = prefix
                .iter()
                .map(|(name, key)| Seg {
                    name,
                    key: key.as_ref().map(|(k, v)| (*k, v.as_str())),
                })
                .collect();
            let base = segs.len();
            for &leaf in group.leaves() {
                segs.truncate(base);
                segs.extend(leaf.relative().iter().map(|n| Seg::plain(n)));
                if pattern::matches(&pattern.elems, &segs) {
                    selection.insert(g, leaf);
                }
            }
        }
        selection
    }

    /// Every leaf of group `group` as a number, by `Leaf as usize`: counters and gauges
    /// as they are, oper-status as 1 (up) or 0, text as 0. Cheap to compare for changes.
    pub(crate) fn raw_values(&self, group: usize, t: Duration) -> Raw {
        let mut out = [0; LEAVES];
        match self.groups.get(group) {
            Some(&Group::Interface(i)) => {
                let Some(traffic) = self.traffic.get(i) else {
                    return out;
                };
                let c = traffic.counters(t);
                out[Leaf::OperStatus as usize] = u64::from(traffic.is_up(t));
                out[Leaf::InOctets as usize] = c.in_octets;
                out[Leaf::OutOctets as usize] = c.out_octets;
                out[Leaf::InPkts as usize] = c.in_pkts;
                out[Leaf::OutPkts as usize] = c.out_pkts;
                out[Leaf::InErrors as usize] = c.in_errors;
                out[Leaf::OutErrors as usize] = c.out_errors;
            }
            Some(Group::Cpu) => {
                out[Leaf::CpuInstant as usize] = self.system.as_ref().map_or(0, |s| s.cpu(t));
            }
            Some(Group::Memory) => {
                if let Some(s) = &self.system {
                    out[Leaf::MemoryPhysical as usize] = s.memory_physical;
                    out[Leaf::MemoryUsed as usize] = s.memory_used(t);
                }
            }
            Some(Group::Neighbor(_)) | None => {}
        }
        out
    }

    /// Whether group `group` is an interface that is up `t` after fleet start.
    pub(crate) fn is_up(&self, group: usize, t: Duration) -> bool {
        match self.groups.get(group) {
            Some(&Group::Interface(i)) => self.traffic.get(i).is_some_and(|tr| tr.is_up(t)),
            _ => false,
        }
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
            .filter_map(|(g, _)| match self.groups.get(g) {
                Some(&Group::Interface(i)) => self.traffic.get(i)?.next_status_change(t),
                _ => None,
            })
            .min()
    }

    /// Appends one notification per group in `selection` (prefix of the group, leaf paths
    /// relative to it) with the values at `t`, stamped `timestamp_ns`, encoded as
    /// `encoding`.
    pub(crate) fn notifications(
        &self,
        selection: &Selection,
        t: Duration,
        timestamp_ns: i64,
        encoding: Encoding,
        out: &mut Vec<gnmi::Notification>,
    ) {
        for (g, mask) in selection.iter() {
            let Some(&group) = self.groups.get(g) else {
                continue;
            };
            let numbers = (mask & !(Leaf::Name.bit() | Leaf::OperStatus.bit()) != 0)
                .then(|| self.raw_values(g, t));
            let neighbor = match group {
                Group::Neighbor(i) => self.neighbor(i),
                _ => None,
            };
            let update = group
                .leaves()
                .iter()
                .filter(|leaf| mask & leaf.bit() != 0)
                .map(|&leaf| {
                    let value = match (leaf, group) {
                        (Leaf::Name, Group::Interface(i)) => Value::String(Self::interface_name(i)),
                        (Leaf::OperStatus, _) => {
                            let up = self.is_up(g, t);
                            Value::String(if up { UP } else { DOWN }.to_owned())
                        }
                        (Leaf::NeighborSystemName, _) => {
                            Value::String(neighbor.clone().map(|n| n.0).unwrap_or_default())
                        }
                        (Leaf::NeighborPortId, _) => {
                            Value::String(neighbor.clone().map(|n| n.1).unwrap_or_default())
                        }
                        (leaf, _) => Value::Uint(numbers.map_or(0, |n| n[leaf as usize])),
                    };
                    gnmi::Update {
                        path: Some(RELATIVE[leaf as usize].clone()),
                        val: Some(proto::to_typed_value(&value, encoding)),
                        ..Default::default()
                    }
                })
                .collect();
            out.push(gnmi::Notification {
                timestamp: timestamp_ns,
                prefix: Some(wire_path(&self.prefix(group))),
                update,
                ..Default::default()
            });
        }
    }
}

/// The name of device `index` (0-based) of a fleet: `sim-0001`, `sim-0002`, ...
pub(crate) fn device_name(index: usize) -> String {
    format!("sim-{:04}", index + 1)
}

fn wire_path(elems: &[(&str, Option<(&str, String)>)]) -> gnmi::Path {
    gnmi::Path {
        elem: elems
            .iter()
            .map(|(name, key)| wire_elem(name, key.as_ref().map(|(k, v)| (*k, v.as_str()))))
            .collect(),
        ..Default::default()
    }
}

pub(crate) fn wire_elem(name: &str, key: Option<(&str, &str)>) -> gnmi::PathElem {
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
        // Device 2 of a 2-spine fabric is the first leaf: Ethernet1/2 face the spines.
        Device::new("sim-0003".into(), 2, 3, 1, Fabric::new(10, 2, 3), true)
    }

    fn select(d: &Device, p: &str) -> Selection {
        d.select(&p.parse().unwrap())
    }

    /// (full path, value) of every update.
    fn leaves(out: &[gnmi::Notification]) -> Vec<(String, Value)> {
        out.iter()
            .flat_map(|n| {
                n.update.iter().map(|u| {
                    let p = proto::full_path(n.prefix.as_ref(), u.path.as_ref()).unwrap();
                    (
                        p.to_string(),
                        proto::to_value(u.val.as_ref().unwrap()).unwrap(),
                    )
                })
            })
            .collect()
    }

    #[test]
    fn selections_follow_the_path() {
        let d = device();
        // 3 interfaces, 2 neighbours, CPU, memory.
        assert_eq!(d.groups(), 7);
        let all = select(&d, "/");
        assert_eq!(all.iter().count(), 7);
        let interfaces = select(&d, "/interfaces");
        assert_eq!(interfaces.iter().count(), 3);
        assert!(interfaces.iter().all(|(_, m)| m == 0xff));
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
        assert_eq!(select(&d, "/lldp").iter().count(), 2);
        assert_eq!(
            select(
                &d,
                "/lldp/interfaces/interface/neighbors/neighbor[id=sim-0002]"
            )
            .iter()
            .count(),
            1
        );
        assert_eq!(
            select(
                &d,
                "/components/component[name=CPU0]/cpu/utilization/state/instant"
            )
            .iter()
            .collect::<Vec<_>>(),
            vec![(5, Leaf::CpuInstant.bit())]
        );
        assert_eq!(select(&d, "/system/memory").iter().count(), 1);
    }

    #[test]
    fn notifications_use_group_prefix_and_relative_paths() {
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
        assert_eq!(n.update[0].path, Some(RELATIVE[0].clone()));
        let leaves = leaves(&out);
        assert_eq!(leaves.len(), 8);
        assert_eq!(
            leaves[0],
            (
                "/interfaces/interface[name=Ethernet1]/state/name".into(),
                Value::String("Ethernet1".into())
            )
        );
        assert!(leaves[2].0.ends_with("/counters/in-octets"));
        let raw = d.raw_values(0, Duration::from_secs(5));
        assert_eq!(leaves[2].1, Value::Uint(raw[Leaf::InOctets as usize]));
        assert!(matches!(&leaves[1].1, Value::String(s) if s == "UP" || s == "DOWN"));
    }

    #[test]
    fn lldp_cpu_and_memory_leaves() {
        let d = device();
        let mut out = Vec::new();
        let sel = select(&d, "/lldp");
        d.notifications(
            &sel,
            Duration::from_secs(5),
            1,
            Encoding::JsonIetf,
            &mut out,
        );
        let base = "/lldp/interfaces/interface";
        assert_eq!(
            leaves(&out),
            vec![
                (
                    format!(
                        "{base}[name=Ethernet1]/neighbors/neighbor[id=sim-0001]/state/system-name"
                    ),
                    Value::String("sim-0001".into())
                ),
                (
                    format!("{base}[name=Ethernet1]/neighbors/neighbor[id=sim-0001]/state/port-id"),
                    Value::String("Ethernet1".into())
                ),
                (
                    format!(
                        "{base}[name=Ethernet2]/neighbors/neighbor[id=sim-0002]/state/system-name"
                    ),
                    Value::String("sim-0002".into())
                ),
                (
                    format!("{base}[name=Ethernet2]/neighbors/neighbor[id=sim-0002]/state/port-id"),
                    Value::String("Ethernet1".into())
                ),
            ]
        );
        out.clear();
        let sel = select(&d, "/components");
        let mut sel2 = select(&d, "/system");
        sel2.add(&sel);
        d.notifications(&sel2, Duration::from_secs(5), 1, Encoding::Proto, &mut out);
        let got = leaves(&out);
        assert_eq!(got.len(), 3);
        let Value::Uint(cpu) = got[0].1 else {
            panic!("{got:?}")
        };
        assert!(cpu <= 100);
        let (Value::Uint(physical), Value::Uint(used)) = (&got[1].1, &got[2].1) else {
            panic!("{got:?}")
        };
        assert!(used < physical && *physical >= 8 << 30, "{got:?}");
        // CPU moves over time.
        let cpus: std::collections::BTreeSet<u64> = (0..60)
            .map(|s| d.raw_values(5, Duration::from_secs(s * 10))[Leaf::CpuInstant as usize])
            .collect();
        assert!(cpus.len() > 3, "{cpus:?}");
        // Without the fabric and system leaves only interfaces remain.
        let plain = Device::new("sim-0001".into(), 0, 3, 1, Fabric::new(1, 0, 3), false);
        assert_eq!(plain.groups(), 3);
    }
}
