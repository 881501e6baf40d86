//! The canonical path form used everywhere in netpulse (store, bus, UI).
//!
//! `origin:/elem/elem[key=value][key2=value2]/leaf`, following the gNMI path string
//! conventions: keys are sorted by name, a `]` or `\` inside a key value is escaped with
//! `\`, and the origin with its `:` is omitted when empty. `Display` writes that form and
//! `FromStr` reads it back, so `path.to_string().parse() == Ok(path)` for every path
//! whose names are valid (non-empty; element names without `/ [ ] =`, key names without
//! `/ [ ] =`, origins without `:` and `/`). Key values may hold any character.
//!
//! Subscription paths may use the gNMI wildcards: an element named [`WILDCARD`] (`*`)
//! stands for any one element, an element named [`MULTI_LEVEL_WILDCARD`] (`...`, no keys)
//! for any number of elements, and a key value `*` for any value of that key, as in
//! `/interfaces/interface[name=*]/...`. They are ordinary names to the parser and round
//! trip like any other; [`Path::matches`] gives them their meaning.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Element name or key value matching anything in its place.
pub const WILDCARD: &str = "*";

/// Element name matching any number (zero included) of elements.
pub const MULTI_LEVEL_WILDCARD: &str = "...";

/// One element of a path: a name and its keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PathElem {
    /// Element name, never empty.
    pub name: String,
    /// List keys (`interface[name=Ethernet1]`), sorted by key name.
    pub keys: BTreeMap<String, String>,
}

impl PathElem {
    /// An element without keys.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            keys: BTreeMap::new(),
        }
    }

    /// Adds a key, builder style.
    pub fn with_key(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.keys.insert(key.into(), value.into());
        self
    }

    /// Whether the name or a key value is a wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.name == WILDCARD
            || self.name == MULTI_LEVEL_WILDCARD
            || self.keys.values().any(|v| v == WILDCARD)
    }

    /// Whether this (pattern) element matches the concrete element `elem`: same name or
    /// `*`, and each key of the pattern equal in `elem` or `*`. Keys the pattern does not
    /// name match anything, as in gNMI, where `interface` means every interface.
    fn matches_one(&self, elem: &PathElem) -> bool {
        (self.name == WILDCARD || self.name == elem.name)
            && self
                .keys
                .iter()
                .all(|(k, v)| elem.keys.get(k).is_some_and(|ev| v == WILDCARD || v == ev))
    }
}

/// A telemetry path: optional origin plus elements. The root path has no elements.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Path {
    /// gNMI origin (`openconfig`, `cli`, ...); empty means the default origin.
    pub origin: String,
    /// Elements from the root down.
    pub elems: Vec<PathElem>,
}

/// Why a string is not a valid path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {input:?} at byte {offset}: {reason}")]
pub struct PathError {
    /// The rejected input.
    pub input: String,
    /// Byte offset where the problem was found.
    pub offset: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

impl Path {
    /// A path from elements, with the default origin.
    pub fn from_elems(elems: Vec<PathElem>) -> Self {
        Self {
            origin: String::new(),
            elems,
        }
    }

    /// This path followed by `other`'s elements (gNMI prefix + path joining). The origin
    /// is `other`'s when it has one, else this one's.
    pub fn join(&self, other: &Path) -> Path {
        let mut elems = self.elems.clone();
        elems.extend(other.elems.iter().cloned());
        let origin = if other.origin.is_empty() {
            self.origin.clone()
        } else {
            other.origin.clone()
        };
        Path { origin, elems }
    }

    /// The value of key `key` on the first element named `elem`.
    pub fn key(&self, elem: &str, key: &str) -> Option<&str> {
        self.elems
            .iter()
            .find(|e| e.name == elem)
            .and_then(|e| e.keys.get(key))
            .map(String::as_str)
    }

    /// Whether any element has a wildcard name or key value (a subscription pattern, not
    /// the path of a leaf).
    pub fn has_wildcards(&self) -> bool {
        self.elems.iter().any(PathElem::is_wildcard)
    }

    /// Whether `path` is selected by this subscription path: the pattern matches `path`
    /// or one of its ancestors (subscribing to a container selects every leaf below it).
    /// Origins must be equal. Without wildcards this is a prefix test.
    pub fn matches(&self, path: &Path) -> bool {
        self.origin == path.origin && matches_from(&self.elems, &path.elems)
    }

