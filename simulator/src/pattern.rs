//! Matching request paths (with wildcards) against the leaves of a device.
//!
//! A request path selects every leaf it is a prefix of. In an element, the name `*`
//! matches any one element, the name `...` matches any number of elements (none
//! included), a key value `*` matches any value, and a key the request leaves out matches
//! every value. Module prefixes on names (`openconfig-interfaces:interfaces`) are ignored.

use model::{Path, PathElem};

/// Origins the simulator's data lives under.
const ORIGINS: [&str; 2] = ["", "openconfig"];

/// One element of a concrete leaf path, borrowed: a name and at most one key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seg<'a> {
    pub name: &'a str,
    pub key: Option<(&'a str, &'a str)>,
}

impl<'a> Seg<'a> {
    /// An element without keys.
    pub(crate) const fn plain(name: &'a str) -> Self {
        Self { name, key: None }
    }
}

/// Whether the origin of `pattern` is one the simulator serves.
pub(crate) fn origin_served(pattern: &Path) -> bool {
    ORIGINS.contains(&pattern.origin.as_str())
}

/// Whether `pattern` selects the leaf at `leaf` (origin not checked: see [`origin_served`]).
pub(crate) fn matches(pattern: &[PathElem], leaf: &[Seg<'_>]) -> bool {
    let Some((first, rest)) = pattern.split_first() else {
        // The pattern is exhausted: the leaf lies in the selected subtree.
        return true;
    };
    if first.name == "..." && first.keys.is_empty() {
        return (0..=leaf.len()).any(|skip| matches(rest, &leaf[skip..]));
    }
    match leaf.split_first() {
        Some((seg, leaf_rest)) => elem_matches(first, seg) && matches(rest, leaf_rest),
        None => false,
    }
}

fn elem_matches(pattern: &PathElem, seg: &Seg<'_>) -> bool {
    let name = strip_module(&pattern.name);
    if name != "*" && name != seg.name {
        return false;
    }
    pattern.keys.iter().all(|(k, v)| match seg.key {
        Some((key, value)) => strip_module(k) == key && (v == "*" || v == value),
        None => false,
    })
}

fn strip_module(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, local)| local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf<'a>(ifname: &'a str, rest: &[&'a str]) -> Vec<Seg<'a>> {
        let mut segs = vec![
            Seg::plain("interfaces"),
            Seg {
                name: "interface",
                key: Some(("name", ifname)),
            },
            Seg::plain("state"),
        ];
        segs.extend(rest.iter().map(|n| Seg::plain(n)));
        segs
    }

    fn sel(pattern: &str, leaf: &[Seg<'_>]) -> bool {
        let p: Path = pattern.parse().unwrap();
        origin_served(&p) && matches(&p.elems, leaf)
    }

    #[test]
    fn prefixes_wildcards_and_keys_select_leaves() {
        let in_octets = leaf("Ethernet1", &["counters", "in-octets"]);
        let oper = leaf("Ethernet2", &["oper-status"]);
        let table = [
            ("/", true, true),
            ("/interfaces", true, true),
            ("openconfig:/interfaces", true, true),
            ("/openconfig-interfaces:interfaces/interface", true, true),
            ("/interfaces/interface[name=*]/state/counters", true, false),
            (
                "/interfaces/interface/state/counters/in-octets",
                true,
                false,
            ),
            ("/interfaces/interface[name=Ethernet1]", true, false),
            (
                "/interfaces/interface[name=Ethernet2]/state/oper-status",
                false,
                true,
            ),
            ("/interfaces/*/state", true, true),
            ("/interfaces/*[name=Ethernet1]/state", true, false),
            ("/.../in-octets", true, false),
            ("/interfaces/.../oper-status", false, true),
            ("/.../state/...", true, true),
            ("/interfaces/interface[name=Ethernet3]", false, false),
            ("/interfaces/interface[ifindex=1]", false, false),
            (
                "/interfaces/interface/state/counters/in-octets/deeper",
                false,
                false,
            ),
            ("/system", false, false),
            ("/interfaces[name=*]", false, false),
            ("cli:/interfaces", false, false),
        ];
        for (pattern, want_octets, want_oper) in table {
            assert_eq!(
                sel(pattern, &in_octets),
                want_octets,
                "{pattern} vs in-octets"
            );
            assert_eq!(sel(pattern, &oper), want_oper, "{pattern} vs oper-status");
        }
    }
}
