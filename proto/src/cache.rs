//! Leaf paths a device has sent before, shared instead of rebuilt.
//!
//! A device streams the same few hundred leaf paths over and over. Turning each
//! `gnmi::Path` (prefix joined with the update's path) into a fresh [`model::Path`] costs
//! about ten small allocations per update, which dominated the collector's profile. A
//! [`PathCache`] keeps one `Arc<Path>` per leaf it has seen: a path seen before costs one
//! hash over the gNMI form and one comparison, and every sample of that leaf shares the
//! same `Arc`.
//!
//! Each entry also carries the leaf's [`LeafId`], a 64-bit hash of its canonical path
//! that stays the same for the life of the process, so per-leaf bookkeeping (sample
//! completeness) can key on a number instead of a path.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use model::Path;

use crate::{Result, gnmi};

/// A stable 64-bit identity of a canonical path (see [`leaf_id`]).
pub type LeafId = u64;

/// Fixed seed: ids must not change between caches (a cache is cleared when it overflows).
const SEED: u64 = 0x6e65_7470_756c_7365;

/// The [`LeafId`] of `path`: a hash of its canonical form, the same for equal paths.
pub fn leaf_id(path: &Path) -> LeafId {
    FixedState::with_seed(SEED).hash_one(path)
}

/// The joined leaf paths of one device's notifications, bounded in count.
#[derive(Debug)]
pub struct PathCache {
    table: HashTable<Entry>,
    limit: usize,
    cleared: u64,
}

#[derive(Debug)]
struct Entry {
    hash: u64,
    path: Arc<Path>,
    id: LeafId,
}

impl PathCache {
    /// A cache holding at most `limit` paths; when a new path would exceed it, the cache
    /// starts over (a device whose paths never repeat gets no benefit and no growth).
    /// A limit of 0 caches nothing.
    pub fn new(limit: usize) -> Self {
        Self {
            table: HashTable::new(),
            limit,
            cleared: 0,
        }
    }

    /// Paths held now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no path is held.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// How many times the cache overflowed and started over.
    pub fn overflows(&self) -> u64 {
        self.cleared
    }

    /// The full path of an update, `prefix` joined with `path` (see
    /// [`crate::path::full_path`], whose results and errors this returns), with its id.
    pub fn full_path(
        &mut self,
        prefix: Option<&gnmi::Path>,
        path: Option<&gnmi::Path>,
    ) -> Result<(Arc<Path>, LeafId)> {
        // Paths in the deprecated `element` form are rare: they are not cached.
        if uses_legacy_elements(prefix) || uses_legacy_elements(path) || self.limit == 0 {
            let full = Arc::new(crate::path::full_path(prefix, path)?);
            let id = leaf_id(&full);
            return Ok((full, id));
        }
        let hash = gnmi_hash(prefix, path);
        if let Some(entry) = self
            .table
            .find(hash, |e| e.hash == hash && same_path(&e.path, prefix, path))
        {
            return Ok((entry.path.clone(), entry.id));
        }
        let full = Arc::new(crate::path::full_path(prefix, path)?);
        let id = leaf_id(&full);
        if self.table.len() >= self.limit {
            self.table.clear();
            self.cleared += 1;
        }
        self.table.insert_unique(
            hash,
            Entry {
                hash,
                path: full.clone(),
                id,
            },
            |e| e.hash,
        );
        Ok((full, id))
    }
}

#[allow(deprecated)]
fn uses_legacy_elements(path: Option<&gnmi::Path>) -> bool {
    path.is_some_and(|p| p.elem.is_empty() && !p.element.is_empty())
}

/// The origin a joined path gets: the update's own, else the prefix's.
fn joined_origin<'a>(prefix: Option<&'a gnmi::Path>, path: Option<&'a gnmi::Path>) -> &'a str {
    match (prefix, path) {
        (_, Some(p)) if !p.origin.is_empty() => &p.origin,
        (Some(p), _) => &p.origin,
        (None, _) => "",
    }
}

fn joined_elems<'a>(
    prefix: Option<&'a gnmi::Path>,
    path: Option<&'a gnmi::Path>,
) -> impl Iterator<Item = &'a gnmi::PathElem> {
    prefix.into_iter().chain(path).flat_map(|p| p.elem.iter())
}

/// A hash of the joined gNMI path that does not depend on the order of the keys of an
/// element (they arrive as a map in no particular order).
fn gnmi_hash(prefix: Option<&gnmi::Path>, path: Option<&gnmi::Path>) -> u64 {
    let state = FixedState::with_seed(SEED);
    let mut h = state.build_hasher();
    joined_origin(prefix, path).hash(&mut h);
    for elem in joined_elems(prefix, path) {
        elem.name.hash(&mut h);
        let keys = elem
            .key
            .iter()
            .fold(0u64, |acc, kv| acc.wrapping_add(state.hash_one(kv)));
        keys.hash(&mut h);
    }
    h.finish()
}