    /// The last element's name (the leaf), or "" for the root.
    pub fn leaf(&self) -> &str {
        self.elems.last().map(|e| e.name.as_str()).unwrap_or("")
    }
}

/// Whether `pattern` matches a prefix of `elems` (the whole of it included).
fn matches_from(pattern: &[PathElem], elems: &[PathElem]) -> bool {
    let Some((first, rest)) = pattern.split_first() else {
        return true;
    };
    if first.name == MULTI_LEVEL_WILDCARD {
        // `...` swallows 0..=len elements; try every split.
        return (0..=elems.len()).any(|skip| matches_from(rest, &elems[skip..]));
    }
    match elems.split_first() {
        Some((elem, tail)) => first.matches_one(elem) && matches_from(rest, tail),
        None => false,
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.origin.is_empty() {
            write!(f, "{}:", self.origin)?;
        }
        if self.elems.is_empty() {
            return f.write_char('/');
        }
        for elem in &self.elems {
            f.write_char('/')?;
            f.write_str(&elem.name)?;
            for (k, v) in &elem.keys {
                write!(f, "[{k}=")?;
                for c in v.chars() {
                    if c == ']' || c == '\\' {
                        f.write_char('\\')?;
                    }
                    f.write_char(c)?;
                }
                f.write_char(']')?;
            }
        }
        Ok(())
    }
}

impl FromStr for Path {
    type Err = PathError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |offset: usize, reason: &'static str| PathError {
            input: input.to_owned(),
            offset,
            reason,
        };
        // An origin is everything before the first ':' that precedes the first '/'.
        let (origin, rest, base) = match (input.find(':'), input.find('/')) {
            (Some(0), Some(slash)) if slash > 0 => {
                return Err(fail(0, "empty origin before ':'"));
            }
            (Some(colon), Some(slash)) if colon < slash => {
                (&input[..colon], &input[colon + 1..], colon + 1)
            }
            _ => ("", input, 0),
        };
        if !rest.starts_with('/') {
            return Err(fail(base, "a path must start with '/'"));
        }
        let bytes = rest.as_bytes();
        let mut elems = Vec::new();
        let mut i = 1;
        if rest == "/" {
            return Ok(Path {
                origin: origin.to_owned(),
                elems,
            });
        }
        loop {
            let start = i;
            while i < bytes.len() && bytes[i] != b'/' && bytes[i] != b'[' {
                if bytes[i] == b']' || bytes[i] == b'=' {
                    return Err(fail(base + i, "unexpected character in element name"));
                }
                i += 1;
            }
            if i == start {
                return Err(fail(base + i, "empty element name"));
            }
            let mut elem = PathElem::new(&rest[start..i]);
            if elem.name == MULTI_LEVEL_WILDCARD && bytes.get(i) == Some(&b'[') {
                return Err(fail(base + i, "'...' cannot have keys"));
            }
            while i < bytes.len() && bytes[i] == b'[' {
                i += 1;
                let kstart = i;
                while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b']' {
                    if bytes[i] == b'/' || bytes[i] == b'[' {
                        return Err(fail(base + i, "unexpected character in key name"));
                    }
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] != b'=' {
                    return Err(fail(base + i, "key without '='"));
                }
                if i == kstart {
                    return Err(fail(base + i, "empty key name"));
                }
                let key = rest[kstart..i].to_owned();
                i += 1;
                let mut value = String::new();
                let mut closed = false;
                let mut chars = rest[i..].char_indices();
                while let Some((off, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some((_, esc)) => value.push(esc),
                            None => return Err(fail(base + i + off, "dangling escape")),
                        },
                        ']' => {
                            i += off + 1;
                            closed = true;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                if !closed {
                    return Err(fail(base + rest.len(), "unterminated key value"));
                }
                if elem.keys.insert(key, value).is_some() {
                    return Err(fail(base + i, "duplicate key"));
                }
            }
            elems.push(elem);
            if i >= bytes.len() {
                break;
            }
            if bytes[i] != b'/' {
                return Err(fail(base + i, "expected '/' after element"));
            }
            i += 1;
            if i >= bytes.len() {
                return Err(fail(base + i, "trailing '/'"));
            }
        }
        Ok(Path {
            origin: origin.to_owned(),
            elems,
        })
    }
}

impl Serialize for Path {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(ifname: &str) -> Path {
        Path::from_elems(vec![
            PathElem::new("interfaces"),
            PathElem::new("interface").with_key("name", ifname),
            PathElem::new("state"),
            PathElem::new("counters"),
            PathElem::new("in-octets"),
        ])
    }

    #[test]
    fn canonical_form_round_trips() {
        let cases = [
            "/",
            "/interfaces",
            "/interfaces/interface[name=Ethernet1/1]/state/counters/in-octets",
            "openconfig:/interfaces/interface[name=eth0]/state",
            "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]",
            "/a/b[k=with\\]bracket]/c",
            "/a/b[k=back\\\\slash]",
            "/a/b[k=]",
            "/interfaces/interface[name=*]/...",
            "/a/.../b",
            "/a/*/b[k=*]",
            "/...",
            "/a/b[k=x=y/z[w]",
            "oc:/a:b/c",
        ];
        for case in cases {
            let path: Path = case.parse().unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(path.to_string(), case);
        }
    }

    #[test]
    fn keys_are_sorted_in_the_canonical_form() {
        let p: Path = "/p/protocol[name=bgp][identifier=BGP]".parse().unwrap();
        assert_eq!(p.to_string(), "/p/protocol[identifier=BGP][name=bgp]");
    }

    #[test]
    fn key_values_keep_slashes_and_escapes() {
        let p: Path = "/interfaces/interface[name=Ethernet1/1]/state"
            .parse()
            .unwrap();
        assert_eq!(p.key("interface", "name"), Some("Ethernet1/1"));
        assert_eq!(p.leaf(), "state");
        let tricky = counters("x]y\\z");
        assert_eq!(tricky.to_string().parse::<Path>().unwrap(), tricky);
    }

