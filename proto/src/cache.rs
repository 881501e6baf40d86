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
    /// Prefixes seen, each with a serial number that leaves refer to.
    prefixes: HashTable<PrefixEntry>,
    /// Leaves, keyed by their prefix's serial and their own part of the path.
    table: HashTable<Entry>,
    /// Prefixes and leaves by their protobuf bytes ([`crate::wire`]): a leaf seen before
    /// costs one hash and one comparison of a few dozen bytes, nothing decoded.
    raw_prefixes: HashTable<RawPrefix>,
    raw_leaves: HashTable<RawLeaf>,
    next_serial: u64,
    limit: usize,
    cleared: u64,
}

#[derive(Debug)]
struct RawPrefix {
    hash: u64,
    /// `None` for a notification without a prefix.
    bytes: Option<Box<[u8]>>,
    serial: u64,
}

#[derive(Debug)]
struct RawLeaf {
    hash: u64,
    prefix: u64,
    bytes: Option<Box<[u8]>>,
    path: Arc<Path>,
    id: LeafId,
}

/// Whether stored bytes are the bytes looked up (absent and empty differ).
fn same_raw(stored: Option<&[u8]>, wanted: Option<&[u8]>) -> bool {
    match (stored, wanted) {
        (None, None) => true,
        (Some(a), Some(b)) => same_bytes(a, b),
        _ => false,
    }
}

/// The hash of optional bytes.
fn raw_hash(bytes: Option<&[u8]>) -> u64 {
    let mut h = FixedState::with_seed(SEED).build_hasher();
    match bytes {
        None => h.write_u8(0),
        Some(b) => {
            h.write_u8(1);
            h.write(b);
        }
    }
    h.finish()
}

#[derive(Debug)]
struct PrefixEntry {
    hash: u64,
    origin: String,
    /// Element names with their keys, as received.
    elem: Vec<(String, Vec<(String, String)>)>,
    serial: u64,
}

impl PrefixEntry {
    fn matches(&self, hash: u64, origin: &str, elem: &[gnmi::PathElem]) -> bool {
        self.hash == hash
            && same_text(&self.origin, origin)
            && self.elem.len() == elem.len()
            && self.elem.iter().zip(elem).all(|((name, keys), g)| {
                same_text(name, &g.name)
                    && keys.len() == g.key.len()
                    && g.key.iter().all(|(k, v)| {
                        keys.iter()
                            .any(|(ck, cv)| same_text(ck, k) && same_text(cv, v))
                    })
            })
    }
}

#[derive(Debug)]
struct Entry {
    hash: u64,
    prefix: u64,
    path: Arc<Path>,
    id: LeafId,
}

/// A notification's prefix, resolved once for all its updates ([`PathCache::prefix`]).
#[derive(Debug, Clone, Copy)]
pub struct Prefix {
    /// Serial of the prefix entry; 0 when the paths under it are not cached.
    serial: u64,
    /// Elements of the prefix.
    elems: usize,
}

impl PathCache {
    /// A cache holding at most `limit` paths; when a new path would exceed it, the cache
    /// starts over (a device whose paths never repeat gets no benefit and no growth).
    /// A limit of 0 caches nothing.
    pub fn new(limit: usize) -> Self {
        Self {
            prefixes: HashTable::new(),
            table: HashTable::new(),
            raw_prefixes: HashTable::new(),
            raw_leaves: HashTable::new(),
            next_serial: 1,
            limit,
            cleared: 0,
        }
    }

    /// Paths held now (by structure and by bytes).
    pub fn len(&self) -> usize {
        self.table.len() + self.raw_leaves.len()
    }

    /// Whether no path is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times the cache overflowed and started over.
    pub fn overflows(&self) -> u64 {
        self.cleared
    }

    /// The full path of an update, `prefix` joined with `path` (see
    /// [`crate::path::full_path`], whose results and errors this returns), with its id.
    /// For several updates under one prefix, [`PathCache::prefix`] once then
    /// [`PathCache::leaf`] per update compares the prefix once instead of every time.
    pub fn full_path(
        &mut self,
        prefix: Option<&gnmi::Path>,
        path: Option<&gnmi::Path>,
    ) -> Result<(Arc<Path>, LeafId)> {
        let resolved = self.prefix(prefix);
        self.leaf(resolved, prefix, path)
    }

