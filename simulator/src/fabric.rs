//! The leaf-spine fabric the devices of a fleet form, as LLDP reports it.
//!
//! Devices come in pods of `spines + interfaces` consecutive devices: the first `spines`
//! of each pod are spines, the rest are leaves. Leaf `j` of a pod (0-based) uses its
//! interface `EthernetU` (U = u + 1) as uplink to spine `u` of the pod, on the spine's
//! interface `Ethernet{j+1}`. So with 4 interfaces and 2 spines, `sim-0001` and
//! `sim-0002` are spines, `sim-0003`..`sim-0006` are leaves, and `sim-0007` starts the next
//! pod. Pure: no IO, no clock.

/// What a device is in the fabric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A spine: its interfaces face the leaves of its pod.
    Spine,
    /// A leaf: its first interfaces are uplinks to the spines of its pod.
    Leaf,
}

impl Role {
    /// `spine` or `leaf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Spine => "spine",
            Role::Leaf => "leaf",
        }
    }
}

/// The layout of a fleet's fabric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fabric {
    devices: usize,
    spines: usize,
    interfaces: usize,
}

impl Fabric {
    /// `devices` devices with `interfaces` interfaces each and `spines` spines per pod; 0
    /// spines means no fabric: every device is a leaf without neighbours.
    pub(crate) fn new(devices: usize, spines: usize, interfaces: usize) -> Self {
        Self {
            devices,
            spines,
            interfaces,
        }
    }

    fn pod_size(&self) -> usize {
        self.spines + self.interfaces
    }

    /// The role of device `index`.
    pub(crate) fn role(&self, index: usize) -> Role {
        if self.spines == 0 || index % self.pod_size() >= self.spines {
            Role::Leaf
        } else {
            Role::Spine
        }
    }

    /// The (device, interface) at the other end of interface `iface` of device `index`.
    pub(crate) fn neighbor(&self, index: usize, iface: usize) -> Option<(usize, usize)> {
        if self.spines == 0 || index >= self.devices || iface >= self.interfaces {
            return None;
        }
        let pod_start = index - index % self.pod_size();
        let position = index - pod_start;
        let (device, port) = if position < self.spines {
            // Spine `position`, port `iface` faces leaf `iface` on its uplink `position`.
            (pod_start + self.spines + iface, position)
        } else {
            // Leaf `position - spines`, uplink `iface` goes to spine `iface`.
            if iface >= self.spines {
                return None;
            }
            (pod_start + iface, position - self.spines)
        };
        (device < self.devices && port < self.interfaces).then_some((device, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_start_with_their_spines() {
        let f = Fabric::new(14, 2, 4);
        let roles: String = (0..14)
            .map(|i| if f.role(i) == Role::Spine { 'S' } else { 'L' })
            .collect();
        assert_eq!(roles, "SSLLLLSSLLLLSS");
        assert!((0..5).all(|i| Fabric::new(5, 0, 4).role(i) == Role::Leaf));
    }

    #[test]
    fn links_are_symmetric_and_leaves_reach_every_spine_of_their_pod() {
        for (devices, spines, interfaces) in [(14, 2, 4), (40, 4, 16), (7, 3, 2), (3, 2, 4)] {
            let f = Fabric::new(devices, spines, interfaces);
            let mut links = 0;
            for d in 0..devices {
                for i in 0..interfaces {
                    if let Some((n, p)) = f.neighbor(d, i) {
                        assert_eq!(f.neighbor(n, p), Some((d, i)), "{d}/{i} -> {n}/{p}");
                        assert_ne!(f.role(d), f.role(n), "links join a leaf and a spine");
                        links += 1;
                    }
                }
                if f.role(d) == Role::Leaf {
                    let uplinks = (0..interfaces).filter_map(|i| f.neighbor(d, i)).count();
                    let pod = d - d % (spines + interfaces);
                    let pod_spines = spines.min(interfaces).min(devices - pod);
                    assert_eq!(uplinks, pod_spines, "leaf {d}");
                }
            }
            assert_eq!(links % 2, 0);
        }
        assert_eq!(Fabric::new(14, 2, 4).neighbor(2, 1), Some((1, 0)));
        assert_eq!(Fabric::new(14, 2, 4).neighbor(0, 3), Some((5, 0)));
        assert_eq!(Fabric::new(14, 0, 4).neighbor(2, 0), None);
    }
}