    #[test]
    fn malformed_paths_are_rejected_with_a_reason() {
        for (bad, reason) in [
            ("", "must start with '/'"),
            ("interfaces", "must start with '/'"),
            ("//a", "empty element name"),
            ("/a/", "trailing '/'"),
            ("/a[name]", "key without '='"),
            ("/a[=x]", "empty key name"),
            ("/a[name=x", "unterminated key value"),
            ("/a[k=1][k=2]", "duplicate key"),
            ("/a[k=1]b", "expected '/'"),
            ("/a[k=x\\", "dangling escape"),
            (":/a", "empty origin"),
            ("oc:a", "must start with '/'"),
            ("/a]", "unexpected character in element name"),
            ("/a=b", "unexpected character in element name"),
            ("/a[k/x=v]", "unexpected character in key name"),
            ("/a[k[=v]", "unexpected character in key name"),
            ("/a/...[k=v]", "'...' cannot have keys"),
            ("/a[k=v]]", "expected '/'"),
            ("/a/[k=v]", "empty element name"),
        ] {
            let err = bad.parse::<Path>().expect_err(bad);
            assert!(err.reason.contains(reason), "{bad}: got {err}");
        }
    }

    #[test]
    fn wildcards_match_concrete_paths() {
        let p = |s: &str| s.parse::<Path>().expect(s);
        let leaf = p("/interfaces/interface[name=Ethernet1/1]/state/counters/in-octets");
        for (pattern, want) in [
            ("/", true),
            ("/interfaces", true),
            ("/interfaces/interface", true),
            ("/interfaces/interface[name=*]/state", true),
            (
                "/interfaces/interface[name=Ethernet1/1]/state/counters/in-octets",
                true,
            ),
            ("/interfaces/interface[name=Ethernet2]", false),
            ("/interfaces/interface[type=*]", false),
            ("/interfaces/*/state/counters", true),
            ("/*/*/*/*/*", true),
            ("/*/*/*/*/*/*", false),
            ("/...", true),
            ("/.../in-octets", true),
            ("/.../out-octets", false),
            ("/interfaces/.../counters/in-octets", true),
            ("/interfaces/.../interface/state", true),
            ("oc:/interfaces", false),
            ("/system", false),
        ] {
            assert_eq!(p(pattern).matches(&leaf), want, "{pattern}");
        }
        assert!(p("/a/.../b").has_wildcards());
        assert!(p("/a/b[k=*]").has_wildcards());
        assert!(!leaf.has_wildcards());
    }

    #[test]
    fn join_appends_elements_and_keeps_origin() {
        let prefix: Path = "oc:/interfaces".parse().unwrap();
        let path: Path = "/interface[name=e1]/state".parse().unwrap();
        assert_eq!(
            prefix.join(&path).to_string(),
            "oc:/interfaces/interface[name=e1]/state"
        );
    }

    #[test]
    fn serde_uses_the_canonical_string() {
        let p = counters("Ethernet1");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            "\"/interfaces/interface[name=Ethernet1]/state/counters/in-octets\""
        );
        assert_eq!(serde_json::from_str::<Path>(&json).unwrap(), p);
        assert!(serde_json::from_str::<Path>("\"no-slash\"").is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Names as the canonical form allows them: no `/ [ ] =`, never empty.
        fn name() -> impl Strategy<Value = String> {
            "[^/\\[\\]=]{1,8}"
        }

        /// Key values: anything, the characters that need care made likely.
        fn key_value() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop_oneof![
                    Just(']'),
                    Just('['),
                    Just('\\'),
                    Just('/'),
                    Just('='),
                    Just('*'),
                    any::<char>()
                ],
                0..8,
            )
            .prop_map(|chars| chars.into_iter().collect())
        }

        fn elem() -> impl Strategy<Value = PathElem> {
            prop_oneof![
                8 => (name(), prop::collection::btree_map(name(), key_value(), 0..3))
                    .prop_map(|(name, keys)| PathElem { name, keys }),
                1 => Just(PathElem::new(WILDCARD)),
                1 => Just(PathElem::new(MULTI_LEVEL_WILDCARD)),
            ]
        }

        fn path() -> impl Strategy<Value = Path> {
            (
                prop_oneof![Just(String::new()), "[^:/]{1,6}"],
                prop::collection::vec(elem(), 0..6),
            )
                .prop_map(|(origin, elems)| Path { origin, elems })
        }

        proptest! {
            #[test]
            fn display_and_from_str_round_trip(path in path()) {
                let text = path.to_string();
                let back: Path = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(back, path);
            }

            #[test]
            fn a_path_matches_itself_and_its_descendants(path in path(), extra in elem()) {
                prop_assume!(!path.has_wildcards() && !extra.is_wildcard());
                prop_assert!(path.matches(&path));
                let mut child = path.clone();
                child.elems.push(extra);
                prop_assert!(path.matches(&child));
            }
        }
    }
}