    /// Resolves a notification's prefix: one hash and one comparison, or a new entry.
    pub fn prefix(&mut self, prefix: Option<&gnmi::Path>) -> Prefix {
        let elems = prefix.map_or(0, |p| p.elem.len());
        // Paths in the deprecated `element` form are rare: they are not cached.
        if uses_legacy_elements(prefix) || self.limit == 0 {
            return Prefix { serial: 0, elems };
        }
        let (origin, elem) = prefix.map_or(("", &[][..]), |p| (p.origin.as_str(), &p.elem[..]));
        let hash = elems_hash(origin, elem);
        if let Some(entry) = self.prefixes.find(hash, |e| e.matches(hash, origin, elem)) {
            return Prefix {
                serial: entry.serial,
                elems,
            };
        }
        if self.prefixes.len() >= self.limit {
            self.start_over();
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        self.prefixes.insert_unique(
            hash,
            PrefixEntry {
                hash,
                origin: origin.to_owned(),
                elem: elem
                    .iter()
                    .map(|e| {
                        let keys = e.key.iter().map(|(k, v)| (k.clone(), v.clone()));
                        (e.name.clone(), keys.collect())
                    })
                    .collect(),
                serial,
            },
            |e| e.hash,
        );
        Prefix { serial, elems }
    }

    /// The full path of an update under a prefix resolved by [`PathCache::prefix`] from
    /// the same `prefix`.
    pub fn leaf(
        &mut self,
        resolved: Prefix,
        prefix: Option<&gnmi::Path>,
        path: Option<&gnmi::Path>,
    ) -> Result<(Arc<Path>, LeafId)> {
        if resolved.serial == 0 || uses_legacy_elements(path) {
            let full = Arc::new(crate::path::full_path(prefix, path)?);
            let id = leaf_id(&full);
            return Ok((full, id));
        }
        let (origin, elem) = path.map_or(("", &[][..]), |p| (p.origin.as_str(), &p.elem[..]));
        let hash = elems_hash(origin, elem) ^ resolved.serial.wrapping_mul(GOLDEN);
        let joined = joined_origin(prefix, path);
        if let Some(entry) = self.table.find(hash, |e| {
            e.hash == hash
                && e.prefix == resolved.serial
                && same_text(&e.path.origin, joined)
                && e.path.elems.len() == resolved.elems + elem.len()
                && same_elems(&e.path.elems[resolved.elems..], elem)
        }) {
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
                prefix: resolved.serial,
                path: full.clone(),
                id,
            },
            |e| e.hash,
        );
        Ok((full, id))
    }

    /// Forgets everything: leaves refer to prefixes by serial, so both go together.
    fn start_over(&mut self) {
        self.table.clear();
        self.prefixes.clear();
        self.cleared += 1;
    }

    /// The serial of a prefix given as its protobuf bytes (`None`: no prefix), if seen.
    pub(crate) fn raw_prefix(&self, bytes: Option<&[u8]>) -> Option<u64> {
        let hash = raw_hash(bytes);
        self.raw_prefixes
            .find(hash, |e| {
                e.hash == hash && same_raw(e.bytes.as_deref(), bytes)
            })
            .map(|e| e.serial)
    }