/// Whether the joined gNMI path is `cached`, without building it.
fn same_path(cached: &Path, prefix: Option<&gnmi::Path>, path: Option<&gnmi::Path>) -> bool {
    let count = prefix.map_or(0, |p| p.elem.len()) + path.map_or(0, |p| p.elem.len());
    cached.origin == joined_origin(prefix, path)
        && cached.elems.len() == count
        && cached
            .elems
            .iter()
            .zip(joined_elems(prefix, path))
            .all(|(c, g)| {
                c.name == g.name
                    && c.keys.len() == g.key.len()
                    && g.key
                        .iter()
                        .all(|(k, v)| c.keys.get(k).is_some_and(|cv| cv == v))
            })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A wire path from `(name, keys)` pairs, with `origin`.
    pub(crate) fn gpath(origin: &str, elems: &[(&str, &[(&str, &str)])]) -> gnmi::Path {
        gnmi::Path {
            origin: origin.into(),
            elem: elems
                .iter()
                .map(|(name, keys)| gnmi::PathElem {
                    name: (*name).into(),
                    key: keys
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect::<HashMap<_, _>>(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_path_seen_before_is_shared_and_equal_to_a_fresh_decode() {
        let mut cache = PathCache::new(100);
        let prefix = gpath(
            "openconfig",
            &[("interfaces", &[]), ("interface", &[("name", "Ethernet1")])],
        );
        let leaf = gpath("", &[("state", &[]), ("counters", &[]), ("in-octets", &[])]);
        let (first, id1) = cache.full_path(Some(&prefix), Some(&leaf)).expect("valid");
        let (second, id2) = cache.full_path(Some(&prefix), Some(&leaf)).expect("valid");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(id1, id2);
        let fresh = crate::path::full_path(Some(&prefix), Some(&leaf)).expect("valid");
        assert_eq!(*first, fresh);
        assert_eq!(id1, leaf_id(&fresh));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn paths_that_differ_anywhere_are_different_entries() {
        let mut cache = PathCache::new(100);
        let variants = [
            (
                gpath("", &[("a", &[]), ("b", &[("k", "1")])]),
                gpath("", &[("c", &[])]),
            ),
            (
                gpath("", &[("a", &[]), ("b", &[("k", "2")])]),
                gpath("", &[("c", &[])]),
            ),
            (
                gpath("", &[("a", &[]), ("b", &[("j", "1")])]),
                gpath("", &[("c", &[])]),
            ),
            (
                gpath("", &[("a", &[]), ("b", &[])]),
                gpath("", &[("c", &[])]),
            ),
            (
                gpath("oc", &[("a", &[]), ("b", &[("k", "1")])]),
                gpath("", &[("c", &[])]),
            ),
            (
                gpath("", &[("a", &[]), ("b", &[("k", "1")])]),
                gpath("x", &[("c", &[])]),
            ),
            // The same elements split differently between prefix and path are one path.
            (
                gpath("", &[("a", &[])]),
                gpath("", &[("b", &[("k", "1")]), ("c", &[])]),
            ),
        ];
        let mut paths = Vec::new();
        for (prefix, path) in &variants {
            let (p, id) = cache.full_path(Some(prefix), Some(path)).expect("valid");
            assert_eq!(
                *p,
                crate::path::full_path(Some(prefix), Some(path)).expect("valid")
            );
            assert_eq!(id, leaf_id(&p));
            paths.push(p.to_string());
        }
        assert_eq!(paths[0], paths[6]);
        let distinct: std::collections::BTreeSet<_> = paths.iter().collect();
        assert_eq!(distinct.len(), 6, "{paths:?}");
        assert_eq!(cache.len(), 6);
    }

    #[test]
    fn key_order_does_not_matter() {
        let mut a = gnmi::PathElem {
            name: "entry".into(),
            key: HashMap::new(),
        };
        for i in 0..8 {
            a.key.insert(format!("k{i}"), format!("v{i}"));
        }
        let mut b = a.clone();
        let mut pairs: Vec<_> = a.key.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        pairs.reverse();
        b.key = HashMap::with_capacity(16);
        b.key.extend(pairs);
        let pa = gnmi::Path {
            elem: vec![a],
            ..Default::default()
        };
        let pb = gnmi::Path {
            elem: vec![b],
            ..Default::default()
        };
        assert_eq!(gnmi_hash(None, Some(&pa)), gnmi_hash(None, Some(&pb)));
        let mut cache = PathCache::new(10);
        let (x, _) = cache.full_path(None, Some(&pa)).expect("valid");
        let (y, _) = cache.full_path(None, Some(&pb)).expect("valid");
        assert!(Arc::ptr_eq(&x, &y));
    }

    #[test]
    fn invalid_paths_are_refused_and_not_cached() {
        let mut cache = PathCache::new(10);
        let bad = gpath("", &[("a/b", &[])]);
        let error = cache.full_path(None, Some(&bad)).expect_err("invalid");
        assert_eq!(
            error,
            crate::path::full_path(None, Some(&bad)).expect_err("invalid")
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_starts_over_at_its_limit_and_limit_zero_caches_nothing() {
        let mut cache = PathCache::new(3);
        for i in 0..7 {
            let p = gpath("", &[("leaf", &[("i", &i.to_string())])]);
            let (path, _) = cache.full_path(None, Some(&p)).expect("valid");
            assert_eq!(path.to_string(), format!("/leaf[i={i}]"));
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.overflows(), 2);
        let mut none = PathCache::new(0);
        let p = gpath("", &[("leaf", &[])]);
        let (a, _) = none.full_path(None, Some(&p)).expect("valid");
        let (b, _) = none.full_path(None, Some(&p)).expect("valid");
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(none.is_empty());
    }

    #[test]
    #[allow(deprecated)]
    fn legacy_element_paths_decode_as_before() {
        let mut cache = PathCache::new(10);
        let legacy = gnmi::Path {
            element: vec!["interfaces".into(), "interface[name=Ethernet1]".into()],
            ..Default::default()
        };
        let (p, id) = cache.full_path(None, Some(&legacy)).expect("valid");
        assert_eq!(p.to_string(), "/interfaces/interface[name=Ethernet1]");
        assert_eq!(id, leaf_id(&p));
        assert!(cache.is_empty());
    }
}