    /// Remembers a prefix [`PathCache::raw_prefix`] did not find, which the caller has
    /// checked decodes; its serial (0 when nothing is cached: limit 0).
    pub(crate) fn insert_raw_prefix(&mut self, bytes: Option<&[u8]>) -> u64 {
        if self.limit == 0 {
            return 0;
        }
        let hash = raw_hash(bytes);
        if self.raw_prefixes.len() >= self.limit {
            self.raw_prefixes.clear();
            self.raw_leaves.clear();
            self.cleared += 1;
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        self.raw_prefixes.insert_unique(
            hash,
            RawPrefix {
                hash,
                bytes: bytes.map(Box::from),
                serial,
            },
            |e| e.hash,
        );
        serial
    }

    /// The leaf under prefix `serial` whose path has these protobuf bytes, if seen.
    pub(crate) fn raw_leaf(
        &self,
        serial: u64,
        bytes: Option<&[u8]>,
    ) -> Option<(Arc<Path>, LeafId)> {
        if serial == 0 {
            return None;
        }
        let hash = raw_hash(bytes) ^ serial.wrapping_mul(GOLDEN);
        self.raw_leaves
            .find(hash, |e| {
                e.hash == hash && e.prefix == serial && same_raw(e.bytes.as_deref(), bytes)
            })
            .map(|e| (e.path.clone(), e.id))
    }

    /// Remembers the leaf [`PathCache::raw_leaf`] did not find.
    pub(crate) fn insert_raw_leaf(
        &mut self,
        serial: u64,
        bytes: Option<&[u8]>,
        path: Arc<Path>,
        id: LeafId,
    ) {
        if serial == 0 {
            return;
        }
        if self.raw_leaves.len() >= self.limit {
            self.raw_leaves.clear();
            self.cleared += 1;
        }
        let hash = raw_hash(bytes) ^ serial.wrapping_mul(GOLDEN);
        self.raw_leaves.insert_unique(
            hash,
            RawLeaf {
                hash,
                prefix: serial,
                bytes: bytes.map(Box::from),
                path,
                id,
            },
            |e| e.hash,
        );
    }
}

/// Spreads a prefix serial over the hash bits.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

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

/// A hash of an origin and elements that does not depend on the order of the keys of an
/// element (they arrive as a map in no particular order).
fn elems_hash(origin: &str, elems: &[gnmi::PathElem]) -> u64 {
    let state = FixedState::with_seed(SEED);
    let mut h = state.build_hasher();
    origin.hash(&mut h);
    for elem in elems {
        elem.name.hash(&mut h);
        let keys = elem
            .key
            .iter()
            .fold(0u64, |acc, kv| acc.wrapping_add(state.hash_one(kv)));
        keys.hash(&mut h);
    }
    h.finish()
}

/// Whether canonical elements are the same as wire elements.
fn same_elems(cached: &[model::PathElem], wire: &[gnmi::PathElem]) -> bool {
    cached.iter().zip(wire).all(|(c, g)| {
        same_text(&c.name, &g.name)
            && c.keys.len() == g.key.len()
            && g.key.iter().all(|(k, v)| {
                c.keys
                    .iter()
                    .any(|(ck, cv)| same_text(ck, k) && same_text(cv, v))
            })
    })
}

/// String equality for the short names and keys of paths, inline: the C library's
/// `memcmp` (what `==` calls) cost a third of the CPU of path lookups on this machine,
/// mostly to start up for a handful of bytes (docs/PERFORMANCE.md, "Fourth round").
#[inline]
fn same_text(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// Byte equality without `memcmp` (see [`same_text`]).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut words_a = a.chunks_exact(8);
    let mut words_b = b.chunks_exact(8);
    for (x, y) in (&mut words_a).zip(&mut words_b) {
        if u64::from_ne_bytes(x.try_into().unwrap_or_default())
            != u64::from_ne_bytes(y.try_into().unwrap_or_default())
        {
            return false;
        }
    }
    let mut rest = 0u64;
    for (x, y) in words_a.remainder().iter().zip(words_b.remainder()) {
        rest |= u64::from(x ^ y);
    }
    rest == 0
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
        // Leaves are kept per prefix: the differently split one is an entry of its own.
        assert_eq!(cache.len(), 7);
    }

    #[test]
    fn a_prefix_resolved_once_serves_its_updates_and_only_its_own() {
        let mut cache = PathCache::new(100);
        let eth = |n: &str| gpath("", &[("interfaces", &[]), ("interface", &[("name", n)])]);
        let (one, two) = (eth("Ethernet1"), eth("Ethernet2"));
        let leaf = |l: &str| gpath("", &[("state", &[]), ("counters", &[]), (l, &[])]);
        let mut seen = Vec::new();
        for _ in 0..2 {
            for prefix in [&one, &two] {
                let resolved = cache.prefix(Some(prefix));
                for name in ["in-octets", "out-octets"] {
                    let (p, id) = cache
                        .leaf(resolved, Some(prefix), Some(&leaf(name)))
                        .expect("valid");
                    let fresh =
                        crate::path::full_path(Some(prefix), Some(&leaf(name))).expect("valid");
                    assert_eq!(*p, fresh);
                    assert_eq!(id, leaf_id(&fresh));
                    seen.push(p);
                }
            }
        }
        assert_eq!(cache.len(), 4, "two prefixes x two leaves");
        for (first, again) in seen[..4].iter().zip(&seen[4..]) {
            assert!(Arc::ptr_eq(first, again), "shared on the second round");
        }
    }

    #[test]
    fn text_equality_is_byte_equality() {
        let texts = [
            "",
            "a",
            "b",
            "in-octets",
            "in-octetz",
            "Ethernet1/1",
            "Ethernet1/10",
            "abcdefgh",
            "abcdefgi",
            "abcdefghabcdefgh",
            "abcdefghabcdefgX",
            "é",
            "e",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(same_text(a, b), a == b, "{a:?} vs {b:?}");
            }
        }
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
        assert_eq!(elems_hash("", &pa.elem), elems_hash("", &pb.elem));
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
